"""Side-by-side speed/quality benchmark: poolhead vs what researchers would use instead (issue 6).

    python benchmarks/run.py --quick     # 1 epoch of 640 train pairs, 300 dev pairs, 1 repeat (minutes)
    python benchmarks/run.py             # 4 epochs of all 5,749 pairs, all 1,500 dev pairs, 3 repeats (hours)

Every contender runs in its own process (benchmarks/contenders/*.py), one at a time, in alternating order across
repeats; the table holds medians over repeats. Results: benchmarks/results/<timestamp>-<quick|full>.{json,md};
per-run JSON and logs: benchmarks/runs/<timestamp>/ (git-ignored).
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

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

CONTENDERS = {  # key: (script in contenders/, extra arguments)
    "poolhead_cross": ("poolhead_run.py", ["--mode", "cross", "--pooling", "cls"]),
    "hf_trainer_grouped": ("hf_trainer_cross.py", ["--padding", "longest_grouped"]),
    "hf_trainer_max_length": ("hf_trainer_cross.py", ["--padding", "max_length"]),
    "bare_loop": ("bare_loop.py", []),
    "poolhead_bi": ("poolhead_run.py", ["--mode", "bi", "--pooling", "mean"]),
    "st_bi": ("st_bi.py", []),
    "st_encode": ("st_encode.py", []),
    "hf_predict": ("hf_predict.py", []),
}
COMPARISONS = {  # name: (poolhead contender, other contenders, the throughput compared)
    "cross fine-tune": ("poolhead_cross", ["hf_trainer_grouped", "hf_trainer_max_length"], "train"),
    "bi fine-tune": ("poolhead_bi", ["st_bi"], "train"),
    "encoding": ("poolhead_bi", ["st_encode", "hf_predict"], "eval"),
    "overhead": ("poolhead_cross", ["bare_loop"], "train"),
}
FIELDS = ["train_pairs_per_second", "eval_pairs_per_second", "peak_rss_mb", "dev_spearman", "train_seconds",
          "eval_seconds", "step_seconds_median", "wall_seconds"]
# Seed-to-seed spread of an STS-B fine-tune is a few tenths of a Spearman point; "within noise" = within the larger of
# this floor and the max-min spread of either side's repeats.
SPEARMAN_NOISE_FLOOR = 0.005
# which contenders' pairs are one joined sequence (cross) or two (bi), for the real tokens a pair costs
PAIR_LAYOUT = {"poolhead_cross": "cross", "hf_trainer_grouped": "cross", "hf_trainer_max_length": "cross",
               "bare_loop": "cross", "poolhead_bi": "bi", "st_bi": "bi", "st_encode": "bi", "hf_predict": "bi"}
BUSY_SHARE = 0.10  # other processes using more than this share of all cores during a run: flagged in the report
# what `python train.py` uses, read from its config so the "as a user runs it" targets follow a changed default
def _default_precision() -> str:
    """What poolhead runs in by default on this machine: conf/trainer/default.yaml, with `auto` resolved."""
    from poolhead.run.plan import resolve_precision

    value = yaml.safe_load((common.REPO / "src/poolhead/conf/trainer/default.yaml").read_text())["precision"]
    return "bf16" if resolve_precision(value).startswith("bf16") else "fp32"


DEFAULT_PRECISION = _default_precision()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 epoch, 640 train / 300 dev pairs, 1 repeat")
    p.add_argument("--train-pairs", type=int, help="first N training pairs (quick: 640, full: all)")
    p.add_argument("--dev-pairs", type=int, help="first M dev pairs (quick: 300, full: all)")
    p.add_argument("--epochs", type=int, help="quick: 1, full: 4")
    p.add_argument("--repeats", type=int, help="quick: 1, full: 3")
    p.add_argument("--precisions", default="fp32,bf16", help="comma-separated, of fp32,bf16")
    p.add_argument("--only", default=",".join(COMPARISONS), help="comma-separated comparisons to run")
    p.add_argument("--skip", default="", help="comma-separated runs to leave out: a contender (st_bi) or a "
                   "contender in one precision (hf_trainer_max_length:fp32); the report lists what was skipped")
    p.add_argument("--data-dir", type=Path, default=common.default_data_dir())
    p.add_argument("--timeout", type=int, default=4 * 3600, help="seconds per contender run")
    p.add_argument("--update-readme", action="store_true", help="put the table into benchmarks/README.md")
    p.add_argument("--readme-from", type=Path, metavar="RESULT.json",
                   help="run nothing: put this committed report's table into benchmarks/README.md")
    a = p.parse_args()
    if a.readme_from:
        update_readme(json.loads(a.readme_from.read_text()), a.readme_from.with_suffix(".md"))
        return
    # "full" only for the issue's whole benchmark; any other size is "custom", so its file is never taken for it
    mode = "quick" if a.quick else "full" if not (a.train_pairs or a.dev_pairs or a.epochs) else "custom"
    train_n = a.train_pairs or (640 if a.quick else None)
    dev_n = a.dev_pairs or (300 if a.quick else None)
    epochs = a.epochs or (1 if a.quick else 4)
    repeats = a.repeats or (1 if a.quick else 3)
    precisions = a.precisions.split(",")
    comparisons = {k: COMPARISONS[k] for k in a.only.split(",")}
    keys = [k for k in CONTENDERS if any(k == c[0] or k in c[1] for c in comparisons.values())]

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    runs_dir = common.BENCH / "runs" / stamp
    runs_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        train, dev = a.data_dir / "sts-train.csv", a.data_dir / "sts-dev.csv"
        if train_n or dev_n:  # every contender reads the same subset files
            train, dev = Path(tmp) / "sts-train.csv", Path(tmp) / "sts-dev.csv"
            common.write_subset(a.data_dir / "sts-train.csv", train, train_n)
            common.write_subset(a.data_dir / "sts-dev.csv", dev, dev_n)
        pairs = {"train": len(common.read_sts(train)[2]), "dev": len(common.read_sts(dev)[2])}
        skip = set(filter(None, a.skip.split(",")))
        plan = [(k, prec) for prec in precisions for k in keys if not {k, f"{k}:{prec}"} & skip]
        raw = []
        for r in range(repeats):
            for key, prec in plan if r % 2 == 0 else plan[::-1]:  # alternate the order across repeats
                raw.append(run_one(key, prec, r, train, dev, epochs, runs_dir, a.timeout))

    summary = summarize(raw)
    flops = model_flops(a.data_dir / "sts-train.csv", train_n, a.data_dir / "sts-dev.csv", dev_n, precisions)
    report = {
        "mode": mode, "command": shlex.join([sys.executable, *sys.argv]), "started": stamp,
        "settings": {"train_pairs": pairs["train"], "dev_pairs": pairs["dev"], "epochs": epochs, "repeats": repeats,
                     "precisions": precisions, "skipped": sorted(skip), "batch_size": common.BATCH_SIZE,
                     "lr": common.LR,
                     "warmup_ratio": common.WARMUP_RATIO, "weight_decay": common.WEIGHT_DECAY,
                     "max_grad_norm": common.MAX_GRAD_NORM, "max_length": common.MAX_LENGTH, "seed": common.SEED,
                     "data_dir": str(a.data_dir)},
        "machine": common.machine(),
        "flops": flops,
        "table": table(summary, comparisons, precisions, flops),
        "targets": targets(summary, precisions, flops),
        "summary": summary, "runs": raw,
    }
    out = common.BENCH / "results" / f"{stamp}-{mode}"
    out.parent.mkdir(exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    out.with_suffix(".md").write_text(md)
    if a.update_readme:
        update_readme(report, out.with_suffix(".md"))
    print(md)
    print(f"\nwritten: {out}.json, {out}.md (per-run files: {runs_dir})")


# --- running -----------------------------------------------------------------------------------------------------


def cpu_busy_seconds() -> float:
    """Seconds all CPUs spent not idle since boot (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def run_one(key, prec, repeat, train, dev, epochs, runs_dir, timeout) -> dict:
    script, extra = CONTENDERS[key]
    stem = runs_dir / f"{key}-{prec}-r{repeat}"
    cmd = [sys.executable, str(common.BENCH / "contenders" / script), "--train", str(train), "--dev", str(dev),
           "--epochs", str(epochs), "--precision", prec, "--out", f"{stem}.json", *extra]
    print(f"[{datetime.now():%H:%M:%S}] {key} {prec} repeat {repeat + 1}", flush=True)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, t0 = cpu_busy_seconds(), time.perf_counter()
    with open(f"{stem}.log", "w") as log:
        try:
            rc = subprocess.run(cmd, cwd=common.REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    own_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    other = max(0.0, cpu_busy_seconds() - busy0 - own_cpu) / (wall * (os.cpu_count() or 1))
    try:
        res = json.loads(Path(f"{stem}.json").read_text())
    except (OSError, ValueError):
        res = {"error": f"no result JSON (exit {rc}); see {stem}.log"}
    if rc != 0 and "error" not in res:
        res["error"] = f"exit {rc}; see {stem}.log"
    if "error" in res:
        print(f"    failed: {res['error']}", flush=True)
    return res | {"key": key, "precision": prec, "repeat": repeat, "command": shlex.join(cmd),
                  "process_seconds": wall, "other_cpu_share": other}


def summarize(raw: list[dict]) -> dict:
    """Median of each field over the successful repeats, per contender and precision; failures keep their errors."""
    out: dict = {}
    for r in raw:
        out.setdefault(f"{r['key']}|{r['precision']}", []).append(r)
    summary = {}
    for name, rs in out.items():
        ok = [r for r in rs if "error" not in r]
        s = {"ok_repeats": len(ok), "errors": [r["error"] for r in rs if "error" in r],
             "max_other_cpu_share": max(r["other_cpu_share"] for r in rs)}
        for f in FIELDS:
            vals = [r[f] for r in ok if r.get(f) is not None]
            s[f] = statistics.median(vals) if vals else None
        sp = [r["dev_spearman"] for r in ok if r.get("dev_spearman") is not None]
        s["dev_spearman_spread"] = max(sp) - min(sp) if sp else None
        summary[name] = s
    return summary


# --- table and targets (every number comes from `summary`) -----------------------------------------------------------


def get(summary, key, prec, field):
    return (summary.get(f"{key}|{prec}") or {}).get(field)


def ratio(a, b):
    return a / b if a is not None and b else None


def model_flops(train_file: Path, train_limit: int | None, dev_file: Path, dev_limit: int | None,
                precisions: list[str]) -> dict:
    """What model FLOPs utilisation needs: real (unpadded) tokens per train and per dev pair, cross and bi, from
    MiniLM's tokenizer at max_length; matmul FLOPs per token (6 x the encoder's matmul weights to train: forward + 2
    backward products; 2 x to evaluate); and the GEMM ceiling of this machine at the model's shapes
    (benchmarks/ceiling.py) per precision."""
    import torch
    from ceiling import gemm_ceiling
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(common.minilm_path())
    count = lambda enc: sum(len(ids) for ids in enc["input_ids"])  # noqa: E731
    opts = dict(truncation=True, max_length=common.MAX_LENGTH)

    def tokens_per_pair(file: Path, limit: int | None) -> dict:
        a, b, _ = common.read_sts(file, limit)
        return {"cross": count(tokenizer(a, b, **opts)) / len(a),
                "bi": (count(tokenizer(a, **opts)) + count(tokenizer(b, **opts))) / len(a)}

    tokens, dev_tokens = tokens_per_pair(train_file, train_limit), tokens_per_pair(dev_file, dev_limit)
    config = AutoConfig.from_pretrained(common.minilm_path())
    h, inner = config.hidden_size, config.intermediate_size
    matmul_params = config.num_hidden_layers * (4 * h * h + 2 * h * inner)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    ceilings = {p: gemm_ceiling(1024, h, inner, dtypes[p])["ceiling_gflops"] for p in precisions}
    return {"tokens_per_pair": tokens, "dev_tokens_per_pair": dev_tokens, "matmul_params": matmul_params,
            "ceiling_gflops": ceilings}


def utilisation(key: str, prec: str, pairs_per_second: float | None, flops: dict, split: str = "train") -> float | None:
    """Model FLOPs of the real tokens trained (split="train": 6 FLOPs a weight a token) or evaluated (split="dev": 2)
    per second / the GEMM ceiling in that precision. Counts the whole model's FLOPs, so work a contender skips
    (poolhead's cls shortcut) shows as higher utilisation."""
    layout = PAIR_LAYOUT.get(key)
    if layout is None or not pairs_per_second:
        return None
    tokens, flops_per_weight = (flops["tokens_per_pair"], 6) if split == "train" else (flops["dev_tokens_per_pair"], 2)
    model_gflops = pairs_per_second * tokens[layout] * flops_per_weight * flops["matmul_params"] / 1e9
    return model_gflops / flops["ceiling_gflops"][prec]


def table(summary, comparisons, precisions, flops) -> list[dict]:
    rows = []
    for comp, (ph, others, what) in comparisons.items():
        metric = f"{what}_pairs_per_second"
        for prec in precisions:
            for key in [ph, *others]:
                s = summary.get(f"{key}|{prec}")
                if s is None:
                    continue
                rows.append({
                    "comparison": comp, "contender": key, "precision": prec,
                    "train_pairs_per_second": s["train_pairs_per_second"],
                    "train_mfu": utilisation(key, prec, s["train_pairs_per_second"], flops),
                    "eval_pairs_per_second": s["eval_pairs_per_second"],
                    "eval_mfu": utilisation(key, prec, s["eval_pairs_per_second"], flops, split="dev"),
                    "peak_rss_mb": s["peak_rss_mb"],
                    "dev_spearman": s["dev_spearman"],
                    "ratio_metric": what,
                    "ratio_poolhead_over_contender": None if key == ph else ratio(
                        get(summary, ph, prec, metric), s[metric]),
                    "error": "; ".join(s["errors"]) if not s["ok_repeats"] else None,
                })
    return rows


def targets(summary, precisions, flops) -> list[dict]:
    """Each target, per precision: the two values compared, the measured figure, the threshold, met or not."""
    out = []

    def add(target, prec, detail, value, threshold, ok):
        out.append({"target": target, "precision": prec, "compared": detail, "value": value,
                    "threshold": threshold, "met": None if value is None else bool(ok(value))})

    tps, eps = "train_pairs_per_second", "eval_pairs_per_second"
    for prec in precisions:
        add("cross train >= 1.5x HF Trainer (grouped)", prec, "poolhead_cross / hf_trainer_grouped, train pairs/s",
            ratio(get(summary, "poolhead_cross", prec, tps), get(summary, "hf_trainer_grouped", prec, tps)),
            1.5, lambda v: v >= 1.5)
        add("bi train >= 3x ST trainer", prec, "poolhead_bi / st_bi, train pairs/s",
            ratio(get(summary, "poolhead_bi", prec, tps), get(summary, "st_bi", prec, tps)), 3.0, lambda v: v >= 3)
        add("eval >= 3x ST encode fp32", prec, f"poolhead_bi ({prec}) / st_encode (fp32), eval pairs/s",
            ratio(get(summary, "poolhead_bi", prec, eps), get(summary, "st_encode", "fp32", eps)), 3.0,
            lambda v: v >= 3)
        for ph, floor in (("poolhead_cross", 0.65), ("poolhead_bi", 0.60)):
            add(f"{ph.split('_')[1]} train model FLOPs utilisation >= {floor:.0%}", prec,
                f"{ph}: 6 x matmul weights x real tokens/s / {prec} GEMM ceiling",
                utilisation(ph, prec, get(summary, ph, prec, tps), flops), floor, lambda v, f=floor: v >= f)
        bare = ratio(get(summary, "bare_loop", prec, tps), get(summary, "poolhead_cross", prec, tps))
        add("per-step overhead <= 5% vs bare loop", prec,
            "bare_loop / poolhead_cross train pairs/s - 1 (extra time per step)",
            None if bare is None else bare - 1, 0.05, lambda v: v <= 0.05)
        for ph, other in [("poolhead_cross", "hf_trainer_grouped"), ("poolhead_cross", "hf_trainer_max_length"),
                          ("poolhead_cross", "bare_loop"), ("poolhead_bi", "st_bi")]:
            a, b = get(summary, ph, prec, "dev_spearman"), get(summary, other, prec, "dev_spearman")
            noise = max([SPEARMAN_NOISE_FLOOR] + [get(summary, k, prec, "dev_spearman_spread") or 0
                                                  for k in (ph, other)])
            add("poolhead dev Spearman >= contender's (within noise)", prec,
                f"{ph} - {other} dev Spearman (noise allowance {noise:.4f})",
                None if a is None or b is None else a - b, -noise, lambda v, n=noise: v >= -n)
        add("peak RSS <= 1.2x HF Trainer", prec, "poolhead_cross / hf_trainer_grouped peak RSS",
            ratio(get(summary, "poolhead_cross", prec, "peak_rss_mb"),
                  get(summary, "hf_trainer_grouped", prec, "peak_rss_mb")), 1.2, lambda v: v <= 1.2)
    # the issue's wording: poolhead as a user runs it (its default precision) against each trainer's fastest setting
    def fastest(key):
        return max(filter(None, (get(summary, key, prec, tps) for prec in precisions)), default=None)

    for ph, other, threshold in [("poolhead_cross", "hf_trainer_grouped", 1.5), ("poolhead_bi", "st_bi", 3.0)]:
        add(f"{ph.split('_')[1]} train >= {threshold:g}x {other}'s fastest setting", f"{DEFAULT_PRECISION} vs fastest",
            f"{ph} ({DEFAULT_PRECISION}, poolhead's default) / {other} (its faster precision), train pairs/s",
            ratio(get(summary, ph, DEFAULT_PRECISION, tps), fastest(other)), threshold,
            lambda v, t=threshold: v >= t)
    if {"fp32", "bf16"} <= set(precisions):
        for ph in ("poolhead_cross", "poolhead_bi"):
            a, b = get(summary, ph, "fp32", "dev_spearman"), get(summary, ph, "bf16", "dev_spearman")
            add("bf16 costs <= 0.3 Spearman points vs fp32", "bf16 vs fp32", f"{ph}: (fp32 - bf16) x 100",
                None if a is None or b is None else (a - b) * 100, 0.3, lambda v: v <= 0.3)
    return out


# --- machine and report -----------------------------------------------------------------------------------------


def fmt(v, spec=".1f"):
    return "—" if v is None else format(v, spec)


def markdown(rep: dict) -> str:
    """The whole report: machine, command, data, the comparison table, every target, seconds per step."""
    m, s = rep["machine"], rep["settings"]
    lines = [f"# poolhead benchmark ({rep['mode']}, {rep['started']})", "",
             f"Machine: {common.describe_machine(m)}", "",
             f"Command: `{rep['command']}`", "",
             f"Data: {s['train_pairs']} STS-B train pairs x {s['epochs']} epoch(s), {s['dev_pairs']} dev pairs; "
             f"batch {s['batch_size']}, lr {s['lr']}, warm-up {s['warmup_ratio']}, weight decay {s['weight_decay']}, "
             f"grad clip {s['max_grad_norm']}, max_length {s['max_length']}, seed {s['seed']}; "
             f"medians of {s['repeats']} repeat(s), each contender in its own process, order alternating."
             + (f" Skipped (--skip): {', '.join(s['skipped'])}." if s.get("skipped") else ""), "",
             f"Model FLOPs utilisation (MFU): train pairs/s x real tokens per train pair (cross "
             f"{rep['flops']['tokens_per_pair']['cross']:.1f}, bi {rep['flops']['tokens_per_pair']['bi']:.1f}) x 6 x "
             f"{rep['flops']['matmul_params']:,} matmul weights; eval: eval pairs/s x real tokens per dev pair (cross "
             f"{rep['flops']['dev_tokens_per_pair']['cross']:.1f}, bi {rep['flops']['dev_tokens_per_pair']['bi']:.1f}) "
             f"x 2 x the same weights; each / this machine's GEMM ceiling at MiniLM's shapes ("
             + ", ".join(f"{p} {g} GFLOP/s" for p, g in rep["flops"]["ceiling_gflops"].items()) + ").", "",
             *table_lines(rep["table"]), "", *target_lines(rep["targets"])]
    steps = -(-s["train_pairs"] // s["batch_size"]) * s["epochs"]
    for prec in s["precisions"]:
        ph, bare = (rep["summary"].get(f"{k}|{prec}") or {} for k in ("poolhead_cross", "bare_loop"))
        if ph.get("train_seconds") and bare.get("train_seconds"):
            lines += ["", f"Seconds per optimizer step, {prec} ({steps} steps, mean over the run): poolhead_cross "
                      f"{ph['train_seconds'] / steps:.3f}, bare_loop {bare['train_seconds'] / steps:.3f}; bare_loop "
                      f"median after its warm-up steps {fmt(bare.get('step_seconds_median'), '.3f')}."]
    busy = [f"{k} ({v['max_other_cpu_share']:.0%})" for k, v in rep["summary"].items()
            if v["max_other_cpu_share"] > BUSY_SHARE]
    if busy:
        lines += ["", f"**Warning: other processes used more than {BUSY_SHARE:.0%} of the CPUs during:** "
                  + ", ".join(busy) + ". Their timings are not trustworthy; rerun on a quiet machine."]
    lines += ["", "What each timer covers: see benchmarks/README.md. Raw per-run results: the JSON next to this file."]
    return "\n".join(lines) + "\n"


def table_lines(rows: list[dict]) -> list[str]:
    """The comparison table: one row per comparison, contender and precision, MFU beside each throughput."""
    pct = lambda v: "—" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    lines = ["| comparison | contender | precision | train pairs/s | train MFU | eval pairs/s | eval MFU "
             "| peak RSS MB | dev Spearman | poolhead / contender |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rr = r["ratio_poolhead_over_contender"]
        lines.append(f"| {r['comparison']} | {r['contender']} | {r['precision']} "
                     f"| {fmt(r['train_pairs_per_second'])} | {pct(r.get('train_mfu'))} "
                     f"| {fmt(r['eval_pairs_per_second'])} | {pct(r.get('eval_mfu'))} "
                     f"| {fmt(r['peak_rss_mb'], '.0f')} | {fmt(r['dev_spearman'], '.4f')} | "
                     + (f"{rr:.2f}x ({r['ratio_metric']})" if rr is not None else "—")
                     + (f" **failed**: {r['error'][:200]}" if r["error"] else "") + " |")
    return lines


def target_lines(targets: list[dict]) -> list[str]:
    """The targets table: measured value, threshold, met or not (or no data where a contender did not run)."""
    lines = ["| target | precision | compared | value | threshold | met |", "|---|---|---|---:|---:|---|"]
    for t in targets:
        met = {True: "met", False: "**not met**", None: "no data"}[t["met"]]
        lines.append(f"| {t['target']} | {t['precision']} | {t['compared']} | {fmt(t['value'], '.3f')} "
                     f"| {t['threshold']:.3g} | {met} |")
    return lines


def readme_block(rep: dict, rel: Path) -> str:
    """The README's short form of a report: link, machine, each contender's row once, the targets measured."""
    rows, seen = [], set()
    for r in rep["table"]:  # poolhead's rows repeat under each comparison it takes part in
        if (r["contender"], r["precision"]) not in seen:
            seen.add((r["contender"], r["precision"]))
            rows.append(r)
    measured = [t for t in rep["targets"] if t["met"] is not None]
    return "\n".join([f"From [`{rel}`]({rel}) (command, data, every target, seconds per step):", "",
                      f"Machine: {common.describe_machine(rep['machine'])}", "",
                      *table_lines(rows), "", *target_lines(measured)])


def update_readme(rep: dict, path: Path) -> None:
    """Put `rep`'s short form between the README's RESULTS markers (never typed by hand)."""
    readme = common.BENCH / "README.md"
    text = readme.read_text()
    start, end = "<!-- RESULTS -->", "<!-- /RESULTS -->"
    if start not in text or end not in text:
        print(f"warning: {readme} lacks the {start} ... {end} markers; not updated", file=sys.stderr)
        return
    head, rest = text.split(start, 1)
    block = readme_block(rep, path.resolve().relative_to(common.BENCH))
    readme.write_text(f"{head}{start}\n{block}\n{end}{rest.split(end, 1)[1]}")


if __name__ == "__main__":
    main()
