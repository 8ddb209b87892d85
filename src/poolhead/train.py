"""One run: build data, encoder, pooling and head from the config, fit, test once with the best checkpoint, and
leave results.json + predictions.csv in the run folder (the output contract in README.md)."""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import time
import traceback
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
import transformers
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from poolhead.cache import FeatureCache
from poolhead.callbacks import RNGState, TrainThroughput
from poolhead.model import PoolheadModel

log = logging.getLogger(__name__)


def run(cfg: DictConfig, extra_callbacks: list[L.Callback] | None = None) -> dict[str, Any]:
    """Train and evaluate one configuration; never raises: a failure is recorded in results.json."""
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"status": "failed", "error": None, "config": describe(cfg), "metrics": {},
                               "monitor": None, "data": {}, "timing": {}, "env": environment()}
    loggers: list = []
    try:
        L.seed_everything(cfg.seed, workers=True)
        encoder = instantiate(cfg.encoder)
        datamodule = instantiate(cfg.data, tokenizer=encoder.tokenizer, mode=cfg.mode, max_length=encoder.max_length,
                                 seed=cfg.seed, cache_dir=cfg.paths.cache_dir)
        datamodule.setup("fit")
        with open_dict(cfg):
            cfg.monitor = cfg.monitor or f"val/{datamodule.task.monitor}"
        results["monitor"], results["data"] = cfg.monitor, dict(datamodule.sizes)
        if datamodule.task.kind == "class":
            datamodule.save_label_map(out_dir / "labels.json")
        model = PoolheadModel(encoder, instantiate(cfg.pooling), instantiate(cfg.head), datamodule.task, cfg.mode,
                              OmegaConf.to_container(cfg.optim, resolve=True))
        if cfg.encoder.freeze and cfg.cache_features:
            bf16 = str(cfg.trainer.precision).startswith("bf16")  # build the cache as the run would compute it
            cache = FeatureCache(cfg.paths.cache_dir, cfg.paths.cache_max_gb)
            datamodule.use_encoder_features(cache, encoder, autocast=torch.bfloat16 if bf16 else None)
        elif cfg.compile:
            model.encoder.model.compile()

        loggers = [instantiate(c) for c in cfg.logger.values()]
        throughput = TrainThroughput()
        callbacks = [instantiate(c) for c in cfg.callbacks.values()] + [RNGState(), throughput, *(extra_callbacks or [])]
        trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_path(cfg, out_dir))
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        best = best or None  # None: evaluate the weights in memory
        metrics = trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
        if cfg.test and datamodule.has_test:
            metrics |= trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
        results["metrics"] = {k: float(v) for k, v in sorted(metrics.items())}

        splits = ["val"] + (["test"] if cfg.test and datamodule.has_test else [])
        predictions, eval_seconds = predict(trainer, model, datamodule, splits)  # the best weights are loaded
        predictions.to_csv(out_dir / "predictions.csv", index=False)
        results["timing"] = {"train_seconds": round(throughput.seconds, 3),
                             "train_samples_per_second": round(throughput.samples_per_second, 2),
                             "eval_samples_per_second": round(datamodule.sizes["val"] / eval_seconds, 2),
                             "best_checkpoint": best}
        results["status"] = "ok"
    except Exception as err:  # noqa: BLE001 - a sweep goes on past one failed job; the error is recorded
        results["error"] = f"{type(err).__name__}: {err}"
        results["traceback"] = traceback.format_exc()
        log.error("run failed: %s", results["error"])
    finally:
        finish_wandb(loggers, failed=results["status"] != "ok")
        (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def predict(trainer: L.Trainer, model: PoolheadModel, datamodule: Any, splits: list[str]) -> tuple[pd.DataFrame, float]:
    """Predictions for each split in input order (gold next to predicted), and the seconds the val pass took."""
    frames, val_seconds = [], 0.0
    for split in splits:
        start = time.perf_counter()
        batches = trainer.predict(model, dataloaders=datamodule.predict_dataloader(split))
        if split == "val":
            val_seconds = time.perf_counter() - start
        index = torch.cat([b["index"] for b in batches]).numpy()
        pred = torch.cat([b["pred"] for b in batches]).numpy()
        rows = datamodule.rows(split)
        frame = pd.DataFrame({"index": rows.index, "split": split, "gold": rows["label"]})
        frame["pred"] = pd.Series(pred, index=index).reindex(rows.index).to_numpy()
        if frame["pred"].isna().any():
            raise RuntimeError(f"predictions for {split} miss rows {frame.index[frame['pred'].isna()][:5].tolist()}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), val_seconds


def resume_path(cfg: DictConfig, out_dir: Path) -> str | None:
    """`ckpt_path=last` -> this run folder's last.ckpt (it must exist); any other value is a checkpoint path."""
    if cfg.ckpt_path in (None, ""):
        return None
    path = out_dir / "checkpoints" / "last.ckpt" if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    if not path.exists():
        raise FileNotFoundError(f"ckpt_path={cfg.ckpt_path}: no checkpoint at {path}. To resume a run, pass its "
                                "folder too: hydra.run.dir=<that run's folder> ckpt_path=last")
    return str(path)


def describe(cfg: DictConfig) -> dict[str, Any]:
    """The settings a sweep varies, flat: group choices by name, then the knobs researchers sweep."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    described = {group: choices.get(group) for group in ("encoder", "pooling", "head", "data", "experiment")}
    described |= {"mode": cfg.mode, "seed": cfg.seed, "lr": cfg.optim.lr, "head_lr": cfg.optim.head_lr,
                  "max_epochs": cfg.trainer.get("max_epochs"), "precision": str(cfg.trainer.get("precision")),
                  "batch_size": cfg.data.get("batch_size"), "max_length": cfg.encoder.max_length,
                  "layers": list(cfg.encoder.layers), "freeze": cfg.encoder.freeze}
    described["overrides"] = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return described


def environment() -> dict[str, Any]:
    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        git = None
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()})"
    return {"git": git, "torch": torch.__version__, "transformers": transformers.__version__,
            "lightning": L.__version__, "device": device, "threads": torch.get_num_threads()}


def finish_wandb(loggers: list, failed: bool) -> None:
    """Always close the W&B run, so the next job of a sweep starts its own."""
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        wandb.finish(exit_code=1 if failed else 0)
