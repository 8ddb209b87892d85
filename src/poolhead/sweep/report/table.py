"""summary.csv (one row a job), summary_groups.csv (grouped over seeds) and the short, readable summary.md."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from poolhead.sweep.report.collect import is_seed, varied_keys


def _names(jobs: list[dict], section: str) -> list[str]:
    """Keys of a results.json section over all jobs, numbers only (timing once held the checkpoint path)."""
    return list(dict.fromkeys(k for job in jobs for k, v in (job.get(section) or {}).items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)))


def summary_frame(jobs: list[dict]) -> tuple[pd.DataFrame, list[str], list[str], list[str]]:
    """One row a job (job, varied overrides, metrics, status, error, timings, best_checkpoint) and those names."""
    varied, metrics, timings = varied_keys(jobs), _names(jobs, "metrics"), _names(jobs, "timing")
    rows = []
    for job in jobs:
        checkpoint = (job.get("checkpoints") or {}).get("best") or (job.get("timing") or {}).get("best_checkpoint")
        rows.append({"job": job["job"], **{k: job["overrides"].get(k) for k in varied},
                     **{m: (job.get("metrics") or {}).get(m) for m in metrics},
                     "status": job.get("status", "failed"), "error": job.get("error"),
                     "zero_shot": bool(job.get("zero_shot", False)),
                     **{t: (job.get("timing") or {}).get(t) for t in timings}, "best_checkpoint": checkpoint})
    frame = pd.DataFrame(rows, columns=["job", *varied, *metrics, "status", "error", "zero_shot", *timings,
                                        "best_checkpoint"])
    frame[metrics + timings] = frame[metrics + timings].apply(pd.to_numeric, errors="coerce")
    return frame, varied, metrics, timings


def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}" if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3) else f"{value:.4f}"
    return str(value)


def label(row: pd.Series, axes: list[str]) -> str:
    return ", ".join(f"{a}={row[a]}" for a in axes)


def on_test(monitor: str) -> str | None:
    """The test counterpart of a validation metric: val/spearman -> test/spearman."""
    return "test/" + monitor.split("/", 1)[1] if monitor.startswith("val/") else None


def markdown_table(frame: pd.DataFrame) -> str:
    """Plain pipe table (DataFrame.to_markdown needs `tabulate`, which is not a dependency)."""
    cells = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in frame.astype(str).values]
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    return "\n".join([header, rule, *("| " + " | ".join(row) + " |" for row in cells)])


def _mean_std(row: pd.Series, column: str) -> str:
    mean, std = row[f"{column} mean"], row[f"{column} std"]
    return fmt(mean) if pd.isna(std) else f"{fmt(mean)} ± {fmt(std)}"


def grouped_table(groups: pd.DataFrame, axes: list[str], monitor: str) -> str:
    """Axes, n, main metric, its test counterpart, Δ to best, corrected p and train time; the best row in bold."""
    shown = groups[axes].map(fmt)
    shown["n"] = groups["n"].astype(str)
    for column in [monitor, on_test(monitor)]:
        if f"{column} mean" in groups:
            shown[column] = [_mean_std(row, column) for _, row in groups.iterrows()]
    shown[f"Δ {monitor}"] = groups[f"delta {monitor}"].map(lambda d: "" if d == 0 else f"{d:+.4f}")
    shown["p (corrected)"] = ["" if b else fmt(p) for b, p in zip(groups["best"], groups["p_corrected"], strict=True)]
    if "train_seconds mean" in groups:
        shown["train s"] = groups["train_seconds mean"].map(lambda s: f"{s:.3g}")
    shown.iloc[0] = [f"**{v}**" if v else v for v in shown.iloc[0]]
    return markdown_table(shown)


def _one_line(error: Any, limit: int = 300) -> str:
    text = " ".join(str(error or "(no error message)").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def job_counts(counts: pd.Series) -> str:
    """Every job accounted for: ok, failed and missing, then any other status (paused at a rung, ...)."""
    named = ["ok", "failed", "missing"]
    named += sorted(str(s) for s in counts.index if s not in named)
    return ", ".join(f"{counts.get(s, 0)} {s}" for s in named)


def summary_markdown(sweep_dir: Path, summary: pd.DataFrame, varied: list[str], groups: pd.DataFrame | None,
                     axes: list[str], monitor: str | None, mode: str, guessed: bool, method: str) -> str:
    """summary.md: what was varied, the best row in one sentence, the grouped table, failed and missing jobs."""
    values = {k: [fmt(v) for v in sorted(summary[k].dropna().unique(), key=lambda v: (isinstance(v, str), v))]
              for k in varied}
    counts = summary["status"].value_counts()
    md = [f"# Sweep report: `{sweep_dir.name}`", "", f"- Sweep dir: `{sweep_dir}`",
          "- Varied: " + ("; ".join(f"`{k}` ∈ {{{', '.join(v)}}}" for k, v in values.items()) or "nothing"),
          f"- Jobs: {len(summary)} ({job_counts(counts)})"]
    if groups is None:
        md += ["", "**No job has results yet** (no ok job with a main metric): nothing to compare."]
    else:
        source = ("guessed from its name: results.json has no `monitor_mode`" if guessed
                  else f"`monitor_mode: {mode}` in results.json")
        best, test = groups.loc[0], on_test(monitor)
        sentence = f"**Best: {best['config']}** with `{monitor}` {_mean_std(best, monitor)} (n={best['n']})"
        if f"{test} mean" in groups:
            sentence += f", `{test}` {_mean_std(best, test)}"
        if len(groups) > 1:
            runner = groups.loc[1]
            sentence += (f"; the runner-up, {runner['config']}, is {abs(runner[f'delta {monitor}']):.4f} "
                         f"{'lower' if mode == 'max' else 'higher'} (corrected p = {fmt(runner['p_corrected'])})")
        md += [f"- Main metric: `{monitor}`, {'higher' if mode == 'max' else 'lower'} is better ({source}); "
               "mean ± std (ddof=1) over seeds, n = seeds with results", "",
               "## Results (grouped over seeds)", "", sentence + ".", "", grouped_table(groups, axes, monitor), "",
               f"p: {method}" if len(groups) > 1 else "Only one configuration: nothing to compare.", "",
               "Every metric and timing, grouped: `summary_groups.csv`; one row a job: `summary.csv`.", "",
               "![summary](summary.png)"]
        zero_shot = summary[summary["zero_shot"] & (summary["status"] == "ok")]
        if len(zero_shot):
            md += ["", f"Zero-shot ({len(zero_shot)} jobs: nothing to train, evaluated as they are; `zero_shot` in "
                   "summary.csv): " + "; ".join(sorted({label(r, [k for k in varied if not is_seed(k)]) or "all"
                                                        for _, r in zero_shot.iterrows()})) + "."]
    for status in ("failed", "missing"):
        rows = summary[summary["status"] == status]
        if len(rows):
            md += ["", f"## {status.capitalize()} jobs ({len(rows)})", ""]
            md += [f"- job {r['job']} ({label(r, varied) or '—'}): " + (_one_line(r["error"]) if status == "failed"
                   else "no results.json (still running or killed)") for _, r in rows.iterrows()]
    return "\n".join(md + [""])
