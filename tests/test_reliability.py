"""Nothing lost, nothing silent: resume keeps the run's settings, files and history; non-finite training stops at
once; impossible settings stop before any work, naming key, value and what is allowed; checkpoint errors name the
file. Each test fails on the code before issue 14."""

import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from conftest import FAST, ROOT, compose_cfg

from poolhead import build
from poolhead.run.train import run


def train_py(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file of a run, but Hydra's train.log (an append-only log: checked to only grow) and the
    .hydra/resume-* records a resume attempt adds."""
    return {name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
            and (name := str(p.relative_to(folder))) != "train.log" and not name.startswith(".hydra/resume-")}


def log_only_grew(folder: Path, before: bytes) -> bool:
    return (folder / "train.log").read_bytes().startswith(before)


@pytest.fixture(scope="module")
def attention_run(tmp_path_factory) -> Path:
    """A finished 1-epoch run with a learned pooling, made by train.py as a user makes it."""
    folder = tmp_path_factory.mktemp("attention") / "run"
    proc = train_py(*FAST, "pooling=attention", "mode=bi", f"hydra.run.dir={folder}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return folder


def test_resume_as_the_readme_writes_it_continues_the_runs_own_config(attention_run, tmp_path):
    run_dir = tmp_path / "run"
    subprocess.run(["cp", "-r", str(attention_run), str(run_dir)], check=True)
    hydra_before = {n: (run_dir / ".hydra" / n).read_text() for n in ("config.yaml", "overrides.yaml", "hydra.yaml")}
    rows_before = pd.read_csv(run_dir / "csv" / "metrics.csv")
    proc = train_py(f"hydra.run.dir={run_dir}", "ckpt_path=last")  # nothing else: pooling/mode come from the run
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["status"] == "ok" and results["config"]["pooling"] == "attention"
            and results["config"]["mode"] == "bi")
    assert {n: (run_dir / ".hydra" / n).read_text() for n in hydra_before} == hydra_before, "the run's .hydra kept"
    assert list((run_dir / ".hydra").glob("resume-*/overrides.yaml")), "the resume records itself beside them"
    rows_after = pd.read_csv(run_dir / "csv" / "metrics.csv")
    pd.testing.assert_frame_equal(rows_after.iloc[: len(rows_before)][rows_before.columns], rows_before)


def test_a_resume_override_that_contradicts_the_run_names_both_values(attention_run):
    before, log = snapshot(attention_run), (attention_run / "train.log").read_bytes()
    proc = train_py(f"hydra.run.dir={attention_run}", "ckpt_path=last", "pooling=mean")
    assert proc.returncode != 0
    assert "pooling=mean" in proc.stderr and "trained with pooling=" in proc.stderr and "Attention" in proc.stderr
    assert snapshot(attention_run) == before and log_only_grew(attention_run, log)


@pytest.mark.parametrize("damage", ["missing", "empty", "truncated"])
def test_a_resume_that_cannot_start_changes_no_file_and_says_what_to_do(attention_run, tmp_path, damage):
    run_dir = tmp_path / "run"
    subprocess.run(["cp", "-r", str(attention_run), str(run_dir)], check=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    if damage == "missing":
        last.unlink()
    else:
        last.write_bytes(b"" if damage == "empty" else last.read_bytes()[: 100_000])
    before, log = snapshot(run_dir), (run_dir / "train.log").read_bytes()
    proc = train_py(f"hydra.run.dir={run_dir}", "ckpt_path=last")
    assert proc.returncode != 0
    assert str(last) in proc.stderr, proc.stderr[-2000:]
    assert ("hydra.run.dir=" if damage == "missing" else "start the run over") in proc.stderr
    assert snapshot(run_dir) == before, "results.json, metrics.csv and checkpoints untouched"
    assert log_only_grew(run_dir, log)


def test_resume_keeps_the_metrics_logged_before_the_interruption(tmp_path):
    from test_app import StopAfterEpoch

    common = [*FAST, "trainer.max_epochs=2", "trainer.log_every_n_steps=1"]
    straight = run(compose_cfg(common, tmp_path / "straight"))
    run(compose_cfg(common, tmp_path / "resumed"), extra_callbacks=[StopAfterEpoch(1)])
    first = pd.read_csv(tmp_path / "resumed" / "csv" / "metrics.csv")
    resumed = run(compose_cfg([*common, "ckpt_path=last"], tmp_path / "resumed"))
    assert straight["status"] == resumed["status"] == "ok", resumed["error"]
    log = pd.read_csv(tmp_path / "resumed" / "csv" / "metrics.csv")
    reference = pd.read_csv(tmp_path / "straight" / "csv" / "metrics.csv")
    assert log["step"].tolist() == reference["step"].tolist(), "every step from before and after, once each"
    assert set(first["step"]) < set(log["step"])
    pd.testing.assert_series_equal(log["train/loss"], reference["train/loss"], atol=1e-6, rtol=0)
    weights = [torch.load(tmp_path / r / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
               for r in ("straight", "resumed")]
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), f"{name}: the resumed run ends with other weights"
    assert resumed["metrics"] == straight["metrics"]


class SigtermAfterTheFirstStep(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        raise SystemExit(143)  # what Lightning's SIGTERM handler raises


def test_an_interrupted_run_leaves_a_record_that_says_so(tmp_path):
    with pytest.raises(SystemExit):
        run(compose_cfg(FAST, tmp_path / "run"), extra_callbacks=[SigtermAfterTheFirstStep()])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "failed" and results["finished"] is not None
    assert results["error"] == "interrupted (SystemExit); run the same command again to resume"


class SigtermInTheSecondEpoch(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 1:
            raise SystemExit(143)


def test_a_resumed_run_scores_its_checkpoint_without_the_unfinished_run_warning(tmp_path):
    """Bug (caught before it landed): the warning `poolhead.load` gives for a run whose results.json is not ok
    fired in the resumed run's own scoring, as results.json still held the interrupted attempt's record."""
    from poolhead.run.record import UnfinishedRunWarning

    common = [*FAST, "trainer.max_epochs=2"]
    with pytest.raises(SystemExit):
        run(compose_cfg(common, tmp_path / "run"), extra_callbacks=[SigtermInTheSecondEpoch()])
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "failed"
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        resumed = run(compose_cfg([*common, "ckpt_path=last"], tmp_path / "run"))
    assert resumed["status"] == "ok", resumed["error"]
    assert not [w for w in said if issubclass(w.category, UnfinishedRunWarning)], [str(w.message) for w in said]


@pytest.mark.parametrize("grouped", [True, False])
def test_resumed_training_sees_the_same_batches_and_dropout(tmp_path, grouped):
    """Per-step losses of a resumed run equal an uninterrupted run's (dropout on). Creating a DataLoader iterator
    used to draw from torch's global RNG, so a resumed run dropped other units from its first step on."""
    from test_app import StopAfterEpoch

    common = [*FAST, "trainer.max_epochs=2", "trainer.log_every_n_steps=1", f"data.group_by_length={grouped}"]
    run(compose_cfg(common, tmp_path / "straight"))
    run(compose_cfg(common, tmp_path / "resumed"), extra_callbacks=[StopAfterEpoch(1)])
    run(compose_cfg([*common, "ckpt_path=last"], tmp_path / "resumed"))
    losses = [pd.read_csv(tmp_path / r / "csv" / "metrics.csv")["train/loss"].dropna().to_numpy()
              for r in ("straight", "resumed")]
    assert len(losses[0]) == len(losses[1]) and abs(losses[0] - losses[1]).max() == 0


def test_non_finite_training_stops_at_once_naming_step_epoch_and_cause(tmp_path):
    # cross: the bi cosine is bounded and diverges later
    results = run(compose_cfg([*FAST, "mode=cross", "trainer.max_epochs=3", "optim.lr=1e3", "optim.head_lr=1e3",
                               "trainer.gradient_clip_val=null", "optim.optimizer._target_=torch.optim.SGD",
                               "~optim.optimizer.betas", "~optim.optimizer.eps", "~optim.optimizer.fused"], tmp_path))
    assert results["status"] == "failed"
    error = results["error"]
    assert error.startswith("FloatingPointError") and "epoch 0, step" in error and "learning rates" in error, error
    assert not results["metrics"], "no metric computed from a diverged model"
    assert "predictions.csv" not in {p.name for p in tmp_path.iterdir()}


@pytest.mark.parametrize("override, message", [
    ("optim.lr=-1", "optim.lr=-1: expected a learning rate >= 0"),
    ("data.batch_size=0", "data.batch_size=0: expected a whole number >= 1"),
    ("head=classification head.bin_edges=[]", "head.bin_edges=[]: expected at least one edge"),
    ("encoder.max_length=0", "encoder.max_length=0: expected a whole number of tokens >= 2"),
    ("encoder.max_length=100000", "encoder.max_length=100000: the encoder reads at most 512 tokens"),
    ("optim.warmup_ratio=2", "optim.warmup_ratio=2: expected a share of the training steps in [0, 1]"),
    ("encoder.layers=[5]", "encoder.layers=[5]: [5] not among the encoder's hidden_states: it has 2 layers, so "
                           "indices -3 to 2"),
    ("encoder.layers=[0,-4]", "encoder.layers=[0, -4]: [-4] not among the encoder's hidden_states"),
    ("seed=abc", "seed=abc: expected a whole number"),
    ("trainer.max_epochs=1.5", "trainer.max_epochs=1.5: expected a whole number >= 1"),
    ("data.batch_size=true", "data.batch_size=True: expected a whole number >= 1"),
    ("trainer.precision=16-mixed trainer.accelerator=cpu", "trainer.precision=16-mixed: float16 autocast needs a GPU"),
    ("trainer.limit_train_batches=0", "trainer.limit_train_batches=0: expected null, a whole number of"),
    ("trainer.limit_train_batches=0.0", "trainer.limit_train_batches=0.0: expected null, a whole number of"),
    ("trainer.limit_val_batches=0", "trainer.limit_val_batches=0: expected null, a whole number of batches"),
    ("trainer.val_check_interval=0", "trainer.val_check_interval=0: expected null \\(once an epoch\\)"),
])
def test_impossible_settings_stop_before_the_encoder_loads(tmp_path, monkeypatch, override, message):
    import poolhead.core.encoder

    monkeypatch.setattr(poolhead.core.encoder.Encoder, "__init__",
                        lambda *a, **k: pytest.fail("the encoder was loaded"))
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(compose_cfg([*FAST, *override.split()], tmp_path))


class StopBeforeTheFirstStep(L.Callback):
    def on_train_start(self, trainer, pl_module):
        trainer.should_stop = True  # as any limit that leaves the training split without a batch


def test_a_run_that_trains_no_step_is_not_reported_ok(tmp_path):
    """Bug: `trainer.limit_train_batches=0` exited 0 with status ok, no checkpoint, and "Done ... (best
    checkpoint)": the metrics were those of the untrained model."""
    results = run(compose_cfg(FAST, tmp_path), extra_callbacks=[StopBeforeTheFirstStep()])
    assert results["status"] == "failed", results
    assert "no training step was taken" in results["error"], results["error"]
    assert not results["metrics"] and not (tmp_path / "predictions.csv").exists()


def test_a_seed_that_is_not_a_number_names_the_key_before_seeding(tmp_path):
    """seed=abc failed in Lightning's seed_everything with `invalid literal for int()`, naming no key."""
    results = run(compose_cfg([*FAST, "seed=abc"], tmp_path))
    assert results["status"] == "failed" and results["error"] == "SettingsError: seed=abc: expected a whole number"


@pytest.fixture
def as_train_py():
    """compose_cfg(..., hydra=True) made the running config, as under `python train.py`: HydraConfig holds the
    command line's overrides (cleared afterwards)."""
    from hydra.core.hydra_config import HydraConfig

    def start(overrides: list[str], tmp_path: Path):
        cfg = compose_cfg(overrides, tmp_path, hydra=True)
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield start
    HydraConfig.instance().cfg = None


@pytest.mark.parametrize("override, closest", [("+optim.lrr=1", "optim.lr"), ("++optim.lrr=1", "optim.lr"),
                                               ("+trainer.max_epoch=3", "trainer.max_epochs"),
                                               ("+head.activaton=ReLU", "head.activation"),
                                               ("+seeds=3", "seed"),
                                               ("+encoder.config.hiden_size=64",
                                                "encoder.config.hidden_size")])
def test_an_appended_key_poolhead_never_reads_stops_before_work_naming_the_closest(tmp_path, monkeypatch, as_train_py,
                                                                                   override, closest):
    """`+optim.lrr=1` was appended and ignored: the run trained at the default lr; so were `++optim.lrr=1`
    (`++` adds a new key as `+` does) and a typo under `+encoder.config.` (transformers' configs keep any
    unknown key)."""
    import poolhead.core.encoder

    monkeypatch.setattr(poolhead.core.encoder.Encoder, "__init__",
                        lambda *a, **k: pytest.fail("the encoder was loaded"))
    cfg = as_train_py([*FAST, override], tmp_path)
    with pytest.raises(ValueError, match=rf"\{override}: .* so it would be ignored; did you mean "
                                         rf"{closest}\?"):
        build(cfg)


@pytest.mark.parametrize("overrides", [
    ["+head.activation=ReLU"], ["+trainer.enable_checkpointing=false"], ["+data.unk_warning=0.05"],
    ["+optim.optimizer.amsgrad=true"], ["++optim.lr=1e-4"], ["+hydra.job.env_set.X=1"],
    ["+callbacks.stop._target_=lightning.pytorch.callbacks.EarlyStopping", "+callbacks.stop.monitor=val/loss"],
    ["optim=sgd", "+optim.optimizer.nesterov=true"], ["optim=sgd", "+optim.optimizer.betas=[0.9,0.99]"],
    ["+encoder.config.hidden_dropout_prob=0.2"], ["++encoder.config.hidden_size=16"],
    ["++trainer.max_epochs=2"],
    ["++test=false"],
])
def test_appended_keys_that_a_component_takes_are_accepted(tmp_path, as_train_py, overrides):
    """A parameter of the component a `+` key configures (a head's activation, a Trainer argument, a new callback) is
    read; so is a key another option of the group sets (betas, an AdamW key, is not SGD's: SGD itself refuses it)."""
    from poolhead.run.checks import check_settings

    check_settings(as_train_py([*FAST, *overrides], tmp_path))


def test_encoder_config_keys_for_a_pretrained_encoder_are_refused(tmp_path, as_train_py):
    """Bug: `+encoder.config.hidden_dropout_prob=0.2` with MiniLM was accepted and never read (a pretrained
    encoder's settings come from its config.json)."""
    from poolhead.run.checks import check_settings

    with pytest.raises(ValueError, match=r"encoder.config builds a random model and is read only with "
                                         r"encoder.name_or_path=null"):
        check_settings(as_train_py(["+encoder.config.hidden_dropout_prob=0.2"], tmp_path))


def test_a_zero_learning_rate_is_said(tmp_path, caplog):
    """Bug: optim.lr=0 trained without a word (the encoder never changed)."""
    from poolhead.run.checks import check_settings

    check_settings(compose_cfg([*FAST, "optim.lr=0", "optim.head_lr=1e-3"], tmp_path))
    assert "optim.lr=0: the encoder's weights never change" in caplog.text
    check_settings(compose_cfg([*FAST, "optim.lr=0", "optim.head_lr=null"], tmp_path))
    assert "optim.lr=0 and optim.head_lr=null: no weight changes" in caplog.text


@pytest.mark.bad_input
def test_settings_that_contradict_the_data_name_key_and_file(tmp_path):
    (tmp_path / "one.csv").write_text("text,label\n" + "".join(f"row {i},pos\n" for i in range(20)))
    with pytest.raises(ValueError, match=r"one.csv: the training split has a single class label \['pos'\]"):
        build(compose_cfg([*FAST, "data=csv", f"data.train={tmp_path}/one.csv", "data.task=class", "mode=single",
                           "head=classification"], tmp_path))
    (tmp_path / "unit.csv").write_text("text,text_pair,label\n" + "".join(f"a {i},b,0.{i}\n" for i in range(20)))
    with pytest.raises(ValueError, match=r"head.bin_edges=\[3.0\]: \[3.0\] not strictly inside the data's score "
                                         r"range \[0, 1\] .*unit.csv"):
        build(compose_cfg([*FAST, "data=csv", f"data.train={tmp_path}/unit.csv", "data.text_pair=text_pair",
                           "data.score_range=[0,1]", "head=classification"], tmp_path))


def test_results_record_the_encoder_that_ran(tmp_path):
    from conftest import TINY_CONFIG
    from transformers import BertConfig, BertModel

    folder = tmp_path / "my_encoder"
    BertModel(BertConfig(**{k: v for k, v in TINY_CONFIG.items() if k != "model_type"})).save_pretrained(folder)
    results = run(compose_cfg([*FAST, f"encoder.name_or_path={folder}", "encoder.config=null"], tmp_path / "run"))
    assert results["status"] == "ok", results["error"]
    assert results["encoder"]["name_or_path"] == str(folder)
    assert (results["encoder"]["weights_sha256"]
            == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest())


def test_an_offline_hub_encoder_is_one_plain_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception) as info:
        build(compose_cfg(["encoder=bert_base"], tmp_path))
    text = str(info.value)
    assert type(info.value).__name__ == "OfflineError" and "full_key" not in text and "\\n" not in text
    assert "encoder.name_or_path=" in text and "Set HF_HUB_OFFLINE=1" not in text, "it is set already"


def test_unreadable_checkpoints_name_the_file(tmp_path):
    from poolhead import load

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{bad}: unreadable checkpoint .*use another checkpoint"):
        load(bad)
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=rf"{bad}: unreadable checkpoint"):
        load(bad)


def fake_run_folder(folder: Path) -> Path:
    """A run folder as a finished run leaves it (its files stand-ins: nothing here is read but their
    bytes)."""
    files = {".hydra/config.yaml": "seed: 1\n", ".hydra/overrides.yaml": "- seed=1\n", "train.log": "log\n",
             "results.json": '{"status": "ok"}', "checkpoints/last.ckpt": "weights"}
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def bytes_and_times(folder: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every entry under `folder` (itself included): its bytes (files) and its mtime in ns (folders too)."""
    entries = [folder, *sorted(folder.rglob("*"))]
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
            for p in entries}


def test_a_refused_second_run_changes_nothing_in_the_folder_hydra_files_included(tmp_path):
    """Bug: Hydra rewrote `.hydra/` (config, overrides) before the second process found the folder claimed, so
    a later `ckpt_path=last` resumed the first run's weights under the second's config."""
    from poolhead.run.claim import claim_job, release_job

    folder = fake_run_folder(tmp_path / "run")
    try:
        assert claim_job(folder) is None  # this process stands in for the first run, still training
        before = bytes_and_times(folder)
        for resume in ([], ["ckpt_path=last"]):
            proc = train_py(*FAST, "seed=7", f"hydra.run.dir={folder}", *resume)
            assert proc.returncode != 0 and "is in use by another process" in proc.stderr, proc.stderr[-2000:]
            assert bytes_and_times(folder) == before, "the refused process changed the folder"
    finally:
        release_job()


def test_a_new_run_into_a_finished_folder_keeps_the_earlier_hydra_files_too(tmp_path):
    """Bug: the earlier run's outputs went to superseded/, but its `.hydra/` stayed and was overwritten."""
    folder = fake_run_folder(tmp_path / "run")
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    proc = train_py(*FAST, "trainer.max_epochs=0", f"hydra.run.dir={folder}")  # stops at the settings check
    assert proc.returncode != 0 and "trainer.max_epochs=0" in proc.stderr, proc.stderr[-2000:]
    (kept,) = (folder / "superseded").iterdir()
    assert {p.relative_to(kept): p.read_bytes() for p in kept.rglob("*") if p.is_file()} == before
    assert "trainer.max_epochs=0" in (folder / ".hydra" / "overrides.yaml").read_text(), "the new run's own"


def test_records_are_strict_json_with_null_for_a_non_finite_value(caplog):
    """Bug: results.json, eval.json and a rung's metrics.json were written with json.dumps' default
    allow_nan=True, so a NaN metric became a bare `NaN` that JSON readers (jq, JavaScript, pandas' strict
    readers) reject."""
    from poolhead.run.record import json_text

    text = json_text({"metrics": {"val/pearson": float("nan"), "val/mse": 0.25},
                      "curve": [1.0, float("inf")]})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {text}")) == {
        "metrics": {"val/pearson": None, "val/mse": 0.25}, "curve": [1.0, None]}
    assert "metrics.val/pearson: nan is not a JSON number" in caplog.text and "curve[1]" in caplog.text
