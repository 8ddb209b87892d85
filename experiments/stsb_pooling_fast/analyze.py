"""The fast study against the full one: comparison.md (best configuration per mode, the order of all 28, compute).

    python experiments/stsb_pooling_fast/analyze.py     # after (or during: PARTIAL) the sweep; rerun any time

Reads experiments/stsb_pooling_fast/runs/halving.json (written by the halving sweeper after each sitting; the sweep
run again with nothing left to train rewrites it from the job records) and the full study's committed records
(experiments/stsb_pooling/runs/finetune). Nothing here trains.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from datetime import datetime
from pathlib import Path

import pandas as pd
from scipy import stats

from poolhead.sweep.halving_report import order as halving_order

HERE = Path(__file__).resolve().parent
FULL = HERE.parent / "stsb_pooling" / "runs" / "finetune"
FULL_GRID_STEPS = 84 * 4 * 180  # 84 jobs x 4 epochs x 180 steps (5,749 rows / batch 32)


def full_study(folder: Path) -> pd.DataFrame:
    """One row a job of the full study: head, pooling, mode, seed, dev Spearman (best checkpoint), train seconds."""
    rows = []
    for job in sorted(folder.glob("experiment=stsb_pooling,*")):
        pairs = dict(item.split("=", 1) for item in job.name.split(","))
        record = json.loads((job / "results.json").read_text())
        rows.append({"config": f"head={pairs['head']} mode={pairs['mode']} pooling={pairs['pooling']}",
                     "mode": f"mode={pairs['mode']}", "seed": pairs["seed"],
                     "spearman": record["metrics"]["val/spearman"],
                     "train_seconds": record["timing"].get("train_seconds", math.nan)})
    return pd.DataFrame(rows)


def log_span(path: Path) -> float:
    """Seconds from the first to the last timestamped line of a sweep's log (`[2026-12-02 14:11:09,592][...`)."""
    stamps = [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
              for m in re.finditer(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", path.read_text(), re.M)]
    return (max(stamps) - min(stamps)).total_seconds() if stamps else 0.0


def _config(head: str, mode: str, pooling: str) -> str:
    return f"head={head} mode={mode} pooling={pooling}"


def _evidence(record: dict, config: str) -> str:
    entry = record["configs"][config]
    if entry["finalist"]:
        return "finalist"
    p = f", p {entry['p_value']:.3f}" if entry.get("p_value") is not None else ""
    return f"dropped at step {entry['dropped_at']} vs {entry['against'].split('pooling=')[-1]}{p}"


def answers(record: dict, means: pd.DataFrame, order: list[str]) -> list[str]:
    """Each answer of ../stsb_pooling/README.md (fine-tuned) beside the fast study's: the order of the configurations
    it compares, in the full study (mean over seeds) and in the fast one (rung reached, then the metric there)."""
    poolings = ["pooler", "cls", "mean", "max", "mean_sqrt_len", "weighted_mean", "attention"]
    questions = [(f"pooler vs cls, {m}", [_config("regression", m, p) for p in ("pooler", "cls")]) for m in
                 ("cross", "bi")]
    questions += [(f"cls vs mean vs max, {m}", [_config("regression", m, p) for p in ("cls", "mean", "max")])
                  for m in ("bi", "cross")]
    lines = ["", "## The full study's answers beside the fast study's", "",
             "| question | full study (mean over 3 seeds) | fast study | fast evidence (the losers) |",
             "|---|---|---|---|"]
    for name, configs in questions:
        full = sorted(configs, key=lambda k: -means.loc[k, "mean"])
        fast = sorted(configs, key=order.index)
        short = lambda ks: " > ".join(k.split("pooling=")[-1] for k in ks)  # noqa: E731
        lines.append(f"| {name} | {short(full)} | {short(fast)} | "
                     + "; ".join(f"{k.split('pooling=')[-1]}: {_evidence(record, k)}" for k in fast[1:]) + " |")
    for name, pairs in (("regression vs classification head (14 cells)",
                         [(_config("regression", m, p), _config("classification", m, p))
                          for m in ("cross", "bi") for p in poolings]),
                        ("bi vs cross, regression head (7 poolings)",
                         [(_config("regression", "bi", p), _config("regression", "cross", p)) for p in poolings])):
        full = sum(means.loc[a, "mean"] > means.loc[b, "mean"] for a, b in pairs)
        fast = sum(order.index(a) < order.index(b) for a, b in pairs)
        first = name.split(" vs ")[0]
        lines.append(f"| {name} | {first} ahead in {full} of {len(pairs)} | {first} ahead in {fast} of {len(pairs)} "
                     "| the order above (a cell's two configurations compared by rung reached, then metric) |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", type=Path, default=HERE / "runs")
    parser.add_argument("--full", type=Path, default=FULL)
    parser.add_argument("--out", type=Path, default=HERE / "comparison.md")
    args = parser.parse_args()
    record = json.loads((args.fast / "halving.json").read_text())
    full = full_study(args.full)
    means = full.groupby("config")["spearman"].agg(["mean", "std"])
    complete = record["complete"]
    lines = [f"# Fast study vs full study ({'complete' if complete else 'PARTIAL: the halving sweep is not done'})",
             "", "Written by `python experiments/stsb_pooling_fast/analyze.py` from `runs/halving.json` and the full "
             "study's committed records.", ""]
    c = record["compute"]
    logs = sorted(HERE.glob("sitting-*.log"))
    wall = sum(log_span(p) for p in logs) / 3600
    full_seconds = full["train_seconds"].sum()
    lines += ["## Compute", "", "| | fast (halving) | full grid |", "|---|---|---|",
              f"| train steps | {c['train_steps']:,} ({100 * c['train_steps'] / FULL_GRID_STEPS:.1f}%) | "
              f"{FULL_GRID_STEPS:,} |",
              f"| training seconds summed over jobs | {c['train_seconds']:,.0f} ({c['train_seconds'] / 3600:.2f} h) | "
              f"{full_seconds:,.0f} ({full_seconds / 3600:.2f} h) |",
              f"| wall time of the sweep | {wall:.2f} h over {len(logs)} sitting(s) (first to last line of each "
              "`sitting-*.log`) | 10.85 h (`../stsb_pooling/status.md`) |", "",
              "The full study ran fp32; the fast study bf16-mixed, 2 jobs side by side (hydra/launcher=parallel), on a "
              "CPU shared with other work (tests, other sessions) while it ran: its seconds are upper bounds, not a "
              "clean speed measurement; its steps are exact.", ""]
    lines += ["## Best configuration per mode", "", "| mode | full study's best (mean ± std, 3 seeds) | fast study's "
              "finalist | same? | if not: full-study t-test p (best > finalist, 3 seeds) |", "|---|---|---|---|---|"]
    for mode in sorted(full["mode"].unique()):
        configs = full[full["mode"] == mode]["config"].unique()
        best = max(configs, key=lambda k: means.loc[k, "mean"])
        finalists = [k for k, e in record["configs"].items() if e["finalist"] and e["group"] == mode]
        pick = finalists[0] if finalists else None
        same = "yes" if pick == best else ("—" if pick is None else "no")
        p = ""
        if pick and pick != best:
            a = full[full["config"] == best].set_index("seed")["spearman"]
            b = full[full["config"] == pick].set_index("seed")["spearman"]
            p = f"{stats.ttest_rel(a, b.reindex(a.index), alternative='greater').pvalue:.3f} (" + \
                f"{means.loc[pick, 'mean']:.4f} ± {means.loc[pick, 'std']:.4f} in the full study)"
        lines.append(f"| {mode} | {best} {means.loc[best, 'mean']:.4f} ± {means.loc[best, 'std']:.4f} | "
                     f"{pick or '(not decided yet)'} | {same} | {p} |")
    order = halving_order(record)
    full_order = list(means["mean"].sort_values(ascending=False).index)
    ranks = [order.index(k) for k in full_order if k in order]
    rho = stats.spearmanr(range(len(ranks)), ranks).statistic if len(ranks) > 2 else math.nan
    lines += ["", "## Order of all 28 configurations", "",
              f"Spearman between the fast study's order (rung reached, then the metric there) and the full study's "
              f"final order (mean over seeds): **{rho:.3f}**" + ("" if complete else " (PARTIAL: rungs so far)"), "",
              "| full rank | configuration | full mean | fast rank | reached | metric there |",
              "|---|---|---|---|---|---|"]
    for i, k in enumerate(full_order, 1):
        e = record["configs"].get(k, {})
        at = e.get("reached")
        score = e.get("scores", {}).get(at) if at else None
        lines.append(f"| {i} | {k} | {means.loc[k, 'mean']:.4f} | {order.index(k) + 1 if k in order else ''} | "
                     f"{'finalist' if e.get('finalist') else at or ''} | "
                     f"{score:.4f} |" if isinstance(score, float) else
                     f"| {i} | {k} | {means.loc[k, 'mean']:.4f} | | {at or ''} | |")
    lines += answers(record, means, order)
    lines += ["", "Each dropped configuration's rung, the survivor it lost to and the paired-bootstrap p over the dev "
              "rows: `runs/halving.md`.", ""]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
