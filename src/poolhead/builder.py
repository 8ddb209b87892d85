"""One way to build things: a composed config -> (data module, model), and a checkpoint -> the model again.

    datamodule, model = poolhead.build(cfg)   # training, commands, tests and benchmarks all call this
    model = poolhead.load("logs/train/runs/<run>")  # best.ckpt of a run folder (or any .ckpt), offline

Every checkpoint carries what rebuilding needs (`checkpoint["poolhead"]`): the composed config (encoder, pooling, head,
mode, data preprocessing, optimizer), the task (kind, score range, label names), the encoder's architecture and
the tokenizer's files, so `load` needs no config, no hub and no data.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from poolhead.cache import CachedEncoder, FeatureCache
from poolhead.checks import SettingsError, check_against_data, check_settings
from poolhead.data import TextDataModule
from poolhead.memory import keep_freed_memory
from poolhead.model import PoolheadModel
from poolhead.task import TaskSpec

log = logging.getLogger(__name__)
CHECKPOINT_VERSION = 1
SAVED_GROUPS = ("encoder", "pooling", "head", "mode", "data", "optim", "seed", "monitor", "monitor_mode", "cache_features")


def build(cfg: DictConfig) -> tuple[TextDataModule, PoolheadModel]:
    """Settings resolved (precision, monitor direction), data read and tokenized, model assembled; the feature cache
    (encoder.freeze=true, cache_features=true) wraps the encoder here, once."""
    check_settings(cfg)
    keep_freed_memory(cfg.get("keep_freed_memory", True))
    with open_dict(cfg):
        cfg.trainer.precision = resolve_precision(cfg.trainer.precision, cfg.trainer.get("accelerator", "auto"))
    encoder = make(cfg.encoder)
    datamodule: TextDataModule = make(cfg.data, tokenizer=encoder.tokenizer, mode=make(cfg.mode),
                                      max_length=encoder.max_length, seed=cfg.seed, cache_dir=cfg.paths.cache_dir)
    datamodule.setup("fit")
    check_against_data(cfg, datamodule.task, datamodule.source("train"))
    if cfg.encoder.freeze and cfg.cache_features:
        cache = FeatureCache(cfg.paths.cache_dir, cfg.paths.cache_max_gb)
        encoder = CachedEncoder(encoder, cache, datamodule.token_sides(), datamodule.eval_batch_size,
                                autocast_dtype(cfg.trainer.precision))  # the cache holds what the run computes
    model = build_model(cfg, datamodule.task, encoder)
    with open_dict(cfg):
        cfg.monitor = cfg.monitor or f"val/{datamodule.task.monitor}"
        cfg.monitor_mode = model.monitor_mode(cfg.monitor)
    model.description = describe_for_checkpoint(cfg, datamodule.task, model)
    return datamodule, model


def build_model(cfg: DictConfig, task: TaskSpec, encoder: Any = None) -> PoolheadModel:
    """The model alone, from the config groups and a task (what `load` needs, with no data)."""
    o = cfg.optim
    return PoolheadModel(encoder if encoder is not None else make(cfg.encoder), make(cfg.pooling), make(cfg.head),
                         task, make(cfg.mode), optimizer=make(o.optimizer), scheduler=make(o.get("scheduler")),
                         lr=o.lr, head_lr=o.get("head_lr"), weight_decay=o.get("weight_decay", 0.0),
                         warmup_ratio=o.get("warmup_ratio", 0.0))


def make(node: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, with a failing component's own error as the message (Hydra wraps it in an
    InstantiationException with the call and `full_key`, which buries what the user must change)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if err.__cause__ is not None:
            raise err.__cause__ from None
        raise


def describe_for_checkpoint(cfg: DictConfig, task: TaskSpec, model: PoolheadModel) -> dict[str, Any]:
    config = {key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
              for key in SAVED_GROUPS if key in cfg}
    config["trainer"] = {"precision": str(cfg.trainer.precision)}
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = model.encoder.tokenizer
        if isinstance(tokenizer, str):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        tokenizer.save_pretrained(folder)
        files = {p.name: base64.b64encode(p.read_bytes()).decode() for p in Path(folder).iterdir() if p.is_file()}
    return {"version": CHECKPOINT_VERSION, "config": config, "task": dataclasses.asdict(task),
            "encoder_config": model.encoder.model.config.to_dict(), "tokenizer_files": files}


def load(path: str | Path, map_location: str | torch.device = "cpu", trust_remote_code: bool = False) -> PoolheadModel:
    """The trained model from a checkpoint or a run folder (its checkpoints/best.ckpt), in eval mode, offline.
    `model.description["config"]` is the run's config; `model.encoder.tokenizer` its tokenizer. Nothing in the file
    runs: weights load without pickled code, and only poolhead's own components are built from its config unless
    `trust_remote_code=True` (a custom pooling/head of your own)."""
    ckpt_path = checkpoint_file(path)
    checkpoint = read_checkpoint(ckpt_path, map_location)
    if "poolhead" not in checkpoint:
        raise ValueError(f"{ckpt_path}: not a poolhead checkpoint (no 'poolhead' entry: written by another tool, or "
                         "by poolhead before checkpoints described themselves); retrain, or load its state_dict by hand")
    description = checkpoint["poolhead"]
    if not trust_remote_code:
        check_targets(description["config"], ckpt_path)
    names = check_file_names(description["tokenizer_files"], ckpt_path)
    cfg = OmegaConf.create(description["config"])
    task = TaskSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in description["task"].items()})
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            (Path(folder) / name).write_bytes(base64.b64decode(description["tokenizer_files"][name]))
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder_cfg = OmegaConf.merge(cfg.encoder, {"name_or_path": None, "tokenizer": "(from the checkpoint)",
                                                "config": description["encoder_config"]})
    encoder = make(encoder_cfg, _convert_="all")  # a plain dict config: transformers serialises it
    encoder.tokenizer = tokenizer
    if cfg.encoder.freeze and cfg.get("cache_features"):
        encoder = CachedEncoder(encoder)  # no cached rows: runs the encoder; same parameter names as in training
    model = build_model(cfg, task, encoder)
    model.load_state_dict(checkpoint["state_dict"])
    model.description = description
    return model.to(map_location).eval()


def checkpoint_file(path: str | Path) -> Path:
    """A .ckpt as given, or a run folder's checkpoints/best.ckpt (last.ckpt when there is no best)."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise FileNotFoundError(f"{path}: no checkpoints/best.ckpt or last.ckpt in this folder; pass a run folder "
                                "(logs/<task>/runs/<time>) or a .ckpt file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return path


class UntrustedCheckpoint(ValueError):
    """A checkpoint that asks to run code (pickled objects, a component outside poolhead, a file name outside its
    folder): refused, because a shared checkpoint is data, not code."""


# Where the `_target_`s of a poolhead checkpoint's config may come from: classes of the modules holding conf/'s
# encoder, pooling, head, mode and data components and torch's optimizers, plus the scheduler factory conf/optim names
TRUSTED_CLASS_MODULES = ("poolhead.encoder", "poolhead.pooling", "poolhead.heads", "poolhead.modes", "poolhead.data",
                         "torch.optim")
TRUSTED_FUNCTIONS = ("transformers.get_scheduler",)


def trusted_target(target: Any) -> bool:
    """`target` is one of poolhead's own components (a class of TRUSTED_CLASS_MODULES, located without calling
    anything) or a TRUSTED_FUNCTIONS entry: what conf/'s groups instantiate."""
    if not isinstance(target, str):
        return False
    if target in TRUSTED_FUNCTIONS:
        return True
    parts = target.split(".")
    inside = lambda name: any(name == m or name.startswith(m + ".") for m in TRUSTED_CLASS_MODULES)  # noqa: E731
    if not inside(target) or any(not p.isidentifier() or p.startswith("_") for p in parts):
        return False
    from hydra._internal.utils import _locate

    try:
        obj = _locate(target)  # imports poolhead / torch.optim modules and reads attributes; calls nothing
    except Exception:  # noqa: BLE001 - not found: not one of ours
        return False
    return isinstance(obj, type) and inside(getattr(obj, "__module__", "") or "")


def check_targets(config: Any, source: Path | str, where: str = "config") -> None:
    """Every `_target_` in a checkpoint's embedded config is `trusted_target`, else UntrustedCheckpoint naming it."""
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "_target_" and not trusted_target(value):
                raise UntrustedCheckpoint(
                    f"{source}: refused to build {where}._target_={value!r}: not one of poolhead's own components, "
                    "and building it would run code named by the checkpoint's author. If you trust this checkpoint "
                    "(e.g. your own custom pooling or head), pass trust_remote_code=True to poolhead.load, or "
                    "--trust-remote-code to poolhead predict/eval/export")
            check_targets(value, source, f"{where}.{key}")
    elif isinstance(config, list):
        for i, value in enumerate(config):
            check_targets(value, source, f"{where}[{i}]")


def check_file_names(files: dict[str, Any], source: Path | str) -> list[str]:
    """The embedded tokenizer files' names, each a plain file name (no folder, no '..', not absolute), else refused:
    they are written into one temporary folder."""
    for name in files:
        if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
                or "\0" in name or Path(name).is_absolute() or Path(name).name != name):
            raise UntrustedCheckpoint(f"{source}: refused: embedded tokenizer file name {name!r} is not a plain file "
                                      "name (it would be written outside the tokenizer's folder)")
    return list(files)


def read_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """torch.load(weights_only=True): tensors and plain containers only, so loading never runs code the file names;
    errors name the file and say what to do."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower() or "weights_only" in str(err):
            found = next(iter(re.findall(r"GLOBAL (\S+)|Unsupported global: (\S+)", str(err))), None)
            what = next((g for g in found if g), None) if found else None
            raise UntrustedCheckpoint(
                f"{path}: refused: the checkpoint holds pickled Python objects{f' ({what})' if what else ''} that "
                "loading would run; poolhead checkpoints hold tensors and plain values only. Use a checkpoint "
                "written by poolhead") from None
        raise ValueError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}). It may be truncated by an "
                         "interrupted save: use another checkpoint (e.g. last.ckpt / best.ckpt), or start the run "
                         "over without ckpt_path") from None
    except Exception as err:  # noqa: BLE001 - EOFError, zip errors: all mean "unreadable"
        raise ValueError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err or 'empty or truncated file'}). "
                         "It may be truncated by an interrupted save: use another checkpoint (e.g. last.ckpt / "
                         "best.ckpt), or start the run over without ckpt_path") from None


def cpu_computes_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """bf16 matrix units (AVX512-BF16 or AMX). Without them, autocast to bf16 is slower than fp32, not faster."""
    try:
        flags = cpuinfo.read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: Any, accelerator: str = "auto") -> str:
    """`auto`: bf16-mixed on CPUs with bf16 units, 32-true elsewhere, GPUs included. On an H200 at batch 32, MiniLM
    and BERT-base shapes both trained 1.3-1.6x slower per step under bf16 autocast than in fp32: the step is bound by
    kernel launches, which autocast's casts nearly double (benchmarks/README.md, "GPU path"). Name bf16-mixed for
    batches large enough that the matrix products dominate. 16-mixed on a CPU is refused (Lightning would run bf16)."""
    if str(precision) in ("16-mixed", "16") and (accelerator == "cpu" or accelerator == "auto" and not (
            torch.cuda.is_available() or torch.backends.mps.is_available())):
        raise SettingsError(f"trainer.precision={precision}: float16 autocast needs a GPU (on a CPU Lightning "
                            "runs bf16-mixed instead, and the run would record 16-mixed); use trainer.precision="
                            "bf16-mixed, 32-true or auto")
    if str(precision) != "auto":
        return str(precision)
    if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda"):
        return "32-true"
    return "bf16-mixed" if cpu_computes_bf16() else "32-true"


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))
