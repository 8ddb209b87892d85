"""Successive halving (poolhead.sweep.halving): a run stopped at a rung and continued is the run trained in one go."""

import json
import os
import re
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
    for _name, entry in record["configs"].items():
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
               "~hydra.sweeper.sampler.n_startup_trials", f"hydra.sweep.dir={sweep}",
               "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3"]  # the killed trial's retry
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
    assert states.count("FAIL") == 1 and any(t.system_attrs.get("failed_trial") is not None for t in trials), states
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


# --- the decisions: min_per_group, seed means, ties (each test fails with its bug put in by hand) -----------

def test_min_per_group_keeps_more_than_the_eta_share_when_asked():
    """Five configurations, eta 3: ceil(5/3) = 2 go on, but min_per_group=4 keeps four (the bug: min
    ignored)."""
    from poolhead.sweep.halving import keep_per_group

    scores = {f"c{i}": 0.1 * i for i in range(5)}
    groups = dict.fromkeys(scores, "g")
    assert keep_per_group(scores, groups, eta=3, min_per_group=1, maximize=True) == ["c3", "c4"]
    assert keep_per_group(scores, groups, eta=3, min_per_group=4, maximize=True) == ["c1", "c2", "c3", "c4"]


def test_a_rung_with_every_seed_decides_on_the_seed_mean_not_the_best_seed():
    """a scores 0.9 and 0.1 (mean 0.5), b 0.6 and 0.6 (mean 0.6): b goes on. With the max over seeds a
    would."""
    from poolhead.sweep.halving import decide

    table = {("a", "1"): 0.9, ("a", "2"): 0.1, ("b", "1"): 0.6, ("b", "2"): 0.6}
    rungs = decide(["a", "b"], {"a": "g", "b": "g"}, [10], ["1", "2"], lambda c, s, step: table[(c, s)],
                   eta=2, min_per_group=1, maximize=True, all_seeds_from=0)
    assert rungs[0].scores == {"a": 0.5, "b": 0.6} and rungs[0].kept == ["b"]


def test_a_tie_is_broken_by_label_whatever_the_order_the_grid_lists_them():
    """Equal scores: the configuration first by label goes on, also when the grid lists it last (the bug:
    insertion order, so a re-run with the grid in another order decides otherwise)."""
    from poolhead.sweep.halving import keep_per_group

    for order in (["pooling=mean", "pooling=cls"], ["pooling=cls", "pooling=mean"]):
        scores = dict.fromkeys(order, 0.5)
        assert keep_per_group(scores, dict.fromkeys(order, "g"), eta=2, min_per_group=1, maximize=True) \
            == ["pooling=cls"], order
        assert keep_per_group(scores, dict.fromkeys(order, "g"), eta=2, min_per_group=1, maximize=False) \
            == ["pooling=cls"], order


def test_a_survivor_that_failed_at_the_full_budget_is_no_finalist():
    """The only survivor's full-budget job failed (score None): the last rung keeps nobody (it used to keep
    every configuration that reached it, and the sweep called itself complete with a failed finalist)."""
    from poolhead.sweep.halving import decide

    table = {("a", 4): 0.7, ("b", 4): 0.5, ("a", None): None}
    rungs = decide(["a", "b"], {"a": "g", "b": "g"}, [4], ["1"], lambda c, s, step: table[(c, step)], eta=2,
                   min_per_group=1, maximize=True)
    assert [r.kept for r in rungs] == [["a"], []] and rungs[-1].dropped["a"]["reason"] == "failed"


# --- rungs and the budget -------------------------------------------------------------------------------

def test_rungs_as_fractions_become_steps_and_rungs_at_or_past_the_budget_are_refused():
    from poolhead.sweep.launching import rung_steps

    assert rung_steps([0.125, 0.25, 0.5], 30) == [4, 8, 15]
    assert rung_steps([90, 180, 360], 720) == [90, 180, 360]
    for rungs, budget in (([40, 120, 360], 30), ([3, 50], 10), ([3, 10], 10)):
        with pytest.raises(ValueError, match=f"below the training budget of {budget} steps"):
            rung_steps(rungs, budget)
    with pytest.raises(ValueError, match="two rungs fall on one step"):
        rung_steps([0.1, 0.2], 4)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        rung_steps([0.5, 1.5], 40)


@pytest.mark.parametrize("overrides", [
    ["trainer.max_epochs=2", "data.batch_size=48", "trainer.accumulate_grad_batches=3",
     "trainer.limit_train_batches=0.5"],
    ["trainer.max_epochs=2", "data.batch_size=64", "trainer.accumulate_grad_batches=2",
     "trainer.max_steps=5"],
    ["trainer.max_epochs=1", "data.batch_size=32", "trainer.limit_train_batches=4"],
], ids=["fraction-and-accumulation", "max-steps", "whole-limit"])
def test_the_budget_worked_out_before_a_job_is_the_steps_the_job_trains(tmp_path, overrides):
    """training_budget (rows, batch, limit_train_batches, accumulate_grad_batches, max_epochs, max_steps)
    against the optimizer steps a run of that config trains (Lightning's own count). Catches a floor where
    Lightning takes a ceiling, a limit or an accumulation ignored."""
    from poolhead.sweep.launching import training_budget

    cfg = compose_cfg([*FAST, *overrides, "test=false"], tmp_path)
    done = run(cfg)
    assert done["status"] == "ok", done.get("error")
    assert training_budget(cfg)[0] == done["timing"]["train_steps"]


def _sweep_files(sweep):
    """Every file of a sweep folder and its bytes (the marker the exit-status callback touches at every start
    aside)."""
    return {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file() and p.name != ".multirun_started"}


SMALL = ["-m", "hydra/sweeper=halving", *FAST, "test=false", "trainer.log_every_n_steps=1", "mode=cross",
         "head=regression", "seed=1", "hydra.sweeper.poll_seconds=1"]


def _job_dir(sweep, *overrides):
    """Where Hydra puts the job of these command-line overrides (hydra.sweep.subdir; its own and -m left
    out)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from poolhead.sweep.halving import identity_overrides
    from poolhead.sweep.jobs import job_dirname

    job_only = [o for o in overrides if not o.startswith(("-", "hydra"))]
    parsed = OverridesParser.create().parse_overrides(job_only)
    lines = [f"{o.get_key_element()}={o.get_value_element_as_str()}" for o in parsed]
    return sweep / job_dirname(",".join(identity_overrides(lines)))


def test_rungs_past_the_budget_are_refused_before_any_job(tmp_path):
    """rungs [3, 50] on the demo data's 10 steps (1 epoch of 300 rows / 32): refused at once naming the rungs
    and the budget and how it was found, no job folder made (it used to train every job, then 'Rung 50 did not
    complete', exit 0, forever)."""
    sweep = tmp_path / "sweep"
    proc = train_py(*SMALL, "pooling=mean,cls", "hydra.sweeper.rungs=[3,50]", f"hydra.sweep.dir={sweep}")
    assert proc.returncode != 0
    assert "hydra.sweeper.rungs=[3, 50]: every rung must lie below the training budget of 10 steps" \
        in proc.stderr
    assert "300 training rows / batch 32 = 10 batches" in proc.stderr
    assert "Traceback" not in proc.stderr and "Launching" not in proc.stdout + proc.stderr
    assert not [p for p in sweep.iterdir() if p.is_dir()] if sweep.exists() else True


def test_a_sweep_whose_only_survivor_failed_exits_non_zero_and_says_why(tmp_path):
    """Records as a sitting left them: both configurations paused at rung 3, the survivor's full-budget job
    failed. The re-run launches nothing (nothing can go on), writes a report that says FAILED and why, and
    exits 1; it used to say 'complete' with the failed job as finalist, exit 0."""
    sweep = tmp_path / "sweep"
    for pooling, score in (("cls", 0.3), ("mean", 0.6)):
        job = _job_dir(sweep, *SMALL, f"pooling={pooling}")
        (job / "rungs" / "step-000003").mkdir(parents=True)
        metrics = {"step": 3, "monitor": "val/spearman", "metrics": {"val/spearman": score}}
        (job / "rungs" / "step-000003" / "metrics.json").write_text(json.dumps(metrics))
        status = {"status": "paused", "rung": {"step": 3}} if pooling == "cls" else \
            {"status": "failed", "error": "RuntimeError: out of memory"}
        record = {**status, "monitor": "val/spearman", "monitor_mode": "max"}
        (job / "results.json").write_text(json.dumps(record))
    proc = train_py(*SMALL, "pooling=mean,cls", "hydra.sweeper.rungs=[3]", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Launching" not in proc.stdout + proc.stderr
    assert "cannot finish: group mode=cross has no finalist: every configuration still in it failed at the " \
           "full budget" in proc.stderr and "pooling=mean" in proc.stderr
    record = json.loads((sweep / "halving.json").read_text())
    assert not record["complete"] and "no finalist" in record["failure"]
    assert not any(e["finalist"] for e in record["configs"].values())
    assert (sweep / "halving.md").read_text().startswith("# Successive halving (FAILED)")


def test_an_unreadable_halving_json_is_refused_naming_it(tmp_path):
    """A cut halving.json (written before the writes were atomic) is not taken for an empty one: the sittings
    and the design would reset silently."""
    from poolhead.sweep.halving import DesignChanged, read_record

    (tmp_path / "halving.json").write_text('{"rungs": [3, 6], "eta": 3, "sitt')
    with pytest.raises(DesignChanged, match=r"halving.json: unreadable .* Restore it"):
        read_record(tmp_path)


def test_halving_json_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """A write that fails before its rename (a kill, a full disk) leaves the previous halving.json as it was;
    a write in place would have left the new text half written (here: whole, since nothing cuts it, so it
    differs)."""
    from poolhead.run import record as record_module
    from poolhead.sweep.halving import Rung
    from poolhead.sweep.halving_report import write_halving_report

    class Sweeper:
        rungs, eta, min_per_group, all_seeds_from, group_by = [3], 3, 1, 0, []

    (tmp_path / "halving.json").write_text('{"sittings": [{"started": 1, "finished": 2}]}\n')

    def cut(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(record_module.os, "replace", cut)
    with pytest.raises(OSError, match="No space"):
        write_halving_report(tmp_path, Sweeper(), ["a"], {"a": "all"}, ["1"], [Rung(3, {"a": 0.5}, ["a"])],
                             {}, [])
    assert (tmp_path / "halving.json").read_text() == '{"sittings": [{"started": 1, "finished": 2}]}\n'
    assert not list(tmp_path.glob(".halving.json.*.tmp")), "the temp file is removed"


def test_no_module_of_poolhead_sweep_imports_one_that_imports_it_back():
    """halving.py and halving_report.py imported each other (a cycle); optuna_sweep took the private _PENDING
    from halving. Walked with ast over poolhead.sweep's modules."""
    from test_layers import SRC, imports

    graph = {}
    for path in (SRC / "sweep").rglob("*.py"):
        name = ".".join(("poolhead", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        graph[name] = {m for m, _ in imports(path) for m in (m, m.rsplit(".", 1)[0])} - {name}
    for module, targets in graph.items():
        for target in targets & set(graph):
            assert module not in _reachable(graph, target), f"{module} -> {target} -> ... -> {module}"
    optuna_imports = [m for m, _ in imports(SRC / "sweep" / "optuna_sweep.py")]
    assert not [m for m in optuna_imports if m.rsplit(".", 1)[-1].startswith("_")], "a private name imported"


def _reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt in graph and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _trained_steps(sweep):
    """{job folder: [steps trained]} from each job's metrics.csv (log_every_n_steps=1: one train/loss row a
    step)."""
    return {log.parents[1].name: pd.read_csv(log).dropna(subset=["train/loss"])["step"].tolist()
            for log in sweep.glob("*/csv/metrics.csv")}


def _start(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


WORKERS = [*SMALL, "pooling=cls,mean,max", "seed=1,2", "trainer.max_epochs=2", "hydra.sweeper.rungs=[4,12]"]


@pytest.mark.slow
def test_three_workers_on_one_halving_sweep_train_each_job_once_and_all_finish(tmp_path):
    """Three processes started with the same command on one sweep folder (three hosts sharing a file system):
    every job trains once (its steps counted from metrics.csv), all exit 0, and they report the same finalists
    and one complete halving.json. 3 configurations, rungs 4 and 12 of 20 steps, seeds 1 and 2 from rung 12: 3
    x 4, then the survivor's seed 1 from 4 to 12 and seed 2 from 0 to 12, then both from 12 to 20 = 48 steps.
    The bug it catches: a worker that found every job of a rung claimed said 'a job was interrupted' and
    exited 0 before the sweep was done."""
    sweep = tmp_path / "sweep"
    procs = [_start(*WORKERS, f"hydra.sweep.dir={sweep}") for _ in range(3)]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-3000:]
        assert "interrupted" not in out, out[-3000:]
    steps = _trained_steps(sweep)
    assert all(len(s) == len(set(s)) for s in steps.values()), f"a step trained twice: {steps}"
    assert sum(len(s) for s in steps.values()) == 3 * 4 + 8 + 12 + 2 * 8, steps
    finals = [[line.split("finalists ", 1)[1] for line in out.splitlines()
               if "Successive halving complete" in line] for out in outputs]
    assert all(len(f) == 1 for f in finals) and finals[0] == finals[1] == finals[2], finals
    record = json.loads((sweep / "halving.json").read_text())
    assert record["complete"] and [c for c, e in record["configs"].items() if e["finalist"]] == \
        eval(finals[0][0].split(" (")[0])
    assert sum(r["status"] == "ok" for r in results(sweep).values()) == 2


@pytest.mark.slow
def test_another_design_is_refused_before_any_work_and_redecided_only_when_asked(tmp_path):
    """A finished sweep (3 poolings, rung 3 of 10 steps), then the grid without its finalist and rung 2:
    refused, naming both changes and the two ways on, with not a byte of the folder changed (it used to launch
    rung 2, find every job already past it, say 'Rung 2 did not complete' and replace the complete report by a
    partial one, exit 0, forever). With hydra.sweeper.redecide=true: the earlier report moves to superseded/,
    the jobs retrain from scratch to the new rung (none had a record there), the sweep completes, and
    summary.md (what `export --best` reads) ranks no configuration outside the new grid."""
    sweep = tmp_path / "sweep"
    first = train_py(*SMALL, "pooling=cls,mean,max", "hydra.sweeper.rungs=[3]", f"hydra.sweep.dir={sweep}")
    assert first.returncode == 0, first.stderr[-3000:]
    before = json.loads((sweep / "halving.json").read_text())
    [finalist] = [c for c, e in before["configs"].items() if e["finalist"]]
    rest = ",".join(sorted({"cls", "mean", "max"} - {finalist.split("=")[1]}))
    files = _sweep_files(sweep)

    refused = train_py(*SMALL, f"pooling={rest}", "hydra.sweeper.rungs=[2]", f"hydra.sweep.dir={sweep}")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    for said in (f"grid configurations removed: ['{finalist}']", "rungs: [3] -> [2]",
                 "hydra.sweep.dir=<new folder>", "hydra.sweeper.redecide=true"):
        assert said in refused.stderr, refused.stderr[-2000:]
    assert _sweep_files(sweep) == files, "a refused design changed the folder"

    again = train_py(*SMALL, f"pooling={rest}", "hydra.sweeper.rungs=[2]", "hydra.sweeper.redecide=true",
                     f"hydra.sweep.dir={sweep}")
    assert again.returncode == 0, again.stderr[-3000:]
    record = json.loads((sweep / "halving.json").read_text())
    assert record["complete"] and record["design"]["rungs"] == [2] and finalist not in record["configs"]
    moved = [json.loads(p.read_text()) for p in sweep.glob("superseded/*/halving.json")]
    assert [m["design"]["rungs"] for m in moved] == [[3]]
    for pooling in rest.split(","):
        job = _job_dir(sweep, *SMALL, f"pooling={pooling}")
        assert (job / "rungs" / "step-000002" / "metrics.json").exists()
    summary = pd.read_csv(sweep / "summary.csv")
    assert set(summary["pooling"]) == set(rest.split(",")), "a job of the earlier design is in the report"
    assert all(len(s) == len(set(s)) for s in _trained_steps(sweep).values())


@pytest.mark.slow
def test_the_first_halving_command_on_the_demo_data_finishes_with_the_default_rungs(tmp_path):
    """`python train.py -m hydra/sweeper=halving pooling=mean,cls,max head=regression mode=cross seed=1,2`
    (tiny encoder): the default rungs are fractions of the 30-step budget (4, 8, 15), so the sweep completes;
    the old default [40, 120, 360] trained every job, then 'Rung 40 did not complete', exit 0, forever."""
    sweep = tmp_path / "sweep"
    proc = train_py("-m", "hydra/sweeper=halving", *FAST, "trainer.max_epochs=3", "pooling=mean,cls,max",
                    "head=regression", "mode=cross", "seed=1,2", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((sweep / "halving.json").read_text())
    assert record["complete"] and record["rungs"] == [4, 8, 15] and record["design"]["budget_steps"] == 30
    assert sum(e["finalist"] for e in record["configs"].values()) == 1


FAST_STUDY = ROOT / "experiments" / "stsb_pooling_fast" / "runs"


def test_the_committed_fast_study_predates_designs_and_counts_as_its_own():
    """experiments/stsb_pooling_fast/runs/halving.json has no design: the one read from its fields is the
    design conf/experiment/stsb_pooling_fast.yaml composes (so its run.sh launches nothing), and an eta change
    differs."""
    from poolhead.sweep.halving import design_changes, legacy_design

    record = json.loads((FAST_STUDY / "halving.json").read_text())
    assert "design" not in record
    presets = poolhead.conf_dir() / "experiment"
    preset = yaml.safe_load((presets / "stsb_pooling_fast.yaml").read_text())["hydra"]["sweeper"]
    grid = yaml.safe_load((presets / "stsb_pooling.yaml").read_text())["hydra"]["sweeper"]["params"]
    axes = {k: v.split(",") for k, v in grid.items() if k != "seed"}
    configs = sorted(" ".join(sorted(f"{k}={v}" for k, v in zip(axes, combo, strict=True)))
                     for combo in __import__("itertools").product(*axes.values()))
    current = {"grid": {"configurations": configs, "fixed": ["experiment=stsb_pooling_fast"]},
               "seeds": grid["seed"].split(","), "rungs": preset["rungs"], "eta": preset["eta"],
               "group_by": preset["group_by"], "min_per_group": preset["min_per_group"], "all_seeds_from": 2,
               "budget_steps": 4 * 180}
    legacy = legacy_design(record, current, first_folders_exist=True)
    assert design_changes(legacy, current) == []
    assert design_changes(legacy, {**current, "eta": 2}) == ["eta: 3 -> 2"]
    assert design_changes(legacy_design(record, current, first_folders_exist=False), current) == \
        ["grid fixed: None -> ['experiment=stsb_pooling_fast']"]


@pytest.mark.slow
def test_the_committed_fast_study_run_again_launches_nothing(tmp_path):
    """Its run.sh's command into a copy of the committed records: no job launched, exit 0, the decisions
    kept."""
    import shutil

    sweep = tmp_path / "runs"
    shutil.copytree(FAST_STUDY, sweep)
    proc = train_py("-m", "experiment=stsb_pooling_fast", "trainer.enable_progress_bar=false",
                    f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Launching" not in proc.stdout + proc.stderr
    before, after = (json.loads(p.read_text()) for p in (FAST_STUDY / "halving.json", sweep / "halving.json"))
    assert after["configs"] == before["configs"] and after["design"]["rungs"] == [90, 180, 360]


def _design(**changes):
    base = {"grid": {"configurations": ["pooling=cls", "pooling=mean"], "fixed": ["encoder=tiny"]},
            "seeds": ["1"], "rungs": [3, 6], "eta": 3, "group_by": ["mode"], "min_per_group": 1,
            "all_seeds_from": 1, "budget_steps": 10}
    return {**base, **changes}


def test_a_folder_of_another_design_is_refused_and_nothing_moves_unless_redecide(tmp_path):
    """agree_on_design: rungs [3, 6] recorded, [2, 6] asked: refused naming the change and both ways on, every
    file where it was; with redecide the earlier report moves to superseded/<time>/. The bug: the design not
    compared (the run went on and replaced the complete report by a partial one), or compared without
    `eta`."""
    from poolhead.sweep.halving import DesignChanged, HalvingSweeper

    (tmp_path / "halving.json").write_text(json.dumps({"design": _design(), "complete": True}))
    (tmp_path / "summary.md").write_text("the complete report")
    files = _sweep_files(tmp_path)
    recorded = json.loads(files[tmp_path / "halving.json"])
    for asked, change in ((_design(rungs=[2, 6]), "rungs: [3, 6] -> [2, 6]"), (_design(eta=2), "eta: 3 -> 2"),
                          (_design(grid={"configurations": ["pooling=cls"], "fixed": ["encoder=tiny"]}),
                           "grid configurations removed: ['pooling=mean']")):
        with pytest.raises(DesignChanged, match=re.escape(change) + ".*Nothing was run or written.*"
                           r"hydra.sweep.dir=<new folder>.*hydra.sweeper.redecide=true"):
            HalvingSweeper(rungs=[2, 6]).agree_on_design(tmp_path, asked, recorded, True)
        assert _sweep_files(tmp_path) == files
    designs = []
    for eta in (3, 2):
        sweeper = HalvingSweeper(rungs=[3, 6], eta=eta)
        sweeper.budgets = {"pooling=cls": 10, "pooling=mean": 10}
        designs.append(sweeper.design(["pooling=cls", "pooling=mean"], ["encoder=tiny", "resume=false"],
                                      ["1"]))
    assert designs[0] == _design(), "the design of a sweeper: every part, NOT_IDENTITY overrides left out"
    assert designs[1] == _design(eta=2)
    HalvingSweeper(rungs=[3, 6]).agree_on_design(tmp_path, _design(), recorded, True)
    assert _sweep_files(tmp_path) == files, "the same design: nothing to do"
    redecider = HalvingSweeper(rungs=[2, 6], redecide=True)
    redecider.agree_on_design(tmp_path, _design(rungs=[2, 6]), recorded, True)
    [moved] = tmp_path.glob("superseded/*")
    assert sorted(p.name for p in moved.iterdir()) == ["halving.json", "summary.md"]
    assert not (tmp_path / "halving.json").exists()


def test_the_report_of_a_halving_folder_reads_only_its_designs_jobs(tmp_path):
    """A job folder of an earlier design (a configuration since dropped) stays on disk but is not a job of the
    report: summary.md, what `export --best` reads, must not rank it."""
    from poolhead.sweep.report.collect import load_jobs

    for name in ("pooling=cls,seed=1", "pooling=max,seed=1"):
        (tmp_path / name).mkdir()
        record = {"status": "ok", "metrics": {"val/spearman": 0.5}}
        (tmp_path / name / "results.json").write_text(json.dumps(record))
    assert len(load_jobs(tmp_path)) == 2, "no halving.json: every job folder"
    design_jobs = ["pooling=cls,seed=1", "pooling=mean,seed=1"]
    (tmp_path / "halving.json").write_text(json.dumps({"jobs": design_jobs}))
    assert [job["dir"].name for job in load_jobs(tmp_path)] == ["pooling=cls,seed=1"]
