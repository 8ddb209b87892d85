"""Successive halving (poolhead.halving): a run stopped at a rung and continued is the run trained in one go."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import FAST, compose_cfg

from poolhead.train import run

COMMON = [*FAST, "trainer.max_epochs=3", "trainer.log_every_n_steps=1", "keep_last_checkpoint=true"]


def _weights(path):
    return torch.load(path, weights_only=False)["state_dict"]


@pytest.mark.parametrize("rungs", [[4, 13], [10, 20]], ids=["mid-epoch", "epoch-ends"])
def test_a_run_continued_rung_by_rung_equals_the_run_trained_in_one_go(tmp_path, rungs):
    """Weights, per-step losses, best checkpoint, metrics and predictions: equal (fp32; the demo has 10 batches an
    epoch, so 4 and 13 stop within an epoch and 10, 20 at its end). Nothing trained before is trained again."""
    straight = run(compose_cfg(COMMON, tmp_path / "straight"))
    for step in rungs:
        paused = run(compose_cfg([*COMMON, f"stop_at_step={step}", *(["ckpt_path=last"] if step != rungs[0] else [])],
                                 tmp_path / "halved"))
        assert paused["status"] == "paused" and paused["rung"]["step"] == step, paused.get("error")
        assert (tmp_path / "halved" / "rungs" / f"step-{step:06d}" / "predictions.csv").exists()
    done = run(compose_cfg([*COMMON, "ckpt_path=last"], tmp_path / "halved"))
    assert done["status"] == "ok", done.get("error")
    logs = [pd.read_csv(tmp_path / r / "csv" / "metrics.csv") for r in ("straight", "halved")]
    losses = [log.dropna(subset=["train/loss"])[["step", "train/loss"]].reset_index(drop=True) for log in logs]
    assert losses[0]["step"].tolist() == losses[1]["step"].tolist(), "every step once, none trained twice"
    assert (losses[0]["train/loss"] - losses[1]["train/loss"]).abs().max() == 0
    vals = [log.dropna(subset=["val/spearman"])["val/spearman"].tolist() for log in logs]
    assert vals[0] == vals[1], "the same validations, none added at a rung"
    for name in ("last.ckpt", "best.ckpt"):
        ours, theirs = (_weights(tmp_path / r / "checkpoints" / name) for r in ("halved", "straight"))
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name
    assert done["metrics"] == straight["metrics"]
    frames = [pd.read_csv(tmp_path / r / "predictions.csv") for r in ("straight", "halved")]
    pd.testing.assert_frame_equal(*frames)
    rung = json.loads((tmp_path / "halved" / "rungs" / f"step-{rungs[0]:06d}" / "metrics.json").read_text())
    assert rung["step"] == rungs[0] and "val/spearman" in rung["metrics"]


STUDY = Path(__file__).resolve().parents[1] / "experiments" / "stsb_pooling" / "runs" / "finetune"


def _study_curves():
    """{(config, seed): {step: val/spearman}} from the committed full study: its epoch-end validations (logged at
    the epoch's last step, counted from 0) and, at the full budget, the best checkpoint's metric (results.json)."""
    curves = {}
    for job in sorted(STUDY.glob("experiment=stsb_pooling,*")):
        pairs = dict(item.split("=", 1) for item in job.name.split(","))
        config = f"head={pairs['head']} mode={pairs['mode']} pooling={pairs['pooling']}"
        frame = pd.read_csv(job / "csv" / "metrics.csv").dropna(subset=["val/spearman"])
        curve = {int(step) + 1: float(v) for step, v in frame[["step", "val/spearman"]].itertuples(index=False)}
        curve[None] = json.loads((job / "results.json").read_text())["metrics"]["val/spearman"]
        curves[(config, pairs["seed"])] = curve
    return curves


def test_halving_replayed_on_the_committed_study_keeps_its_best_configuration_per_mode():
    """The decisions `decide` takes on the full study's own validation curves (rungs at epochs 1, 2, 3 of 4; eta 3,
    one finalist per mode) end with the configuration the full study ranks first in each mode (mean over seeds).
    One record lacks its epoch-1 validation (bi/regression/cls seed 1, resumed before that row was logged): it counts
    as failed there, as a failed job would."""
    from poolhead.halving import decide

    curves = _study_curves()
    assert len(curves) == 84, "the committed study: 28 configurations x 3 seeds"
    configs = sorted({c for c, _ in curves})
    groups = {c: c.split(" ")[1] for c in configs}
    rungs = decide(configs, groups, [180, 360, 540], ["1", "2", "3"], lambda c, s, step: curves[(c, s)].get(step),
                   eta=3, min_per_group=1, maximize=True)
    assert [len(r.scores) for r in rungs] == [28, 10, 4, 2], "28 -> ceil(14/3) = 5 a mode -> 2 -> 1"
    assert all(len(r.scores) == 4 for r in rungs[2:3]), "the last cut (epoch 3) on the mean of 3 seeds"
    full = {c: sum(curves[(c, s)][None] for s in "123") / 3 for c in configs}
    for mode in ("mode=bi", "mode=cross"):
        best = max((c for c in configs if groups[c] == mode), key=full.get)
        assert [c for c in rungs[-1].kept if groups[c] == mode] == [best], mode
    assert [len(r.scores) for r in rungs] == [28, 10, 4, 2]
