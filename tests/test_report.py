"""Sweep report on synthetic Hydra multirun dirs (no training: results.json/predictions.csv are written here), with
answers known in advance; and one real multirun that logs the summary to (offline) W&B."""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TEST_CACHE
from matplotlib.axes import Axes
from matplotlib.image import imread
from omegaconf import OmegaConf
from scipy import stats

from poolhead.sweep.report import ReportCallback, correct, paired_bootstrap, paired_ttest, write_report

ROOT = Path(__file__).resolve().parents[1]
QUALITY = {("mean", "regression"): 0.85, ("mean", "classification"): 0.75,
           ("cls", "regression"): 0.70, ("cls", "classification"): 0.60}


def write_job(sweep: Path, num: int, config: dict, overrides: list[str], status: str = "ok",
              error: str | None = None, results: bool = True, n_rows: int = 60, logger: str = "csv",
              metrics: dict | None = None, monitor: str = "val/spearman", monitor_mode: str | None = "max",
              folder: str | None = None) -> Path:
    """One Hydra job dir: .hydra/{overrides,hydra,config}.yaml, and unless results=False results.json +
    predictions.csv. `metrics` replaces the generated ones (quality from pooling x head, plus noise)."""
    job = sweep / (folder or str(num))
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    name: train\n    num: {num}\n")
    target = {"csv": "lightning.pytorch.loggers.CSVLogger", "wandb": "lightning.pytorch.loggers.WandbLogger"}[logger]
    (job / ".hydra" / "config.yaml").write_text(f"seed: 1\nlogger:\n  {logger}:\n    _target_: {target}\n")
    config = {**config, "overrides": overrides}  # train.py's describe() keeps the job's overrides in the config
    if not results:
        return job
    quality = QUALITY.get((config.get("pooling"), config.get("head")), 0.8)
    rng = np.random.default_rng(1000 + num)
    if status == "ok" and metrics is None:
        spearman = quality + rng.normal(0, 0.01)
        metrics = {"val/spearman": spearman, "test/spearman": spearman - 0.02 + rng.normal(0, 0.01),
                   "val/pearson": spearman - 0.01, "val/loss": 1.0 - spearman}
        gold = np.random.default_rng(0).normal(size=n_rows)  # same gold rows for every job
        noise = np.sqrt(1 / quality**2 - 1)  # pred = gold + noise: correlation ~ quality
        rows = [{"index": i, "split": split, "gold": g, "pred": g + rng.normal(0, noise)}
                for split in ("val", "test") for i, g in enumerate(gold)]
        pd.DataFrame(rows).to_csv(job / "predictions.csv", index=False)
    ckpt = {"best": f"{job}/checkpoints/best.ckpt", "last": f"{job}/checkpoints/last.ckpt"} if status == "ok" else {}
    results_json = {"status": status, "error": error, "config": config, "metrics": metrics or {},
                    "monitor": monitor, "monitor_mode": monitor_mode, "checkpoints": ckpt,
                    "data": {"train": 300, "val": n_rows, "test": n_rows},
                    "timing": {"train_seconds": 10.0 + num, "train_samples_per_second": 80.0,
                               "eval_samples_per_second": 400.0},
                    "env": {"git": "abc123", "torch": "2.13.0", "transformers": "5.23.0", "device": "cpu"}}
    if monitor_mode is None:  # results.json written before monitor_mode existed
        del results_json["monitor_mode"]
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
        overrides = [f"pooling={pooling}", f"head={head}", f"seed={seed}", "encoder=minilm"]
        write_job(sweep, num, config, overrides, status="failed" if num in failed else "ok",
                  error=failed.get(num), results=num not in missing, logger=logger)
    return sweep


def write_metric_sweep(sweep: Path, values: dict[str, dict[int, float]], order: list[tuple[str, int]],
                       monitor: str = "val/spearman", monitor_mode: str | None = "max") -> Path:
    """Jobs pooling=<name>, seed=<seed> with the given monitor value, numbered in `order`."""
    for num, (pooling, seed) in enumerate(order):
        write_job(sweep, num, base_config(pooling=pooling, seed=seed), [f"pooling={pooling}", f"seed={seed}"],
                  metrics={monitor: values[pooling][seed]}, monitor=monitor, monitor_mode=monitor_mode)
    return sweep


def read_results(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]


@pytest.fixture
def spy(monkeypatch):
    """Records which Axes plotting methods were called."""
    calls: list[str] = []
    for name in ("imshow", "bar", "barh"):
        def record(self, *args, _name=name,
                   _original=getattr(Axes, name),  # noqa: B008 - binds this pass's method (late binding otherwise)
                   **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Axes, name, record)
    return calls


def test_grid_sweep_with_failed_and_missing(tmp_path, spy):
    sweep = make_grid_sweep(tmp_path / "sweep", failed={3: "RuntimeError: CUDA out of memory"}, missing=(7,))
    out = write_report(sweep)

    summary = pd.read_csv(out["summary_csv"])
    assert len(summary) == 8 and list(summary["status"]).count("ok") == 6
    assert list(summary.columns[:4]) == ["job", "pooling", "head", "seed"]  # the varied overrides, seed last
    assert {"val/spearman", "test/spearman", "status", "error", "train_seconds", "best_checkpoint"} <= set(summary)
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
    p = groups.set_index(["pooling", "head"])["p_value"]
    assert math.isnan(p["mean", "regression"])  # the best row
    assert math.isnan(p["mean", "classification"]) and math.isnan(p["cls", "classification"])  # < 2 shared seeds

    md = out["summary_md"].read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert table[0] == ("| pooling | head | n | val/spearman | test/spearman | Δ val/spearman | p (corrected) "
                        "| train s |")  # short: the rest is in the CSVs
    assert table[2].startswith("| **mean** | **regression** | **2** |")
    assert "**Best: pooling=mean, head=regression** with `val/spearman`" in md
    assert "t-test" in md and "Benjamini-Hochberg" in md and "`monitor_mode: max` in results.json" in md
    assert "6 ok, 1 failed, 1 missing" in md
    assert "## Failed jobs (1)" in md
    assert "- job 3 (pooling=mean, head=classification, seed=2): RuntimeError: CUDA out of memory" in md
    assert "## Missing jobs (1)" in md
    assert "- job 7 (pooling=cls, head=classification, seed=2): no results.json (still running or killed)" in md

    image = imread(out["summary_png"])
    assert 200 < image.shape[0] < 3000 and 200 < image.shape[1] < 3000
    assert "imshow" in spy  # two non-seed axes -> heatmap


def test_ttest_pairs_runs_by_seed_value_not_job_order(tmp_path):
    """`cls` lacks seed 3 and its jobs come in another seed order: only seeds 1, 2, 4 are paired, by value."""
    values = {"mean": {1: 0.70, 2: 0.80, 3: 0.75, 4: 0.90}, "cls": {4: 0.88, 1: 0.69, 2: 0.77}}
    order = [("cls", 4), ("mean", 1), ("mean", 2), ("cls", 1), ("mean", 3), ("mean", 4), ("cls", 2)]
    random.Random(0).shuffle(order)
    out = write_report(write_metric_sweep(tmp_path / "sweep", values, order))
    groups = out["groups"].set_index("pooling")
    seeds = [1, 2, 4]
    expected = stats.ttest_rel([values["mean"][s] for s in seeds], [values["cls"][s] for s in seeds],
                               alternative="greater").pvalue
    assert groups.loc["cls", "p_value"] == pytest.approx(expected, rel=1e-12)
    assert groups.loc["cls", "p_corrected"] == pytest.approx(expected, rel=1e-12)  # one comparison: unchanged
    assert list(groups["n"]) == [4, 3]


def test_clearly_better_is_significant_and_the_reverse_is_not(tmp_path):
    better = {1: 0.80, 2: 0.83, 3: 0.78, 4: 0.81}
    values = {"mean": better, "cls": {s: v - 0.05 - 0.002 * s for s, v in better.items()}}
    out = write_report(write_metric_sweep(tmp_path / "sweep", values, list(product(values, better))))
    assert out["best"] == "pooling=mean"
    assert out["groups"].loc[1, "p_value"] < 0.05
    ok = out["summary"].assign(config=lambda f: "pooling=" + f["pooling"])
    assert paired_ttest(ok, "pooling=mean", "pooling=cls", "val/spearman", "seed", "max") < 0.05
    assert paired_ttest(ok, "pooling=cls", "pooling=mean", "val/spearman", "seed", "max") > 0.5


@pytest.mark.parametrize("monitor", ["val/loss", "val/perplexity"])  # perplexity: a name that does not say "min"
def test_min_mode_ranks_the_lowest_first_with_the_right_test_direction(tmp_path, monitor, spy):
    seeds = (1, 2, 3)
    values = {"mean": {1: 0.20, 2: 0.22, 3: 0.21}, "cls": {1: 0.30, 2: 0.33, 3: 0.31},
              "max": {1: 0.25, 2: 0.26, 3: 0.27}}
    out = write_report(write_metric_sweep(tmp_path / "sweep", values, list(product(values, seeds)), monitor, "min"))
    groups = out["groups"]
    assert list(groups["pooling"]) == ["mean", "max", "cls"]  # lowest loss first
    assert (groups[f"delta {monitor}"] >= 0).all()
    assert (groups.loc[1:, "p_value"] < 0.05).all()  # H1: the best is *lower*
    md = out["summary_md"].read_text()
    assert "lower is better (`monitor_mode: min` in results.json)" in md and "is 0.0500 higher" in md
    assert "bar" in spy


def test_old_results_without_monitor_mode_guess_from_the_name_and_say_so(tmp_path):
    values = {"mean": {1: 0.20, 2: 0.22}, "cls": {1: 0.30, 2: 0.33}}
    out = write_report(write_metric_sweep(tmp_path / "sweep", values, list(product(values, (1, 2))), "val/loss", None))
    assert out["mode"] == "min" and out["best"] == "pooling=mean"
    assert "guessed from its name: results.json has no `monitor_mode`" in out["summary_md"].read_text()


def test_complete_grid_corrects_every_p_value(tmp_path):
    out = write_report(make_grid_sweep(tmp_path / "sweep", seeds=(1, 2, 3)))
    groups = out["groups"]
    assert list(groups["n"]) == [3, 3, 3, 3] and groups.loc[0, "config"] == "pooling=mean, head=regression"
    raw = groups.loc[1:, "p_value"].to_numpy()
    assert not np.isnan(raw).any()
    np.testing.assert_allclose(groups.loc[1:, "p_corrected"], stats.false_discovery_control(raw))


def test_benjamini_hochberg_on_textbook_values():
    assert correct(pd.Series([0.01, 0.02, 0.03, 0.04, 0.05])).tolist() == pytest.approx([0.05] * 5, abs=1e-15)
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 -> p * 5 / rank = .025 .025 .05 .05 .5 (running min from the top)
    adjusted = correct(pd.Series([math.nan, 0.01, 0.04, 0.03, 0.005, 0.5]))
    assert math.isnan(adjusted[0])
    assert adjusted[1:].tolist() == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.5], abs=1e-15)


def write_predictions(job: Path, gold, pred, **extra) -> Path:
    """`pred` on the val rows; on the test rows the same predictions in reverse order (another ranking): the
    bootstrap must judge the rows the ranking comes from, val (issue 42: it used test)."""
    job.mkdir(parents=True)
    val = pd.DataFrame({"index": range(len(gold)), "split": "val", "gold": gold, "pred": pred, **extra})
    test = val.assign(split="test", pred=list(val["pred"])[::-1],
                      **{k: list(v)[::-1] for k, v in extra.items()})
    pd.concat([val, test]).to_csv(job / "predictions.csv", index=False)
    return job


def test_paired_bootstrap_known_answers(tmp_path):
    gold = np.random.default_rng(0).normal(size=50)
    perfect = write_predictions(tmp_path / "perfect", gold, gold)
    noise = write_predictions(tmp_path / "noise", gold, np.random.default_rng(1).normal(size=50))
    assert paired_bootstrap(perfect, noise) == (0.0, "val", "Spearman")  # perfect wins every resample
    assert paired_bootstrap(noise, perfect) == (1.0, "val", "Spearman")  # and loses every one the other way
    assert paired_bootstrap(noise, noise)[0] == 1.0  # ties count against the best

    labels = np.array(["neg", "pos"])[np.arange(40) % 2]
    right = write_predictions(tmp_path / "right", labels, labels, pred_id=(labels == "pos").astype(int))
    wrong = write_predictions(tmp_path / "wrong", labels, labels[::-1], pred_id=(labels[::-1] == "pos").astype(int))
    assert paired_bootstrap(right, wrong) == (0.0, "val", "accuracy")  # class labels: accuracy, not Spearman
    assert paired_bootstrap(wrong, right)[0] == 1.0


def test_single_seed_report_uses_the_bootstrap(tmp_path):
    out = write_report(make_grid_sweep(tmp_path / "sweep", seeds=(7,)))
    worst = out["groups"].set_index("config").loc["pooling=cls, head=classification", "p_value"]
    assert worst < 0.05  # correlation 0.85 vs 0.60 on 60 rows
    md = out["summary_md"].read_text()
    assert "paired bootstrap over the val predictions" in md and "1000 resamples" in md


def test_summary_csv_holds_each_ok_jobs_best_checkpoint(tmp_path):
    sweep = make_grid_sweep(tmp_path / "sweep", failed={2: "ValueError: bad"}, missing=(5,))
    summary = pd.read_csv(write_report(sweep)["summary_csv"])
    ok = summary["status"] == "ok"
    assert summary.loc[ok, "best_checkpoint"].tolist() == [f"{sweep / str(job)}/checkpoints/best.ckpt"
                                                           for job in summary.loc[ok, "job"]]
    assert (~ok).sum() == 2 and summary.loc[~ok, "best_checkpoint"].isna().all()


def test_job_folders_named_by_their_overrides(tmp_path):
    sweep = tmp_path / "sweep"
    for num, (pooling, seed) in enumerate(product(("mean", "cls"), (1, 2))):
        write_job(sweep, num, base_config(pooling=pooling, seed=seed), [f"pooling={pooling}", f"seed={seed}"],
                  folder=f"pooling={pooling},seed={seed}")
    (sweep / "pooling=cls,seed=2" / ".hydra" / "hydra.yaml").unlink()  # no job number: the folder name stands in
    (sweep / "wandb").mkdir()  # not a job
    out = write_report(sweep)
    assert out["summary"]["job"].tolist() == [0, 1, 2, "pooling=cls,seed=2"]
    assert out["summary"]["status"].tolist() == ["ok"] * 4 and out["best"] == "pooling=mean"


def test_overrides_are_parsed_by_hydra(tmp_path, spy):
    """Three axes (lr set as `optim.lr` on the command line); per-job paths and constant overrides are not axes."""
    sweep = tmp_path / "sweep"
    grid = product(("mean", "cls"), ("regression", "classification"), ("1e-5", "3e-5"))
    for num, (pooling, head, lr) in enumerate(grid):
        config = base_config(pooling=pooling, head=head, lr=float(lr), output_dir=f"/tmp/run{num}")
        write_job(sweep, num, config, [f"pooling={pooling}", f"head={head}", f"optim.lr={lr}",
                                       "trainer.enable_progress_bar=false", "encoder.layers=[0,-1]"])
    out = write_report(sweep)
    assert list(out["summary"].columns[:4]) == ["job", "pooling", "head", "optim.lr"]
    assert sorted(set(out["summary"]["optim.lr"])) == [1e-5, 3e-5]  # floats, as Hydra reads them
    assert len(out["groups"]) == 8 and "barh" in spy
    assert "paired bootstrap" in out["summary_md"].read_text()  # no seed varies


def test_no_results_at_all(tmp_path):
    sweep = tmp_path / "sweep"
    for num, pooling in enumerate(("mean", "cls")):
        write_job(sweep, num, {}, [f"pooling={pooling}"], results=False)
    out = write_report(sweep)
    md = out["summary_md"].read_text()
    assert "No job has results" in md and "0 ok, 0 failed, 2 missing" in md and "- job 1 (pooling=cls)" in md
    assert out["summary_png"] is None and len(pd.read_csv(out["summary_csv"])) == 2


def test_cli(tmp_path):
    sweep = make_grid_sweep(tmp_path / "sweep")
    proc = subprocess.run([sys.executable, "-m", "poolhead.sweep.report", str(sweep)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert str(sweep / "summary.md") in proc.stdout and "**Best: pooling=mean, head=regression**" in proc.stdout
    assert (sweep / "summary.png").exists()


def test_callback_never_raises(tmp_path):
    callback = ReportCallback()
    callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "does-not-exist")}}}))
    sweep = make_grid_sweep(tmp_path / "sweep")
    callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert (sweep / "summary.md").exists()


@pytest.mark.slow
def test_real_multirun_logs_the_summary_to_wandb(tmp_path):
    """train.py -m with logger=wandb: at the end the report goes to a `<group>-summary` (offline) W&B run."""
    pytest.importorskip("wandb")
    sweep = tmp_path / "sweep"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "POOLHEAD_CACHE": TEST_CACHE,
           **{var: str(tmp_path / "wandb-home") for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR")}}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", "pooling=mean,cls", "encoder=tiny",
                           "trainer.max_epochs=1", "trainer.precision=32-true", "trainer.enable_progress_bar=false",
                           "logger=wandb", f"hydra.sweep.dir={sweep}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((sweep / "wandb").glob("offline-run-*"))  # the jobs' own runs live in their job folders
    assert len(runs) == 1, "one summary run in the sweep folder"
    record = next(runs[0].glob("*.wandb")).read_bytes()  # what `wandb sync` uploads later
    assert b"train-sweep-summary" in record and b"sweep_summary" in record
    table = json.loads(next(runs[0].glob("files/media/table/sweep_summary_*.table.json")).read_text())
    assert "pooling" in table["columns"] and sorted(row[table["columns"].index("pooling")]
                                                    for row in table["data"]) == ["cls", "mean"]
    assert "Writing the sweep report failed" not in proc.stdout + proc.stderr


def test_the_jobs_line_accounts_for_every_job_paused_ones_too(tmp_path):
    """The bug it catches (issue 42): a halving summary's "Jobs: 6 (2 ok, 0 failed, 0 missing)" leaving 4 jobs
    paused at a rung unaccounted for."""
    sweep = tmp_path / "sweep"
    statuses = [("mean", "ok"), ("cls", "ok"), ("max", "paused"), ("attention", "paused"),
                ("pooler", "paused"), ("mean_sqrt_len", "failed")]
    for num, (pooling, status) in enumerate(statuses):
        write_job(sweep, num, {"pooling": pooling, "head": "regression", "seed": 1}, [f"pooling={pooling}"],
                  status=status, error="boom" if status == "failed" else None)
    md = write_report(sweep)["summary_md"].read_text()
    assert "- Jobs: 6 (2 ok, 1 failed, 0 missing, 3 paused)" in md, md[:600]


def test_halving_curves_name_their_metric(tmp_path, monkeypatch):
    """The bug it catches (issue 42): curves.png's y axis said "validation metric", not which one."""
    from poolhead.sweep.halving_report import plot_curves

    labels = []
    original = Axes.set_ylabel
    monkeypatch.setattr(Axes, "set_ylabel",
                        lambda self, text, *a, **k: labels.append(text) or original(self, text))
    job = write_job(tmp_path, 0, {"pooling": "mean", "head": "regression", "seed": 1}, ["pooling=mean"],
                    monitor="val/accuracy")
    record = {"configs": {"pooling=mean": {"group": "all", "dropped_at": None}}, "rungs": [5]}
    assert plot_curves(tmp_path, record, {("pooling=mean", 1): job}, [1]).is_file()
    assert labels == ["val/accuracy (seed 1)"]


def test_readme_excerpt_is_todays_report_format(tmp_path):
    """The bug it catches (issue 42): the README showing a table format the report no longer writes. Each
    excerpt line is in experiments/demo_grid/summary.md, whose header has the columns of a report of today."""
    readme = (ROOT / "README.md").read_text().splitlines()
    start = readme.index(next(line for line in readme if line.startswith("| pooling | head |")))
    excerpt = [line for line in readme[start:] if line.startswith("|")][:6]
    committed = (ROOT / "experiments" / "demo_grid" / "summary.md").read_text().splitlines()
    assert all(line in committed for line in excerpt), "README excerpt differs from the committed summary.md"
    today = write_report(make_grid_sweep(tmp_path / "sweep", seeds=(1, 2, 3)))["summary_md"].read_text()
    header = next(line for line in today.splitlines() if line.startswith("| pooling | head |"))
    ends = lambda line: line.split("|")[3:4] + line.split("|")[-4:]  # noqa: E731 (the metric columns vary)
    assert ends(header) == ends(excerpt[0])


def test_write_report_names_the_best_job(tmp_path):
    """`poolhead export --best` reads the report's best job (it worked the best configuration out again): the
    best configuration's seed with the highest val/spearman, from the jobs' own results."""
    out = write_report(make_grid_sweep(tmp_path / "sweep", seeds=(1, 2, 3)))
    rows = [(r["metrics"]["val/spearman"], p.parent) for p in (tmp_path / "sweep").glob("*/results.json")
            for r in [json.loads(p.read_text())] if r["config"]["pooling"] == "mean"
            and r["config"]["head"] == "regression"]
    assert out["best"] == "pooling=mean, head=regression" and out["best_job"] == max(rows)[1]
