"""`poolhead train [overrides]` and `poolhead train -m [overrides]` (a sweep): Hydra's own command line over
the configs shipped in the package (src/poolhead/conf). Add a config folder of your own with `--config-dir
DIR` or `hydra.searchpath=[file://DIR]`. The repository's train.py calls `main` too, so both compose the same
configs and give every job the same identity."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from poolhead.resolvers import register
from poolhead.resources import conf_dir
from poolhead.run.claim import release_job
from poolhead.run.record import SIGTERM_EXIT
from poolhead.sweep.jobs import prepare_job
from poolhead.use.presets import PresetConflict, check_presets, config_dirs

log = logging.getLogger(__name__)

register()  # here too: a parallel launcher's worker imports this module to run a job, and composes nothing


def main(argv: list[str] | None = None, program: str = "poolhead train") -> None:
    """Run Hydra with `argv` (default: sys.argv[1:]); `program` is how the closing "Next:" lines name the
    command."""
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    os.environ["POOLHEAD_PROGRAM"] = program  # what the closing lines print (a joblib worker inherits it)
    if os.getcwd() not in sys.path:  # `_target_: my_pooling.X` in the working folder, as `python -m` finds it
        sys.path.insert(1, os.getcwd())
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # a launcher's own handler (submitit) stays
        signal.signal(signal.SIGTERM, interrupt)
    hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="train")(task)()


def task(cfg: DictConfig) -> float | None:
    """Hydra's task function: one job; an interruption (SIGTERM) in a sweep reports what finished, stops."""
    respect_the_user()
    try:
        return train(cfg)
    except SystemExit as stop:  # interrupted (SIGTERM): a sweep says what finished before it stops, non-zero
        # a job of submitit's: its own exits (a requeue) go on; an interrupted job returns its record, and the
        # sweep reports it
        if os.environ.get("SUBMITIT_EXECUTOR"):
            if stop.code == SIGTERM_EXIT:
                return None
            raise
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            from poolhead.sweep.jobs import report_interrupted

            report_interrupted(HydraConfig.get().sweep.dir)
        raise
    finally:
        release_job()  # the job's claim ends with it (a parallel launcher's worker goes on to other jobs)


def train(cfg: DictConfig) -> float | None:
    """Skip a job done with this config, else run it; a single run prints its closing lines."""
    results, resume_from = prepare_job(cfg)  # a job already done with this config: its results; nothing runs
    if results is None:
        from poolhead.run.train import run  # here: a re-run sweep that skips all never imports torch
        from poolhead.use.console import quiet_known_noise

        quiet_known_noise()
        results = run(cfg, ckpt_path=resume_from)
    single_run = HydraConfig.get().mode != RunMode.MULTIRUN
    if results["status"] != "ok" and single_run:
        where = "nothing of the run was changed" if results.get("resumable") is False else \
            f"details: {cfg.paths.output_dir}/results.json"
        sys.exit(f"run failed: {results['error']}\n({where})")
    if single_run:
        from poolhead.use.console import closing_summary

        program = os.environ.get("POOLHEAD_PROGRAM", "poolhead train")
        print(closing_summary(results, cfg, overrides(), program))
    return results.get("metrics", {}).get(results.get("monitor"))  # for Hydra sweepers that optimise


def respect_the_user() -> None:
    """Before any work: a preset never overrides the user's data, mode or encoder silently
    (poolhead.use.presets)."""
    hydra_cfg = HydraConfig.get()
    sources = OmegaConf.to_container(hydra_cfg.runtime.config_sources)
    try:
        notes = check_presets(dict(hydra_cfg.runtime.choices), overrides(), config_dirs(sources))
    except PresetConflict as err:
        sys.exit(f"settings: {err}")
    for note in notes:
        log.warning(note)


def overrides() -> list[str]:
    """The command line's overrides of this job (what the user set)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def interrupt(signum: int, frame: Any) -> None:
    """SIGTERM outside fit (data, model, evaluation, between jobs) is an interruption like one inside it: the
    run records it and the process exits 143. Inside fit Lightning's own handler calls this one too: it stops
    there."""
    if signal.getsignal(signal.SIGTERM) is interrupt:
        raise SystemExit(SIGTERM_EXIT)
