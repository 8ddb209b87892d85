"""An Optuna search whose trials are poolhead jobs pruned at rungs: `python train.py -m hparams_search=...`.
Each trial is a Hydra job stopped at every rung (`stop_at_step`), reported with `trial.report` and continued from its
own last.ckpt unless Optuna's pruner prunes it; the study lives in `storage`, so the same command continues it, and
the same command on N machines shares it (docs/sweeps.md, "Many workers: Optuna"). Replaces hydra-optuna-sweeper,
which cannot prune (hydra#1954) and requires optuna < 3."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

from poolhead.core.direction import monitor_mode
from poolhead.run.record import atomic_write
from poolhead.sweep.halving import _PENDING, LaunchingSweep, check_rungs, read_score

log = logging.getLogger(__name__)

HEARTBEAT = "poolhead:heartbeat"  # trial system attr: the time its worker last said it is alive (journal storage)
DIRECTIONS = ("maximize", "minimize")


class SweepRefused(SystemExit):
    """A sweep that cannot start: one line naming the file or key and the way on; no trial was created."""


def distribution(override: Any) -> Any:
    """An Optuna distribution from a Hydra sweep override: choice(a, b) / range(1, 5) -> categorical,
    interval(lo, hi) -> float (int when both ends are ints), tag(log, interval(...)) -> log scale."""
    import optuna
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    value = override.value()
    if isinstance(value, ChoiceSweep):
        return optuna.distributions.CategoricalDistribution(list(value.list))
    if isinstance(value, RangeSweep):
        return optuna.distributions.CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return optuna.distributions.IntDistribution(value.start, value.end, log=log_scale)
        return optuna.distributions.FloatDistribution(value.start, value.end, log=log_scale)
    raise ValueError(f"{override.input_line}: not a search space (choice(...), range(...), interval(...))")


def study_direction(direction: str | None, monitor: str | None) -> str:
    """The study's direction: as set, else from `monitor`'s metric; `monitor: null` means the task's main metric
    (Spearman, accuracy, micro F1: `poolhead.core.task.MAIN_METRIC`), which is higher-is-better for every task.
    Each job's record is checked against it (`check_direction`), as the halving sweeper reads it from there."""
    if direction is not None:
        if direction not in DIRECTIONS:
            raise SweepRefused(f"hydra.sweeper.direction={direction}: expected maximize, minimize or null (from "
                               "monitor)")
        return direction
    return "minimize" if monitor and monitor_mode(monitor) == "min" else "maximize"


def check_direction(results: dict[str, Any], direction: str, job_dir: Path) -> None:
    """A job's own record of which way its metric is better must agree with the study's direction."""
    mode = results.get("monitor_mode")
    if mode and {"max": "maximize", "min": "minimize"}[mode] != direction:
        raise SweepRefused(f"{job_dir}/results.json: monitor {results.get('monitor')} is better when "
                           f"{'higher' if mode == 'max' else 'lower'}, but hydra.sweeper.direction={direction}; set "
                           "hydra.sweeper.direction=null to follow the metric")


# ---- storages -------------------------------------------------------------------------------------------------


def _heartbeat_journal_storage() -> type:
    """JournalStorage with Optuna's heartbeat protocol (BaseHeartbeat, as RDBStorage has it; the journal lacks it,
    optuna#6615): a worker's heartbeat is a trial system attr, so `fail_stale_trials` and the retry callback work."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat  # the documented way a storage takes part in heartbeats
    from optuna.trial import TrialState

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        def __init__(self, backend: Any, heartbeat_interval: int, grace_period: int, callback: Any) -> None:
            super().__init__(backend)
            self.heartbeat_interval, self.grace_period, self.callback = heartbeat_interval, grace_period, callback

        def record_heartbeat(self, trial_id: int) -> None:
            with contextlib.suppress(UpdateFinishedTrialError):  # judged dead elsewhere: its retry reads our job
                self.set_trial_system_attr(trial_id, HEARTBEAT, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now = time.time()
            return [t._trial_id for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
                    if now - last_sign_of_life(t) > self.grace_period]

        def get_heartbeat_interval(self) -> int:
            return self.heartbeat_interval

        def get_heartbeat_stale_trial_callback(self) -> Any:
            return self.callback

        def get_failed_trial_callback(self) -> Any:  # its name before optuna 4.9
            return self.callback

    return HeartbeatJournalStorage


def last_sign_of_life(trial: Any) -> float:
    """When a running trial's worker last showed it is alive: its newest heartbeat, or when it started (a retried
    trial inherits its predecessor's heartbeat attr; a trial from before heartbeats has none)."""
    started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
    return max(trial.system_attrs.get(HEARTBEAT, 0.0), started)


def retry_callback(max_retry: int | None) -> Any:
    """Optuna's callback that queues a failed trial again with its parameters (its job folder resumes)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)  # optuna >= 4.9
        return (retry or optuna.storages.RetryFailedTrialCallback)(max_retry=max_retry)


def journal_path(storage: str | None, sweep_dir: Path) -> Path | None:
    """The journal file of `storage` (`journal:<file>`, default `<sweep>/optuna.journal`); None for an RDB URL."""
    if storage is None:
        return sweep_dir / "optuna.journal"
    return Path(storage[len("journal:"):]) if storage.startswith("journal:") else None


def open_storage(storage: str | None, sweep_dir: Path, heartbeat_interval: int = 10, grace_period: int = 60,
                 max_retry: int | None = 3) -> Any:
    """Optuna's journal file storage (NFS-safe symlink lock) or an RDB storage, with heartbeats: a trial whose
    worker fell silent for `grace_period` s is failed and queued again (`max_retry` times), by any worker."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    callback = retry_callback(max_retry)
    path = journal_path(storage, sweep_dir)
    if path is not None:
        check_journal(path)
        backend = JournalFileBackend(str(path), lock_obj=JournalFileSymlinkLock(str(path)))
        return _heartbeat_journal_storage()(backend, heartbeat_interval, grace_period, callback)
    check_sqlite_folder(storage)
    key = "heartbeat_stale_trial_callback" if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback") \
        else "failed_trial_callback"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(storage, heartbeat_interval=heartbeat_interval,
                                              grace_period=grace_period, **{key: callback})
    except Exception as err:  # noqa: BLE001 - SQLAlchemy's many errors: one line naming the URL instead
        raise SweepRefused(f"hydra.sweeper.storage={_masked(storage)}: cannot open it "
                           f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from err


def _masked(url: str) -> str:
    """An RDB URL without its password."""
    head, sep, tail = url.partition("@")
    return f"{head.rsplit(':', 1)[0]}:***@{tail}" if sep and head.count(":") >= 2 else url


def check_sqlite_folder(url: str) -> None:
    """sqlite:///<file>: its folder must exist and be writable (SQLite writes a journal file beside it)."""
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return
    folder = Path(url[len("sqlite:///"):]).parent
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise SweepRefused(f"hydra.sweeper.storage={url}: cannot write to its folder {folder}; no trial was started. "
                           "Use a folder you can write")


def check_journal(path: Path) -> None:
    """Before any trial: the journal's folder is writable; each line is one JSON operation. A cut last line (a
    worker killed while appending, a full disk) is what every reader already skips, so it is truncated after a copy
    is kept; anything else is refused naming the line: Optuna numbers trials by position, so editing can mislabel."""
    from optuna.storages.journal import JournalFileSymlinkLock

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SweepRefused(f"{path}: cannot create its folder ({err.strerror or err}); no trial was started") from err
    for target in (path.parent, path if path.exists() else None):
        if target is not None and not os.access(target, os.W_OK):
            raise SweepRefused(f"{path}: {'its folder is' if target == path.parent else 'it is'} read-only (workers "
                               "write the journal and its lock file there); no trial was started. Make it writable, "
                               "or use another hydra.sweeper.storage=journal:<file>")
    if not path.exists() or not path.stat().st_size:
        return
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()  # the lock every writer holds while it appends: a line without its end now was left by the dead
    try:
        _check_journal_lines(path)
    finally:
        lock.release()


def _check_journal_lines(path: Path) -> None:
    data = path.read_bytes()
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):
        try:
            op = json.loads(line)
        except ValueError:
            op = None
        if not isinstance(op, dict) or "op_code" not in op:
            raise SweepRefused(f"{path}, line {number}: not an Optuna journal operation ({line[:60]!r}); Optuna cannot "
                               "read past it and no trial was started. Keep the file, restore a backup or start a new "
                               "study (another hydra.sweep.dir or hydra.sweeper.study_name); deleting the line "
                               "shifts the trial numbers of every later operation")
    if lines[-1]:  # the last line has no end: an append cut short
        copy = path.with_name(f"{path.name}.cut-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(path, copy)
        with open(path, "r+b") as handle:
            handle.truncate(len(data) - len(lines[-1]))
            os.fsync(handle.fileno())
        log.warning("%s, line %d: cut short (%d bytes, a worker killed while writing, or a full disk); removed, the "
                    "file as it was kept in %s. Every reader had skipped it, so no trial changes", path, len(lines),
                    len(lines[-1]), copy)


# ---- the sweep ---------------------------------------------------------------------------------------------------


class OptunaSweep(LaunchingSweep):
    """hydra/sweeper=poolhead_optuna. params: the search space (a plain value is fixed). n_trials: in all, earlier
    sittings and other workers count. n_jobs: trials at a time in this worker. sampler, pruner: Optuna `_target_`
    configs. rungs: steps where trials report and may be pruned (empty: none). direction: maximize | minimize | null
    (from monitor). storage, study_name: see open_storage. heartbeat_interval, grace_period (s), max_retry: a trial
    whose worker is silent for grace_period is retried by another, at most max_retry times."""

    def __init__(self, params: dict[str, str] | None = None, n_trials: int = 20, n_jobs: int = 1,
                 sampler: Any = None, pruner: Any = None, rungs: Sequence[int] = (), direction: str | None = None,
                 storage: str | None = None, study_name: str = "poolhead", heartbeat_interval: int = 10,
                 grace_period: int = 60, max_retry: int | None = 3) -> None:
        study_direction(direction, None)
        check_rungs(rungs)
        if not 0 < heartbeat_interval < grace_period:
            raise SweepRefused(f"hydra.sweeper: heartbeat_interval={heartbeat_interval} and grace_period="
                               f"{grace_period}: expected 0 < heartbeat_interval < grace_period (seconds)")
        self.params, self.n_trials, self.n_jobs = dict(params or {}), n_trials, n_jobs
        self.sampler, self.pruner, self.rungs, self.direction = sampler, pruner, list(rungs), direction
        self.storage, self.study_name = storage, study_name
        self.heartbeat_interval, self.grace_period, self.max_retry = heartbeat_interval, grace_period, max_retry
        self.exhausted, self.waiting_for = False, None

    def space(self, arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
        """(search space as Optuna distributions, fixed overrides)."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        space, fixed = {}, []
        for override in parser.parse_overrides([f"{k}={v}" for k, v in self.params.items()] + list(arguments)):
            if override.is_sweep_override():
                space[override.get_key_element()] = distribution(override)
            else:
                fixed.append(override.input_line)
        return space, fixed

    def study(self, sweep_dir: Path, space: dict[str, Any]) -> Any:
        """The study in its storage (created by the first worker), checked against this command's space."""
        import optuna

        self.direction = study_direction(self.direction, OmegaConf.select(self.config, "monitor"))
        storage = open_storage(self.storage, sweep_dir, self.heartbeat_interval, self.grace_period, self.max_retry)
        try:
            study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=self.sampler,
                                        pruner=self.pruner or optuna.pruners.NopPruner(), direction=self.direction,
                                        load_if_exists=True)
        except ValueError as err:  # a stored study of the other direction
            raise SweepRefused(f"hydra.sweeper.study_name={self.study_name}: {err}; use another study_name or "
                               "hydra.sweep.dir") from err
        check_space(study, space)
        return study

    def ask_lock(self, sweep_dir: Path) -> Any:
        """Optuna's NFS-safe lock file around "count the trials, then ask": each storage write is atomic, but two
        workers counting at once would both start the last trial (MaxTrialsCallback overshoots the same way)."""
        from optuna.storages.journal import JournalFileSymlinkLock

        path = journal_path(self.storage, sweep_dir)
        return JournalFileSymlinkLock(str(path) + ".ask" if path else str(sweep_dir / ".optuna_ask"))

    def sweep(self, arguments: list[str]) -> list[Any]:
        sweep_dir = self.sweep_dir()
        space, fixed = self.space(arguments)
        study, lock, returns = self.study(sweep_dir, space), self.ask_lock(sweep_dir), []
        while True:
            lock.acquire()
            try:
                trials = self.claim(study, space)
            finally:
                lock.release()
            if trials is None:
                break
            if trials:
                returns += self.run_trials(study, trials, fixed)
            else:
                time.sleep(self.heartbeat_interval)
        self.write_results(study, sweep_dir)
        return returns

    def claim(self, study: Any, space: dict[str, Any]) -> list[Any] | None:
        """Trials for this worker to run now (queued retries first); [] to wait for other workers' running trials;
        None when the study is complete (n_trials ended, none running or queued)."""
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # a silent worker's trial: FAIL, and queued again
        count = trial_counts(study.get_trials(deepcopy=False))
        new = 0 if self.exhausted else max(0, self.n_trials - count["ended"] - count["running"] - count["waiting"])
        take = min(self.n_jobs, count["waiting"] + new)
        if take:
            self.waiting_for = None
            with warnings.catch_warnings():  # "heartbeat ... with Study.optimize": run_trials beats as optimize does
                warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                return [study.ask(space) for _ in range(take)]
        if not count["running"] and not count["waiting"]:
            return None
        self.say_waiting(study)
        return []

    def say_waiting(self, study: Any) -> None:
        """Once per change: which trials this worker leaves to the others, and what happens if one of them dies."""
        import optuna

        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        numbers = sorted(t.number for t in running)
        if numbers != self.waiting_for:
            self.waiting_for = numbers
            log.info("Nothing left to start: trial(s) %s run in other workers; waiting for them (a trial whose worker "
                     "is silent for %d s is retried here)", ", ".join(map(str, numbers)), self.grace_period)

    def run_trials(self, study: Any, trials: list[Any], fixed: list[str]) -> list[Any]:
        """Each trial's jobs, rung after rung, under Optuna's heartbeat; a trial this worker cannot finish (an
        exception, SIGTERM) is failed and queued again at once, so no trial is left RUNNING by this worker."""
        from optuna.storages._heartbeat import get_heartbeat_thread  # Optuna's thread, as `optimize` runs it

        returns = []
        try:
            with contextlib.ExitStack() as beats:
                for trial in trials:
                    beats.enter_context(get_heartbeat_thread(trial._trial_id, study._storage))
                for step in [*self.rungs, None]:
                    trials = self.run_rung(study, trials, fixed, step, returns)
                    if not trials:
                        break
        except BaseException:
            for trial in trials:
                with contextlib.suppress(Exception):  # the first error is the one to see
                    self.fail_and_retry(study, trial)
            raise
        return returns

    def run_rung(self, study: Any, trials: list[Any], fixed: list[str], step: int | None,
                 returns: list[Any]) -> list[Any]:
        """Launch the trials' jobs to `step` (None: the full budget), report or tell; the trials that go on."""
        import optuna

        batch = [[*fixed, *(f"{k}={v}" for k, v in t.params.items()), *([f"stop_at_step={step}"] if step else [])]
                 for t in trials]
        results = self.launcher.launch(batch, initial_job_idx=min(t.number for t in trials))
        returns.append(results)
        going_on = []
        for trial, result in zip(trials, results):
            job_dir = Path(str(result.hydra_cfg.hydra.runtime.output_dir))
            value, record = read_score(job_dir, step)
            if value is _PENDING:  # interrupted, or claimed by a live process: asked again, and its job resumes
                self.fail_and_retry(study, trial)
            elif not isinstance(value, (int, float)):  # the job failed: recorded, the study goes on
                self.tell(study, trial, state=optuna.trial.TrialState.FAIL)
            else:
                check_direction(record, self.direction, job_dir)
                if step is None:
                    self.tell(study, trial, value)
                else:
                    trial.report(value, step)
                    if not trial.should_prune():
                        going_on.append(trial)
                        continue
                    log.info("Trial %d pruned at step %d (%s)", trial.number, step, value)
                    self.tell(study, trial, state=optuna.trial.TrialState.PRUNED)
        return going_on

    def fail_and_retry(self, study: Any, trial: Any) -> None:
        """FAIL, then Optuna's retry callback queues it again (its job folder resumes from its last.ckpt)."""
        import optuna

        if study._storage.get_trial(trial._trial_id).state.is_finished():
            return
        if self.tell(study, trial, state=optuna.trial.TrialState.FAIL):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry_callback(self.max_retry)(study, study._storage.get_trial(trial._trial_id))

    def tell(self, study: Any, trial: Any, values: Any = None, state: Any = None) -> bool:
        """study.tell; False when another worker already ended the trial (it judged this worker dead and queued a
        retry, which finds this job's results and trains nothing). A sampler that has tried every point (Grid,
        BruteForce) calls `study.stop()`, which Optuna refuses outside `optimize`: the trial is recorded all the
        same, and no new trial is started."""
        import optuna

        try:
            study.tell(trial, values, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("Trial %d was ended by another worker (no heartbeat for %d s) and queued again; its job's "
                        "results stay in its folder, which the retry reads", trial.number, self.grace_period)
            return False
        except RuntimeError as err:
            if "Study.stop" not in str(err):
                raise
            if not study._storage.get_trial(trial._trial_id).state.is_finished():
                study._storage.set_trial_state_values(trial._trial_id, state or optuna.trial.TrialState.COMPLETE,
                                                      None if values is None else [values])
            if not self.exhausted:
                log.info("The sampler has tried every point of the search space: no new trial starts")
            self.exhausted = True
        return True

    def write_results(self, study: Any, sweep_dir: Path) -> None:
        """optimization_results.yaml from the complete study: every worker writes the same bytes (atomically)."""
        import optuna

        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            return
        best = study.best_trial
        log.info("Best trial %d: %s = %s", best.number, best.params, best.value)
        atomic_write(sweep_dir / "optimization_results.yaml", OmegaConf.to_yaml(
            {"name": "optuna", "best_trial": best.number, "best_params": best.params, "best_value": best.value}))


def trial_counts(trials: Sequence[Any]) -> dict[str, int]:
    """`ended`: trials that count towards n_trials (complete, pruned, failed; a failed trial queued again counts
    through its retry instead), `running`, `waiting` (queued, e.g. retries)."""
    import optuna

    state = optuna.trial.TrialState
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    retried |= {t.user_attrs.get("retry_of") for t in trials}  # retries of sweeps before poolhead used the callback
    ended = [t for t in trials if t.state in (state.COMPLETE, state.PRUNED)
             or (t.state == state.FAIL and t.number not in retried)]
    return {"ended": len(ended), "running": sum(t.state == state.RUNNING for t in trials),
            "waiting": sum(t.state == state.WAITING for t in trials)}


def check_space(study: Any, space: dict[str, Any]) -> None:
    """A stored study takes a changed search space only where Optuna does (`check_distribution_compatibility`:
    the same kind and log scale, the same choices); else refused before any trial, naming the key."""
    from optuna.distributions import check_distribution_compatibility

    stored = {}
    for trial in study.get_trials(deepcopy=False):
        stored.update(trial.distributions)
    for key, new in space.items():
        if key in stored:
            try:
                check_distribution_compatibility(stored[key], new)
            except ValueError as err:
                raise SweepRefused(f"{key}: the search space changed ({_describe(stored[key])} in study "
                                   f"{study.study_name}, now {_describe(new)}: {err}); no trial was started. Keep "
                                   "the study's space, or start a new study (another hydra.sweep.dir or "
                                   "hydra.sweeper.study_name)") from err


def _describe(distribution: Any) -> str:
    if hasattr(distribution, "choices"):
        return f"choice{tuple(distribution.choices)}"
    return f"{'log ' if distribution.log else ''}interval({distribution.low}, {distribution.high})"
