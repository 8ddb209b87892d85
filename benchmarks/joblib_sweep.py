"""Local parallel jobs (issue 13): the same grid with hydra/launcher=parallel (joblib, 2 jobs x 1 thread each) and with
Hydra's serial launcher (1 job at a time x 2 threads).

    python benchmarks/joblib_sweep.py               # MiniLM on the demo data, pooling=mean,cls x seed=1,2, 2 epochs
    python benchmarks/joblib_sweep.py --repeats 3 --epochs 1 --encoder tiny

Each measured run is a whole `train.py -m` process into a fresh sweep folder (imports, model loading, checkpoints and
the report counted), serial and parallel alternating, after one untimed warm-up job (token cache, file cache).
Reports the wall seconds of each run, serial / parallel (above 1: the parallel grid finishes sooner), and the share of
the CPUs that other processes used meanwhile. Results: benchmarks/results/<stamp>-joblib.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import common
from run import cpu_busy_seconds

LAUNCHERS = {"serial": [], "parallel": ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"]}


def train_py(args: list[str], log: Path) -> tuple[float, float]:
    """Run train.py from the repo root: (wall seconds, share of all CPUs that other processes used meanwhile)."""
    cmd = [sys.executable, "train.py", *args]
    print(f"[{datetime.now():%H:%M:%S}] {shlex.join(cmd)}", flush=True)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # torch's and joblib's own defaults
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, start = cpu_busy_seconds(), time.perf_counter()
    with log.open("w") as out:
        rc = subprocess.run(cmd, cwd=common.REPO, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"train.py failed (exit {rc}); last lines of {log}:\n" + log.read_text()[-3000:])
    own = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, max(0.0, cpu_busy_seconds() - busy - own) / (wall * (os.cpu_count() or 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    runs = common.BENCH / "runs" / f"{stamp}-joblib"
    runs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shared = [f"encoder={a.encoder}", "data=demo", f"trainer.max_epochs={a.epochs}", "test=false",
                  "trainer.enable_progress_bar=false", f"paths.root_dir={tmp}", f"paths.cache_dir={tmp}/cache"]
        grid = ["-m", "pooling=mean,cls", "seed=1,2", *shared]
        train_py([*shared, f"hydra.run.dir={runs}/warmup"], runs / "warmup.log")
        measured: dict[str, list[dict]] = {name: [] for name in LAUNCHERS}
        for repeat in range(a.repeats):
            for name in (LAUNCHERS if repeat % 2 == 0 else reversed(LAUNCHERS)):
                sweep = runs / f"{name}-r{repeat}"
                wall, other = train_py([*grid, *LAUNCHERS[name], f"hydra.sweep.dir={sweep}"], runs / f"{name}-r{repeat}.log")
                jobs = [json.loads(f.read_text()) for f in sweep.glob("*/results.json")]
                measured[name].append({"wall_seconds": wall, "other_cpu_share": other,
                                       "torch_threads": sorted({j["env"]["threads"] for j in jobs}),
                                       "train_seconds": sum(j["timing"]["train_seconds"] for j in jobs),
                                       "jobs_ok": sum(j["status"] == "ok" for j in jobs)})
    serial = statistics.median(r["wall_seconds"] for r in measured["serial"])
    parallel = statistics.median(r["wall_seconds"] for r in measured["parallel"])
    fastest = {name: min(r["wall_seconds"] for r in runs) for name, runs in measured.items()}
    report = {"started": stamp, "command": shlex.join(["python", *sys.argv]), "machine": common.machine(),
              "settings": vars(a), "grid": shlex.join(["train.py", *grid[:3], "...", *shared[:4]]),
              "launchers": {k: shlex.join(v) or "(Hydra's basic launcher)" for k, v in LAUNCHERS.items()},
              "runs": measured, "serial_median_seconds": serial, "parallel_median_seconds": parallel,
              "ratio_serial_over_parallel": serial / parallel, "fastest_seconds": fastest,
              "ratio_fastest": fastest["serial"] / fastest["parallel"]}
    out = common.BENCH / "results" / f"{stamp}-joblib"
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    print(f"written: {out}.json, {out}.md (run folders: {runs})")


def markdown(r: dict) -> str:
    rows = [f"| {name} | {i + 1} | {run['jobs_ok']} | {','.join(map(str, run['torch_threads']))} | "
            f"{run['wall_seconds']:.1f} | {run['train_seconds']:.1f} | {run['other_cpu_share']:.0%} |"
            for name, runs in r["runs"].items() for i, run in enumerate(runs)]
    busy = max(run["other_cpu_share"] for runs in r["runs"].values() for run in runs)
    return "\n".join([
        f"# Local parallel sweep: joblib 2 jobs x 1 thread vs serial 1 job x 2 threads ({r['started']})", "",
        f"Machine: {common.describe_machine(r['machine'])}", "",
        f"Command: `{r['command']}`", "",
        f"Grid: `{r['grid']}` (4 jobs), {r['settings']['repeats']} run(s) of each launcher, alternating; serial: "
        f"{r['launchers']['serial']}, parallel: `{r['launchers']['parallel']}`.", "",
        "| launcher | run | jobs ok | torch threads a job | wall seconds | sum of jobs' train seconds | other processes' "
        "CPU share |", "|---|---:|---:|---:|---:|---:|---:|", *rows, "",
        f"Median wall seconds: serial {r['serial_median_seconds']:.1f}, parallel {r['parallel_median_seconds']:.1f}: "
        f"serial / parallel = **{r['ratio_serial_over_parallel']:.2f}x** (above 1: the parallel grid finishes "
        "sooner); fastest run of each (the least disturbed by other work): serial "
        f"{r['fastest_seconds']['serial']:.1f}, parallel {r['fastest_seconds']['parallel']:.1f}: "
        f"**{r['ratio_fastest']:.2f}x**.", "",
        f"The machine was shared with other engineers' work during these runs (up to {busy:.0%} of its CPUs used by "
        "other processes), so the ratio is indicative, not a clean measurement.", ""])


if __name__ == "__main__":
    main()
