"""Successive halving (poolhead.halving): a run stopped at a rung and continued is the run trained in one go."""

import json

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
