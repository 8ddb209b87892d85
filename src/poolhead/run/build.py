"""One way to build things: a composed config -> (data module, model), and a checkpoint -> the model again.

    datamodule, model = poolhead.build(cfg)   # training, commands, tests and benchmarks all call this
    model = poolhead.load("logs/train/runs/<run>")  # best.ckpt of a run folder (or any .ckpt), offline

`load` needs no config, no hub and no data: every checkpoint describes itself (`poolhead.run.checkpoint`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from poolhead import speed
from poolhead.core.model import PoolheadModel
from poolhead.core.task import TaskSpec
from poolhead.data import TextDataModule
from poolhead.run.checkpoint import Description, checkpoint_file, read_checkpoint
from poolhead.run.checks import check_against_data, check_settings
from poolhead.run.plan import autocast_dtype, resolve
from poolhead.run.record import UnfinishedRunWarning, unfinished


@dataclass(frozen=True)
class Built:
    """What a run trains: the data module, the model, the config resolved for this machine and task
    (`plan.resolve`: precision, monitor and its direction) and the description its checkpoints carry
    (`DescribedCheckpointIO`)."""

    datamodule: TextDataModule
    model: PoolheadModel
    cfg: DictConfig
    description: Description


def assemble(cfg: DictConfig) -> Built:
    """Settings checked, data read and tokenized, the config resolved, the model built with speed levers."""
    check_settings(cfg)
    encoder = make(encoder_config(cfg.encoder))
    datamodule: TextDataModule = make(cfg.data, tokenizer=encoder.tokenizer, mode=make(cfg.mode),
                                      max_length=encoder.max_length, seed=cfg.seed, cache_dir=cfg.paths.cache_dir)
    datamodule.setup("fit")
    check_against_data(cfg, datamodule.task, datamodule.source("train"))
    cfg = resolve(cfg, datamodule.task)
    model = build_model(cfg, datamodule.task, encoder, datamodule)
    model.monitor_mode(cfg.monitor)  # a metric this model logs, else a ValueError naming the ones it does
    description = Description.of(cfg, datamodule.task, model)
    model.description = description  # the run layer's note (as `load` sets it); the core never reads it
    return Built(datamodule, model, cfg, description)


def build(cfg: DictConfig) -> tuple[TextDataModule, PoolheadModel]:
    """(data module, model) of `assemble(cfg)`: `model.description` says what it was built from."""
    built = assemble(cfg)
    return built.datamodule, built.model


def build_model(cfg: DictConfig, task: TaskSpec, encoder: Any = None, datamodule: Any = None) -> PoolheadModel:
    """The model from the config groups and a task (what `load` needs, with no data), with `poolhead.speed`'s levers
    applied as `cfg` asks (a `datamodule` fills a frozen encoder's feature cache)."""
    o = cfg.optim
    model = PoolheadModel(encoder if encoder is not None else make(encoder_config(cfg.encoder)), make(cfg.pooling),
                          make(cfg.head), task, make(cfg.mode), optimizer=make(o.optimizer),
                          scheduler=make(o.get("scheduler")), lr=o.lr, head_lr=o.get("head_lr"),
                          weight_decay=o.get("weight_decay", 0.0), warmup_ratio=o.get("warmup_ratio", 0.0))
    return speed.apply(model, cfg, datamodule, autocast_dtype(cfg.trainer.get("precision")))


def encoder_config(node: Any) -> dict[str, Any]:
    """The `encoder` config without the keys `poolhead.speed` reads (they stay in the config: job identity hashes
    them)."""
    container = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    return {key: value for key, value in container.items() if key not in speed.SPEED_KEYS}


def make(node: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, with a failing component's own error as the message (Hydra wraps it in an
    InstantiationException with the call and `full_key`, which buries what the user must change)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if err.__cause__ is not None:
            raise err.__cause__ from None
        raise


def load(path: str | Path, map_location: str | torch.device = "cpu", trust_remote_code: bool = False,
         warn_if_unfinished: bool = True) -> PoolheadModel:
    """The trained model from a checkpoint or a run folder (its checkpoints/best.ckpt), in eval mode, offline.
    `model.description` (`poolhead.run.checkpoint.Description`) holds the run's config, `model.encoder.tokenizer`
    its tokenizer. Nothing in the file runs: weights load without pickled code, and only poolhead's own components
    are built from its config unless `trust_remote_code=True` (a custom pooling/head of your own). A run that did
    not finish (its results.json: failed, interrupted, paused at a rung) is loaded with an UnfinishedRunWarning."""
    ckpt_path = checkpoint_file(path)
    said = unfinished(ckpt_path) if warn_if_unfinished else None
    if said:
        warnings.warn(f"{said}; loaded anyway", UnfinishedRunWarning, stacklevel=2)
    checkpoint = read_checkpoint(ckpt_path, map_location)
    description = Description.read(checkpoint, ckpt_path, trust_remote_code)  # checked: no OmegaConf yet
    cfg = OmegaConf.create(description.config)
    encoder_cfg = encoder_config(cfg.encoder) | {"name_or_path": None, "tokenizer": "(from the checkpoint)",
                                                 "config": description.encoder_config}
    encoder = make(encoder_cfg, _convert_="all")  # a plain dict config: transformers serialises it
    encoder.tokenizer = description.tokenizer()
    model = build_model(cfg, description.task_spec, encoder)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, KeyError) as err:  # torch lists every key; the first lines say which part does not fit
        lines = str(err).strip().splitlines()
        raise ValueError(f"{ckpt_path}: its weights do not fit the model its own description builds ("
                         f"{' '.join(lines[:2])[:300]}...): the file was edited or damaged; use another checkpoint "
                         "or retrain") from None
    model.description = description
    return model.to(map_location).eval()
