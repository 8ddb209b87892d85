"""Successive halving (poolhead.sweep.halving): a run stopped at a rung and continued is the run trained in one go."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import FAST, ROOT, compose_cfg
from test_app import train_py
from test_sweep import results

import poolhead
from poolhead.data.sources import DEMO_DIR
from poolhead.run.train import run

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
    from poolhead.sweep.halving import decide

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


HALVING = ["-m", "hydra/sweeper=halving", *FAST, "trainer.max_epochs=2", "test=false", "trainer.log_every_n_steps=1",
           "pooling=cls,mean", "mode=cross,bi", "seed=1,2", "hydra.sweeper.rungs=[4,12]"]


def _metrics_rows_once(sweep):
    for log in sweep.glob("*/csv/metrics.csv"):
        steps = pd.read_csv(log).dropna(subset=["train/loss"])["step"]
        assert steps.is_unique, f"{log}: a step trained twice"


@pytest.mark.slow
def test_a_halving_sweep_through_the_parallel_launcher_reports_every_rung_and_the_compute(tmp_path):
    """2 poolings x 2 modes x 2 seeds, rungs at steps 4 and 12 of 20, jobs side by side (joblib). Catches: a rung
    that retrains from scratch (more steps than the schedule), seeds added before the last rung, a group losing its
    finalist, a report without the evidence or the compute."""
    sweep = tmp_path / "sweep"
    proc = train_py(*HALVING, "hydra/launcher=parallel", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((sweep / "halving.json").read_text())
    assert record["complete"] and len(record["configs"]) == 4
    finalists = [c for c, e in record["configs"].items() if e["finalist"]]
    assert sorted(record["configs"][c]["group"] for c in finalists) == ["mode=bi", "mode=cross"]
    for name, entry in record["configs"].items():
        if entry["finalist"]:
            assert set(entry["scores"]) == {"4", "12", "full"}
        else:
            assert entry["dropped_at"] == "4" and entry["against"] in finalists and 0 <= entry["p_value"] <= 1
    # 4 configs x 4 steps, then the 2 kept: seed 1 from 4 to 12 and seed 2 to 12, then both seeds from 12 to 20
    assert record["compute"]["train_steps"] == 4 * 4 + 2 * 8 + 2 * 12 + 2 * 2 * 8
    assert record["compute"]["full_grid_steps"] == 4 * 2 * 20
    assert sum(r["status"] == "ok" for r in results(sweep).values()) == 4, "the finalists, every seed"
    assert {r["status"] for r in results(sweep).values()} == {"ok", "paused"}
    assert (sweep / "curves.png").stat().st_size > 0 and "finalist" in (sweep / "halving.md").read_text()
    _metrics_rows_once(sweep)
    before = (sweep / "halving.json").read_text()
    again = train_py(*HALVING, "hydra/launcher=parallel", "trainer.enable_progress_bar=false",
                     f"hydra.sweep.dir={sweep}")  # exclude_keys too: the same job folders
    assert again.returncode == 0 and "Launching" not in again.stdout + again.stderr, "a finished sweep launched jobs"
    assert (sweep / "halving.json").read_text() == before, "a re-run with nothing to do rewrote the record"


@pytest.mark.slow
def test_a_halving_sweep_killed_mid_rung_continues_with_nothing_retrained(tmp_path):
    """kill -9 once the second rung has begun, then the same command: the first rung's records are untouched (its
    jobs are skipped), the rest runs, every step is trained once."""
    sweep = tmp_path / "sweep"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *HALVING, f"hydra.sweep.dir={sweep}"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(sweep.glob("*/rungs/step-000012/metrics.json")) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first_rung = {p: p.read_bytes() for p in sweep.glob("*/rungs/step-000004/metrics.json")}
    assert len(first_rung) == 4 and not json.loads((sweep / "halving.json").read_text())["complete"], \
        "killed before the sweep ended (halving.json is written after every rung)"

    again = train_py(*HALVING, f"hydra.sweep.dir={sweep}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.read_bytes() for p in first_rung} == first_rung, "a finished rung was trained again"
    log = again.stdout + again.stderr
    assert "stop_at_step=4" not in log and "Rung 12:" in log, "the finished first rung was launched again"
    record = json.loads((sweep / "halving.json").read_text())
    assert record["complete"] and sum(e["finalist"] for e in record["configs"].values()) == 2
    assert record["compute"]["train_steps"] == 4 * 4 + 2 * 8 + 2 * 12 + 2 * 2 * 8
    _metrics_rows_once(sweep)


@pytest.mark.slow
def test_an_optuna_search_prunes_at_rungs_and_continues_after_kill_9(tmp_path):
    """Optuna >= 4 through poolhead's sweeper: 4 learning rates tried in a fixed order, reported at steps 5 and 10
    of 20 to SuccessiveHalving; kill -9 during the second trial, then the same command: the trial left RUNNING is
    asked again, its job resumes, the study ends with 4 trials done (one pruned or more) in its journal storage."""
    optuna = pytest.importorskip("optuna")
    assert int(optuna.__version__.split(".")[0]) >= 4
    sweep = tmp_path / "sweep"
    command = ["-m", "hparams_search=stsb_optuna", "data=demo", f"data.dir={DEMO_DIR}", *FAST, "test=false",
               "trainer.max_epochs=2", "optim.lr=choice(0.0005,0.001,0.002,0.004)", "optim.head_lr=choice(0.001)",
               "optim.warmup_ratio=choice(0.1)", "head.dropout=choice(0.1)", "pooling=choice(mean)",
               "head=choice(regression)", "hydra.sweeper.n_trials=4", "hydra.sweeper.rungs=[5,10]",
               "hydra.sweeper.sampler._target_=optuna.samplers.BruteForceSampler", "hydra.sweeper.sampler.seed=0",
               "~hydra.sweeper.sampler.n_startup_trials", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *command], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(sweep.glob("*/job.json"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "optuna.journal")))
    assert "RUNNING" in {t.state.name for t in optuna.load_study(study_name="stsb_optuna", storage=storage).trials}

    again = train_py(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = optuna.load_study(study_name="stsb_optuna", storage=storage).trials
    states = [t.state.name for t in trials]
    assert states.count("FAIL") == 1 and any(t.user_attrs.get("retry_of") is not None for t in trials), states
    assert states.count("COMPLETE") + states.count("PRUNED") == 4 and "PRUNED" in states, states
    assert {t.params["optim.lr"] for t in trials} == {0.0005, 0.001, 0.002, 0.004}
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    done = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    assert best["best_value"] == max(r["metrics"]["val/spearman"] for r in done if r["status"] == "ok")
    _metrics_rows_once(sweep)


def test_the_sweeps_extra_downgrades_neither_a_current_optuna_nor_sqlalchemy_2():
    """Every requirement poolhead[sweeps] brings (its own and those of the installed packages it pulls in) accepts
    optuna 5.0 and SQLAlchemy 2.1: `pip install -e ".[sweeps]"` has no reason to downgrade them. The pins this
    replaced (hydra-optuna-sweeper: optuna<3; sqlalchemy<2) fail here."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.version import Version

    current = {"optuna": Version("5.0.0"), "sqlalchemy": Version("2.1.9")}
    seen, todo, bad = set(), [Requirement(r) for r in metadata.requires("poolhead")
                              if "extra == \"sweeps\"" in r or "extra ==" not in r], []
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in current and not req.specifier.contains(current[name], prereleases=True):
            bad.append(str(req))
        if name in seen:
            continue
        seen.add(name)
        try:
            todo += [Requirement(r) for r in metadata.requires(name) or [] if "extra ==" not in r]
        except metadata.PackageNotFoundError:
            continue
    assert "optuna" in seen and not bad, bad


def test_not_identity_and_hydras_exclude_keys_name_the_same_keys():
    """A key that is not part of a job's identity must not name its folder either (and the reverse), or a rung's
    `stop_at_step` would put each rung of one job in a folder of its own."""
    from poolhead.run.record import NOT_IDENTITY

    hydra = yaml.safe_load((poolhead.conf_dir() / "hydra" / "default.yaml").read_text())
    assert sorted(hydra["job"]["config"]["override_dirname"]["exclude_keys"]) == sorted(NOT_IDENTITY)


class ExitAtStep(__import__("lightning").Callback):
    """An interruption (what Lightning's SIGTERM handler raises) when the given step is about to train."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise SystemExit(143)


def test_a_run_interrupted_after_a_mid_epoch_validation_resumes_exactly_and_finishes(tmp_path):
    """trainer.val_check_interval=0.5: last.ckpt is written mid-epoch (step 5 of 10); killed at step 7, the resume
    continues from step 5 at the epoch's 6th batch and ends as the uninterrupted run (it used to crash at the epoch's
    end, TrainThroughput having no start time, and every later resume the same)."""
    common = [*COMMON, "trainer.max_epochs=2", "trainer.val_check_interval=0.5"]
    straight = run(compose_cfg(common, tmp_path / "straight"))
    with pytest.raises(SystemExit):
        run(compose_cfg(common, tmp_path / "resumed"), extra_callbacks=[ExitAtStep(7)])
    assert torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 5
    done = run(compose_cfg([*common, "ckpt_path=last"], tmp_path / "resumed"))
    assert done["status"] == "ok", done.get("error")
    assert done["metrics"] == straight["metrics"]
    losses = [pd.read_csv(tmp_path / r / "csv" / "metrics.csv").dropna(subset=["train/loss"])["train/loss"].tolist()
              for r in ("straight", "resumed")]
    assert losses[0] == losses[1]
