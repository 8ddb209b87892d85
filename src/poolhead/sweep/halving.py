"""Successive halving over a Hydra grid: `python train.py -m hydra/sweeper=halving experiment=stsb_pooling`.
Per group the best 1/eta go on from their own last.ckpt (an exact prefix of the one-go run); decisions are a
function of the job records alone, so a killed sweep goes on where it was, and several processes started with
the same command share one sweep folder (docs/sweeps.md). The folder's design (grid, seeds, rungs, eta, ...)
is recorded in halving.json; a run with another design is refused before any job. Not Optuna's pruners: they
decide per trial, not on seed means per group over a fixed grid, and their trials are not Hydra jobs
(hydra#1954)."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from poolhead.data.read import DataError
from poolhead.run.record import NOT_IDENTITY, SUPERSEDED, read_json
from poolhead.sweep.halving_report import REPORT_FILES, RESULTS, write_halving_report
from poolhead.sweep.jobs import claimed_elsewhere, job_dirname
from poolhead.sweep.launching import (
    PENDING,
    LaunchingSweep,
    check_rung_form,
    read_score,
    rung_steps,
    trained_past,
    training_budget,
)

log = logging.getLogger(__name__)
BUDGET_KEYS = ("trainer.max_epochs", "trainer.max_steps", "trainer.limit_train_batches",
               "trainer.accumulate_grad_batches", "encoder.tokenizer", "encoder.name_or_path",
               "encoder.max_length", "seed")  # with `data` and `mode`: what a job's budget depends on
LOCK = ".halving.lock"  # flock'ed while deciding and writing the report: the freshest view is written last


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
    """The halving decisions from the scores alone: `score(config, seed, step)` (step None = full budget)
    returns the metric, None (failed) or PENDING (not there yet); returns the rungs decided so far, stopping
    at the first rung whose jobs are not all done: that is where a sweep goes on. Every seed runs from rung
    `all_seeds_from` on (default: the last rung before the full budget, so the last cut is on seed means).
    `evidence(best, other, step)` -> p. At the full budget the configurations with a score are kept (the
    finalists); a failed one is dropped."""
    alive, decided = list(configs), []
    all_seeds_from = max(len(rungs) - 1, 0) if all_seeds_from is None else all_seeds_from
    for i, step in enumerate([*rungs, None]):
        use = seeds_at(i, seeds, all_seeds_from)
        values = {c: [score(c, s, step) for s in use] for c in alive}
        if any(v is PENDING for vs in values.values() for v in vs):
            break
        means = {c: (sum(vs) / len(vs) if all(_finite(v) for v in vs) else None) for c, vs in values.items()}
        kept = sorted(c for c in alive if _finite(means[c])) if step is None else \
            keep_per_group(means, groups, eta, min_per_group, maximize)
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


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def job_overrides(config: str, seed_key: str, seed: Any, step: int | None, fixed: Sequence[str]) -> list[str]:
    """The overrides of one job: the fixed ones, the configuration's, its seed, and where it stops."""
    return [*fixed, *config.split(" "), f"{seed_key}={seed}", *([f"stop_at_step={step}"] if step else [])]


def identity_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that name a job (Hydra's exclude_keys = NOT_IDENTITY left out), sorted."""
    return sorted(o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in NOT_IDENTITY)


class DesignChanged(ValueError):
    """A folder's recorded design differs from the command's; the message says what changed and the ways on."""


def design_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """`key: old -> new` for each part of the design that differs (the grid: what was removed, added)."""
    changes = []
    for key in after:
        old, new = before.get(key), after[key]
        if key == "grid" and isinstance(old, dict):
            for part in ("configurations", "fixed"):
                if old.get(part) is None:  # not known (a record from before designs, its jobs elsewhere)
                    changes.append(f"grid {part}: None -> {new[part]}")
                    continue
                gone = [c for c in old[part] if c not in new[part]]
                added = [c for c in new[part] if c not in old[part]]
                changes += [f"grid {part} removed: {gone}"] * bool(gone)
                changes += [f"grid {part} added: {added}"] * bool(added)
        elif old != new:
            changes.append(f"{key}: {old} -> {new}")
    return changes


def legacy_design(record: dict[str, Any], current: dict[str, Any],
                  first_folders_exist: bool) -> dict[str, Any]:
    """The design of a halving.json written before designs were recorded, read from its own fields: its
    configurations, seeds, rungs, eta, groups, its jobs' full budget (the current one when no job reached it),
    and the current command's fixed overrides when every configuration's first job is where they put it."""
    rungs = list(record.get("rungs") or [])
    start = record.get("all_seeds_from")
    names = [*rungs, "full"]
    return {"grid": {"configurations": sorted(record.get("configs") or {}),
                     "fixed": current["grid"]["fixed"] if first_folders_exist else None},
            "seeds": [str(s) for s in record.get("seeds") or []], "rungs": rungs, "eta": record.get("eta"),
            "group_by": record.get("group_by"), "min_per_group": record.get("min_per_group"),
            "all_seeds_from": names.index(start) if start in names else max(len(rungs) - 1, 0),
            "budget_steps": (record.get("compute") or {}).get("full_steps_per_job")
            or current["budget_steps"]}


def read_record(sweep_dir: Path) -> dict[str, Any]:
    """The folder's halving.json ({} when there is none); an unreadable one is refused, naming it."""
    path = sweep_dir / RESULTS
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DesignChanged(f"{path}: unreadable ({err}); it records this sweep's design and decisions. "
                            "Restore it (git, a backup), or move it away: the design is then taken from this "
                            "command and the decisions are read again from the job records") from None


@contextlib.contextmanager
def locked(sweep_dir: Path) -> Iterator[None]:
    """An exclusive flock on the sweep folder's LOCK file, released when the block ends or the process dies."""
    with open(sweep_dir / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class HalvingSweeper(LaunchingSweep, Sweeper):
    """hydra/sweeper=halving. rungs: where configurations are compared, in training steps or as fractions of
    the budget (the full budget after the last; each must lie below it). eta: 1/eta of each group goes on (at
    least min_per_group). group_by: the keys whose values form the groups. seed_key: the swept seed key: its
    first value runs at every rung, all from rung `all_seeds_from` on (default: the last, so finalists are
    chosen on seed means). params: the grid, as the basic sweeper's hydra.sweeper.params. redecide: re-decide
    a folder of another design. poll_seconds: how often a process waits on jobs other processes train."""

    __module__ = "hydra_plugins.poolhead_sweepers"  # Hydra registers a sweeper by module.name (hydra_plugins)

    def __init__(self, rungs: Sequence[Any] = (0.125, 0.25, 0.5), eta: float = 3, min_per_group: int = 1,
                 group_by: Sequence[str] = ("mode",), seed_key: str = "seed", params: dict[str, str] | None = None,
                 bootstrap: bool = True, all_seeds_from: int | None = None, redecide: bool = False,
                 poll_seconds: float = 5.0) -> None:
        if not rungs:
            raise ValueError("hydra.sweeper.rungs=[]: successive halving needs at least one rung")
        check_rung_form(list(rungs))
        if eta <= 1 or min_per_group < 1:
            raise ValueError(f"hydra.sweeper: eta={eta} must be > 1 and min_per_group={min_per_group} >= 1")
        self.given_rungs, self.rungs = list(rungs), list(rungs)  # the latter in steps once the budget's known
        self.eta, self.min_per_group, self.group_by = eta, min_per_group, list(group_by)
        self.seed_key, self.params, self.bootstrap = seed_key, dict(params or {}), bootstrap
        self.redecide, self.poll_seconds, self._p_values = redecide, poll_seconds, {}
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

    # --- before any job: the budget, the rungs in steps, the design -----------------------------------------
    def budget(self, configs: list[str], fixed: list[str], seeds: list[Any], record: dict[str, Any]) -> int:
        """The smallest training budget (steps) of the grid's jobs, from the data and trainer settings of each
        configuration's job config; sets self.rungs (in steps, each below it). Unreadable data falls back on
        the budget the folder recorded (a finished sweep re-run where its data is absent), else fails here."""
        budgets, seen = {}, {}
        for config in configs:
            cfg = self.job_config(job_overrides(config, self.seed_key, seeds[0], None, fixed))
            key = json.dumps([OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "mode")]
                             + [OmegaConf.select(cfg, k) for k in BUDGET_KEYS], default=str)
            if key not in seen:
                try:
                    seen[key] = training_budget(cfg)
                except (OSError, DataError) as err:  # the data absent or unreadable here
                    recorded = (record.get("design") or {}).get("budget_steps") or \
                        (record.get("compute") or {}).get("full_steps_per_job")
                    if not isinstance(recorded, int):
                        raise
                    log.warning("The training budget cannot be worked out from the data (%s): the %d steps "
                                "recorded in %s are used", err, recorded, RESULTS)
                    seen[key] = (recorded, f" (recorded in {RESULTS})")
            budgets[config] = seen[key]
        smallest = min(budgets.values())
        self.rungs = rung_steps(self.given_rungs, smallest[0], smallest[1])
        self.budgets = {c: b[0] for c, b in budgets.items()}
        return smallest[0]

    def design(self, configs: list[str], fixed: list[str], seeds: list[Any]) -> dict[str, Any]:
        """What decides this sweep's jobs and decisions (the identity of a halving sweep folder)."""
        budgets = sorted(set(self.budgets.values()))
        return {"grid": {"configurations": sorted(configs), "fixed": identity_overrides(fixed)},
                "seeds": [str(s) for s in seeds], "rungs": list(self.rungs), "eta": self.eta,
                "group_by": list(self.group_by), "min_per_group": self.min_per_group,
                "all_seeds_from": self.all_seeds_from,
                "budget_steps": budgets[0] if len(budgets) == 1 else dict(sorted(self.budgets.items()))}

    def agree_on_design(self, sweep_dir: Path, design: dict[str, Any], record: dict[str, Any],
                        first_folders_exist: bool) -> None:
        """Refuse (DesignChanged, before anything is written) a folder whose recorded design differs, unless
        hydra.sweeper.redecide=true: then its earlier report moves to superseded/<time>/ and the sweep goes
        on."""
        if not record:
            return
        before = record.get("design") or legacy_design(record, design, first_folders_exist)
        changes = design_changes(before, design)
        if not changes:
            return
        where = sweep_dir / RESULTS
        if not self.redecide:
            raise DesignChanged(
                f"hydra.sweep.dir={sweep_dir} holds a halving sweep of another design ({where}): "
                + "; ".join(changes) + ". Nothing was run or written. Either run this design into a new "
                "folder (hydra.sweep.dir=<new folder>), or re-decide this folder with it: "
                "hydra.sweeper.redecide=true (the records of the same jobs at the same steps are reused, the "
                f"rest trains, and the earlier report moves to {SUPERSEDED}/<time>/)")
        target = sweep_dir / SUPERSEDED / time.strftime("%Y%m%d-%H%M%S")
        target.mkdir(parents=True, exist_ok=True)
        for name in REPORT_FILES:
            if (sweep_dir / name).exists():
                (sweep_dir / name).rename(target / name)
        log.warning("hydra.sweeper.redecide=true: the design changed (%s); the earlier report moved to %s "
                    "and the sweep is decided again from the records of the same jobs at the same steps",
                    "; ".join(changes), target)

    def prepare(self, arguments: list[str]) -> dict[str, Any]:
        """The grid, the budget and the rungs in steps, and the design agreed with the folder's: all before
        any job and before anything is written. Returns the design."""
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        configs, fixed, seeds = self.grid(arguments)
        record = read_record(sweep_dir)
        self.budget(configs, fixed, seeds, record)
        self.folders: dict[tuple[str, Any], Path] = {}
        self.plan = (configs, fixed, seeds, {c: self.group_of(c, fixed) for c in configs}, sweep_dir)
        design = self.design(configs, fixed, seeds)
        first = all((self.folder(c, seeds[0]) / "results.json").exists() for c in configs)
        self.agree_on_design(sweep_dir, design, record, first)
        return design

    # --- the sweep ------------------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> list[Any]:
        try:
            design = self.prepare(arguments)
        except ValueError as err:  # a setting, the data or the design: said in one message, before any job
            sys.exit(f"successive halving not started: {err}")
        configs, fixed, seeds, groups, _ = self.plan
        sweep_dir = self.sweep_dir()
        self.sitting, self.launched_jobs = {"started": time.time(), "finished": None}, 0
        self.report(design)  # the design on record before any job: a later run of another design is refused
        log.info("Successive halving: %d configurations x %d seeds, rungs %s then the full budget of %s "
                 "steps, eta %s, groups %s", len(configs), len(seeds), self.rungs, design["budget_steps"],
                 self.eta, sorted(set(groups.values())))
        returns = self.run_rungs(design)
        self.sitting["finished"] = time.time()
        rungs, failure = self.report(design)
        if failure:
            self.fail(failure)
        log.info("Successive halving complete: finalists %s (%s)", rungs[-1].kept, sweep_dir / "halving.md")
        return returns

    def run_rungs(self, design: dict[str, Any]) -> list[Any]:
        """Launch each rung's jobs that are not done and not trained by another process; wait for those that
        are; stop when every rung is decided (or a job of this process came back short of its rung twice)."""
        configs, fixed, seeds, groups, sweep_dir = self.plan
        returns, launched = [], {}
        while True:
            rungs = self.decide(evidence=False)
            if len(rungs) == len(self.rungs) + 1:
                return returns
            step = ([*self.rungs, None])[len(rungs)]
            alive = rungs[-1].kept if rungs else configs
            use = seeds_at(len(rungs), seeds, self.all_seeds_from)
            todo = [(c, s) for c in alive for s in use if self.score(c, s, step) is PENDING]
            mine = [(c, s) for c, s in todo if not claimed_elsewhere(self.folder(c, s))]
            if not mine:
                self.wait_for_others(todo, step)
                continue
            short = [job for job in mine if launched.get((*job, step), 0) >= 2]
            if short:
                self.report(design)
                where = ", ".join(str(self.folder(*j)) for j in short)
                self.fail(f"rung {step or 'full budget'} did not complete: {len(short)} job(s) of this "
                          f"process stopped short of it twice ({where}; see their results.json); run the "
                          "same command to continue")
            batch = [job_overrides(c, self.seed_key, s, step, fixed)
                     + (["resume=false"] if trained_past(self.folder(c, s), step) else []) for c, s in mine]
            log.info("Rung %s: %d jobs (%d configurations; %d trained by other processes)",
                     step or "full budget", len(batch), len(alive), len(todo) - len(mine))
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=self.launched_jobs)
            self.launched_jobs += len(batch)
            returns.append(results)
            for job, result in zip(mine, results, strict=True):
                self.folders[job] = Path(str(result.hydra_cfg.hydra.runtime.output_dir))
                launched[(*job, step)] = launched.get((*job, step), 0) + 1
            self.report(design)

    def wait_for_others(self, jobs: list[tuple[str, Any]], step: int | None) -> None:
        """Poll the records until none of `jobs` is both unfinished at `step` and claimed by another live
        process."""
        def busy() -> list[tuple[str, Any]]:
            return [j for j in jobs if self.score(*j, step) is PENDING and claimed_elsewhere(self.folder(*j))]

        waiting = busy()
        if waiting:
            names = ", ".join(self.folder(*j).name for j in waiting)
            log.info("Rung %s: waiting for %d job(s) that other processes are training (%s); polling their "
                     "records every %g s", step or "full budget", len(waiting), names, self.poll_seconds)
        while busy():
            time.sleep(self.poll_seconds)

    def folder(self, config: str, seed: Any) -> Path:
        """A job's folder: where this sitting launched it, else where Hydra puts it (hydra.sweep.subdir from
        the overrides without exclude_keys)."""
        if (config, seed) not in self.folders:
            lines = identity_overrides(job_overrides(config, self.seed_key, seed, None, self.plan[1]))
            self.folders[(config, seed)] = self.plan[4] / job_dirname(",".join(lines))
        return self.folders[(config, seed)]

    def score(self, config: str, seed: Any, step: int | None) -> Any:
        return read_score(self.folder(config, seed), step)[0]

    def decide(self, evidence: bool) -> list[Rung]:
        """The decisions from the records as they are now (p-values by paired bootstrap when `evidence`)."""
        from poolhead.sweep.report.stats import paired_bootstrap

        configs, _, seeds, groups, _ = self.plan

        def p_value(best: str, other: str, step: int | None) -> float | None:
            where = (lambda c: self.folder(c, seeds[0])) if step is None else \
                (lambda c: self.folder(c, seeds[0]) / "rungs" / f"step-{step:06d}")
            if (best, other, step) not in self._p_values:  # the report is rewritten after every rung
                self._p_values[(best, other, step)] = paired_bootstrap(where(best), where(other))[0]
            return self._p_values[(best, other, step)]

        return decide(configs, groups, self.rungs, seeds, self.score, self.eta, self.min_per_group,
                      self.maximize(), p_value if evidence else None, self.all_seeds_from)

    def maximize(self) -> bool:
        """The metric's direction, from a job's own record (poolhead.build decides it from the metric)."""
        configs, _, seeds, _, _ = self.plan
        for c in configs:
            mode = read_json(self.folder(c, seeds[0]) / "results.json").get("monitor_mode")
            if mode:
                return mode == "max"
        return True

    def report(self, design: dict[str, Any]) -> tuple[list[Rung], str | None]:
        """Decide from the records and write halving.json/.md, under the folder's lock so that the process
        with the freshest view writes last; a complete report of this design is never replaced by a partial
        one. Returns the decisions and why the sweep cannot finish (None when it can or has)."""
        configs, fixed, seeds, groups, sweep_dir = self.plan
        with locked(sweep_dir):
            rungs = self.decide(evidence=self.bootstrap)
            done = len(rungs) == len(self.rungs) + 1
            failure = self.failure(rungs) if done else None
            before = read_record(sweep_dir)
            if before.get("complete") and not done and before.get("design") == design:
                return rungs, failure
            sittings = self.sittings(before.get("sittings", []), launched_nothing=not self.launched_jobs)
            jobs = sorted({self.folder(c, s).name for c in configs for s in seeds})
            write_halving_report(sweep_dir, self, configs, groups, seeds, rungs, self.folders, sittings,
                                 design=design, jobs=jobs, failure=failure)
        return rungs, failure

    def sittings(self, recorded: list[dict[str, Any]], launched_nothing: bool) -> list[dict[str, Any]]:
        """The folder's sittings with this one merged in by its start (other processes write theirs the same
        way); a sitting that launched nothing (a finished sweep run again) is not counted."""
        others = [s for s in recorded if s.get("started") != self.sitting["started"]]
        mine = [dict(self.sitting, finished=self.sitting["finished"] or time.time())] * (not launched_nothing)
        return sorted(others + mine, key=lambda s: s["started"])

    def failure(self, rungs: list[Rung]) -> str | None:
        """Why a decided sweep has no answer for a group: every configuration still in it failed."""
        _, _, seeds, groups, _ = self.plan
        empty = sorted(set(groups.values()) - {groups[c] for c in rungs[-1].kept})
        lines = []
        for group in empty:
            last = next(r for r in reversed(rungs) if any(groups[c] == group for c in r.scores))
            records = [self.folder(c, s) / "results.json" for c in last.scores if groups[c] == group
                       for s in seeds]
            where = [str(r) for r in records if read_json(r).get("status") == "failed"]
            at = "the full budget" if last.step is None else f"rung {last.step}"
            lines.append(f"group {group} has no finalist: every configuration still in it failed at {at} "
                         f"({', '.join(where)})")
        return "; ".join(lines) or None

    def fail(self, why: str) -> None:
        """End the sweep non-zero saying why, after the end-of-multirun callbacks (summary.md) ran."""
        log.error("Successive halving cannot finish: %s", why)
        print(f"successive halving cannot finish: {why}", file=sys.stderr, flush=True)
        self.hydra_context.callbacks.on_multirun_end(config=self.config)
        raise SystemExit(1)
