"""What a checkpoint carries besides weights, and how it is read without running anything in it.
Every poolhead checkpoint describes itself (`checkpoint["poolhead"]`): the composed config, the task, the encoder's
architecture and the tokenizer's files, so `poolhead.load` needs no config, no hub and no data."""

from __future__ import annotations

import base64
import dataclasses
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from poolhead.core.model import PoolheadModel
from poolhead.core.task import TaskSpec
from poolhead.run.record import current_targets

CHECKPOINT_VERSION = 1
SAVED_GROUPS = ("encoder", "pooling", "head", "mode", "data", "optim", "seed", "monitor", "monitor_mode",
                "cache_features")


@dataclasses.dataclass
class Description:
    """What a poolhead checkpoint carries besides weights (`checkpoint["poolhead"]`, plain values only): all that
    `poolhead.load` rebuilds the model from. `poolhead.build` sets it as `model.description`."""

    config: dict[str, Any]  # the SAVED_GROUPS of the run's resolved config, and trainer.precision
    task: dict[str, Any]  # TaskSpec's fields
    encoder_config: dict[str, Any]  # the encoder's transformers config (architecture, no weights)
    tokenizer_files: dict[str, str]  # file name -> base64 content, as the tokenizer saves itself
    version: int = CHECKPOINT_VERSION

    @classmethod
    def of(cls, cfg: DictConfig, task: TaskSpec, model: PoolheadModel) -> Description:
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
        return cls(config, dataclasses.asdict(task), model.encoder.model.config.to_dict(), files)

    @classmethod
    def read(cls, checkpoint: dict[str, Any], source: Path | str, trust_remote_code: bool = False) -> Description:
        """The description of a checkpoint read by `read_checkpoint`, checked: only poolhead's own `_target_`s
        (unless `trust_remote_code`), plain tokenizer file names; old module names read as today's."""
        if not isinstance(checkpoint.get("poolhead"), dict):
            raise ValueError(f"{source}: not a poolhead checkpoint (no 'poolhead' entry: written by another tool, or "
                             "by poolhead before checkpoints described themselves); retrain, or load its state_dict "
                             "by hand")
        entry = checkpoint["poolhead"]
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in entry and f.name != "version"]
        if missing:
            raise ValueError(f"{source}: its poolhead description lacks {', '.join(missing)}; retrain the model")
        version = entry.get("version", CHECKPOINT_VERSION)
        if not isinstance(version, int) or version > CHECKPOINT_VERSION:
            raise ValueError(f"{source}: written by a newer poolhead (checkpoint version {version!r}; this poolhead "
                             f"reads up to {CHECKPOINT_VERSION}): upgrade poolhead to load it")
        described = cls(current_targets(entry["config"]), entry["task"], entry["encoder_config"],
                        entry["tokenizer_files"], version)
        if not trust_remote_code:
            check_targets(described.config, source)
        check_file_names(described.tokenizer_files, source)
        return described

    def as_dict(self) -> dict[str, Any]:
        """What the checkpoint stores (`PoolheadModel.on_save_checkpoint`)."""
        return dataclasses.asdict(self)

    @property
    def task_spec(self) -> TaskSpec:
        return TaskSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.task.items()})

    @property
    def precision(self) -> str | None:
        return self.config.get("trainer", {}).get("precision")

    @property
    def max_length(self) -> int:
        return self.config["encoder"]["max_length"]

    def tokenizer(self) -> Any:
        """The run's tokenizer, from the embedded files (no hub, no folder of the machine that trained)."""
        from transformers import AutoTokenizer

        with tempfile.TemporaryDirectory() as folder:
            for name, content in self.tokenizer_files.items():
                (Path(folder) / name).write_bytes(base64.b64decode(content))
            return AutoTokenizer.from_pretrained(folder)


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
TRUSTED_CLASS_MODULES = ("poolhead.core.encoder", "poolhead.core.pooling", "poolhead.core.heads", "poolhead.core.modes",
                         "poolhead.data", "torch.optim")
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
