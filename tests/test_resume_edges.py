"""Two resumes that went wrong quietly (issue 42): `ckpt_path=<another run's last.ckpt>` made a new folder
with no checkpoint of its own (and a "best checkpoint" in the other run), and `ckpt_path=last` on a finished
run rewrote its training time as 0.0 s."""

from __future__ import annotations

import json

import pytest
from conftest import FAST, compose_cfg

from poolhead.run.train import run

SHORT = [*FAST, "trainer.limit_train_batches=3", "test=false"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    results = run(compose_cfg(SHORT, out))
    assert results["status"] == "ok", results["error"]
    return out


def test_resuming_a_finished_run_keeps_its_training_time(finished):
    """The training time and samples travel in each checkpoint (TrainThroughput's state), so a resume adds to
    them."""
    before = json.loads((finished / "results.json").read_text())["timing"]
    assert before["train_seconds"] > 0
    again = run(compose_cfg([*SHORT, "ckpt_path=last"], finished))
    assert again["status"] == "ok", again["error"]
    assert again["timing"]["train_seconds"] == pytest.approx(before["train_seconds"], rel=0.05)
    assert again["timing"]["train_samples_per_second"] == pytest.approx(
        before["train_samples_per_second"], rel=0.05
    )


def test_another_runs_checkpoint_is_refused_naming_the_way_to_resume_it(finished, tmp_path):
    last = finished / "checkpoints" / "last.ckpt"
    results = run(compose_cfg([*SHORT, f"ckpt_path={last}"], tmp_path / "new"))
    assert results["status"] == "failed" and results["resumable"] is False
    assert f"hydra.run.dir={finished} ckpt_path=last" in results["error"]
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir()), "nothing written"
