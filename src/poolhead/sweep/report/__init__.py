"""Sweep report: which pooling and head is best here, and by how much? Reads every job folder of a multirun and writes
summary.csv / summary_groups.csv / summary.md / summary.png into it (docs/sweeps.md). `poolhead-report SWEEP_DIR`,
or `ReportCallback` (conf/hydra/default.yaml) at the end of every multirun."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from poolhead.sweep.report.collect import is_seed, load_jobs, main_metric, parse_overrides
from poolhead.sweep.report.plot import plot_summary
from poolhead.sweep.report.stats import compare_with_best, correct, group_over_seeds, paired_bootstrap, paired_ttest
from poolhead.sweep.report.table import label, summary_frame, summary_markdown

__all__ = ["ReportCallback", "compare_with_best", "correct", "load_jobs", "log_to_wandb", "main", "paired_bootstrap",
           "paired_ttest", "parse_overrides", "write_report"]
log = logging.getLogger(__name__)


def write_report(sweep_dir: str | Path) -> dict[str, Any]:
    """Read every job of the sweep and write summary.csv/.md/.png (+ summary_groups.csv) into it. Returns the paths
    (None: not written), the per-job and grouped DataFrames, the main metric, its mode and the best configuration."""
    sweep_dir = Path(sweep_dir)
    jobs = load_jobs(sweep_dir)
    summary, varied, metrics, timings = summary_frame(jobs)
    monitor, mode, guessed = main_metric(jobs, metrics)
    out: dict[str, Any] = {"summary_csv": sweep_dir / "summary.csv", "summary_md": sweep_dir / "summary.md",
                           "groups_csv": None, "summary_png": None, "summary": summary, "groups": None,
                           "monitor": monitor, "mode": mode, "best": None, "best_job": None}
    summary.to_csv(out["summary_csv"], index=False)

    axes = [k for k in varied if not is_seed(k)]
    seed = next((k for k in varied if is_seed(k)), None)
    ok = summary[summary["status"] == "ok"].copy()
    groups, method = None, ""
    if not ok.empty and monitor is not None and ok[monitor].notna().any():
        ok["config"] = [label(row, axes) for _, row in ok.iterrows()] if axes else "all"
        axes = axes or ["config"]
        columns = [monitor, *(m for m in metrics + timings if m != monitor and ok[m].notna().any())]
        groups = group_over_seeds(ok, axes, columns, monitor, mode)
        dirs = {config: jobs[i]["dir"] for i, config in ok["config"].drop_duplicates().items()}
        method = compare_with_best(groups, ok, monitor, mode, seed, dirs)
        out.update(groups=groups, best=groups.loc[0, "config"], groups_csv=sweep_dir / "summary_groups.csv",
                   best_job=best_job(ok, jobs, groups.loc[0, "config"], monitor, mode))
        groups.to_csv(out["groups_csv"], index=False)
        low, high = groups["n"].min(), groups["n"].max()
        title = f"{monitor}: mean over {low if low == high else f'{low}–{high}'} seed{'s' if high > 1 else ''}"
        out["summary_png"] = plot_summary(groups, axes, monitor, mode, title, sweep_dir / "summary.png")
    out["summary_md"].write_text(summary_markdown(sweep_dir, summary, varied, groups, axes, monitor, mode, guessed,
                                                  method))
    log.info("Sweep report written to %s", out["summary_md"])
    return out


def best_job(ok: pd.DataFrame, jobs: list[dict[str, Any]], config: str, monitor: str, mode: str) -> Path:
    """The folder of the best configuration's best seed (what `poolhead export --best` exports)."""
    rows = ok[ok["config"] == config].sort_values(monitor, ascending=mode == "min")
    job = rows.iloc[0]["job"]
    return Path(next(j["dir"] for j in jobs if j["job"] == job))


def log_to_wandb(groups: pd.DataFrame, project: str, group: str, mode: str = "offline",
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
        table = groups.copy()
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
            if wandb_cfg is None or result["groups"] is None:
                return
            # The group is `${task_name}-${basename:${hydra:sweep.dir}}`: `${hydra:...}` reads HydraConfig, which
            # Hydra only sets while a job runs, so set it from this (full) config to resolve the group here too.
            hydra_config = HydraConfig.instance()
            before = hydra_config.cfg
            hydra_config.set_config(config)
            try:
                log_to_wandb(result["groups"], project=wandb_cfg.project, group=wandb_cfg.group,
                             mode="offline" if wandb_cfg.offline else "online", png=result["summary_png"],
                             save_dir=str(sweep_dir))
            finally:
                hydra_config.cfg = before
        except Exception:  # a report failure must not fail the sweep
            log.exception("Writing the sweep report failed (the sweep itself finished)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="poolhead-report", description="Summarise a Hydra multirun sweep dir.")
    parser.add_argument("sweep_dir", type=Path, help="the multirun dir holding the job folders")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"not a directory: {args.sweep_dir}")
    result = write_report(args.sweep_dir)
    print(f"{result['summary_md']}\n\n{result['summary_md'].read_text()}")
