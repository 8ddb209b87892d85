"""One Optuna search, many workers (issue 44): N processes started with the same command on one storage share
the work, each trial trains once, no worker fails another's live trial, a dead worker's trial is retried from
its job's last.ckpt, a cut journal is repaired and a bad one, a read-only folder or a changed search space
refused in one line before any trial starts."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import FAST, ROOT, TEST_CACHE, compose_cfg
from omegaconf import OmegaConf
from test_app import train_py

from poolhead.core.direction import monitor_mode
from poolhead.data.sources import DEMO_DIR
from poolhead.sweep import optuna_storage
from poolhead.sweep.optuna_storage import SweepRefused, open_storage
from poolhead.sweep.optuna_sweep import study_direction
from poolhead.sweep.report import write_report

optuna = pytest.importorskip("optuna")
STEPS = 10  # one epoch of the demo data's 300 training rows in batches of 32
SEARCH = ["optim.head_lr=choice(0.001)", "optim.warmup_ratio=choice(0.1)", "head.dropout=choice(0.1)",
          "pooling=choice(mean)", "head=choice(regression)"]


def command(sweep: Path, *extra: str) -> list[str]:
    """A small search on the tiny encoder and the demo data, every trained step logged (metrics.csv counts
    them)."""
    return ["-m", "hparams_search=stsb_optuna", "data=demo", f"data.dir={DEMO_DIR}", *FAST, "test=false",
            "trainer.log_every_n_steps=1", *SEARCH, "hydra.sweeper.rungs=[]",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=4", f"hydra.sweep.dir={sweep}",
            *extra]


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "POOLHEAD_CACHE": TEST_CACHE,
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def load(sweep: Path, name: str = "stsb_optuna", url: str | None = None):
    """The study as Optuna itself reads it: the sweep's journal file, or the RDB at `url`."""
    storage = url or optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(sweep / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def trained_steps(sweep: Path) -> dict[str, list[int]]:
    """Per job folder, the steps logged with a training loss: a step trained twice appears twice."""
    return {log.parts[-3]: pd.read_csv(log).dropna(subset=["train/loss"])["step"].tolist()
            for log in sweep.glob("*/csv/metrics.csv")}


def exit_times(procs, seconds=600) -> list[float]:
    """When each process ended (time.time()), polled side by side."""
    ended, deadline = {}, time.monotonic() + seconds
    while len(ended) < len(procs) and time.monotonic() < deadline:
        ended.update({i: time.time() for i, p in enumerate(procs) if i not in ended and p.poll() is not None})
        time.sleep(0.05)
    return [ended.get(i, float("inf")) for i in range(len(procs))]


def wait_for(condition, procs, seconds=300):
    deadline = time.monotonic() + seconds
    while not condition() and all(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_three_workers_with_the_same_command_share_one_study_and_train_each_trial_once(tmp_path, kind):
    """Three processes (three hosts) with one command on one journal (or one RDB), the second and third
    started while the first trains its trial, monitor left to the task: 4 trials in all, each trained once (10
    steps logged once each), none FAIL, all exit 0, each names the same best trial, which the results file and
    the job records agree on. Catches a worker that fails every RUNNING trial at start (the live one of
    another worker: it was retried, the first worker crashed), n_trials counted per worker (6 trials), a
    worker that ends before the others' trials end."""
    sweep = tmp_path / "sweep"
    url = f"sqlite:///{tmp_path}/study.db" if kind == "sqlite" else None
    args = command(sweep, "optim.lr=interval(0.0005,0.004)", "hydra.sweeper.n_trials=4", "monitor=null",
                   *([f"hydra.sweeper.storage={url}"] if url else []))
    procs = [start(args, tmp_path / "w0.log")]
    wait_for(lambda: list(sweep.glob("*/job.json")), procs)  # worker 0 is training its first trial
    procs += [start(args, tmp_path / f"w{i}.log") for i in (1, 2)]
    ended = exit_times(procs)
    codes = [p.wait(timeout=10) for p in procs]
    logs = [(tmp_path / f"w{i}.log").read_text() for i in range(3)]
    assert codes == [0, 0, 0], [log[-2000:] for log in logs]

    trials = load(sweep, url=url).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    last_trial_end = max(t.datetime_complete.timestamp() for t in trials)
    assert min(ended) >= last_trial_end, "a worker ended before the others' trials did"
    steps = trained_steps(sweep)
    assert len(steps) == 4 and all(s == list(range(STEPS)) for s in steps.values()), steps
    best_lines = {line.split("] ", 1)[1] for log in logs for line in log.splitlines() if "Best trial" in line}
    assert len(best_lines) == 1, best_lines
    done = [json.loads(p.read_text()) for p in sweep.glob("*/results.json")]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(r["metrics"]["val/spearman"] for r in done)
    assert f"Best trial {best['best_trial']}:" in best_lines.pop()
    assert len(pd.read_csv(sweep / "summary.csv")) == 4
    written = {name: (sweep / name).read_bytes() for name in ("summary.md", "summary.csv")}
    write_report(sweep)  # what any worker ending after the study is complete writes: the same bytes
    assert {name: (sweep / name).read_bytes() for name in written} == written


@pytest.mark.slow
def test_a_search_killed_during_its_last_trial_resumes_that_trial_and_completes(tmp_path):
    """kill -9 in the second epoch of the last of 2 trials (BruteForce, so the sampler has tried every point),
    then the same command: the killed trial is retried once its heartbeat is stale, its job resumes from
    last.ckpt (each step trained once), the study ends with 2 complete trials, exit 0; a third run trains
    nothing. Catches the re-run dying on `Study.stop` and the run after it exiting 0 with the trial never
    retried."""
    sweep = tmp_path / "sweep"
    args = command(sweep, "optim.lr=choice(0.001,0.002)", "hydra.sweeper.n_trials=2", "trainer.max_epochs=2",
                   "hydra.sweeper.sampler._target_=optuna.samplers.BruteForceSampler",
                   "~hydra.sweeper.sampler.n_startup_trials")
    procs = [start(args, tmp_path / "killed.log")]
    wait_for(lambda: len(list(sweep.glob("*/checkpoints/last.ckpt"))) == 2, procs)  # the last trial's epoch 1
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    assert "RUNNING" in [t.state.name for t in load(sweep).trials]

    again = train_py(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming" in again.stdout + again.stderr
    trials = load(sweep).trials
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "COMPLETE", "FAIL"]
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") is not None)
    assert trials[retry.system_attrs["failed_trial"]].state.name == "FAIL" and retry.state.name == "COMPLETE"
    steps = trained_steps(sweep)
    assert len(steps) == 2 and all(s == list(range(2 * STEPS)) for s in steps.values()), steps

    last = train_py(*args)
    assert last.returncode == 0 and "Launching" not in last.stdout + last.stderr, last.stderr[-3000:]
    assert len(load(sweep).trials) == 3


def test_a_changed_search_space_is_refused_in_one_line_before_any_trial(tmp_path):
    """A stored study asked lr from choice(0.001, 0.002); the same folder run with choice(0.001, 0.003): one
    line naming the key, exit 1, no job started, no trial left RUNNING. Catches the 60-line traceback from
    inside `study.ask` that left its new trial RUNNING."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    study = optuna.create_study(study_name="stsb_optuna", direction="maximize",
                                storage=open_storage(None, sweep))
    study.add_trial(optuna.create_trial(params={"optim.lr": 0.001}, value=0.5, distributions={
        "optim.lr": optuna.distributions.CategoricalDistribution([0.001, 0.002])}))
    proc = train_py(*command(sweep, "optim.lr=choice(0.001,0.003)", "hydra.sweeper.n_trials=2"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    last_line = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr and last_line.startswith("optim.lr: the search space changed")
    assert [t.state.name for t in load(sweep).trials] == ["COMPLETE"]
    assert not list(sweep.glob("*/job.json"))


def _study_with_trials(path: Path, n: int):
    study = optuna.create_study(study_name="s", storage=open_storage(f"journal:{path}", path.parent))
    for i in range(n):
        study.add_trial(optuna.create_trial(params={"x": i}, value=float(i),
                                            distributions={"x": optuna.distributions.IntDistribution(0, 9)}))
    return study


def test_a_journal_cut_mid_line_is_repaired_with_a_copy_and_never_appended_onto(tmp_path):
    """A worker killed while appending leaves a last line without its end. Opening the storage keeps a copy
    and removes that line, so the next operation starts a line of its own and the study reads back whole.
    Catches appending onto the cut line: every later read died with a JSONDecodeError naming no file."""
    path = tmp_path / "optuna.journal"
    _study_with_trials(path, 2)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"op_code": 5, "worker_id": "x", "trial_id": 0, "par')
    study = optuna.load_study(study_name="s", storage=open_storage(f"journal:{path}", tmp_path))
    study.add_trial(optuna.create_trial(params={"x": 7}, value=7.0,
                                        distributions={"x": optuna.distributions.IntDistribution(0, 9)}))
    again = optuna.load_study(study_name="s", storage=open_storage(f"journal:{path}", tmp_path))
    assert [t.params["x"] for t in again.trials] == [0, 1, 7]
    copies = list(tmp_path.glob("optuna.journal.cut-*"))
    assert len(copies) == 1 and copies[0].read_bytes().endswith(b'"par')
    assert path.read_bytes().startswith(whole)


CUT_THEN_APPENDED = b'{"op_code": 5, "trial_id": 0, "par{"op_code": 4}\n'


@pytest.mark.parametrize("garbage", [b"not json\n", CUT_THEN_APPENDED, b"[]\n"])
def test_a_garbage_journal_is_refused_naming_the_file_and_line(tmp_path, garbage):
    """A line that is not an Optuna operation (a stray file, a cut line another one was appended onto):
    refused naming the file and the line, the file unchanged. Catches Optuna's JSONDecodeError or KeyError
    naming nothing."""
    path = tmp_path / "optuna.journal"
    _study_with_trials(path, 1)
    path.write_bytes(path.read_bytes() + garbage)
    before = path.read_bytes()
    with pytest.raises(SweepRefused, match=rf"{path}, line 3: not an Optuna journal operation"):
        open_storage(f"journal:{path}", tmp_path)
    assert path.read_bytes() == before


def test_a_read_only_storage_folder_is_refused_naming_it(tmp_path, monkeypatch):
    """A journal in a folder the worker cannot write (tests run as root, who writes anywhere: os.access
    answers as for a user): refused naming the file, before Optuna's lock file fails with a bare
    PermissionError."""
    path = tmp_path / "ro" / "optuna.journal"
    path.parent.mkdir()
    monkeypatch.setattr(optuna_storage.os, "access", lambda p, mode: Path(p) != path.parent)
    with pytest.raises(SweepRefused, match=rf"{path}: its folder is read-only"):
        open_storage(f"journal:{path}", tmp_path)
    with pytest.raises(SweepRefused, match="cannot write to its folder"):
        open_storage(f"sqlite:///{path.parent}/optuna.db", tmp_path)


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_only_the_trial_of_a_silent_worker_is_failed_and_queued_again(tmp_path, kind):
    """Two RUNNING trials, one with Optuna's heartbeat thread beating, one whose worker is gone: after the
    grace period the silent one is FAIL and queued again with its parameters, the live one is untouched.
    Catches failing every RUNNING trial (what killed the live trials of other workers), and a storage without
    heartbeats."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    storage = f"journal:{tmp_path}/optuna.journal" if kind == "journal" else f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=open_storage(storage, tmp_path, heartbeat_interval=1,
                                                                     grace_period=2))
    space = {"x": optuna.distributions.IntDistribution(0, 9)}
    live, dead = study.ask(space), study.ask(space)
    with get_heartbeat_thread(dead._trial_id, study._storage):  # it beat once, then its worker died
        pass
    with get_heartbeat_thread(live._trial_id, study._storage):
        time.sleep(3.5)
        optuna.storages.fail_stale_trials(study)
        states = {t.number: t.state.name for t in study.trials}
    assert states == {live.number: "RUNNING", dead.number: "FAIL", 2: "WAITING"}
    retry = study.trials[2]
    assert retry.params == dead.params and retry.system_attrs["failed_trial"] == dead.number


def test_the_direction_defaults_from_monitor_and_from_the_task_when_monitor_is_null(tmp_path):
    """hydra/sweeper=poolhead_optuna with monitor null (the task decides it): the sweeper's config resolves
    and the study maximizes, as every task's main metric is better higher; val/loss minimizes. Catches the
    traceback of a search with its own space and no monitor=, and a direction that disagrees with the jobs'
    own monitor_mode."""
    from poolhead.core.task import MAIN_METRIC

    cfg = compose_cfg(["hydra/sweeper=poolhead_optuna", "monitor=null"], tmp_path, hydra=True)
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    assert study_direction(sweeper["direction"], cfg.monitor) == "maximize"
    assert {monitor_mode(f"val/{metric}") for metric in MAIN_METRIC.values()} == {"max"}
    assert study_direction(None, "val/loss") == "minimize" and study_direction(None, "val/mae") == "minimize"
    with pytest.raises(SweepRefused, match="hydra.sweeper.direction=up"):
        study_direction("up", None)


def test_a_worker_started_before_another_still_exits_1_for_the_job_it_saw_fail(tmp_path):
    """Workers touch one `.multirun_started` marker: the first one's jobs must count from its own start, not
    from the last worker's. Catches a worker that read the marker's time at its end and exited 0 over a failed
    job."""
    from poolhead.sweep.jobs import ExitStatusCallback

    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    first = ExitStatusCallback()
    first.on_multirun_start(config)
    time.sleep(0.05)
    job = tmp_path / "optim.lr=-1"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "hydra.yaml").write_text("{}\n")
    (job / "results.json").write_text(json.dumps({"status": "failed", "error": "optim.lr=-1: below 0"}))
    time.sleep(0.05)
    ExitStatusCallback().on_multirun_start(config)  # a second worker joins the sweep
    with pytest.raises(SystemExit) as stop:
        first.on_multirun_end(config)
    assert stop.value.code == 1
