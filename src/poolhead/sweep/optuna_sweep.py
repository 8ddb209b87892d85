"""An Optuna search whose trials are poolhead jobs pruned at rungs: `python train.py -m hparams_search=...`.
Each trial is a Hydra job stopped at every rung (`stop_at_step`), reported with `trial.report` and continued from its
own last.ckpt unless Optuna's pruner prunes it; the study lives in `storage`, so the same command continues it
(docs/sweeps.md). Replaces hydra-optuna-sweeper, which cannot prune (hydra#1954) and requires optuna < 3."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

from poolhead.sweep.launching import PENDING as _PENDING, LaunchingSweep, check_rungs, read_score

log = logging.getLogger(__name__)


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


def open_storage(storage: str | None, sweep_dir: Path) -> Any:
    """`journal:<file>` (default `<sweep>/optuna.journal`) -> Optuna's journal file storage; else an RDB URL."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if storage is None or storage.startswith("journal:"):
        path = Path(storage[len("journal:"):]) if storage else sweep_dir / "optuna.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    return optuna.storages.RDBStorage(storage)


class OptunaSweep(LaunchingSweep):
    """hydra/sweeper=poolhead_optuna. params: the search space (a plain value is fixed). n_trials: in all, earlier
    sittings count. n_jobs: trials at a time. sampler, pruner: Optuna `_target_` configs. rungs: steps where trials
    report and may be pruned (empty: none). direction: maximize | minimize. storage, study_name: see above."""

    def __init__(self, params: dict[str, str] | None = None, n_trials: int = 20, n_jobs: int = 1,
                 sampler: Any = None, pruner: Any = None, rungs: Sequence[int] = (), direction: str = "maximize",
                 storage: str | None = None, study_name: str = "poolhead") -> None:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"hydra.sweeper.direction={direction}: expected maximize or minimize")
        check_rungs(rungs)
        self.params, self.n_trials, self.n_jobs = dict(params or {}), n_trials, n_jobs
        self.sampler, self.pruner, self.rungs, self.direction = sampler, pruner, list(rungs), direction
        self.storage, self.study_name = storage, study_name

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

    def study(self, sweep_dir: Path) -> Any:
        import optuna

        study = optuna.create_study(study_name=self.study_name, storage=open_storage(self.storage, sweep_dir),
                                    sampler=self.sampler, pruner=self.pruner or optuna.pruners.NopPruner(),
                                    direction=self.direction, load_if_exists=True)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            log.warning("Trial %d was left running by an interrupted sweep: marked FAIL, asked again with the same "
                        "parameters (its job resumes from its own checkpoint)", trial.number)
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        return study

    def sweep(self, arguments: list[str]) -> list[Any]:
        import optuna

        sweep_dir = self.sweep_dir()
        space, fixed = self.space(arguments)
        study, returns, job_idx = self.study(sweep_dir), [], 0
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        while True:
            trials = study.get_trials(deepcopy=False)
            retried = {t.user_attrs.get("retry_of") for t in trials}
            ended = [t for t in trials if t.state in finished
                     or (t.state == optuna.trial.TrialState.FAIL and t.number not in retried)]
            left = self.n_trials - len(ended)
            if left <= 0 or getattr(study, "_poolhead_exhausted", False):
                break
            trials = [study.ask(space) for _ in range(min(self.n_jobs, left))]
            for step in [*self.rungs, None]:
                batch = [[*fixed, *(f"{k}={v}" for k, v in t.params.items()),
                          *([f"stop_at_step={step}"] if step else [])] for t in trials]
                results = self.launcher.launch(batch, initial_job_idx=job_idx)
                job_idx += len(batch)
                returns.append(results)
                going_on = []
                for trial, result in zip(trials, results):
                    value, _ = read_score(Path(str(result.hydra_cfg.hydra.runtime.output_dir)), step)
                    if value is _PENDING:  # the job was interrupted: asked again, and its job resumes
                        _tell(study, trial, state=optuna.trial.TrialState.FAIL)
                        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
                    elif not isinstance(value, (int, float)):  # the job failed: recorded, the study goes on
                        _tell(study, trial, state=optuna.trial.TrialState.FAIL)
                    elif step is None:
                        _tell(study, trial, value)
                    else:
                        trial.report(value, step)
                        if trial.should_prune():
                            log.info("Trial %d pruned at step %d (%s)", trial.number, step, value)
                            _tell(study, trial, state=optuna.trial.TrialState.PRUNED)
                        else:
                            going_on.append(trial)
                trials = going_on
                if not trials:
                    break
        best = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
        if best:
            log.info("Best trial %d: %s = %s", study.best_trial.number, study.best_trial.params, study.best_value)
            (sweep_dir / "optimization_results.yaml").write_text(OmegaConf.to_yaml(
                {"name": "optuna", "best_params": study.best_params, "best_value": study.best_value}))
        return returns



def _tell(study: Any, trial: Any, values: Any = None, state: Any = None) -> None:
    """study.tell; a sampler that has tried every point (Grid, BruteForce) calls `study.stop()`, which Optuna refuses
    outside `optimize`: the trial is recorded all the same and the search ends after this batch."""
    try:
        study.tell(trial, values, state=state)
    except RuntimeError as err:
        if "Study.stop" not in str(err):
            raise
        import optuna

        if not study._storage.get_trial(trial._trial_id).state.is_finished():
            study._storage.set_trial_state_values(trial._trial_id, state or optuna.trial.TrialState.COMPLETE,
                                                  None if values is None else [values])
        study._poolhead_exhausted = True
        log.info("The sampler has tried every point of the search space: the search ends here")
