"""Successive halving over a Hydra grid: `python train.py -m hydra/sweeper=halving experiment=stsb_pooling`.
Per group the best 1/eta go on from their own last.ckpt (an exact prefix of the one-go run); decisions are a function
of the job records alone, so a killed sweep goes on where it was (docs/sweeps.md). Not Optuna's pruners: they decide
per trial, not on seed means per group over a fixed grid, and their trials are not Hydra jobs (hydra#1954)."""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from poolhead.run.record import NOT_IDENTITY, read_json
from poolhead.sweep.jobs import job_dirname

log = logging.getLogger(__name__)

RESULTS = "halving.json"


@dataclass
class Rung:
    """One rung's decision: scores (seed mean) of the configurations that reached it, who goes on, the evidence."""

    step: int | None  # None: the full budget
    scores: dict[str, float | None]
    kept: list[str]
    dropped: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> {against, p_value, score}


def keep_per_group(scores: dict[str, float | None], groups: dict[str, str], eta: float, min_per_group: int,
                   maximize: bool) -> list[str]:
    """The configurations that go on: per group the best ceil(n / eta), at least `min_per_group`; a configuration
    without a score (its job failed) never goes on. Ties are broken by label, so the choice is reproducible."""
    kept = []
    for group in sorted(set(groups.values())):
        members = [c for c in scores if groups[c] == group and _finite(scores[c])]
        members.sort(key=lambda c: (-scores[c] if maximize else scores[c], c))
        n = sum(groups[c] == group for c in scores)
        kept += members[:max(min_per_group, math.ceil(n / eta))]
    return sorted(kept)


def seeds_at(rung: int, seeds: Sequence[Any], all_seeds_from: int) -> list[Any]:
    """The seeds that run at rung number `rung` (0 = the first): the first seed before `all_seeds_from`, then all."""
    return list(seeds) if rung >= all_seeds_from else list(seeds[:1])


def decide(configs: Sequence[str], groups: dict[str, str], rungs: Sequence[int], seeds: Sequence[Any],
           score: Any, eta: float, min_per_group: int, maximize: bool, evidence: Any = None,
           all_seeds_from: int | None = None) -> list[Rung]:
    """The halving decisions from the scores alone: `score(config, seed, step)` (step None = full budget) returns the
    metric, None (failed) or _PENDING (not there yet); returns the rungs decided so far, stopping at the first rung
    whose jobs are not all done: that is where a sweep goes on. Every seed runs from rung `all_seeds_from` on (default:
    the last rung before the full budget, so the last cut is on seed means). `evidence(best, other, step)` -> p."""
    alive, decided = list(configs), []
    all_seeds_from = max(len(rungs) - 1, 0) if all_seeds_from is None else all_seeds_from
    for i, step in enumerate([*rungs, None]):
        use = seeds_at(i, seeds, all_seeds_from)
        values = {c: [score(c, s, step) for s in use] for c in alive}
        if any(v is _PENDING for vs in values.values() for v in vs):
            break
        means = {c: (sum(vs) / len(vs) if all(_finite(v) for v in vs) else None) for c, vs in values.items()}
        kept = list(alive) if step is None else keep_per_group(means, groups, eta, min_per_group, maximize)
        rung = Rung(step, means, kept)
        for c in sorted(set(alive) - set(kept)):
            peers = [k for k in kept if groups[k] == groups[c]]
            best = max(peers, key=lambda k: means[k] if maximize else -means[k]) if peers else None
            rung.dropped[c] = {"score": means[c], "against": best, "against_score": means.get(best),
                               "p_value": evidence(best, c, step) if evidence and best and _finite(means[c]) else None,
                               "reason": "failed" if means[c] is None else "below the kept share of its group"}
        decided.append(rung)
        alive = kept
    return decided


class _Pending:
    def __repr__(self) -> str:
        return "pending"


_PENDING = _Pending()  # a score not there yet (the job has not reached that rung)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def job_overrides(config: str, seed_key: str, seed: Any, step: int | None, fixed: Sequence[str]) -> list[str]:
    """The overrides of one job: the fixed ones, the configuration's, its seed, and where it stops."""
    return [*fixed, *config.split(" "), f"{seed_key}={seed}", *([f"stop_at_step={step}"] if step else [])]


def read_score(job_dir: Path, step: int | None) -> tuple[Any, dict[str, Any]]:
    """(metric, record) of a job at a rung (rungs/step-N/metrics.json) or at the full budget (results.json ok);
    the metric is `_PENDING` when the job has not got there (or was interrupted) and None when it failed."""
    results = read_json(job_dir / "results.json")
    record = results if step is None else read_json(job_dir / "rungs" / f"step-{step:06d}" / "metrics.json")
    if record.get("metrics") and (step is not None or results.get("status") == "ok"):
        return record["metrics"].get(record.get("monitor") or results.get("monitor")), record
    failed = results.get("status") == "failed" and "interrupted" not in str(results.get("error"))
    return (None if failed else _PENDING), results


def check_rungs(rungs: Sequence[int]) -> None:
    """Rungs are increasing whole numbers of training steps (both sweepers stop jobs there)."""
    if any(not isinstance(r, int) or r <= 0 for r in rungs) or list(rungs) != sorted(set(rungs)):
        raise ValueError(f"hydra.sweeper.rungs={list(rungs)}: expected increasing whole numbers of steps > 0")


class LaunchingSweep:
    """What both poolhead sweepers share: Hydra's launcher, and the sweep folder with its multirun.yaml."""

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                               task_function=task_function, config=config)

    def sweep_dir(self) -> Path:
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        return sweep_dir


class HalvingSweep(LaunchingSweep):
    """hydra/sweeper=halving. rungs: steps at which configurations are compared (the full budget after the last).
    eta: 1/eta of each group goes on (at least min_per_group). group_by: the keys whose values form the groups.
    seed_key: the swept seed key: its first value runs at every rung, all from rung `all_seeds_from` on (default: the
    last, so finalists are chosen on seed means). params: the grid, as the basic sweeper's hydra.sweeper.params."""

    def __init__(self, rungs: Sequence[int], eta: float = 3, min_per_group: int = 1,
                 group_by: Sequence[str] = ("mode",), seed_key: str = "seed", params: dict[str, str] | None = None,
                 bootstrap: bool = True, all_seeds_from: int | None = None) -> None:
        if not rungs:
            raise ValueError("hydra.sweeper.rungs=[]: successive halving needs at least one rung")
        check_rungs(rungs)
        if eta <= 1 or min_per_group < 1:
            raise ValueError(f"hydra.sweeper: eta={eta} must be > 1 and min_per_group={min_per_group} >= 1")
        self.rungs, self.eta, self.min_per_group = list(rungs), eta, min_per_group
        self.group_by, self.seed_key, self.params = list(group_by), seed_key, dict(params or {})
        self.bootstrap, self._p_values = bootstrap, {}
        self.all_seeds_from = len(self.rungs) - 1 if all_seeds_from is None else all_seeds_from

    def grid(self, arguments: list[str]) -> tuple[list[str], list[str], list[Any]]:
        """(configurations as space-joined sorted overrides, the fixed overrides, the seeds)."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        swept, fixed, seeds = {}, [], None
        for override in parser.parse_overrides(lines):
            key = override.get_key_element()
            if override.is_sweep_override():
                if not override.is_discrete_sweep():
                    raise ValueError(f"{override.input_line}: the halving sweeper takes lists (a,b,c), not ranges of "
                                     "floats or intervals; use hparams_search (Optuna) for those")
                values = list(override.sweep_string_iterator())
                if key == self.seed_key:
                    seeds = values
                else:
                    swept[key] = [f"{key}={v}" for v in values]
            elif key == self.seed_key:
                seeds = [override.get_value_element_as_str()]
            else:
                fixed.append(f"{key}={override.get_value_element_as_str()}")
        missing = [k for k in self.group_by if k not in swept and not any(f.startswith(f"{k}=") for f in fixed)]
        if missing:
            raise ValueError(f"hydra.sweeper.group_by={self.group_by}: {missing} is not set by the sweep; group by "
                             "keys it sets, or group_by=[] for one group")
        configs = [" ".join(sorted(combo)) for combo in itertools.product(*swept.values())]
        return configs, fixed, seeds or [OmegaConf.select(self.config, self.seed_key)]

    def group_of(self, config: str, fixed: Sequence[str]) -> str:
        pairs = dict(o.split("=", 1) for o in [*fixed, *config.split(" ")] if "=" in o)
        return ",".join(f"{k}={pairs.get(k)}" for k in self.group_by) or "all"

    def sweep(self, arguments: list[str]) -> list[Any]:
        from poolhead.sweep.halving_report import write_halving_report

        sweep_dir = self.sweep_dir()
        configs, fixed, seeds = self.grid(arguments)
        groups = {c: self.group_of(c, fixed) for c in configs}
        folders: dict[tuple[str, Any], Path] = {}
        sittings = read_json(sweep_dir / RESULTS).get("sittings", []) + [{"started": time.time(), "finished": None}]
        log.info("Successive halving: %d configurations x %d seeds, rungs %s then the full budget, eta %s, groups %s",
                 len(configs), len(seeds), self.rungs, self.eta, sorted(set(groups.values())))
        returns, job_idx = [], 0
        while True:
            rungs = self._decide(configs, groups, seeds, fixed, folders, sweep_dir, evidence=False)
            alive = rungs[-1].kept if rungs else configs
            if len(rungs) == len(self.rungs) + 1:
                break
            step = ([*self.rungs, None])[len(rungs)]
            use = seeds_at(len(rungs), seeds, self.all_seeds_from)
            batch = [job_overrides(c, self.seed_key, s, step, fixed) for c in alive for s in use]
            log.info("Rung %s: %d jobs (%d configurations)", step or "full budget", len(batch), len(alive))
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=job_idx)
            job_idx += len(batch)
            returns.append(results)
            for (c, s), result in zip([(c, s) for c in alive for s in use], results):
                folders[(c, s)] = Path(str(result.hydra_cfg.hydra.runtime.output_dir))
            before = len(rungs)
            rungs = self._decide(configs, groups, seeds, fixed, folders, sweep_dir, evidence=self.bootstrap)
            sittings[-1]["finished"] = time.time()  # so far: a sitting killed later still counts up to here
            write_halving_report(sweep_dir, self, configs, groups, seeds, rungs, folders, sittings)
            if len(rungs) == before:
                log.error("Rung %s did not complete (a job was interrupted): run the same command to continue", step)
                break
        rungs = self._decide(configs, groups, seeds, fixed, folders, sweep_dir, evidence=self.bootstrap)
        sittings[-1]["finished"] = time.time()
        if not job_idx:  # nothing launched (a finished sweep run again): not a sitting of its own
            sittings.pop()
        write_halving_report(sweep_dir, self, configs, groups, seeds, rungs, folders, sittings)
        return returns

    def _decide(self, configs: list[str], groups: dict[str, str], seeds: list[Any], fixed: list[str],
                folders: dict[tuple[str, Any], Path], sweep_dir: Path, evidence: bool) -> list[Rung]:
        from poolhead.sweep.report.stats import paired_bootstrap

        def folder(c: str, s: Any) -> Path:
            if (c, s) not in folders:  # not launched in this sitting: where Hydra puts it (hydra.sweep.subdir,
                lines = [o for o in job_overrides(c, self.seed_key, s, None, fixed)  # without exclude_keys)
                         if o.split("=", 1)[0].lstrip("+~") not in NOT_IDENTITY]
                folders[(c, s)] = sweep_dir / job_dirname(",".join(sorted(lines)))
            return folders[(c, s)]

        def score(c: str, s: Any, step: int | None) -> Any:
            return read_score(folder(c, s), step)[0]

        def p_value(best: str, other: str, step: int | None) -> float | None:
            where = (lambda c: folder(c, seeds[0])) if step is None else \
                (lambda c: folder(c, seeds[0]) / "rungs" / f"step-{step:06d}")
            if (best, other, step) not in self._p_values:  # the report is rewritten after every rung
                self._p_values[(best, other, step)] = paired_bootstrap(where(best), where(other))[0]
            return self._p_values[(best, other, step)]

        maximize = self._maximize(configs, seeds, folder)
        return decide(configs, groups, self.rungs, seeds, score, self.eta, self.min_per_group, maximize,
                      p_value if evidence else None, self.all_seeds_from)

    def _maximize(self, configs: list[str], seeds: list[Any], folder: Any) -> bool:
        """The metric's direction, from a job's own record (poolhead.build decides it from the metric)."""
        for c in configs:
            mode = read_json(folder(c, seeds[0]) / "results.json").get("monitor_mode")
            if mode:
                return mode == "max"
        return True
