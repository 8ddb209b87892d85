"""No interruption, full disk or second process loses or doubles work (issue 32): checkpoints and records are written
atomically, a truncated last.ckpt in a sweep is set aside and the job starts over. Each test fails on the code before
issue 32."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import FAST, ROOT, compose_cfg
from test_app import train_py
from test_sweep import results

import poolhead.run.record
from poolhead.run.train import run


def test_a_checkpoint_write_that_fails_midway_leaves_the_previous_checkpoints_and_the_run_resumable(
        tmp_path, monkeypatch):
    """A full disk while a checkpoint is written, as a temp file copied over the old one from another file system
    (Lightning's writer) or written beside it (poolhead's): the previous last.ckpt and best.ckpt stay whole."""
    folder = tmp_path / "run"
    first = run(compose_cfg([*FAST, "keep_last_checkpoint=true"], folder))
    assert first["status"] == "ok", first["error"]
    checkpoints = folder / "checkpoints"
    before = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
    assert set(before) == {"best.ckpt", "last.ckpt"}

    def copy_that_runs_out_of_space(src, dst, *args, **kwargs):  # shutil.move across file systems is a copy
        if not str(dst).endswith(".ckpt"):
            return move(src, dst, *args, **kwargs)
        data = open(src, "rb").read()
        with open(dst, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    def write_that_runs_out_of_space(fd, data):
        if len(data) < 1 << 20:  # results.json and job.json still fit
            return write_all(fd, data)
        write_all(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    move, write_all = shutil.move, getattr(poolhead.run.record, "_write_all", None)
    monkeypatch.setattr(shutil, "move", copy_that_runs_out_of_space)
    monkeypatch.setattr(poolhead.run.record, "_write_all", write_that_runs_out_of_space)
    failed = run(compose_cfg([*FAST, "keep_last_checkpoint=true", "trainer.max_epochs=2", "ckpt_path=last"], folder))
    assert failed["status"] == "failed" and "No space left" in failed["error"], failed["error"]
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == before, "a checkpoint was cut, or a temp left"

    monkeypatch.undo()
    resumed = run(compose_cfg([*FAST, "keep_last_checkpoint=true", "trainer.max_epochs=2", "ckpt_path=last"], folder))
    assert resumed["status"] == "ok", resumed["error"]


KILLED_MID_WRITE = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from conftest import FAST, compose_cfg
import poolhead.run.record as record
from poolhead.run.train import run

write_all = record._write_all
def killed_halfway(fd, data):  # a checkpoint (megabytes; results.json and job.json are small): half, then kill -9
    if len(data) >= 1 << 20:
        write_all(fd, data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    write_all(fd, data)
record._write_all = killed_halfway
run(compose_cfg([*FAST, "keep_last_checkpoint=true", "trainer.max_epochs=2", "ckpt_path=last"], Path({folder!r})))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs /dev/shm: a file system apart from the temp folder")
def test_a_kill_during_a_checkpoint_write_on_another_file_system_leaves_the_run_resumable():
    """kill -9 halfway through writing a checkpoint, the run folder on a tmpfs apart from the system temp folder
    (where Lightning's writer moved its temp file from, a copy over the old file): the previous checkpoints stay
    whole and the run resumes and finishes."""
    folder = Path(tempfile.mkdtemp(dir="/dev/shm")) / "run"
    try:
        first = run(compose_cfg([*FAST, "keep_last_checkpoint=true"], folder))
        assert first["status"] == "ok", first["error"]
        before = {p.name: p.read_bytes() for p in (folder / "checkpoints").glob("*.ckpt")}
        script = KILLED_MID_WRITE.format(tests=str(ROOT / "tests"), folder=str(folder))
        killed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        after = {p.name: p.read_bytes() for p in (folder / "checkpoints").glob("*.ckpt")}
        assert after == before, "a checkpoint was cut by the kill"
        resumed = run(compose_cfg([*FAST, "keep_last_checkpoint=true", "trainer.max_epochs=2", "ckpt_path=last"],
                                  folder))
        assert resumed["status"] == "ok" and resumed["timing"]["train_steps"] == 2 * first["timing"]["train_steps"]
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    poolhead.run.record.atomic_write(path, '{"old": 1}')
    assert json.loads(path.read_text()) == {"old": 1} and oct(path.stat().st_mode & 0o777) != "0o600"

    def fail(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(poolhead.run.record, "_write_all", fail)
    try:
        poolhead.run.record.atomic_write(path, '{"new": 2}')
    except OSError:
        pass
    assert json.loads(path.read_text()) == {"old": 1} and [p.name for p in tmp_path.iterdir()] == ["results.json"]


@pytest.mark.slow
def test_a_truncated_last_ckpt_in_a_sweep_job_is_set_aside_and_the_job_trains(tmp_path):
    sweep = tmp_path / "sweep"
    command = ["-m", "seed=1", *FAST, "keep_last_checkpoint=true", "test=false", f"hydra.sweep.dir={sweep}"]
    first = train_py(*command)
    assert first.returncode == 0, first.stderr[-3000:]
    (job,) = [p.parent for p in sweep.glob("*/results.json")]
    last = job / "checkpoints" / "last.ckpt"
    cut = last.read_bytes()[: 100_000]
    last.write_bytes(cut)  # what a killed save or a full disk left
    (job / "results.json").unlink()

    again = train_py(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert "its last.ckpt is unreadable" in log and "trains from scratch" in log, log[-3000:]
    assert results(sweep)[job.name]["status"] == "ok"
    (kept,) = job.glob("superseded/*/checkpoints/last.ckpt")
    assert kept.read_bytes() == cut, "the damaged checkpoint is kept, not deleted"
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]


def start_train_py(*args: str, **env_set: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", **env_set}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(pattern: str, folder: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not list(folder.glob(pattern)):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no {pattern} after {seconds} s"
        time.sleep(0.05)


LONG = [o for o in FAST if not o.startswith("trainer.max_epochs")]


def test_sigterm_ends_a_single_run_non_zero_with_a_record_that_says_so(tmp_path):
    folder = tmp_path / "run"
    proc = start_train_py(*LONG, "trainer.max_epochs=200", f"hydra.run.dir={folder}")
    wait_for("checkpoints/last.ckpt", folder, proc)  # training, past its first epoch
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, err[-3000:]
    record = json.loads((folder / "results.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("interrupted"), record["error"]


def test_sigterm_ends_a_sweep_non_zero_after_reporting_what_finished(tmp_path):
    sweep = tmp_path / "sweep"
    proc = start_train_py("-m", "trainer.max_epochs=1,200", *LONG, "test=false", f"hydra.sweep.dir={sweep}")
    wait_for("*max_epochs=200*/checkpoints/last.ckpt", sweep, proc)  # the first job done, the second training
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, err[-3000:]
    assert "sweep interrupted: 1 finished job(s) reported in" in err, err[-3000:]
    summary = (sweep / "summary.md").read_text()
    assert "max_epochs" in summary or "ok" in summary
    statuses = sorted(r["status"] for r in results(sweep).values())
    assert statuses == ["failed", "ok"]


# a pause after the data and the model are built, before fit: Lightning's SIGTERM handler is not installed yet
NAP = ["++logger.nap._target_=time.sleep", "++logger.nap._args_=[60]"]


def wait_for_line(text: str, log: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not (log.exists() and text in log.read_text()):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no {text!r} in {log} after {seconds} s"
        time.sleep(0.05)


def test_sigterm_outside_fit_ends_a_run_non_zero_with_a_record_that_says_so(tmp_path):
    folder = tmp_path / "run"
    proc = start_train_py(*FAST, *NAP, f"hydra.run.dir={folder}")
    wait_for_line("val: read", folder / "train.log", proc)
    time.sleep(1.0)  # into the nap
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, (proc.returncode, err[-3000:])  # not -15: killed with no record
    record = json.loads((folder / "results.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("interrupted"), record["error"]
    assert not (folder / "checkpoints").exists()  # it was stopped before fit


def test_sigterm_outside_fit_ends_a_sweep_non_zero_with_its_report(tmp_path):
    sweep = tmp_path / "sweep"
    proc = start_train_py("-m", "seed=1", *FAST, *NAP, f"hydra.sweep.dir={sweep}")
    wait_for("*/train.log", sweep, proc)
    (log,) = sweep.glob("*/train.log")
    wait_for_line("val: read", log, proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, (proc.returncode, err[-3000:])
    assert "sweep interrupted: 0 finished job(s) reported in" in err, err[-3000:]
    assert (sweep / "summary.md").exists()


def submitit_processes(sweep: Path, module: str = "submitit.core._submit") -> list[int]:
    """The pids of `python -m <module> <a folder of sweep>`: by default the workers running `sweep`'s jobs."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # ended meanwhile
        if module in args and any(str(sweep) in arg for arg in args):
            pids.append(int(cmdline.parent.name))
    return pids


def stop_submitit(sweep: Path, proc: subprocess.Popen) -> None:
    """Leave nothing of a submitit sweep running, even after a failed test: the sweep, its controller, its workers."""
    proc.kill()
    for pid in submitit_processes(sweep) + submitit_processes(sweep, "submitit.local._local"):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["time limit", "pre-emption"])
def test_a_submitit_job_stopped_by_the_scheduler_is_requeued_and_continues_from_its_own_last_ckpt(tmp_path, stop):
    """hydra/launcher=submitit_local. Time limit: 1 minute, so submitit signals the job (USR2) 30 s in. Pre-emption:
    USR2 sent to the job well inside its limit, as Slurm signals a pre-empted job. Either way the launcher's checkpoint
    hook requeues it, and the new process resumes its last.ckpt, logs each step once and ends ok. The first attempt
    stalls after epoch 0 (tests/stall.py); a resume from scratch would stall again until no requeue is left."""
    sweep = tmp_path / "sweep"
    # submitit: a signal before 80% of the limit is a pre-emption; the fresh attempt's stall outlasts the limit
    minutes, stall_seconds = {"time limit": (1, 300), "pre-emption": (60, 60)}[stop]
    limit = ["hydra/launcher=submitit_local", f"hydra.launcher.timeout_min={minutes}",
             "+hydra.launcher.max_num_timeout=2"]
    stall = ["++callbacks.stall._target_=stall.StallFresh", f"++callbacks.stall.seconds={stall_seconds}"]
    proc = start_train_py("-m", *limit, "seed=1", *LONG, "trainer.max_epochs=3", "trainer.log_every_n_steps=1",
                          "test=false", *stall, f"hydra.sweep.dir={sweep}",
                          PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])))
    try:
        if stop == "pre-emption":
            wait_for("*/checkpoints/last.ckpt", sweep, proc)  # epoch 0 done: the job stalls at epoch 1's first batch
            time.sleep(2.0)
            (worker,) = submitit_processes(sweep)
            os.kill(worker, signal.SIGUSR2)
        _, err = proc.communicate(timeout=400)
    finally:
        stop_submitit(sweep, proc)
    assert proc.returncode == 0, err[-3000:]
    ((name, record),) = results(sweep).items()
    log = (sweep / name / "train.log").read_text()  # submitit's own lines too: the scheduler stopped an attempt
    said = {"time limit": "this job is timed-out", "pre-emption": "this job is preempted"}[stop]
    assert "Caught signal SIGUSR2" in log and said in log and "Requeued job" in log, log[-3000:]
    last = sweep / name / "checkpoints" / "last.ckpt"
    assert f"Resuming {sweep / name} from its own {last}" in log, log[-3000:]  # poolhead's choice, and Lightning's:
    assert f"Restored all states from the checkpoint at {last}" in log, log[-3000:]
    assert record["status"] == "ok", record["error"]
    steps = 3 * -(-record["data"]["train"] // 32)
    assert record["timing"]["train_steps"] == steps
    metrics = pd.read_csv(sweep / name / "csv" / "metrics.csv")
    train_rows = metrics.dropna(subset=["train/loss"])
    assert sorted(train_rows["step"]) == list(range(steps)), "each step logged once, none lost"
    assert sorted(metrics.dropna(subset=["val/loss"])["epoch"]) == [0, 1, 2], "each epoch validated once"
    summary = pd.read_csv(sweep / "summary.csv")
    assert summary[["status", "train_steps"]].values.tolist() == [["ok", steps]] and (sweep / "summary.md").exists()
    worker_log = "".join(f.read_text() for f in sweep.glob(".submitit/*/*.err"))
    assert "Caught signal SIGUSR2" in worker_log and "sweep interrupted" not in worker_log, "a requeue is not a stop"


@pytest.mark.slow
def test_sigterm_to_a_submitit_job_ends_its_sweep_non_zero_with_a_report_not_a_traceback(tmp_path):
    """A job of submitit's stopped by SIGTERM (scancel, or a cluster that pre-empts with SIGTERM alone): its record says
    interrupted, and the sweep reports it and exits 1, instead of a worker that exits without a result and a launcher
    that dies with UncompletedJobError."""
    sweep = tmp_path / "sweep"
    proc = start_train_py("-m", "hydra/launcher=submitit_local", "seed=1", *LONG, "trainer.max_epochs=200",
                          "test=false", f"hydra.sweep.dir={sweep}")
    try:
        wait_for("*/checkpoints/last.ckpt", sweep, proc)  # training, past its first epoch
        (worker,) = submitit_processes(sweep)
        os.kill(worker, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        stop_submitit(sweep, proc)
    assert proc.returncode == 1 and "1 of 1 jobs failed" in err, err[-3000:]
    assert "Traceback" not in err and "UncompletedJobError" not in err, err[-3000:]
    ((record),) = results(sweep).values()
    assert record["status"] == "failed" and record["error"].startswith("interrupted"), record["error"]
    assert "interrupted" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_a_second_run_into_a_finished_runs_folder_keeps_the_first(tmp_path):
    folder = tmp_path / "run"
    first = train_py(*FAST, f"hydra.run.dir={folder}")
    assert first.returncode == 0, first.stderr[-3000:]
    earlier = {name: (folder / name).read_bytes() for name in ("results.json", "predictions.csv",
                                                                "checkpoints/best.ckpt")}
    second = train_py(*FAST, "seed=7", f"hydra.run.dir={folder}")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "a new run (no ckpt_path) into the folder of an earlier run" in second.stdout + second.stderr
    (kept,) = (folder / "superseded").iterdir()
    assert {name: (kept / name).read_bytes() for name in earlier} == earlier, "the first run's outputs, kept whole"
    assert json.loads((folder / "results.json").read_text())["config"]["seed"] == 7


@pytest.mark.slow
def test_two_processes_on_one_sweep_train_each_job_once(tmp_path):
    sweep = tmp_path / "sweep"
    command = ["-m", "seed=1,2,3", *LONG, "trainer.max_epochs=3", "trainer.log_every_n_steps=1", "test=false",
               f"hydra.sweep.dir={sweep}"]
    procs = [start_train_py(*command) for _ in range(2)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    log = "".join(out + err for out, err in outputs)
    assert log.count("is claimed by another process") >= 1, "the two processes never met on a job"
    assert log.count("Skipped:") == 3, "each job trained by one process, skipped by the other"
    done = results(sweep)
    assert len(done) == 3 and all(r["status"] == "ok" for r in done.values())
    for job in done:
        train_rows = pd.read_csv(sweep / job / "csv" / "metrics.csv").dropna(subset=["train/loss"])
        assert not train_rows["step"].duplicated().any(), f"{job}: steps logged twice"
        assert len(train_rows) == 3 * -(-done[job]["data"]["train"] // 32), f"{job}: 3 epochs, each step once"


def test_claiming_a_job_removes_the_temp_files_a_killed_writer_left(tmp_path):
    """kill -9 during atomic_write leaves `.best.ckpt.<random>.tmp` beside the checkpoint; the next process to claim
    the job (the only writer there from then on) removes it, and nothing else."""
    from poolhead.run.claim import claim_job, release_job

    (tmp_path / "checkpoints").mkdir()
    stale = [tmp_path / "checkpoints" / ".best.ckpt.q8s5g7pz.tmp", tmp_path / ".results.json.x1y2.tmp"]
    kept = [tmp_path / "checkpoints" / "last.ckpt", tmp_path / "results.json"]
    for path in stale + kept:
        path.write_bytes(b"x")
    try:
        assert claim_job(tmp_path) is None
    finally:
        release_job()
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
