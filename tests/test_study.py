"""The STS-B study's choice of the model to export per mode, and the pruning that must keep exactly that checkpoint."""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("analyze", ROOT / "experiments/stsb_pooling/analyze.py")
analyze = importlib.util.module_from_spec(spec)
spec.loader.exec_module(analyze)


def _jobs(tmp_path: Path) -> pd.DataFrame:
    # cross: cls has the single best job (0.90) but mean has the best mean over seeds (0.86 vs 0.80)
    rows = [("cross", "cls", 1, 0.90), ("cross", "cls", 2, 0.70), ("cross", "mean", 1, 0.85),
            ("cross", "mean", 2, 0.87), ("bi", "max", 1, 0.60), ("bi", "max", 2, 0.61)]
    jobs = []
    for mode, pooling, seed, spearman in rows:
        checkpoint = tmp_path / f"{mode}-{pooling}-{seed}" / "best.ckpt"
        checkpoint.parent.mkdir(exist_ok=True)
        checkpoint.write_text("weights")
        jobs.append({"mode": mode, "head": "regression", "pooling": pooling, "seed": seed,
                     analyze.METRIC: spearman, "best_checkpoint": str(checkpoint)})
    return pd.DataFrame(jobs)


def test_the_best_model_per_mode_is_the_best_seed_of_the_best_mean_configuration(tmp_path):
    jobs = _jobs(tmp_path)
    best = analyze.best_per_mode(jobs)
    assert {mode: (job["pooling"], job["seed"]) for mode, job in best.items()} == {"cross": ("mean", 2),
                                                                                     "bi": ("max", 2)}
    lines = "\n".join(analyze.export_commands(jobs))
    assert "python train.py experiment=stsb_pooling mode=cross head=regression pooling=mean seed=2" in lines
    checkpoint = tmp_path / "cross-mean-2" / "best.ckpt"
    assert f"poolhead export {checkpoint} --to experiments/stsb_pooling/models/cross" in lines


def test_pruning_keeps_exactly_the_best_checkpoint_per_mode(tmp_path):
    jobs = _jobs(tmp_path)
    kept = analyze.prune(jobs)
    remaining = sorted(p for p in tmp_path.rglob("best.ckpt"))
    assert remaining == kept == sorted([tmp_path / "cross-mean-2" / "best.ckpt", tmp_path / "bi-max-2" / "best.ckpt"])


def test_a_kept_checkpoint_that_is_not_on_this_machine_is_not_reported_as_kept(tmp_path):
    jobs = _jobs(tmp_path)
    (tmp_path / "bi-max-2" / "best.ckpt").unlink()  # trained in an earlier environment, its folder since lost
    line = analyze.kept_line(analyze.prune(jobs))
    kept, absent = line.split("; not on this machine")
    assert str(tmp_path / "cross-mean-2" / "best.ckpt") in kept and "bi-max-2" not in kept
    assert str(tmp_path / "bi-max-2" / "best.ckpt") in absent


def test_job_time_comes_from_the_records_not_from_file_times(tmp_path):
    log = ["[2026-12-01 02:00:00,000][lightning][INFO] - Seed set to 1",
           "[2026-12-01 02:05:00,000][lightning][INFO] - interrupted here",
           "[2026-12-01 03:00:00,000][lightning][INFO] - Seed set to 1",
           "[2026-12-01 03:07:30,500][lightning][INFO] - `Trainer.fit` stopped: `max_epochs=4` reached.",
           "[2026-12-01 09:00:00,000][poolhead.sweep.jobs][INFO] - 980393b2c2d0658b: keys added since this job ran",
           "[2026-12-01 09:00:00,001][poolhead.sweep.jobs][INFO] - Skipped: ... already holds results of this config"]
    (tmp_path / "train.log").write_text("\n".join(log) + "\n")
    (tmp_path / "results.json").write_text(json.dumps({"status": "ok"}))
    os.utime(tmp_path / "results.json", (0, 0))  # what a fresh git checkout does to file times, more or less
    start, end, resumed, from_log = analyze.job_span(tmp_path, {"status": "ok"})
    assert (end - start, resumed, from_log) == (450.5, True, True)
    record = {"started": "2026-12-01T03:00:00.000+00:00", "finished": "2026-12-01T03:08:00.250+00:00"}
    start, end, _, from_log = analyze.job_span(tmp_path, record)
    assert (end - start, from_log) == (480.25, False)


def test_sweep_wall_time_counts_overlapping_jobs_once_and_leaves_out_pauses():
    # jobs 0-10 and 5-20 side by side, one more 30-40 in a later session; paused 8-12
    assert analyze.busy_seconds([(0, 10), (5, 20), (30, 40)], [(8, 12)]) == 26
    assert analyze.busy_seconds([(0, 10)], []) == 10


def test_the_head_lr_check_pairs_each_pooling_with_the_grids_same_job(tmp_path):
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 200)
    rows = []
    for sweep, noise in (("check", 0.5), ("grid", 3.0)):  # the check predicts the gold scores far better
        for pooling in ("cls", "mean"):
            job = tmp_path / sweep / pooling
            job.mkdir(parents=True)
            pd.DataFrame({"index": range(200), "split": "val", "gold": gold,
                          "pred": gold + rng.normal(0, noise, 200)}).to_csv(job / "predictions.csv", index=False)
            rows.append({"sweep": sweep, "mode": "bi", "head": "classification", "pooling": pooling, "seed": 1,
                         analyze.METRIC: 0.9 if sweep == "check" else 0.5, "dir": str(job)})
    jobs = pd.DataFrame(rows)
    # the grid also holds other jobs of the same pooling that must not be paired: another seed, the other mode
    same = jobs[jobs["sweep"] == "grid"]
    # and its bi regression (cosine) jobs, the second thing the check is compared with
    regression = same.assign(head="regression", **{analyze.METRIC: 0.7})
    grid = pd.concat([same.assign(seed=2, **{analyze.METRIC: 0.1}), same.assign(mode="cross", **{analyze.METRIC: 0.2}),
                      same, regression.assign(seed=2, **{analyze.METRIC: 0.3}), regression])
    table = analyze.head_lr_comparisons(grid, jobs[jobs["sweep"] == "check"])
    assert table["id"].tolist() == ["h2", "h3", "h9", "h10"]  # numbered by the pooling's place in the study's list
    assert table["b"].tolist() == ["3e-5", "3e-5", "regression", "regression"]
    assert table["mean_b"].tolist() == [0.5, 0.5, 0.7, 0.7]
    assert table["delta_a_minus_b"].tolist() == pytest.approx([0.4, 0.4, 0.2, 0.2])
    assert (table["p_bootstrap_rows"] < 0.01).all()


def test_a_record_from_another_checkout_names_this_checkouts_checkpoint(tmp_path):
    """results.json holds the absolute best.ckpt path of the checkout that trained the job; in a clone, pruning by it
    would delete the other checkout's files and the export command would name them."""
    other = tmp_path / "other" / "job" / "checkpoints" / "best.ckpt"
    other.parent.mkdir(parents=True)
    other.write_text("someone else's weights")
    job = {"dir": tmp_path / "clone" / "job", "checkpoints": {"best": str(other)}}
    assert analyze.own_checkpoint(job) == str(tmp_path / "clone" / "job" / "checkpoints" / "best.ckpt")
    assert analyze.own_checkpoint({"dir": tmp_path, "checkpoints": {}}) is None
