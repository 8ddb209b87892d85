"""Sweep report: which pooling and head is best here, and by how much?

Reads every ``<sweep_dir>/<job>/results.json`` of a Hydra multirun (job dirs are the numbered
subdirs that have ``.hydra/`` or ``results.json``) and writes into the sweep dir:

- ``summary.csv``         one row per job: job, the config keys that vary, metrics, status, error, timings
- ``summary_groups.csv``  grouped over seeds: n, mean/std of every metric, delta to the best, p-value
- ``summary.md``          the grouped table (best row in bold), failed jobs with their error, missing jobs
- ``summary.png``         heatmap (two axes), bars (one axis) or sorted horizontal bars (more axes)

Run it as ``poolhead-report SWEEP_DIR`` / ``python -m poolhead.report SWEEP_DIR``, or register
``ReportCallback`` as a Hydra callback so it runs at the end of every multirun.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from scipy import stats

log = logging.getLogger(__name__)

N_BOOTSTRAP = 1000
LOWER_IS_BETTER = ("loss", "mse", "mae", "rmse", "error")  # metric names where smaller wins


# --------------------------------------------------------------------------- reading the jobs


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> dotted keys; lists -> their string form so they can be compared and grouped."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value) if isinstance(value, (list, tuple)) else value
    return flat


def _coerce(text: str) -> Any:
    """An override value as written on the command line -> int/float/bool/str like the config has it."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "3e-5" as a string
        except ValueError:
            return value
    return str(value) if isinstance(value, (list, dict)) else value


def _read_overrides(job_dir: Path) -> dict[str, Any]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return {}
    overrides = {}
    for item in yaml.safe_load(path.read_text()) or []:
        key, sep, value = str(item).partition("=")
        if sep:
            overrides[key.lstrip("+~")] = _coerce(value)
    return overrides


def load_jobs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Every job of the sweep, sorted by job number: the results.json content plus job/dir/overrides.

    A job dir without results.json gets status "missing"; an unreadable results.json counts as failed.
    """
    sweep_dir = Path(sweep_dir)
    dirs = [d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()]
    jobs = []
    for job_dir in sorted(dirs, key=lambda d: int(d.name)):
        results = job_dir / "results.json"
        if not results.exists() and not (job_dir / ".hydra").is_dir():
            continue
        if not results.exists():
            content: dict[str, Any] = {"status": "missing"}
        else:
            try:
                content = json.loads(results.read_text())
            except (OSError, ValueError) as err:
                content = {"status": "failed", "error": f"unreadable results.json: {err}"}
        jobs.append({**content, "job": int(job_dir.name), "dir": job_dir, "overrides": _read_overrides(job_dir)})
    return jobs


def _match_key(key: str, known: list[str]) -> str:
    """The config key an override sets: the same key, or the only one with the same last component."""
    if key in known:
        return key
    same_leaf = [k for k in known if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
    return same_leaf[0] if len(same_leaf) == 1 else key


def _configs(jobs: list[dict]) -> tuple[list[dict[str, Any]], list[str]]:
    """Flat config per job (jobs without results.json are filled from their overrides) and the varying keys.

    A key varies when it takes more than one value over the jobs that have results. When the jobs have
    Hydra overrides, only keys set by an override count (so per-job paths and derived values are not axes).
    """
    configs = [_flatten({k: v for k, v in (job.get("config") or {}).items() if k != "overrides"}) for job in jobs]
    known = list(dict.fromkeys(k for cfg in configs for k in cfg))
    overridden = set()
    for job, cfg in zip(jobs, configs):
        for key, value in job["overrides"].items():
            target = _match_key(key, known)
            overridden.add(target)
            cfg.setdefault(target, value)
    reported = [cfg for job, cfg in zip(jobs, configs) if job.get("status") != "missing"] or configs
    keys = list(dict.fromkeys(k for cfg in configs for k in cfg))
    varying = [k for k in keys if len({repr(cfg.get(k)) for cfg in reported}) > 1]
    if overridden:
        varying = [k for k in varying if k in overridden]
    seeds = [k for k in varying if k.rsplit(".", 1)[-1] == "seed"]
    return configs, [k for k in varying if k not in seeds] + seeds


def summary_frame(jobs: list[dict]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """One row per job: job, varying config keys, metrics, status, error, timings. Also returns them."""
    configs, varying = _configs(jobs)
    metric_names = list(dict.fromkeys(m for job in jobs for m in (job.get("metrics") or {})))
    timing_names = list(dict.fromkeys(t for job in jobs for t in (job.get("timing") or {})))
    rows = []
    for job, cfg in zip(jobs, configs):
        row: dict[str, Any] = {"job": job["job"], **{k: cfg.get(k) for k in varying}}
        row.update({m: (job.get("metrics") or {}).get(m) for m in metric_names})
        row.update(status=job.get("status", "failed"), error=job.get("error"))
        row.update({t: (job.get("timing") or {}).get(t) for t in timing_names})
        rows.append(row)
    columns = ["job", *varying, *metric_names, "status", "error", *timing_names]
    frame = pd.DataFrame(rows, columns=columns)
    for name in metric_names + timing_names:
        frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame, varying, metric_names


# --------------------------------------------------------------------------- statistics


def higher_is_better(metric: str) -> bool:
    return not any(word in metric.rsplit("/", 1)[-1].lower() for word in LOWER_IS_BETTER)


def _label(row: pd.Series, axes: list[str]) -> str:
    return ", ".join(f"{a}={row[a]}" for a in axes)


def group_over_seeds(ok: pd.DataFrame, axes: list[str], metrics: list[str], monitor: str) -> pd.DataFrame:
    """Mean/std (ddof=1) of every metric per configuration, n = runs with the main metric; best first."""
    grouped = ok.groupby(axes, dropna=False, sort=True)
    table = grouped[metrics].agg(["mean", "std"])
    table.columns = [f"{metric} {stat}" for metric, stat in table.columns]
    table.insert(0, "n", grouped[monitor].count())
    if "config" not in axes:  # the label column ("config" is the only axis when nothing varies)
        table.insert(0, "config", grouped["config"].first())
    table = table.reset_index()
    table = table.sort_values(f"{monitor} mean", ascending=not higher_is_better(monitor), na_position="last")
    table = table.reset_index(drop=True)
    table.insert(0, "best", table.index == 0)
    table[f"delta {monitor}"] = table[f"{monitor} mean"] - table.loc[0, f"{monitor} mean"]
    return table


def paired_ttest(ok: pd.DataFrame, best: str, other: str, monitor: str, seed: str) -> float:
    """One-sided paired t-test over seeds, H1: best is better than other. NaN with fewer than 2 pairs."""
    per_seed = ok.groupby(["config", seed])[monitor].mean().unstack("config")
    pairs = per_seed[[best, other]].dropna()
    if len(pairs) < 2:
        return math.nan
    alternative = "greater" if higher_is_better(monitor) else "less"
    with warnings.catch_warnings():  # near-constant differences: scipy warns about precision, p is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_rel(pairs[best], pairs[other], alternative=alternative).pvalue)


def _rowwise_spearman(gold: np.ndarray, pred: np.ndarray) -> np.ndarray:
    a = stats.rankdata(gold, axis=1)
    b = stats.rankdata(pred, axis=1)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def _predictions(job_dir: Path) -> pd.DataFrame | None:
    path = job_dir / "predictions.csv"
    return pd.read_csv(path) if path.exists() else None


def paired_bootstrap(best_dir: Path, other_dir: Path, n: int = N_BOOTSTRAP, seed: int = 0) -> tuple[float, str]:
    """Fraction of row resamples where Spearman(best) <= Spearman(other), on test rows (val if no test).

    Returns (p, split); p is NaN when a predictions.csv is missing or the two share no rows.
    """
    best, other = _predictions(best_dir), _predictions(other_dir)
    if best is None or other is None:
        return math.nan, ""
    split = "test" if {"test"} <= set(best["split"]) & set(other["split"]) else "val"
    rows = best[best["split"] == split].merge(other[other["split"] == split], on="index", suffixes=("_b", "_o"))
    columns = ["gold_b", "pred_b", "pred_o"]
    rows = rows[columns].apply(pd.to_numeric, errors="coerce").dropna()
    if len(rows) < 3:
        return math.nan, split
    idx = np.random.default_rng(seed).integers(0, len(rows), size=(n, len(rows)))
    gold = rows["gold_b"].to_numpy(dtype=float)[idx]
    diff = _rowwise_spearman(gold, rows["pred_b"].to_numpy(dtype=float)[idx]) - _rowwise_spearman(
        gold, rows["pred_o"].to_numpy(dtype=float)[idx]
    )
    diff = diff[~np.isnan(diff)]
    return (float(np.mean(diff <= 0)) if len(diff) else math.nan), split


# --------------------------------------------------------------------------- markdown


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}" if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3) else f"{value:.4f}"
    return str(value)


def _mean_std(row: pd.Series, metric: str) -> str:
    mean, std = row[f"{metric} mean"], row[f"{metric} std"]
    return _fmt(mean) if pd.isna(std) else f"{_fmt(mean)} ± {_fmt(std)}"


def markdown_table(frame: pd.DataFrame) -> str:
    """Plain pipe table (DataFrame.to_markdown needs `tabulate`, which is not a dependency)."""
    cells = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in frame.astype(str).values]
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    return "\n".join([header, rule, *("| " + " | ".join(row) + " |" for row in cells)])


def _grouped_markdown(groups: pd.DataFrame, axes: list[str], metrics: list[str], monitor: str, p_name: str) -> str:
    shown = pd.DataFrame({"": ["**best**" if b else "" for b in groups["best"]]})
    for axis in axes:
        shown[axis] = groups[axis].map(_fmt)
    shown["n"] = groups["n"].astype(str)
    for metric in metrics:
        shown[metric] = [_mean_std(row, metric) for _, row in groups.iterrows()]
        if metric == monitor:
            shown[f"Δ {monitor}"] = groups[f"delta {monitor}"].map(lambda d: "" if d == 0 else f"{d:+.4f}")
            shown[p_name] = ["" if b else _fmt(p) for b, p in zip(groups["best"], groups["p_value"])]
    shown.loc[0, shown.columns[1:]] = [f"**{v}**" if v else v for v in shown.loc[0, shown.columns[1:]]]
    return markdown_table(shown)


def _one_line(error: Any, limit: int = 300) -> str:
    text = " ".join(str(error or "(no error message)").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- plot


def plot_summary(groups: pd.DataFrame, axes: list[str], monitor: str, title: str, path: Path) -> Path:
    """Heatmap for two axes, bars with std error bars for one, sorted horizontal bars for more."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg

    mean, std = groups[f"{monitor} mean"], groups[f"{monitor} std"]
    std = None if std.isna().all() else std.fillna(0)  # no error bars with a single seed
    colors = ["tab:orange" if b else "tab:blue" for b in groups["best"]]
    if len(axes) == 2:
        grid = groups.pivot_table(index=axes[0], columns=axes[1], values=f"{monitor} mean", dropna=False)
        spread = groups.pivot_table(index=axes[0], columns=axes[1], values=f"{monitor} std", dropna=False)
        fig = Figure(figsize=(2.2 + 1.6 * grid.shape[1], 1.8 + 0.8 * grid.shape[0]))
        ax = fig.subplots()
        image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis" if higher_is_better(monitor) else "viridis_r",
                          aspect="auto")
        fig.colorbar(image, ax=ax, label=f"{monitor} (mean)")
        ax.set_xticks(range(grid.shape[1]), [_fmt(c) for c in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [_fmt(r) for r in grid.index])
        ax.set_xlabel(axes[1])
        ax.set_ylabel(axes[0])
        low, high = np.nanmin(grid.to_numpy(dtype=float)), np.nanmax(grid.to_numpy(dtype=float))
        best = groups.loc[0]
        for i, row in enumerate(grid.index):
            for j, col in enumerate(grid.columns):
                value = grid.loc[row, col]
                if pd.isna(value):
                    continue
                text = f"{value:.3f}" + ("" if pd.isna(spread.loc[row, col]) else f"\n±{spread.loc[row, col]:.3f}")
                level = (value - low) / (high - low) if high > low else 0.0
                bright = (level if higher_is_better(monitor) else 1 - level) > 0.6  # light cell: black text
                is_best = row == best[axes[0]] and col == best[axes[1]]
                ax.text(j, i, text, ha="center", va="center", color="black" if bright else "white",
                        fontweight="bold" if is_best else "normal")
    elif len(axes) == 1:
        fig = Figure(figsize=(max(4.0, 1.0 + 0.9 * len(groups)), 4.0))
        ax = fig.subplots()
        labels = [_fmt(v) for v in groups[axes[0]]]
        bars = ax.bar(labels, mean, yerr=std, capsize=4, color=colors)
        ax.bar_label(bars, [f"{v:.3f}" for v in mean], padding=3, fontsize=8)
        ax.set_xlabel(axes[0])
        ax.set_ylabel(monitor)
        ax.tick_params(axis="x", labelrotation=30 if len(groups) > 6 else 0)
    else:
        order = groups.sort_values(f"{monitor} mean", ascending=True)
        fig = Figure(figsize=(8.0, 1.5 + 0.35 * len(order)))
        ax = fig.subplots()
        bars = ax.barh(order["config"], order[f"{monitor} mean"], xerr=None if std is None else std[order.index],
                       capsize=3, color=["tab:orange" if b else "tab:blue" for b in order["best"]])
        ax.bar_label(bars, [f"{v:.3f}" for v in order[f"{monitor} mean"]], padding=3, fontsize=8)
        ax.set_xlabel(monitor)
        ax.tick_params(axis="y", labelsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


# --------------------------------------------------------------------------- the report


def _sorted_values(column: pd.Series) -> list:
    values = list(dict.fromkeys(column.dropna()))
    try:
        return sorted(values)
    except TypeError:  # mixed types
        return sorted(values, key=str)


def _seeds_text(counts: pd.Series) -> str:
    low, high = int(counts.min()), int(counts.max())
    return f"{high} seed{'s' if high != 1 else ''}" if low == high else f"{low}–{high} seeds"


def write_report(sweep_dir: str | Path) -> dict[str, Any]:
    """Read every job of the sweep and write summary.csv/.md/.png (+ summary_groups.csv) into it.

    Returns the written paths (None for what was not written), the per-job and grouped DataFrames,
    the main metric, the significance method and the best configuration.
    """
    sweep_dir = Path(sweep_dir)
    jobs = load_jobs(sweep_dir)
    summary, varying, metrics = summary_frame(jobs)
    out: dict[str, Any] = {
        "summary_csv": sweep_dir / "summary.csv", "summary_md": sweep_dir / "summary.md",
        "groups_csv": None, "summary_png": None, "summary": summary, "groups": None,
        "monitor": None, "method": None, "best": None,
    }
    summary.to_csv(out["summary_csv"], index=False)

    status = summary["status"]
    n_ok, n_failed, n_missing = (status == "ok").sum(), (status == "failed").sum(), (status == "missing").sum()
    axes = [k for k in varying if k.rsplit(".", 1)[-1] != "seed"]
    seed = next((k for k in varying if k not in axes), None)
    values = "; ".join(f"`{k}` ∈ {{{', '.join(_fmt(v) for v in _sorted_values(summary[k]))}}}" for k in varying)
    md = [f"# Sweep report: `{sweep_dir.name}`", "",
          f"- Sweep dir: `{sweep_dir}`",
          f"- Varied: {values or 'nothing (all jobs share one configuration)'}",
          f"- Jobs: {len(summary)} ({n_ok} ok, {n_failed} failed, {n_missing} missing)"]

    ok = summary[status == "ok"].copy()
    monitor = next((j.get("monitor") for j in jobs if j.get("status") == "ok" and j.get("monitor")), None)
    monitor = monitor if monitor in metrics else ("val/spearman" if "val/spearman" in metrics else None)
    if ok.empty or monitor is None or ok[monitor].isna().all():
        md += ["", "**No job has results yet** (no ok job with a main metric): nothing to compare."]
    else:
        out["monitor"] = monitor
        if not axes:
            ok["config"], axes = "all", ["config"]
        else:
            ok["config"] = [_label(row, axes) for _, row in ok.iterrows()]
        test_metric = "test/" + monitor.split("/", 1)[1] if monitor.startswith("val/") else None
        ordered = [monitor, *([test_metric] if test_metric in metrics else [])]
        ordered += [m for m in metrics if m not in ordered and ok[m].notna().any()]
        groups = group_over_seeds(ok, axes, ordered, monitor)
        best = groups.loc[0]

        if seed is not None and groups["n"].max() >= 2:
            out["method"] = "paired t-test"
            p_name = "p (best > row, t-test)"
            groups["p_value"] = [math.nan if b else paired_ttest(ok, best["config"], c, monitor, seed)
                                 for b, c in zip(groups["best"], groups["config"])]
            method = (f"one-sided paired t-test over seeds (`scipy.stats.ttest_rel`, runs paired by `{seed}`), "
                      f"H1: the best configuration has a {'higher' if higher_is_better(monitor) else 'lower'} "
                      f"`{monitor}` than the row's; needs ≥ 2 shared seeds, else —.")
        else:
            out["method"] = "paired bootstrap"
            p_name = "p (best > row, bootstrap)"
            job_dir = {row["config"]: sweep_dir / str(row["job"]) for _, row in ok.iterrows()}
            results = [(math.nan, "") if b else paired_bootstrap(job_dir[best["config"]], job_dir[c])
                       for b, c in zip(groups["best"], groups["config"])]
            groups["p_value"] = [p for p, _ in results]
            split = next((s for _, s in results if s), "test")
            method = (f"single seed, so a paired bootstrap over the {split} predictions (predictions.csv): "
                      f"{N_BOOTSTRAP} resamples of rows, p = fraction of resamples where Spearman(best) ≤ "
                      f"Spearman(row); — where predictions.csv is missing.")
        out["groups_csv"] = sweep_dir / "summary_groups.csv"
        groups.to_csv(out["groups_csv"], index=False)
        out["groups"], out["best"] = groups, best["config"]

        title = f"{monitor}: mean over {_seeds_text(groups['n'])}"
        out["summary_png"] = plot_summary(groups, axes, monitor, title, sweep_dir / "summary.png")

        summary_line = f"**Best: {best['config']}** — `{monitor}` {_mean_std(best, monitor)} (n={best['n']})"
        if test_metric in ordered:
            summary_line += f", `{test_metric}` {_mean_std(best, test_metric)}"
        if len(groups) > 1:
            runner = groups.loc[1]
            summary_line += (f"; runner-up {runner['config']} is {abs(runner[f'delta {monitor}']):.4f} "
                             f"{'lower' if higher_is_better(monitor) else 'higher'} (p = {_fmt(runner['p_value'])}).")
        md += [f"- Main metric: `{monitor}` ({'higher' if higher_is_better(monitor) else 'lower'} is better), "
               f"mean ± std (ddof=1) over seeds; n = number of seeds with results", "",
               "## Results (grouped over seeds)", "", summary_line, "",
               _grouped_markdown(groups, axes, ordered, monitor, p_name), "",
               f"Significance: {method}" if len(groups) > 1 else "Only one configuration: nothing to compare.", "",
               "![summary](summary.png)"]

    failed = summary[status == "failed"]
    if len(failed):
        rows = pd.DataFrame({"job": failed["job"].astype(str),
                             "config": [_label(r, varying) or "—" for _, r in failed.iterrows()],
                             "error": [_one_line(e) for e in failed["error"]]})
        md += ["", f"## Failed jobs ({len(failed)})", "", markdown_table(rows)]
    missing = summary[status == "missing"]
    if len(missing):
        rows = pd.DataFrame({"job": missing["job"].astype(str),
                             "config": [_label(r, varying) or "—" for _, r in missing.iterrows()]})
        md += ["", f"## Missing jobs ({len(missing)}: no results.json — still running or killed)", "",
               markdown_table(rows)]
    md += ["", "_Tables are formatted by hand: `DataFrame.to_markdown` needs `tabulate`, which is not a dependency._",
           ""]
    out["summary_md"].write_text("\n".join(md))
    log.info("Sweep report written to %s", out["summary_md"])
    return out


# --------------------------------------------------------------------------- W&B, Hydra callback, CLI


def log_to_wandb(summary_df: pd.DataFrame, project: str, group: str, mode: str = "offline",
                 png: str | Path | None = None, save_dir: str | None = None) -> str | None:
    """Log the grouped table (and the plot) to a `<group>-summary` W&B run. Returns the run dir, or None."""
    try:
        import wandb
    except ImportError:
        log.warning("wandb is not installed: the sweep summary is not logged to W&B")
        return None
    run = wandb.init(project=project, group=group, name=f"{group}-summary", job_type="summary", mode=mode,
                     dir=save_dir)
    try:
        table = summary_df.copy()
        for column in table.columns:
            if not pd.api.types.is_numeric_dtype(table[column]):
                table[column] = table[column].astype(str)
        run.log({"sweep_summary": wandb.Table(dataframe=table)})
        if png is not None and Path(png).exists():
            run.log({"sweep_summary_plot": wandb.Image(str(png))})
        return run.dir
    finally:
        wandb.finish()


class ReportCallback(Callback):
    """Hydra callback: write the sweep report at the end of every multirun; never fails the sweep. When the sweep
    logs to W&B (`logger=wandb`), the table and plot also go to a summary run in the sweep's W&B group."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            sweep_dir = Path(str(config.hydra.sweep.dir))
            result = write_report(sweep_dir)
            wandb_cfg = OmegaConf.select(config, "logger.wandb")
            if wandb_cfg is not None and result["groups"] is not None:
                log_to_wandb(result["groups"], project=wandb_cfg.project, group=wandb_cfg.group,
                             mode="offline" if wandb_cfg.offline else "online", png=result["summary_png"],
                             save_dir=str(sweep_dir))
        except Exception:  # a report failure must not fail the sweep
            log.exception("Writing the sweep report failed (the sweep itself finished)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="poolhead-report", description="Summarise a Hydra multirun sweep dir.")
    parser.add_argument("sweep_dir", type=Path, help="the multirun dir holding the numbered job dirs")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"not a directory: {args.sweep_dir}")
    result = write_report(args.sweep_dir)
    print(result["summary_md"])
    print()
    print(result["summary_md"].read_text())


if __name__ == "__main__":
    main()
