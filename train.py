"""python train.py [group=option ...] [key=value ...]   (see README.md)"""

import os
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import poolhead  # noqa: F401  (registers the config resolvers)
from poolhead.run.record import SIGTERM_EXIT
from poolhead.sweep.jobs import prepare_job, release_job


@hydra.main(version_base="1.3", config_path=str(poolhead.conf_dir()), config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg)
    except SystemExit as stop:  # interrupted (SIGTERM): a sweep says what finished before it stops, non-zero
        if os.environ.get("SUBMITIT_EXECUTOR"):  # a job of submitit's: its own exits (a requeue) go on; an
            if stop.code == SIGTERM_EXIT:        # interrupted job returns its record, and the sweep reports it
                return None
            raise
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            from poolhead.sweep.jobs import report_interrupted

            report_interrupted(HydraConfig.get().sweep.dir)
        raise
    finally:
        release_job()  # the job's claim ends with it (a parallel launcher's worker goes on to other jobs)


def train(cfg: DictConfig) -> float | None:
    results, resume_from = prepare_job(cfg)  # a job already done with this config: its results, and nothing runs
    if results is None:
        from poolhead.run.train import quiet_known_noise, run  # here: a re-run sweep that skips all never imports torch

        quiet_known_noise()
        results = run(cfg, ckpt_path=resume_from)
    single_run = HydraConfig.get().mode != RunMode.MULTIRUN
    if results["status"] != "ok" and single_run:
        where = "nothing of the run was changed" if results.get("resumable") is False else \
            f"details: {cfg.paths.output_dir}/results.json"
        sys.exit(f"run failed: {results['error']}\n({where})")
    if single_run:
        from poolhead.run.train import closing_summary

        print(closing_summary(results, cfg.paths.output_dir))
    return results.get("metrics", {}).get(results.get("monitor"))  # for Hydra sweepers that optimise


def interrupt(signum: int, frame: object) -> None:
    """SIGTERM outside fit (data, model, evaluation, between jobs) is an interruption like one inside it: the run
    records it and the process exits 143. Inside fit Lightning's own handler calls this one too: it stops there."""
    if signal.getsignal(signal.SIGTERM) is interrupt:
        raise SystemExit(SIGTERM_EXIT)


if __name__ == "__main__":
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # a launcher's own handler (submitit) is left as it is
        signal.signal(signal.SIGTERM, interrupt)
    main()
