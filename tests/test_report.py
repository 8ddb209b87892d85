"""Sweep report on synthetic Hydra multirun dirs (no training: results.json/predictions.csv are written here)."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.image import imread
from omegaconf import OmegaConf

from poolhead.report import ReportCallback, paired_bootstrap, write_report

QUALITY = {("mean", "regression"): 0.85, ("mean", "classification"): 0.75,
           ("cls", "regression"): 0.70, ("cls", "classification"): 0.60}


def write_job(sweep: Path, num: int, config: dict, overrides: list[str], status: str = "ok",
              error: str | None = None, results: bool = True, n_rows: int = 60, logger: str = "csv") -> Path:
    """One Hydra job dir: .hydra/{overrides,config}.yaml, and unless results=False results.json + predictions.csv."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    target = {"csv": "lightning.pytorch.loggers.CSVLogger", "wandb": "lightning.pytorch.loggers.WandbLogger"}[logger]
    (job / ".hydra" / "config.yaml").write_text(f"seed: 1\nlogger:\n  {logger}:\n    _target_: {target}\n")
    config = {**config, "overrides": overrides}  # train.py's describe() keeps the job's overrides in the config
    if not results:
        return job
    quality = QUALITY.get((config.get("pooling"), config.get("head")), 0.8) + 0.02 * config.get("encoder_rank", 0)
    rng = np.random.default_rng(1000 + num)
    metrics = {}
    if status == "ok":
        spearman = quality + rng.normal(0, 0.01)
        metrics = {"val/spearman": spearman, "test/spearman": spearman - 0.02 + rng.normal(0, 0.01),
                   "val/pearson": spearman - 0.01, "val/mse": 1.0 - spearman}
        gold = np.random.default_rng(0).normal(size=n_rows)  # same gold rows for every job
        noise = np.sqrt(1 / quality**2 - 1)  # pred = gold + noise: correlation ~ quality
        rows = [{"index": i, "split": split, "gold": g, "pred": g + rng.normal(0, noise)}
                for split in ("val", "test") for i, g in enumerate(gold)]
        pd.DataFrame(rows).to_csv(job / "predictions.csv", index=False)
    results_json = {"status": status, "error": error, "config": config, "metrics": metrics,
                    "monitor": "val/spearman", "data": {"train": 300, "val": n_rows, "test": n_rows},
                    "timing": {"train_seconds": 10.0 + num, "train_samples_per_second": 80.0,
                               "eval_samples_per_second": 400.0},
                    "env": {"git": "abc123", "torch": "2.13.0", "transformers": "5.23.0", "device": "cpu"}}
    (job / "results.json").write_text(json.dumps(results_json))
    return job


def base_config(**changes) -> dict:
    return {"encoder": "minilm", "pooling": "mean", "head": "regression", "data": "demo", "mode": "cross",
            "seed": 1, "lr": 3e-5, "output_dir": "/tmp/x", "layers": [1, 2], **changes}


def make_grid_sweep(sweep: Path, seeds=(1, 2), failed: dict[int, str] | None = None, missing=(), logger="csv"):
    """pooling x head x seed; job numbers in Hydra order (last axis fastest)."""
    failed = failed or {}
    for num, (pooling, head, seed) in enumerate(product(("mean", "cls"), ("regression", "classification"), seeds)):
        config = base_config(pooling=pooling, head=head, seed=seed, output_dir=f"/tmp/run{num}")
        overrides = [f"pooling={pooling}", f"head={head}", f"seed={seed}"]
        write_job(sweep, num, config, overrides, status="failed" if num in failed else "ok",
                  error=failed.get(num), results=num not in missing, logger=logger)
    return sweep


def read_results(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]


@pytest.fixture
def spy(monkeypatch):
    """Records which Axes plotting methods were called."""
    calls: list[str] = []
    for name in ("imshow", "bar", "barh"):
        def record(self, *args, _name=name, _original=getattr(Axes, name), **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Axes, name, record)
    return calls


def test_grid_sweep_with_failed_and_missing(tmp_path, spy):
    sweep = make_grid_sweep(tmp_path / "sweep", failed={3: "RuntimeError: CUDA out of memory"}, missing=(7,))
    out = write_report(sweep)

    summary = pd.read_csv(out["summary_csv"])
    assert len(summary) == 8
    assert list(summary["status"]).count("ok") == 6
    assert {"job", "pooling", "head", "seed", "val/spearman", "test/spearman", "status", "error",
            "train_seconds"} <= set(summary.columns)
    assert not {"encoder", "lr", "output_dir", "layers", "overrides"} & set(summary.columns)  # constant/not set

    # Means and stds over seeds match the jobs' own results.json.
    groups = pd.read_csv(out["groups_csv"])
    assert len(groups) == 4
    for (pooling, head), expected_best in [(("mean", "regression"), True), (("cls", "regression"), False)]:
        values = [r["metrics"]["val/spearman"] for r in read_results(sweep)
                  if r["status"] == "ok" and (r["config"]["pooling"], r["config"]["head"]) == (pooling, head)]
        row = groups[(groups["pooling"] == pooling) & (groups["head"] == head)].iloc[0]
        assert row["n"] == len(values) == 2
        assert row["val/spearman mean"] == pytest.approx(statistics.mean(values))
        assert row["val/spearman std"] == pytest.approx(statistics.stdev(values))
        assert bool(row["best"]) is expected_best
    one_seed = groups[(groups["pooling"] == "mean") & (groups["head"] == "classification")].iloc[0]
    assert one_seed["n"] == 1 and math.isnan(one_seed["val/spearman std"])  # job 3 failed

    # p-values: best row none; rows with >= 2 shared seeds in [0, 1]; best (mean, regression) beats (cls, regression).
    assert out["method"] == "paired t-test"
    p = groups.set_index(["pooling", "head"])["p_value"]
    assert math.isnan(p["mean", "regression"])
    assert 0 <= p["cls", "regression"] <= 1
    assert math.isnan(p["mean", "classification"]) and math.isnan(p["cls", "classification"])  # 1 seed only

    md = out["summary_md"].read_text()
    assert "**best**" in md and "**pooling=mean, head=regression**" in md.replace("Best: ", "")
    assert "t-test" in md and "p (best > row" in md
    assert "6 ok, 1 failed, 1 missing" in md
    assert "## Failed jobs" in md and "RuntimeError: CUDA out of memory" in md and "| 3 |" in md
    assert "## Missing jobs" in md and "| 7 | pooling=cls, head=classification, seed=2 |" in md

    image = imread(out["summary_png"])
    assert 200 < image.shape[0] < 3000 and 200 < image.shape[1] < 3000
    assert "imshow" in spy  # two non-seed axes -> heatmap


def test_complete_grid_all_pvalues(tmp_path):
    out = write_report(make_grid_sweep(tmp_path / "sweep", seeds=(1, 2, 3)))
    groups = out["groups"]
    assert list(groups["n"]) == [3, 3, 3, 3]
    others = groups.loc[~groups["best"], "p_value"]
    assert len(others) == 3 and others.between(0, 1).all()
    assert groups.loc[0, "config"] == "pooling=mean, head=regression"
    assert (groups["delta val/spearman"] <= 0).all()


def test_single_axis_makes_bars(tmp_path, spy):
    sweep = tmp_path / "sweep"
    for num, (pooling, seed) in enumerate(product(("mean", "cls", "max"), (1, 2))):
        write_job(sweep, num, base_config(pooling=pooling, seed=seed), [f"pooling={pooling}", f"seed={seed}"])
    out = write_report(sweep)
    assert list(out["groups"]["pooling"]) == ["mean", "max", "cls"]  # best first (max is 0.8, cls 0.7)
    assert "bar" in spy and "imshow" not in spy
    assert imread(out["summary_png"]).shape[0] > 200


def test_more_axes_make_sorted_hbars_and_match_overrides(tmp_path, spy):
    """Three axes (one set as optim.lr on the command line, config key `lr`); per-job paths are not axes."""
    sweep = tmp_path / "sweep"
    grid = product(("mean", "cls"), ("regression", "classification"), (1e-5, 3e-5))
    for num, (pooling, head, lr) in enumerate(grid):
        config = base_config(pooling=pooling, head=head, lr=lr, output_dir=f"/tmp/run{num}")
        write_job(sweep, num, config, [f"pooling={pooling}", f"head={head}", f"optim.lr={lr}"])
    out = write_report(sweep)
    assert {"pooling", "head", "lr"} <= set(out["summary"].columns)
    assert "output_dir" not in out["summary"].columns and "optim.lr" not in out["summary"].columns
    assert len(out["groups"]) == 8 and "barh" in spy
    assert out["method"] == "paired bootstrap"  # no seed varies


def test_single_seed_bootstrap(tmp_path):
    sweep = make_grid_sweep(tmp_path / "sweep", seeds=(7,))
    out = write_report(sweep)
    assert out["method"] == "paired bootstrap"
    groups = out["groups"]
    others = groups.loc[~groups["best"], "p_value"]
    assert others.between(0, 1).all()
    worst = groups.set_index("config").loc["pooling=cls, head=classification", "p_value"]
    assert worst < 0.05  # correlation 0.85 vs 0.60 on 60 rows
    md = out["summary_md"].read_text()
    assert "bootstrap" in md and "1000 resamples" in md and "test predictions" in md
    # Same predictions on both sides: best <= other in every resample.
    assert paired_bootstrap(sweep / "0", sweep / "0") == (1.0, "test")


def test_no_results_at_all(tmp_path):
    sweep = tmp_path / "sweep"
    for num, pooling in enumerate(("mean", "cls")):
        write_job(sweep, num, {}, [f"pooling={pooling}"], results=False)
    out = write_report(sweep)
    md = out["summary_md"].read_text()
    assert "No job has results" in md and "0 ok, 0 failed, 2 missing" in md and "pooling=cls" in md
    assert out["summary_png"] is None and len(pd.read_csv(out["summary_csv"])) == 2


def test_cli(tmp_path):
    sweep = make_grid_sweep(tmp_path / "sweep")
    proc = subprocess.run([sys.executable, "-m", "poolhead.report", str(sweep)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert str(sweep / "summary.md") in proc.stdout and "**best**" in proc.stdout
    assert (sweep / "summary.png").exists()


def test_callback_never_raises(tmp_path):
    callback = ReportCallback()
    callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "does-not-exist")}}}))
    sweep = make_grid_sweep(tmp_path / "sweep")
    callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert (sweep / "summary.md").exists()


def test_wandb_offline_summary_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    callback = ReportCallback()
    csv_sweep = make_grid_sweep(tmp_path / "csv-sweep", logger="csv")
    callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(csv_sweep)}}, "logger": {"csv": {}}}))
    assert not list(csv_sweep.glob("wandb/*run-*"))  # the sweep did not log to W&B: no summary run either

    sweep = make_grid_sweep(tmp_path / "sweep", logger="wandb")
    wandb_logger = {"project": "poolhead-test", "group": "g1", "offline": True}
    callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}, "logger": {"wandb": wandb_logger}}))
    runs = list((sweep / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert list(runs[0].glob("files/media/table/*.table.json")) and list(runs[0].glob("files/media/images/*.png"))
    assert (sweep / "summary.md").exists()
