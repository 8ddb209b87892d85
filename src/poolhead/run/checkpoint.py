"""What a checkpoint carries besides weights, and how it is read without running anything in it.
Every poolhead checkpoint describes itself (`checkpoint["poolhead"]`): the composed config, the task, the encoder's
architecture and the tokenizer's files, so `poolhead.load` needs no config, no hub and no data. The run
layer writes it (`DescribedCheckpointIO`); `poolhead.run.trust` checks it before anything is built."""

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

from poolhead.core.hub import load_tokenizer
from poolhead.core.model import PoolheadModel
from poolhead.core.task import KINDS, TaskSpec
from poolhead.run.callbacks import AtomicCheckpointIO
from poolhead.run.record import current_targets
from poolhead.run.trust import (  # noqa: F401  (UntrustedCheckpoint, trusted_target: imported from here too)
    CONFIG_SCHEMA,
    REQUIRED,
    TASK_SCHEMA,
    UntrustedCheckpoint,
    check_components,
    check_encoder_config,
    check_file_names,
    check_plain,
    check_schema,
    check_tokenizer_files,
    refuse,
    trusted_target,
)

CHECKPOINT_VERSION = 1
SAVED_GROUPS = ("encoder", "pooling", "head", "mode", "data", "optim", "seed", "monitor", "monitor_mode",
                "cache_features")


@dataclasses.dataclass
class Description:
    """What a poolhead checkpoint carries besides weights (`checkpoint["poolhead"]`, plain values only): all
    that `poolhead.load` rebuilds the model from. The run layer writes it into every checkpoint
    (`DescribedCheckpointIO`) and sets it as `model.description` on what `poolhead.build` and `poolhead.load`
    return; the core model knows nothing of it."""

    config: dict[str, Any]  # the SAVED_GROUPS of the run's resolved config, and trainer.precision
    task: dict[str, Any]  # TaskSpec's fields
    encoder_config: dict[str, Any]  # the encoder's transformers config (architecture, no weights)
    tokenizer_files: dict[str, str]  # file name -> base64 content, as the tokenizer saves itself
    version: int = CHECKPOINT_VERSION
    trusted: bool = dataclasses.field(default=False, compare=False)  # read with trust_remote_code; not saved

    @classmethod
    def of(cls, cfg: DictConfig, task: TaskSpec, model: PoolheadModel) -> Description:
        """The description of a model built from `cfg` (resolved: `plan.resolve`) for `task`."""
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
        """The description of a checkpoint read by `read_checkpoint`, checked (`check_entry`) before anything
        is resolved or built; old module names read as today's."""
        if not isinstance(checkpoint.get("poolhead"), dict):
            raise ValueError(f"{source}: not a poolhead checkpoint (no 'poolhead' entry: written by another tool, or "
                             "by poolhead before checkpoints described themselves); retrain, or load its state_dict "
                             "by hand")
        entry = checkpoint["poolhead"]
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in entry and f.init and f.default is
                   dataclasses.MISSING]
        if missing:
            raise ValueError(f"{source}: its poolhead description lacks {', '.join(missing)}; retrain the model")
        version = entry.get("version", CHECKPOINT_VERSION)
        if not isinstance(version, int) or version > CHECKPOINT_VERSION:
            raise ValueError(f"{source}: written by a newer poolhead (checkpoint version {version!r}; this poolhead "
                             f"reads up to {CHECKPOINT_VERSION}): upgrade poolhead to load it")
        check_entry(entry, source, trust_remote_code)
        return cls(current_targets(entry["config"]), entry["task"], entry["encoder_config"],
                   entry["tokenizer_files"], version, trust_remote_code)

    def as_dict(self) -> dict[str, Any]:
        """What the checkpoint stores (`DescribedCheckpointIO`): plain values, loading runs no code."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "trusted"}

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
        """The run's tokenizer, from the embedded files (no hub, no folder of the machine that trained);
        custom tokenizer code only when read with trust_remote_code."""
        with tempfile.TemporaryDirectory() as folder:
            for name, content in self.tokenizer_files.items():
                (Path(folder) / name).write_bytes(base64.b64decode(content))
            return load_tokenizer(folder, trust_remote_code=self.trusted)


def check_entry(entry: dict[str, Any], source: Path | str, trust_remote_code: bool) -> None:
    """`checkpoint["poolhead"]` as poolhead writes it (`poolhead.run.trust`): plain values of its schema, no
    interpolation, poolhead's own `_target_`s and no custom tokenizer or model code (both unless
    `trust_remote_code`), plain tokenizer file names. Else UntrustedCheckpoint naming the file and the key."""
    fields = {f.name: f for f in dataclasses.fields(Description) if f.name != "trusted"}
    check_schema(entry, {name: int if name == "version" else dict for name in fields}, source, "poolhead")
    check_plain(entry, source, "poolhead")  # before any OmegaConf sees it: no interpolation is ever resolved
    config = current_targets(entry["config"])
    check_schema(config, CONFIG_SCHEMA, source, "config")
    absent = [key for key in REQUIRED if key not in config]
    if absent:
        raise refuse(source, f"its description's config lacks {', '.join(absent)}")
    check_components(config, source, trust_remote_code)
    check_schema(entry["task"], TASK_SCHEMA, source, "task")
    if entry["task"].get("kind") not in KINDS:
        raise refuse(source, f"task.kind is {entry['task'].get('kind')!r}, not one of {', '.join(KINDS)}")
    check_encoder_config(entry["encoder_config"], source, trust_remote_code)
    check_tokenizer_files(entry["tokenizer_files"], source, trust_remote_code)


class DescribedCheckpointIO(AtomicCheckpointIO):
    """The run layer's checkpoint writer: every checkpoint (best.ckpt, last.ckpt, a rung's) gets the run's
    description, and every load (a resume) reads tensors and plain values only. Not a Lightning callback:
    Lightning skips callbacks' on_save_checkpoint for weights-only saves, as best.ckpt is."""

    def __init__(self, description: Description | None = None) -> None:
        super().__init__()
        self.description = description

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if self.description is not None:
            checkpoint["poolhead"] = self.description.as_dict()
        super().save_checkpoint(checkpoint, path, storage_options)

    def load_checkpoint(self, path: Any, map_location: Any = lambda storage, loc: storage,
                        weights_only: Any = None) -> dict[str, Any]:
        if "://" in str(path):  # remote storage: Lightning's own reader, weights_only all the same
            return super().load_checkpoint(path, map_location=map_location)
        return read_checkpoint(Path(path), map_location)


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
    except Exception as err:
        raise ValueError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err or 'empty or truncated file'}). "
                         "It may be truncated by an interrupted save: use another checkpoint (e.g. last.ckpt / "
                         "best.ckpt), or start the run over without ckpt_path") from None
