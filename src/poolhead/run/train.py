"""One run: build, fit, score the best checkpoint as `poolhead.load` rebuilds it, and leave results.json +
predictions.csv in the run folder (the output contract: docs/outputs.md)."""

from __future__ import annotations

import logging
import platform
import subprocess
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch
import transformers
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from poolhead.core.hub import weights_sha256
from poolhead.run.build import assemble, load
from poolhead.run.callbacks import (
    RNGState,
    RungReached,
    StopAtStep,
    StopOnNonFinite,
    TrainThroughput,
)
from poolhead.run.checkpoint import DescribedCheckpointIO, read_checkpoint
from poolhead.run.checks import check_settings
from poolhead.run.evaluate import evaluate, evaluate_splits
from poolhead.run.loggers import prepare_metrics_file
from poolhead.run.plan import plan_run
from poolhead.run.record import SIGTERM_EXIT, atomic_write, json_text, shown

log = logging.getLogger(__name__)


def run(cfg: DictConfig, extra_callbacks: list[L.Callback] | None = None, ckpt_path: str | None = None
        ) -> dict[str, Any]:
    """Train and evaluate one configuration; never raises: a failure is recorded in results.json. A resume
    (`ckpt_path`, or `cfg.ckpt_path`) that cannot start changes no file of the run and returns the failure."""
    out_dir = Path(cfg.paths.output_dir)
    try:
        plan = plan_run(cfg, ckpt_path)
        prepare_metrics_file(out_dir / "csv" / "metrics.csv", plan.resume_step)
    except Exception as err:
        log.error("cannot resume: %s", err)
        return {"status": "failed", "error": f"{type(err).__name__}: {err}", "resumable": False}
    cfg = plan.cfg
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"status": "failed", "error": None, "config": describe(cfg), "metrics": {},
                               "monitor": None, "monitor_mode": None, "checkpoints": {}, "data": {}, "timing": {},
                               "env": environment(), "config_hash": None, "started": _now(), "finished": None}
    loggers: list = []
    try:
        results["config_hash"] = plan.config_hash
        check_settings(cfg)  # before the seed is used (build() checks again, for its other callers)
        L.seed_everything(cfg.seed, workers=True)
        built = assemble(cfg)
        datamodule, model, cfg = built.datamodule, built.model, built.cfg  # cfg resolved: precision, monitor
        results |= {"monitor": cfg.monitor, "monitor_mode": cfg.monitor_mode,
                    "data": dict(datamodule.sizes) | {"truncated": datamodule.truncated,
                                                      "unk_rate": round(datamodule.unk_rate, 6)}}
        results["config"]["precision"] = str(cfg.trainer.precision)
        results["encoder"] = {"name_or_path": cfg.encoder.get("name_or_path"),
                              "weights_sha256": (weights_sha256(cfg.encoder.get("name_or_path")) or [None])[-1]}
        datamodule.save_label_map(out_dir / "labels.json")
        if cfg.compile:
            model.encoder.model.compile()

        loggers = [instantiate(c) for c in cfg.logger.values()]
        throughput = TrainThroughput()
        stop = StopAtStep(cfg.stop_at_step, str(out_dir / "checkpoints" / "last.ckpt")) if cfg.get("stop_at_step") \
            else None  # a rung of successive halving: train this far, save, and let the sweep decide
        callbacks = [instantiate(c) for c in cfg.callbacks.values()]
        callbacks += [RNGState(), StopOnNonFinite(), throughput, *([stop] if stop else []), *(extra_callbacks or [])]
        trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks,
                                         plugins=[DescribedCheckpointIO(built.description)])
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

        try:
            best = fit_or_evaluate_as_is(trainer, model, datamodule, plan.resume_from, results)
        except RungReached:
            best = None
        if stop is not None and stop.stopped_at is not None:
            throughput.pause()
            results |= pause_at_rung(model, trainer, datamodule, out_dir, stop.stopped_at, throughput.seconds,
                                     cfg.monitor)
            return results
        # exactly what a user gets back from the checkpoint; trusted: its config is this run's own (custom poolings);
        # results.json still says how an earlier attempt ended, until this one writes it
        evaluated = load(best, trust_remote_code=True, warn_if_unfinished=False) if best else model
        evaluated.to(trainer.strategy.root_device)  # load() maps to the CPU, and so does Lightning's teardown
        splits = ["val"] + (["test"] if cfg.test and datamodule.has_test else [])
        frame, metrics, undefined, seconds = evaluate_splits(evaluated, datamodule, splits)
        frame.to_csv(out_dir / "predictions.csv", index=False)
        results["metrics"] = dict(sorted(metrics.items()))
        if undefined:  # null metrics, and why
            results["undefined"] = undefined
        log_test_metrics(loggers, results["metrics"], trainer.global_step)
        results["checkpoints"] = {"best": best, "last": _existing(out_dir / "checkpoints" / "last.ckpt")}
        results["timing"] = {"train_seconds": round(throughput.seconds, 3),
                             "train_samples_per_second": round(throughput.samples_per_second, 2),
                             "eval_samples_per_second": round(datamodule.sizes["val"] / seconds["val"], 2),
                             "train_steps": trainer.global_step}
        results["status"] = "ok"
        if not cfg.keep_last_checkpoint and results["checkpoints"]["last"]:  # finished: nothing left to resume
            Path(results["checkpoints"]["last"]).unlink()
            results["checkpoints"]["last"] = None
    except Exception as err:
        results["error"] = f"{type(err).__name__}: {err}"
        results["traceback"] = traceback.format_exc()
        log.error("run failed: %s", results["error"])
    except BaseException as stop:  # SIGTERM (Lightning raises SystemExit), Ctrl-C: the record says so, then it stops
        results["error"] = f"interrupted ({type(stop).__name__}); run the same command again to resume"
        if isinstance(stop, SystemExit) and stop.code in (None, 0):  # Lightning's SIGTERMException exits 0
            raise SystemExit(SIGTERM_EXIT) from stop  # an interruption, not a success: a scheduler requeues it
        raise
    finally:
        finish_wandb(loggers, failed=results["status"] != "ok")
        results["finished"] = _now()
        atomic_write(out_dir / "results.json", json_text(results))
    return results


def pause_at_rung(model: Any, trainer: L.Trainer, datamodule: Any, out_dir: Path, step: int, seconds: float,
                  monitor: str) -> dict[str, Any]:
    """A run stopped at a rung: its validation metrics and predictions with the weights of that step, kept in
    `rungs/step-<N>/` (a later rung of the same job adds its own folder), and the results of a paused job."""
    model.to(trainer.strategy.root_device)
    frame, metrics, _ = evaluate(model, datamodule, "val")
    folder = out_dir / "rungs" / f"step-{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "predictions.csv", index=False)
    rung = {"step": step, "monitor": monitor, "metrics": dict(sorted(metrics.items())),
            "train_seconds": round(seconds, 3), "finished": _now()} | ({"undefined": metrics.undefined}
                                                                      if metrics.undefined else {})
    atomic_write(folder / "metrics.json", json_text(rung) + "\n")
    log.info("Paused at step %d (a rung): %s; the sweep continues this run from %s", step,
             ", ".join(f"{k} {shown(v)}" for k, v in rung["metrics"].items()),
             out_dir / "checkpoints" / "last.ckpt")
    return {"status": "paused", "rung": rung, "metrics": rung["metrics"],
            "checkpoints": {"best": None, "last": _existing(out_dir / "checkpoints" / "last.ckpt")}}


def steps_taken(trainer: L.Trainer) -> int:
    """The optimizer steps fit took. Under ddp_spawn the ranks train in child processes and the main trainer's
    global_step stays 0: the best checkpoint they wrote (its path comes back to the main process) holds theirs."""
    if trainer.global_step:
        return trainer.global_step
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    return read_checkpoint(Path(best)).get("global_step", 0) if best and Path(best).is_file() else 0


def fit_or_evaluate_as_is(trainer: L.Trainer, model: Any, datamodule: Any, ckpt_path: str | None,
                          results: dict[str, Any]) -> str | None:
    """Fit, and return the best checkpoint's path. A model with nothing to train (a frozen encoder, a weightless
    pooling and the bi cosine head: the zero-shot baseline of that pooling) is evaluated as it is, and saved."""
    if model.trainable:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        if steps_taken(trainer) == 0:
            raise RuntimeError("no training step was taken (the training split gave no batch under the "
                               "trainer's limits), so the model is untrained: nothing is reported as its "
                               "result")
        callback = trainer.checkpoint_callback
        return (callback.best_model_path or None) if callback else None
    log.info("Nothing to train in this configuration (frozen encoder, %s pooling, %s head): evaluated as it is, "
             "a zero-shot baseline", type(model.pooling).__name__, type(model.head).__name__)
    results["zero_shot"] = True
    trainer.validate(model, datamodule=datamodule, verbose=False)
    path = Path(trainer.default_root_dir) / "checkpoints" / "best.ckpt"
    trainer.save_checkpoint(path)
    return str(path)


def describe(cfg: DictConfig) -> dict[str, Any]:
    """The settings a sweep varies, flat: group choices by name, then the knobs researchers sweep. A resumed run is
    described by the choices and overrides it was started with (its .hydra/hydra.yaml)."""
    choices, overrides = started_with(cfg)
    described = {group: choices.get(group) for group in ("encoder", "pooling", "head", "mode", "data", "optim",
                                                         "experiment")}
    described |= {"seed": cfg.seed, "lr": cfg.optim.lr, "head_lr": cfg.optim.get("head_lr"),
                  "max_epochs": cfg.trainer.get("max_epochs"), "precision": str(cfg.trainer.get("precision")),
                  "batch_size": cfg.data.get("batch_size"), "max_length": cfg.encoder.max_length,
                  "layers": list(cfg.encoder.layers), "freeze": cfg.encoder.freeze,
                  "name_or_path": cfg.encoder.get("name_or_path")}
    described["overrides"] = overrides
    return described


def started_with(cfg: DictConfig) -> tuple[dict[str, Any], list[str]]:
    """(group choices, task overrides) the run was started with: this process's Hydra config, or on resume
    the run folder's .hydra/hydra.yaml read as plain YAML (a run folder is data: nothing is resolved)."""
    started = Path(str(cfg.paths.output_dir)) / ".hydra" / "hydra.yaml"
    if cfg.get("ckpt_path") and started.is_file():
        hydra = (yaml.safe_load(started.read_text()) or {}).get("hydra") or {}
        choices, overrides = hydra.get("runtime", {}).get("choices"), hydra.get("overrides", {}).get("task")
        return dict(choices or {}), list(overrides or [])
    if not HydraConfig.initialized():
        return {}, []
    hydra = HydraConfig.get()
    return dict(hydra.runtime.choices), list(hydra.overrides.task)


def environment() -> dict[str, Any]:
    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        git = None
    cpu = f"cpu ({platform.processor() or platform.machine()})"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu
    return {"git": git, "torch": torch.__version__, "transformers": transformers.__version__,
            "lightning": L.__version__, "device": device, "threads": torch.get_num_threads()}


def _now() -> str:
    """UTC time of this process's start and end of the run: a record keeps them where file times do not (git)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _existing(path: Path) -> str | None:
    return str(path) if path.exists() else None


def log_test_metrics(loggers: list, metrics: dict[str, float], step: int) -> None:
    """The test metrics (scored after fit, outside Lightning's loops) sent to each logger a user reads
    them in: TensorBoard, MLflow, W&B. The CSV log stays the per-step log; results.json holds them for it."""
    test = {name: value for name, value in metrics.items()  # an undefined metric (null) has no value to log
            if name.startswith("test/") and value is not None}
    for logger in loggers:
        if test and not isinstance(logger, CSVLogger):
            logger.log_metrics(test, step=step)
            logger.finalize("success")  # Lightning finalized them after fit: flush and close again


def finish_wandb(loggers: list, failed: bool) -> None:
    """Always close the W&B run, so the next job of a sweep starts its own."""
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        wandb.finish(exit_code=1 if failed else 0)
