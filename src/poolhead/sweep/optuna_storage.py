"""Where an Optuna study lives when several workers share it: Optuna's journal file (NFS-safe lock) or an
RDB, both with Optuna's heartbeats, so a dead worker's trial is failed and queued again by another worker. A
journal is checked before any trial: a cut last line is repaired, any other bad line refused by number."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HEARTBEAT = "poolhead:heartbeat"  # trial system attr: when its worker last said it is alive (journal only)


class SweepRefused(SystemExit):
    """A sweep that cannot start: one line naming the file or key and the way on; no trial was created."""


def journal_path(storage: str | None, sweep_dir: Path) -> Path | None:
    """The journal file of `storage` (`journal:<file>`; null: `<sweep>/optuna.journal`); None: an RDB."""
    if storage is None:
        return sweep_dir / "optuna.journal"
    return Path(storage[len("journal:"):]) if storage.startswith("journal:") else None


def open_storage(storage: str | None, sweep_dir: Path, heartbeat_interval: int = 10, grace_period: int = 60,
                 max_retry: int | None = 3) -> Any:
    """The study's storage, with heartbeats: a trial whose worker is silent for `grace_period` s is failed and
    queued again (at most `max_retry` times) by whichever worker looks next."""
    callback = retry_callback(max_retry)
    path = journal_path(storage, sweep_dir)
    if path is not None:
        return open_journal(path, heartbeat_interval, grace_period, callback)
    return open_rdb(storage, heartbeat_interval, grace_period, callback)


def open_journal(path: Path, heartbeat_interval: int, grace_period: int, callback: Any) -> Any:
    """Optuna's journal file storage, checked first, with the symlink lock (atomic on NFS too)."""
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    check_journal(path)
    backend = JournalFileBackend(str(path), lock_obj=JournalFileSymlinkLock(str(path)))
    return _heartbeat_journal_storage()(backend, heartbeat_interval, grace_period, callback)


def open_rdb(url: str, heartbeat_interval: int, grace_period: int, callback: Any) -> Any:
    """Optuna's RDBStorage with its own heartbeats; a URL it cannot open is refused in one line."""
    import optuna

    check_sqlite_folder(url)
    new_name = hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")  # optuna >= 4.9
    key = "heartbeat_stale_trial_callback" if new_name else "failed_trial_callback"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_interval,
                                              grace_period=grace_period, **{key: callback})
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise SweepRefused(f"hydra.sweeper.storage={_masked(url)}: cannot open it ({type(err).__name__}: "
                           f"{first})") from err


def retry_callback(max_retry: int | None) -> Any:
    """Optuna's callback that queues a failed trial again with its parameters (its job folder resumes)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)  # optuna >= 4.9
        return (retry or optuna.storages.RetryFailedTrialCallback)(max_retry=max_retry)


def _heartbeat_journal_storage() -> type:
    """JournalStorage taking part in Optuna's heartbeat protocol (`BaseHeartbeat`, which RDBStorage implements
    and the journal does not yet: optuna#6615); the heartbeat is a trial system attr."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat  # the interface a storage implements for heartbeats
    from optuna.trial import TrialState

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        def __init__(self, backend: Any, heartbeat_interval: int, grace_period: int, callback: Any) -> None:
            super().__init__(backend)
            self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
            self.callback = callback

        def record_heartbeat(self, trial_id: int) -> None:
            with contextlib.suppress(UpdateFinishedTrialError):  # judged dead elsewhere: its retry goes on
                self.set_trial_system_attr(trial_id, HEARTBEAT, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now = time.time()
            running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            return [t._trial_id for t in running if now - last_sign_of_life(t) > self.grace_period]

        def get_heartbeat_interval(self) -> int:
            return self.heartbeat_interval

        def get_heartbeat_stale_trial_callback(self) -> Any:
            return self.callback

        def get_failed_trial_callback(self) -> Any:  # its name before optuna 4.9
            return self.callback

    return HeartbeatJournalStorage


def last_sign_of_life(trial: Any) -> float:
    """When a running trial's worker last showed it is alive: its newest heartbeat or its start (a retry
    inherits its predecessor's heartbeat attr; a trial from before heartbeats has none)."""
    started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
    return max(trial.system_attrs.get(HEARTBEAT, 0.0), started)


def _masked(url: str) -> str:
    """An RDB URL without its password."""
    head, sep, tail = url.partition("@")
    return f"{head.rsplit(':', 1)[0]}:***@{tail}" if sep and head.count(":") >= 2 else url


def check_sqlite_folder(url: str) -> None:
    """sqlite:///<file>: its folder must be writable (SQLite writes its own journal beside the file)."""
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return
    folder = Path(url[len("sqlite:///"):]).parent
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise SweepRefused(f"hydra.sweeper.storage={url}: cannot write to its folder {folder}; no trial was "
                           "started. Use a folder you can write")


def check_journal(path: Path) -> None:
    """Before any trial: the journal and its folder are writable (workers write it and its lock file there),
    and every line is an Optuna operation (`check_journal_lines`, under the lock every writer holds)."""
    from optuna.storages.journal import JournalFileSymlinkLock

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SweepRefused(f"{path}: cannot create its folder ({err.strerror or err}); no trial was "
                           "started") from err
    for target, what in ((path.parent, "its folder is"), (path, "it is")):
        if target.exists() and not os.access(target, os.W_OK):
            raise SweepRefused(f"{path}: {what} read-only (workers write the journal and its lock file "
                               "there); no trial was started. Make it writable, or use another "
                               "hydra.sweeper.storage=journal:<file>")
    if not path.exists() or not path.stat().st_size:
        return
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()  # held by every writer while it appends: a line without its end now was left by the dead
    try:
        check_journal_lines(path)
    finally:
        lock.release()


def check_journal_lines(path: Path) -> None:
    """A cut last line (a worker killed while appending, a full disk) is an operation that never took effect
    (every reader skips it): removed, a copy of the file kept. Any other bad line is refused by number:
    Optuna numbers trials by their place in the file, so deleting a line could move later operations."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):
        try:
            op = json.loads(line)
        except ValueError:
            op = None
        if not isinstance(op, dict) or "op_code" not in op:
            raise SweepRefused(f"{path}, line {number}: not an Optuna journal operation ({line[:60]!r}); "
                               "no trial was started. Optuna cannot read past it: restore a backup or start "
                               "a new study (another hydra.sweep.dir or hydra.sweeper.study_name); deleting "
                               "the line would shift the trial of every later operation")
    if lines[-1]:
        copy = path.with_name(f"{path.name}.cut-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(path, copy)
        with open(path, "r+b") as handle:
            handle.truncate(len(data) - len(lines[-1]))
            os.fsync(handle.fileno())
        log.warning("%s, line %d: cut short (%d bytes: a worker killed while writing, or a full disk) and "
                    "removed; every reader had skipped it, so no trial changes. The file as it was: %s", path,
                    len(lines), len(lines[-1]), copy)
