"""An Optuna search whose trials are poolhead jobs pruned at rungs: `python train.py -m hparams_search=...`.
Each trial is a Hydra job stopped at every rung (`stop_at_step`), reported with `trial.report` and continued
from its own last.ckpt unless Optuna's pruner prunes it. The study lives in a storage (optuna_storage.py): the
same command continues it, and the same command on N machines shares it (docs/sweeps.md, "Many workers:
Optuna"). Replaces hydra-optuna-sweeper, which cannot prune (hydra#1954) and requires optuna < 3."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from poolhead.core.direction import monitor_mode
from poolhead.run.record import atomic_write
from poolhead.sweep.launching import PENDING, LaunchingSweep, check_rungs, read_score
from poolhead.sweep.optuna_storage import SweepRefused, journal_path, open_storage, retry_callback

log = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")


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
    """The study's direction: as set, else from `monitor`; `monitor: null` is the task's main metric
    (`poolhead.core.task.MAIN_METRIC`: Spearman, accuracy, micro F1), higher-is-better for every task."""
    if direction is None:
        return "minimize" if monitor and monitor_mode(monitor) == "min" else "maximize"
    if direction not in DIRECTIONS:
        raise SweepRefused(f"hydra.sweeper.direction={direction}: expected maximize, minimize or null (from "
                           "monitor)")
    return direction


def check_direction(results: dict[str, Any], direction: str, job_dir: Path) -> None:
    """A job's own record of which way its metric is better (as the halving sweeper reads it) must agree."""
    mode = results.get("monitor_mode")
    if mode and {"max": "maximize", "min": "minimize"}[mode] != direction:
        better = "higher" if mode == "max" else "lower"
        raise SweepRefused(f"{job_dir}/results.json: {results.get('monitor')} is better {better}, but "
                           f"hydra.sweeper.direction={direction}; hydra.sweeper.direction=null follows it")


class OptunaSweep(LaunchingSweep):
    """hydra/sweeper=poolhead_optuna. params: the search space (a plain value is fixed). n_trials: in all,
    earlier sittings and other workers count. n_jobs: trials at a time in this worker. sampler, pruner:
    Optuna `_target_` configs. rungs: steps where trials report and may be pruned (empty: none). direction:
    maximize | minimize | null (from monitor). storage, study_name, heartbeat_interval, grace_period (s),
    max_retry: see optuna_storage.open_storage."""

    def __init__(self, params: dict[str, str] | None = None, n_trials: int = 20, n_jobs: int = 1,
                 sampler: Any = None, pruner: Any = None, rungs: Sequence[int] = (),
                 direction: str | None = None, storage: str | None = None, study_name: str = "poolhead",
                 heartbeat_interval: int = 10, grace_period: int = 60, max_retry: int | None = 3) -> None:
        study_direction(direction, None)
        check_rungs(rungs)
        if not 0 < heartbeat_interval < grace_period:
            raise SweepRefused(f"hydra.sweeper: heartbeat_interval={heartbeat_interval}, grace_period="
                               f"{grace_period}: expected 0 < heartbeat_interval < grace_period (seconds)")
        self.params, self.n_trials, self.n_jobs = dict(params or {}), n_trials, n_jobs
        self.sampler, self.pruner, self.rungs, self.direction = sampler, pruner, list(rungs), direction
        self.storage, self.study_name = storage, study_name
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.max_retry = max_retry
        self.exhausted, self.waiting_for = False, None

    def space(self, arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
        """(search space as Optuna distributions, fixed overrides)."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        space, fixed = {}, []
        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        for override in parser.parse_overrides(lines):
            if override.is_sweep_override():
                space[override.get_key_element()] = distribution(override)
            else:
                fixed.append(override.input_line)
        return space, fixed

    def study(self, sweep_dir: Path, space: dict[str, Any]) -> Any:
        """The study in its storage (created by the first worker), checked against this command's space."""
        import optuna

        self.direction = study_direction(self.direction, OmegaConf.select(self.config, "monitor"))
        storage = open_storage(self.storage, sweep_dir, self.heartbeat_interval, self.grace_period,
                               self.max_retry)
        pruner = self.pruner or optuna.pruners.NopPruner()
        try:
            study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=self.sampler,
                                        pruner=pruner, direction=self.direction, load_if_exists=True)
        except ValueError as err:  # a stored study of the other direction
            raise SweepRefused(f"hydra.sweeper.study_name={self.study_name}: {err}; use another study_name "
                               "or hydra.sweep.dir") from err
        check_space(study, space)
        return study

    def ask_lock(self, sweep_dir: Path) -> Any:
        """Optuna's NFS-safe lock file around "count, then ask": two workers counting at once would both start
        the last trial (Optuna's MaxTrialsCallback stops a worker only after its trial, overshooting so)."""
        from optuna.storages.journal import JournalFileSymlinkLock

        path = journal_path(self.storage, sweep_dir)
        return JournalFileSymlinkLock(f"{path}.ask" if path else str(sweep_dir / ".optuna_ask"))

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
        """Trials for this worker to run now (queued retries first); [] to wait for other workers' running
        trials; None when the study is complete (n_trials ended, none running or queued)."""
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # a silent worker's trial: FAIL, and queued again
        count = trial_counts(study.get_trials(deepcopy=False))
        started = count["ended"] + count["running"] + count["waiting"]
        new = 0 if self.exhausted else max(0, self.n_trials - started)
        take = min(self.n_jobs, count["waiting"] + new)
        if take:
            self.waiting_for = None
            with warnings.catch_warnings():  # "heartbeat ... with Study.optimize": run_trials beats as it
                warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                return [study.ask(space) for _ in range(take)]
        if not count["running"] and not count["waiting"]:
            return None
        self.say_waiting(study)
        return []

    def say_waiting(self, study: Any) -> None:
        """Once per change: the trials this worker leaves to the others, and what if one of them dies."""
        import optuna

        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        numbers = sorted(t.number for t in running)
        if numbers != self.waiting_for:
            self.waiting_for = numbers
            log.info("Nothing left to start: trial(s) %s run in other workers; waiting for them (a trial "
                     "whose worker is silent for %d s is retried here)", ", ".join(map(str, numbers)),
                     self.grace_period)

    def run_trials(self, study: Any, trials: list[Any], fixed: list[str]) -> list[Any]:
        """The trials' jobs, rung after rung, under Optuna's heartbeat thread; a trial this worker cannot
        finish (an exception, SIGTERM) is failed and queued again at once: this worker leaves none RUNNING."""
        from optuna.storages._heartbeat import get_heartbeat_thread  # the thread Study.optimize runs

        returns: list[Any] = []
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
        """Launch the trials' jobs to `step` (None: the full budget), report or tell; the trials going on."""
        import optuna

        stop = [f"stop_at_step={step}"] if step else []
        batch = [[*fixed, *(f"{k}={v}" for k, v in t.params.items()), *stop] for t in trials]
        results = self.launcher.launch(batch, initial_job_idx=min(t.number for t in trials))
        returns.append(results)
        going_on = []
        for trial, result in zip(trials, results, strict=True):
            job_dir = Path(str(result.hydra_cfg.hydra.runtime.output_dir))
            value, record = read_score(job_dir, step)
            if value is PENDING:  # interrupted, or claimed by a live process: queued again, its job resumes
                self.fail_and_retry(study, trial)
            elif not isinstance(value, (int, float)):  # the job failed: recorded, the study goes on
                self.tell(study, trial, state=optuna.trial.TrialState.FAIL)
            elif step is None:
                check_direction(record, self.direction, job_dir)
                self.tell(study, trial, value)
            elif self.report(trial, value, step):
                going_on.append(trial)
            else:
                self.tell(study, trial, state=optuna.trial.TrialState.PRUNED)
        return going_on

    def report(self, trial: Any, value: float, step: int) -> bool:
        """The rung's score to Optuna; False when its pruner stops the trial here."""
        trial.report(value, step)
        if trial.should_prune():
            log.info("Trial %d pruned at step %d (%s)", trial.number, step, value)
            return False
        return True

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
        """study.tell; False when another worker ended the trial first (it judged this one dead, and the retry
        it queued reads this job's results without training). A sampler that has tried every point (Grid,
        BruteForce) calls `study.stop()`, which Optuna refuses outside `optimize`: the trial is recorded all
        the same, and no new trial starts."""
        import optuna

        try:
            study.tell(trial, values, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("Trial %d was ended by another worker (no heartbeat for %d s) and queued again; the "
                        "retry reads its job's results", trial.number, self.grace_period)
            return False
        except RuntimeError as err:
            if "Study.stop" not in str(err):
                raise
            if not study._storage.get_trial(trial._trial_id).state.is_finished():
                final, value = state or optuna.trial.TrialState.COMPLETE, None if values is None else [values]
                study._storage.set_trial_state_values(trial._trial_id, final, value)
            if not self.exhausted:
                log.info("The sampler has tried every point of the search space: no new trial starts")
            self.exhausted = True
        return True

    def write_results(self, study: Any, sweep_dir: Path) -> None:
        """optimization_results.yaml of the complete study: every worker writes the same bytes, atomically."""
        import optuna

        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            return
        best = study.best_trial
        log.info("Best trial %d: %s = %s", best.number, best.params, best.value)
        results = {"name": "optuna", "best_trial": best.number, "best_params": best.params,
                   "best_value": best.value}
        atomic_write(sweep_dir / "optimization_results.yaml", OmegaConf.to_yaml(results))


def trial_counts(trials: Sequence[Any]) -> dict[str, int]:
    """`ended`: trials that count towards n_trials (complete, pruned, failed; a failed trial queued again
    counts through its retry instead), `running`, `waiting` (queued: retries)."""
    import optuna

    state = optuna.trial.TrialState
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    retried |= {t.user_attrs.get("retry_of") for t in trials}  # retries queued before the retry callback
    ended = [t for t in trials if t.state in (state.COMPLETE, state.PRUNED)
             or (t.state == state.FAIL and t.number not in retried)]
    return {"ended": len(ended), "running": sum(t.state == state.RUNNING for t in trials),
            "waiting": sum(t.state == state.WAITING for t in trials)}


def check_space(study: Any, space: dict[str, Any]) -> None:
    """A stored study takes a changed search space where Optuna does (`check_distribution_compatibility`:
    the same kind, log scale and choices); else refused before any trial, naming the key."""
    from optuna.distributions import check_distribution_compatibility

    stored = {}
    for trial in study.get_trials(deepcopy=False):
        stored.update(trial.distributions)
    for key, new in space.items():
        if key not in stored:
            continue
        try:
            check_distribution_compatibility(stored[key], new)
        except ValueError as err:
            raise SweepRefused(f"{key}: the search space changed ({_describe(stored[key])} in study "
                               f"{study.study_name}, now {_describe(new)}: {err}); no trial was started. "
                               "Keep the study's space, or start a new study (another hydra.sweep.dir or "
                               "hydra.sweeper.study_name)") from err


def _describe(distribution: Any) -> str:
    if hasattr(distribution, "choices"):
        return f"choice{tuple(distribution.choices)}"
    return f"{'log ' if distribution.log else ''}interval({distribution.low}, {distribution.high})"
