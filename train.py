"""python train.py [group=option ...] [key=value ...]   (see README.md)"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import poolhead  # noqa: F401  (registers the config resolvers)
from poolhead.sweep.jobs import prepare_job, release_job


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg)
    finally:
        release_job()  # the job's claim ends with it (a parallel launcher's worker goes on to other jobs)


def train(cfg: DictConfig) -> float | None:
    results, resume_from = prepare_job(cfg)  # a job already done with this config: its results, and nothing runs
    if results is None:
        from poolhead.run.train import quiet_known_noise, run  # here: a re-run sweep that skips all never imports torch

        quiet_known_noise()
        try:
            results = run(cfg, ckpt_path=resume_from)
        except SystemExit:  # interrupted (SIGTERM): a sweep says what finished before it stops, non-zero
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                from poolhead.sweep.jobs import report_interrupted

                report_interrupted(HydraConfig.get().sweep.dir)
            raise
    single_run = HydraConfig.get().mode != RunMode.MULTIRUN
    if results["status"] != "ok" and single_run:
        where = "nothing of the run was changed" if results.get("resumable") is False else \
            f"details: {cfg.paths.output_dir}/results.json"
        sys.exit(f"run failed: {results['error']}\n({where})")
    if single_run:
        from poolhead.run.train import closing_summary

        print(closing_summary(results, cfg.paths.output_dir))
    return results.get("metrics", {}).get(results.get("monitor"))  # for Hydra sweepers that optimise


if __name__ == "__main__":
    main()
