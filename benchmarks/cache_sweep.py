"""Frozen-encoder sweep with the feature cache vs one frozen run without it (issue 7).

    python benchmarks/cache_sweep.py            # STS-B train/dev, MiniLM frozen, 7 poolings x 2 heads, 3 epochs
    python benchmarks/cache_sweep.py --quick    # first 1,000 train / 500 dev pairs, 1 epoch

Runs, one after the other, each from a cold cache (fresh `paths.cache_dir`, so tokenizing and encoding are counted):
  A. one job without the cache:  train.py encoder.freeze=true cache_features=false pooling=mean head=regression
  B. the whole sweep with it:    train.py -m encoder.freeze=true pooling=<all 7> head=regression,classification
and reports the wall seconds of each process and B / A (target: <= 1.5), plus each job's dev Spearman and the
agreement of the (mean, regression) job with and without the cache. Results: benchmarks/results/<stamp>-cache-sweep.*
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import common

POOLINGS = "pooler,cls,mean,max,mean_sqrt_len,weighted_mean,attention"
HEADS = "regression,classification"
TARGET = 1.5


def train_py(args: list[str], log: Path) -> float:
    """Run train.py from the repo root; returns its wall seconds (raises with the log's tail if it fails)."""
    cmd = [sys.executable, "train.py", *args]
    print(f"[{datetime.now():%H:%M:%S}] {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        rc = subprocess.run(cmd, cwd=common.REPO, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"train.py failed (exit {rc}); last lines of {log}:\n" + log.read_text()[-3000:])
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1,000 train / 500 dev pairs, 1 epoch")
    p.add_argument("--epochs", type=int, help="default 3 (quick: 1)")
    p.add_argument("--precision", default="bf16-mixed", help="trainer.precision for both runs")
    p.add_argument("--data-dir", type=Path, default=common.default_data_dir())
    a = p.parse_args()
    epochs = a.epochs or (1 if a.quick else 3)
    train_n, dev_n = (1000, 500) if a.quick else (None, None)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    runs = common.BENCH / "runs" / f"{stamp}-cache-sweep"
    runs.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "stsb"
        data.mkdir()
        pairs = {"train": common.write_subset(a.data_dir / "sts-train.csv", data / "sts-train.csv", train_n),
                 "dev": common.write_subset(a.data_dir / "sts-dev.csv", data / "sts-dev.csv", dev_n)}
        shared = ["encoder=minilm", "encoder.freeze=true", "data=stsb", f"data.dir={data}",
                  f"trainer.max_epochs={epochs}", f"trainer.precision={a.precision}", "optim.head_lr=1e-3",
                  "trainer.enable_progress_bar=false", f"paths.root_dir={tmp}"]
        single_cmd = [*shared, "cache_features=false", "pooling=mean", "head=regression",
                      f"paths.cache_dir={tmp}/cache-single", f"hydra.run.dir={runs}/single"]
        sweep_cmd = ["-m", *shared, "cache_features=true", f"pooling={POOLINGS}", f"head={HEADS}",
                     f"paths.cache_dir={tmp}/cache-sweep", f"hydra.sweep.dir={runs}/sweep"]
        single_seconds = train_py(single_cmd, runs / "single.log")
        sweep_seconds = train_py(sweep_cmd, runs / "sweep.log")

    single = json.loads((runs / "single" / "results.json").read_text())
    files = sorted((runs / "sweep").glob("*/results.json"))  # job folders are named by their overrides
    jobs = [json.loads(f.read_text()) for f in files]
    failed = [j for j in jobs if j["status"] != "ok"]
    same = next((j for j in jobs if j["config"]["pooling"] == "mean" and j["config"]["head"] == "regression"), None)
    report = {
        "started": stamp, "command": shlex.join([sys.executable, *sys.argv]), "machine": common.machine(),
        "settings": {"train_pairs": pairs["train"], "dev_pairs": pairs["dev"], "epochs": epochs,
                     "precision": a.precision, "poolings": POOLINGS.split(","), "heads": HEADS.split(",")},
        "single_seconds": single_seconds, "sweep_seconds": sweep_seconds, "jobs": len(jobs), "failed": len(failed),
        "ratio": sweep_seconds / single_seconds, "target": TARGET,
        "single_val_spearman": single["metrics"].get("val/spearman"),
        "cached_same_job_val_spearman": same and same["metrics"].get("val/spearman"),
        "jobs_val_spearman": {f"{j['config']['pooling']}/{j['config']['head']}": j["metrics"].get("val/spearman")
                              for j in jobs},
        "single_train_seconds": single["timing"].get("train_seconds"),
        "commands": {"single": shlex.join(["train.py", *single_cmd]), "sweep": shlex.join(["train.py", *sweep_cmd])},
    }
    out = common.BENCH / "results" / f"{stamp}-cache-sweep{'-quick' if a.quick else ''}"
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    print(f"written: {out}.json, {out}.md (run folders: {runs})")


def markdown(r: dict) -> str:
    s = r["settings"]
    met = "met" if r["ratio"] <= r["target"] else "**not met**"
    diff = (None if r["cached_same_job_val_spearman"] is None or r["single_val_spearman"] is None
            else abs(r["cached_same_job_val_spearman"] - r["single_val_spearman"]) * 100)
    lines = [
        f"# Frozen-encoder sweep with the feature cache ({r['started']})", "",
        f"Machine: {common.describe_machine(r['machine'])}", "",
        f"Command: `{r['command']}`", "",
        f"Data: {s['train_pairs']} STS-B train pairs, {s['dev_pairs']} dev pairs; MiniLM frozen, {s['epochs']} "
        f"epoch(s), precision {s['precision']}; each run from a cold cache (tokenizing and encoding counted).", "",
        "| run | jobs | wall seconds |", "|---|---:|---:|",
        f"| A: one frozen job, no cache (`{r['commands']['single']}`) | 1 | {r['single_seconds']:.1f} |",
        f"| B: sweep of {len(s['poolings'])} poolings x {len(s['heads'])} heads with the cache | {r['jobs']} "
        f"({r['failed']} failed) | {r['sweep_seconds']:.1f} |", "",
        f"B / A = **{r['ratio']:.2f}x** (target <= {r['target']}x: {met}).", "",
        f"Same job (mean, regression) with and without the cache: val Spearman {r['single_val_spearman']:.4f} vs "
        f"{r['cached_same_job_val_spearman']:.4f} ({diff:.3f} points apart)." if diff is not None else
        "The (mean, regression) job is missing from the sweep.", "",
        "| pooling/head | val Spearman |", "|---|---:|",
        *[f"| {k} | {'—' if v is None else format(v, '.4f')} |" for k, v in r["jobs_val_spearman"].items()],
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
