"""What a halving sweep writes beside its jobs: halving.json (every decision, the compute), halving.md (the table a
researcher reads: the rung each configuration reached, its metric at every rung, who it lost to and the p-value,
the compute against the full grid's) and curves.png (metric vs step, dropped configurations grey where they stop)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from poolhead.run.record import atomic_write, read_json

RESULTS = "halving.json"
REPORT_FILES = (RESULTS, "halving.md", "curves.png", "summary.md", "summary.csv", "summary_groups.csv",
                "summary.png")  # what a redecided folder moves aside


def compute_spent(folders: dict[tuple[str, Any], Path]) -> dict[str, Any]:
    """Train steps and seconds summed over the jobs (a job's steps: the furthest it trained; its seconds: every leg,
    from the rung records and results.json), and the full budget of one job when a job reached it."""
    steps = seconds = 0.0
    full_steps = None
    for folder in folders.values():
        rungs = sorted((folder / "rungs").glob("step-*/metrics.json"))
        legs = [json.loads(p.read_text()) for p in rungs]
        results = read_json(folder / "results.json")
        furthest = max([leg["step"] for leg in legs], default=0)
        if results.get("status") == "ok":
            furthest = results.get("timing", {}).get("train_steps") or furthest
            full_steps = results.get("timing", {}).get("train_steps") or full_steps
            seconds += results.get("timing", {}).get("train_seconds", 0.0)
        steps += furthest
        seconds += sum(leg.get("train_seconds", 0.0) for leg in legs)
    return {"train_steps": int(steps), "train_seconds": round(seconds, 1), "full_steps_per_job": full_steps}


def write_halving_report(sweep_dir: Path, sweeper: Any, configs: Sequence[str], groups: dict[str, str],
                         seeds: Sequence[Any], rungs: Sequence[Any], folders: dict[tuple[str, Any], Path],
                         sittings: list[dict[str, Any]], design: dict[str, Any] | None = None,
                         jobs: Sequence[str] = (), failure: str | None = None) -> dict[str, Any]:
    """halving.json (atomically), halving.md and curves.png from the decisions so far (`rungs`: the
    halving.Rung decided so far, in order); `jobs`: the design's job folders, the only ones summary.md reads;
    `failure`: why the sweep cannot finish."""
    spent = compute_spent({k: v for k, v in folders.items() if v.exists()})
    decided = len(rungs) == len(sweeper.rungs) + 1
    full = spent["full_steps_per_job"]
    grid = len(configs) * len(seeds) * full if full else None
    record = {"rungs": sweeper.rungs, "eta": sweeper.eta, "min_per_group": sweeper.min_per_group,
              "all_seeds_from": ([*sweeper.rungs, "full"])[sweeper.all_seeds_from],
              "group_by": sweeper.group_by, "seeds": list(seeds),
              "complete": decided and not failure, "failure": failure,
              "compute": spent | {"full_grid_steps": grid, "share_of_full_grid": round(spent["train_steps"] / grid, 4)
                                  if grid else None},
              "sittings": sittings, "design": design, "jobs": list(jobs), "configs": {}}
    for c in configs:
        reached = [r for r in rungs if c in r.scores]
        dropped = next(((r.step, r.dropped[c]) for r in rungs if c in r.dropped), None)
        record["configs"][c] = {"group": groups[c], "scores": {str(r.step or "full"): r.scores[c] for r in reached},
                                "reached": str(reached[-1].step or "full") if reached else None,
                                "dropped_at": (str(dropped[0] or "full") if dropped else None),
                                **({"against": dropped[1]["against"], "p_value": dropped[1]["p_value"],
                                    "reason": dropped[1]["reason"]} if dropped else {}),
                                "finalist": decided and c in rungs[-1].kept}
    atomic_write(sweep_dir / RESULTS, json.dumps(record, indent=2, default=str) + "\n")
    atomic_write(sweep_dir / "halving.md", halving_markdown(record))
    try:
        plot_curves(sweep_dir, record, folders, seeds)
    except Exception as err:
        import logging

        logging.getLogger(__name__).warning("curves.png not written: %s", err)
    return record


def wall_seconds(sittings: Sequence[dict[str, Any]]) -> float:
    """Seconds the sittings' (started, finished) spans cover, overlaps once (workers side by side)."""
    total, end = 0.0, -math.inf
    for s in sorted(sittings, key=lambda s: s["started"]):
        start, finish = max(s["started"], end), s["finished"]
        total += max(0.0, finish - start)
        end = max(end, finish)
    return total


def order(record: dict[str, Any]) -> list[str]:
    """All configurations best first: by the rung reached (later first), then the score there."""
    names = [str(r) for r in record["rungs"]] + ["full"]

    def key(c: str) -> tuple[int, float]:
        entry = record["configs"][c]
        at = entry["reached"]
        score = entry["scores"].get(at) if at else None
        return (-(names.index(at) if at else -1), -(score if isinstance(score, float) and math.isfinite(score)
                                                     else -math.inf))
    return sorted(record["configs"], key=key)


def halving_markdown(record: dict[str, Any]) -> str:
    names = [str(r) for r in record["rungs"]] + ["full"]
    c = record["compute"]
    state = "complete" if record["complete"] else \
        ("FAILED" if record.get("failure") else "PARTIAL: run the same command to go on")
    why = [f"**The sweep cannot finish: {record['failure']}.**", ""] if record.get("failure") else []
    lines = [f"# Successive halving ({state})", "", *why,
             f"Rungs {record['rungs']} steps then the full budget; eta {record['eta']}, at least "
             f"{record['min_per_group']} per group ({', '.join(record['group_by']) or 'one group'}); seed "
             f"{record['seeds'][0]} alone before step {record['all_seeds_from']}, seeds {record['seeds']} from there "
             "on (the last cut and the finalists on seed means).", "",
             f"**Compute: {c['train_steps']:,} train steps, {c['train_seconds'] / 3600:.2f} h of training**"
             + (f" against the full grid's {c['full_grid_steps']:,} steps ({100 * c['share_of_full_grid']:.1f}%)."
                if c.get("full_grid_steps") else ".")]
    walls = [s for s in record["sittings"] if s.get("finished")]
    if walls:
        hours = wall_seconds(walls) / 3600
        lines += [f"Wall time: {hours:.2f} h over {len(walls)} sitting(s) (processes side by side counted "
                  "once)."]
    lines += ["", "Metric at each rung (seed mean at the full budget; best checkpoint there, the weights of that step "
              "at a rung). p: paired bootstrap over the dev rows of the first seed's predictions at that rung, the "
              "dropped configuration against the best kept one of its group (the fraction of resamples where the kept "
              "one is not ahead); where several seeds ran, the cut itself was on their mean.", "",
              "| configuration | group | " + " | ".join(names) + " | reached | dropped against (p) |",
              "|" + "---|" * (len(names) + 4)]
    for name in order(record):
        e = record["configs"][name]
        cells = [f"{e['scores'][n]:.4f}" if isinstance(e["scores"].get(n), float) else
                 ("failed" if n in e["scores"] else "") for n in names]
        against = f"{e['against']} ({e['p_value']:.3f})" if e.get("p_value") is not None else e.get("against") or ""
        reached = ("**finalist**" if e["finalist"] else e["reached"] or "")
        lines.append(f"| {name} | {e['group']} | " + " | ".join(cells) + f" | {reached} | {against} |")
    lines += ["", "The finalists' ranking over seeds (mean ± std, corrected p-values): summary.md.", ""]
    return "\n".join(lines)


def plot_curves(sweep_dir: Path, record: dict[str, Any], folders: dict[tuple[str, Any], Path],
                seeds: Sequence[Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({e["group"] for e in record["configs"].values()})
    metric = curve_metric(next(iter(folders.values()))) if folders else "validation metric"
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.5), squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        for name, e in record["configs"].items():
            if e["group"] != group or (name, seeds[0]) not in folders:
                continue
            points = curve(folders[(name, seeds[0])], record["rungs"])
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            dropped = e["dropped_at"] is not None
            style = {"color": "0.75", "lw": 1, "zorder": 1} if dropped else {"lw": 2, "zorder": 3}
            ax.plot(xs, ys, marker="o", ms=3, label=None if dropped else name, **style)
            if dropped:
                ax.plot(xs[-1], ys[-1], "x", color="0.5", zorder=2)
        ax.set_title(group)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{metric} (seed {seeds[0]})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = sweep_dir / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curve_metric(job_dir: Path) -> str:
    """The metric the curves plot: the job's monitor (its results.json)."""
    return read_json(job_dir / "results.json").get("monitor") or "val/spearman"


def curve(job_dir: Path, rungs: Sequence[int]) -> list[tuple[int, float]]:
    """(step, metric) of one job: its records at the sweep's rungs and its epoch-end validations (metrics.csv)."""
    monitor = curve_metric(job_dir)
    points = {}
    for path in (job_dir / "rungs").glob("step-*/metrics.json"):
        rung = json.loads(path.read_text())
        if monitor in rung["metrics"] and rung["step"] in rungs:
            points[rung["step"]] = rung["metrics"][monitor]
    metrics = job_dir / "csv" / "metrics.csv"
    if metrics.exists():
        frame = pd.read_csv(metrics)
        if monitor in frame:
            for step, value in frame.dropna(subset=[monitor])[["step", monitor]].itertuples(index=False):
                points.setdefault(int(step) + 1, float(value))  # logged at the epoch's last step, counted from 0
    return sorted(points.items())
