"""Loggers and debug configs as lightning-hydra-template has them: `logger=tensorboard` and `logger=mlflow`
runs whose event files and MLflow store hold the train, val and test metrics (read back with TensorBoard's and
MLflow's own readers), `logger=many` / a list, and each `debug=` config running end to end with the effect it
promises."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import FAST, compose_cfg

from poolhead.run.train import run

pytest.importorskip(
    "tensorboard", reason="the loggers extra: pip install -e '.[loggers]' (make install does)"
)
pytest.importorskip("mlflow", reason="the loggers extra: pip install -e '.[loggers]' (make install does)")

BASE = [o for o in FAST if not o.startswith("trainer.max_epochs")] + [
    "trainer.log_every_n_steps=1",
    "mode=cross",
]
STEPS = [*BASE, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
WANTED = ("train/loss", "val/spearman", "test/spearman")


def trained(tmp_path, *overrides: str, base: list[str] = STEPS) -> dict:
    results = run(compose_cfg([*base, *overrides], tmp_path))
    assert results["status"] == "ok", results["error"]
    return results


def test_tensorboard_and_mlflow_hold_train_val_and_test_metrics(tmp_path):
    """The bug it catches: test metrics that never reach a logger (W&B got val and loss only: the test split
    is scored after fit, outside Lightning's loops), or a logger option not wired to the run folder."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results = trained(tmp_path, "logger=[tensorboard,mlflow]")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert all(name in tags for name in WANTED), tags
    assert events.Scalars("test/spearman")[-1].value == pytest.approx(
        results["metrics"]["test/spearman"], abs=1e-6
    )

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (logged,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert all(name in logged.data.metrics for name in WANTED), sorted(logged.data.metrics)
    assert logged.data.metrics["test/spearman"] == pytest.approx(
        results["metrics"]["test/spearman"], abs=1e-6
    )
    assert logged.data.params.get("pooling/_target_") or logged.data.params, "the config is logged too"


def test_many_loggers_and_a_list_compose(tmp_path):
    """`logger=many` is every logger; a list picks some; each keeps the CSV log."""
    assert list(compose_cfg(["logger=many"], tmp_path).logger) == ["csv", "tensorboard", "mlflow", "wandb"]
    assert list(compose_cfg(["logger=[tensorboard,mlflow]"], tmp_path).logger) == [
        "csv",
        "tensorboard",
        "mlflow",
    ]


def test_debug_fdr_runs_one_batch_and_writes_no_checkpoint(tmp_path):
    """The bug it catches: a debug config that does not run (a key Lightning or poolhead refuses), or
    fast_dev_run ending as a failed run because it leaves no best checkpoint to score."""
    results = trained(tmp_path, "debug=fdr", base=BASE)
    assert results["timing"]["train_steps"] == 1
    assert not list(tmp_path.glob("checkpoints/*.ckpt"))
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "ok"


@pytest.mark.slow
def test_debug_overfit_drives_the_training_loss_down(tmp_path):
    """The same 3 batches every epoch: the loss on them falls far (here 10 epochs at a learning rate the tiny
    random encoder learns at, and without anomaly detection, to stay fast)."""
    results = trained(
        tmp_path,
        "debug=overfit",
        "trainer.max_epochs=10",
        "optim.lr=1e-3",
        "optim.head_lr=1e-2",
        "trainer.detect_anomaly=false",
        base=BASE,
    )
    assert results["timing"]["train_steps"] == 30
    losses = (
        pd.read_csv(tmp_path / "csv" / "metrics.csv").dropna(subset=["train/loss"])["train/loss"].to_numpy()
    )
    assert losses[-3:].mean() < 0.7 * losses[:3].mean(), losses  # dropout stays on: the fall is noisy


def test_debug_limit_trains_a_share_of_each_epoch(tmp_path):
    """3 of the demo's 10 training batches for 3 epochs: 9 steps, and the 3 epochs' validations logged."""
    results = trained(tmp_path, "debug=limit", "trainer.detect_anomaly=false", base=BASE)
    assert results["timing"]["train_steps"] == 9
    val = pd.read_csv(tmp_path / "csv" / "metrics.csv").dropna(subset=["val/spearman"])
    assert len(val) == 3


def test_debug_profiler_writes_the_time_per_hook(tmp_path):
    trained(tmp_path, "debug=profiler", "trainer.limit_train_batches=2", base=BASE)
    profile = next(tmp_path.glob("*profile*.txt")).read_text()
    assert "training_step" in profile and "Total" in profile
