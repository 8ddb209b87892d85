"""python train.py [group=option ...] [key=value ...]   (see README.md)"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import poolhead  # noqa: F401  (registers the config resolvers)
from poolhead.train import closing_summary, quiet_known_noise, run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet_known_noise()
    results = run(cfg)
    if results["status"] != "ok" and HydraConfig.get().mode != RunMode.MULTIRUN:
        sys.exit(f"run failed: {results['error']}\n(details: {cfg.paths.output_dir}/results.json)")
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        print(closing_summary(results, cfg.paths.output_dir))
    return results["metrics"].get(results["monitor"])  # for Hydra sweepers that optimise


if __name__ == "__main__":
    main()
