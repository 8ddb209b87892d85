"""One process trains a run folder: its claim (an flock that dies with the process), taken before anything is
written there, and the earlier outputs a new run moves aside instead of overwriting. Every run, single or in a
sweep, goes through here; sweeps add their skip/resume decisions on top (`poolhead.sweep.jobs`). No torch
import."""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from poolhead.run.record import CLAIM_FILE, SUPERSEDED

log = logging.getLogger(__name__)

_claimed_job: list[Any] = []  # (folder, lock file) of the job this process trains, held until it ends


def claim_job(out_dir: Path) -> str | None:
    """Claim `out_dir` for this process (an flock on its CLAIM_FILE, which dies with the process, so a killed
    run leaves nothing stuck), releasing the job it claimed before. Returns None when claimed, else what holds
    it. Claiming a folder this process holds already keeps the claim (never released in between)."""
    if any(folder == out_dir.resolve() for folder, _ in _claimed_job):
        return None
    release_job()
    out_dir.mkdir(parents=True, exist_ok=True)
    handle = open(out_dir / CLAIM_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return f"it holds {out_dir / CLAIM_FILE}"
    _claimed_job.append((out_dir.resolve(), handle))  # the file stays empty: a claim changes no byte
    for folder in (out_dir, out_dir / "checkpoints"):  # half-written temp files of a killed holder
        for stale in folder.glob(".*.tmp"):             # (`atomic_write`): nobody else writes here now
            stale.unlink(missing_ok=True)
    return None


def release_job() -> None:
    """Give up this process's claim once its job ended: a parallel launcher's worker lives on, and the next
    rung of successive halving may hand the same job to another worker."""
    for _, handle in _claimed_job:
        handle.close()
    _claimed_job.clear()


def claimed_elsewhere(out_dir: Path) -> bool:
    """Another live process holds `out_dir`'s claim (it is training there now)."""
    if any(folder == out_dir.resolve() for folder, _ in _claimed_job) or not (out_dir / CLAIM_FILE).exists():
        return False
    with open(out_dir / CLAIM_FILE) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def unreadable_checkpoint(path: Path) -> str | None:
    """Why `path` cannot be a checkpoint to resume from (truncated or corrupt: torch writes zip files, and
    every member's CRC is checked), or None when it reads whole. No torch import: a re-run that skips loads
    nothing."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as err:
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return f"member {bad} is corrupt" if bad else None


def set_aside(out_dir: Path, reason: str, keep: tuple[str, ...] = (SUPERSEDED, CLAIM_FILE)) -> Path | None:
    """Move every entry of `out_dir` but `keep` to `superseded/<time>/` (never deleted) and log why; returns
    that folder, or None when there was nothing to move. Callers hold the folder's claim."""
    outputs = [p for p in out_dir.iterdir() if p.name not in keep] if out_dir.is_dir() else []
    if not outputs:
        return None
    target = out_dir / SUPERSEDED / time.strftime("%Y%m%d-%H%M%S")
    for n in range(2, 1000):  # two set-asides within a second keep both
        if not target.exists():
            break
        target = target.with_name(f"{target.name.split('.')[0]}.{n}")
    target.mkdir(parents=True)
    for path in outputs:
        path.rename(target / path.name)
    log.warning("%s: %s; its earlier outputs (%s) moved to %s, and the job trains from scratch", out_dir,
                reason, ", ".join(sorted(p.name for p in outputs)), target)
    return target


def in_use(out_dir: Path, holder: str) -> str:
    """The refusal of a run into a folder another process trains."""
    return (f"{out_dir} is in use by another process ({holder}); wait for it to end, or run into another "
            "folder")


def claim_run(out_dir: Path, resuming: bool, keep: tuple[str, ...] = (SUPERSEDED, CLAIM_FILE)) -> str | None:
    """A single run about to start in `out_dir`: claimed, and when it starts afresh (no ckpt_path) over an
    earlier run's files, those files (but `keep`: by default `.hydra/` and train.log go too) moved to
    `superseded/`. Returns why it cannot start (another process holds the folder: then nothing in it was
    changed), else None."""
    holder = claim_job(out_dir)
    if holder is not None:
        return in_use(out_dir, holder)
    if not resuming:
        set_aside(out_dir, "a new run (no ckpt_path) into the folder of an earlier run", keep)
    return None


class ClaimCallback(Callback):
    """Hydra callback: a single run claims its folder in `on_run_start`, before Hydra writes `.hydra/` and
    train.log there (`on_job_start` comes after them in Hydra 1.3's run_job), so a refused second process
    changes nothing and a finished run's `.hydra/` is kept with its outputs. Multiruns claim each job in
    `poolhead.sweep.jobs`."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        out_dir = Path(os.path.abspath(str(OmegaConf.select(config, "hydra.run.dir"))))  # as run_job makes it
        why = claim_run(out_dir, resuming=bool(config.get("ckpt_path")))
        if why is not None:
            sys.exit(f"run failed: {why}\n(nothing of the run was changed)")
