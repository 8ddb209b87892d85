"""The app: every offered config composes and instantiates; train.py runs end to end (single run, a multirun with a
failing job, a resume) and leaves the output contract (results.json, predictions.csv, checkpoint, CSV log)."""

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
from conftest import FAST, TEST_CACHE, assert_predictions_match_results, compose_cfg, options
from hydra.utils import instantiate
from omegaconf import OmegaConf

from poolhead import build
from poolhead.core.hub import OfflineError
from poolhead.run.build import encoder_config
from poolhead.run.train import run

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("mode", options("mode"))
@pytest.mark.parametrize("head", ["regression", "classification"])
@pytest.mark.parametrize("pooling", options("pooling"))
def test_pooling_head_mode_compose_build_and_run_a_batch(tmp_path, pooling, head, mode):
    """Each yaml names the class it claims, poolhead.build wires it, and a batch gives outputs and predictions of
    the right shape on the label's scale. Catches a yaml pointing at the wrong class and a head/mode mis-wiring."""
    if mode == "single":
        pytest.skip("the demo data holds pairs; single mode is covered by the csv tests")
    cfg = compose_cfg([f"pooling={pooling}", f"head={head}", f"mode={mode}", *FAST], tmp_path)
    dm, model = build(cfg)
    for part, group in ((model.pooling, "pooling"), (model.head, "head"), (model.mode, "mode")):
        assert f"{type(part).__module__}.{type(part).__name__}" == cfg[group]._target_
    batch = next(iter(dm.train_dataloader()))
    n = len(batch["labels"])
    output = model(batch["features"])
    assert output.shape == ((n,) if head == "regression" else (n, 2))
    loss = model.head.loss(output, batch["labels"])
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0
                                        for p in model.encoder.parameters())
    pred = model.head.predict(output.detach())
    assert pred.shape == (n,)
    if head == "classification":  # the expected score lies between the bin centres
        assert ((pred >= 1.5 - 1e-5) & (pred <= 4.0 + 1e-5)).all()


@pytest.mark.parametrize("encoder", ["minilm", "tiny"])
def test_local_encoders_load(tmp_path, encoder):
    enc = instantiate(encoder_config(compose_cfg([f"encoder={encoder}"], tmp_path).encoder))
    assert enc.hidden_size == {"minilm": 384, "tiny": 32}[encoder] and enc.tokenizer


@pytest.mark.parametrize("encoder", sorted(set(options("encoder")) - {"minilm", "tiny"}))
def test_hub_encoders_offline_say_how_to_use_a_local_folder(tmp_path, encoder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose_cfg([f"encoder={encoder}"], tmp_path)
    with pytest.raises(Exception) as info:
        instantiate(encoder_config(cfg.encoder))
    assert isinstance(info.value.__cause__, OfflineError), info.value
    assert "encoder.name_or_path=" in str(info.value) and cfg.encoder.name_or_path in str(info.value)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_sweeps_options_that_exist(tmp_path, experiment):
    cfg = compose_cfg([f"experiment={experiment}"], tmp_path, hydra=True)
    assert cfg.task_name == experiment
    assert OmegaConf.to_container(cfg.data, resolve=True)["_target_"].startswith("poolhead.data.")
    swept = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
    assert swept, "an experiment preset names its grid"
    for group in set(swept) & {"pooling", "head", "mode", "encoder", "data", "optim"}:
        assert set(swept[group]) <= set(options(group)), (group, swept[group])


@pytest.mark.parametrize("logger", options("logger"))
@pytest.mark.parametrize("trainer", options("trainer"))
def test_loggers_and_trainers_compose(tmp_path, logger, trainer):
    cfg = compose_cfg([f"logger={logger}", f"trainer={trainer}"], tmp_path)
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    assert cfg.trainer.accelerator == {"cpu": "cpu", "gpu": "gpu"}.get(trainer, "auto")
    assert str(cfg.trainer.get("strategy", "auto")).startswith("ddp_spawn") == (trainer == "ddp")
    expected = {"csv": ["csv"], "wandb": ["csv", "wandb"], "tensorboard": ["csv", "tensorboard"],
                "mlflow": ["csv", "mlflow"], "many": ["csv", "mlflow", "tensorboard", "wandb"]}
    assert sorted(cfg.logger) == expected[logger]
    assert Path(instantiate(cfg.logger.csv).log_dir) == tmp_path / "csv"


def test_classification_csv_data_and_single_mode(tmp_path):
    rows = ["text,label"] + [f"{'great good fine' if i % 2 else 'bad awful poor'} item {i},{'pos' if i % 2 else 'neg'}"
                             for i in range(40)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    cfg = compose_cfg(["data=csv", f"data.train={tmp_path}/train.csv", "data.task=class", "mode=single",
                       "head=classification", *FAST], tmp_path)
    results = run(cfg)
    assert results["status"] == "ok", results["error"]
    assert results["monitor"] == "val/accuracy" and results["monitor_mode"] == "max"
    assert json.loads((tmp_path / "labels.json").read_text()) == {"0": "neg", "1": "pos"}
    assert_predictions_match_results(tmp_path)


def train_py(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "POOLHEAD_CACHE": TEST_CACHE}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_subprocess_runs_use_this_test_sessions_own_cache_folder(monkeypatch):
    """Not the system temp folder's one fixed folder that every clone's test session on the machine shared."""
    seen = {}
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: seen.update(k) or subprocess.CompletedProcess(a, 0))
    train_py("--help")
    cache = Path(seen["env"]["POOLHEAD_CACHE"])
    assert cache == Path(TEST_CACHE) == Path(os.environ["POOLHEAD_CACHE"]) and cache.is_dir()
    assert cache.name != "poolhead-test-cache" and cache.name.startswith("poolhead-test-cache-")


def test_train_py_single_run_leaves_the_output_contract(tmp_path):
    proc = train_py(*FAST, f"hydra.run.dir={tmp_path}", "logger=wandb", f"paths.root_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "ok" and results["error"] is None
    assert results["config"]["encoder"] == "tiny" and results["config"]["pooling"] == "mean"
    for key in ("val/spearman", "val/pearson", "val/mse", "val/mae", "val/f1", "test/spearman"):
        assert key in results["metrics"], key
    assert {k: results["data"][k] for k in ("train", "val", "test")} == {"train": 300, "val": 100, "test": 100}
    assert results["data"]["truncated"] == {"train": 0, "val": 0, "test": 0} and results["data"]["unk_rate"] < 0.01
    assert results["timing"]["train_samples_per_second"] > 0 and results["timing"]["eval_samples_per_second"] > 0
    assert results["env"]["torch"] == torch.__version__
    started, finished = (datetime.fromisoformat(results[k]) for k in ("started", "finished"))  # what git keeps
    assert started.tzinfo is not None and started + timedelta(seconds=results["timing"]["train_seconds"]) <= finished
    assert (tmp_path / ".hydra" / "config.yaml").exists()
    assert (tmp_path / "checkpoints" / "best.ckpt").exists() and (tmp_path / "checkpoints" / "last.ckpt").exists()
    metrics_csv = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    assert "train/loss" in metrics_csv and "val/spearman" in metrics_csv
    assert_predictions_match_results(tmp_path)
    # W&B (offline here) got the metrics and the resolved config
    run_dirs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert run_dirs, "an offline W&B run was written"
    record = next(run_dirs[0].glob("*.wandb")).read_bytes()  # what `wandb sync` uploads later
    for logged in (b"val/spearman", b"train/loss", b"pooling", b"encoder"):
        assert logged in record, logged


def test_train_py_multirun_records_a_failed_job_and_goes_on(tmp_path):
    """2 encoders x 2 poolings; the DistilBERT-style encoder has no pooler, so `pooling=pooler` fails there only."""
    extra = tmp_path / "conf" / "encoder"
    extra.mkdir(parents=True)
    (extra / "tiny_distilbert.yaml").write_text(
        "_target_: poolhead.core.encoder.Encoder\nname_or_path: null\ntokenizer: ${minilm:}\n"
        "config: {model_type: distilbert, dim: 32, n_layers: 2, n_heads: 2, hidden_dim: 64}\n")
    sweep = tmp_path / "sweep"
    proc = train_py("-m", "encoder=tiny,tiny_distilbert", "pooling=mean,pooler", *FAST[1:],
                    f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 1 and "1 of 4 jobs failed" in proc.stderr, proc.stderr[-3000:]  # after every job
    results = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    assert len(results) == 4
    failed = [r for r in results.values() if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["config"]["encoder"] == "tiny_distilbert"
    assert "pooling=pooler needs a model with a pooler" in failed[0]["error"]
    ok = [r for r in results.values() if r["status"] == "ok"]
    assert all("val/spearman" in r["metrics"] for r in ok)
    summary = (sweep / "summary.md").read_text()  # the sweep report ran at the end and lists the failure
    assert "## Failed jobs" in summary and "pooling=pooler needs a model with a pooler" in summary


@pytest.mark.slow
def test_real_multirun_report_matches_the_jobs(tmp_path):
    """2 poolings x 2 heads x 2 seeds on the tiny encoder: the report's rows, means and stds are the jobs' own."""
    sweep = tmp_path / "sweep"
    proc = train_py("-m", "pooling=mean,cls", "head=regression,classification", "seed=1,2", *FAST,
                    f"hydra.sweep.dir={sweep}", "test=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert len(jobs) == 8 and all(j["status"] == "ok" for j in jobs), [j["error"] for j in jobs]
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 8 and {"pooling", "head", "seed", "val/spearman"} <= set(summary.columns)
    groups = pd.read_csv(sweep / "summary_groups.csv").set_index(["pooling", "head"])
    assert len(groups) == 4
    for pooling, head in groups.index:
        values = pd.Series([j["metrics"]["val/spearman"] for j in jobs
                            if (j["config"]["pooling"], j["config"]["head"]) == (pooling, head)])
        assert groups.loc[(pooling, head), "n"] == 2
        assert groups.loc[(pooling, head), "val/spearman mean"] == pytest.approx(values.mean())
        assert groups.loc[(pooling, head), "val/spearman std"] == pytest.approx(values.std())
    assert groups["best"].sum() == 1
    assert "| pooling | head |" in (sweep / "summary.md").read_text().replace("**", "")
    image = plt.imread(sweep / "summary.png")
    assert image.ndim == 3 and min(image.shape[:2]) > 200


class StopAfterEpoch(L.Callback):
    """Simulates an interruption: ends fit after `epochs` epochs, with checkpoints written as usual."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def test_resume_without_a_checkpoint_says_how(tmp_path):
    results = run(compose_cfg([*FAST, "ckpt_path=last"], tmp_path))
    assert results["status"] == "failed" and "hydra.run.dir=" in results["error"]
