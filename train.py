"""python train.py [group=option ...] [key=value ...]   (see README.md)"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import poolhead  # noqa: F401  (registers the config resolvers)
from poolhead.sweep import prepare_job


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    results = prepare_job(cfg)  # a multirun job already done with this config: its results, and nothing runs
    if results is None:
        from poolhead.train import run  # here, not above: a re-run sweep that skips every job never imports torch

        results = run(cfg)
    if results["status"] != "ok" and HydraConfig.get().mode != RunMode.MULTIRUN:
        where = "nothing of the run was changed" if results.get("resumable") is False else \
            f"details: {cfg.paths.output_dir}/results.json"
        sys.exit(f"run failed: {results['error']}\n({where})")
    return results.get("metrics", {}).get(results.get("monitor"))  # for Hydra sweepers that optimise


if __name__ == "__main__":
    main()
