"""What the `poolhead` commands check before any work: predict's output file, eval's prediction files, the
cache entries `cache clear` may remove, the device, --max-loss, and the runs `export` takes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".json")


def check_output(output: Path, source: Path, default: Path) -> None:
    """predict's --output, before the model loads: a table suffix it writes, and never the input file itself
    (the same path, a hard link or a symlink to it: writing there would rewrite the input)."""
    if output.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"--output {output}: unknown output type {output.suffix.lower()!r}; use "
                         f"{', '.join(TABLE_SUFFIXES[:2] + TABLE_SUFFIXES[3:])}")
    if output.exists() and source.exists() and os.path.samefile(output, source):
        raise ValueError(f"--output {output} is the input file (the same file, or a link to it): predictions "
                         f"go to another file (default: {default}), the input is never overwritten")


def check_columns_kept(records: list[dict[str, Any]], added: list[str], path: Path) -> None:
    """predict writes every input column as it was: an input column named as one predict adds is refused, not
    replaced (re-predicting a .pred file: drop its prediction columns first)."""
    clash = [name for name in added if any(name in record for record in records)]
    if clash:
        raise ValueError(f"{path}: column(s) {clash} have the names of the columns predict adds, which would "
                         "replace them; rename them in the input (or drop them: an earlier predict's output)")


def check_device(device: str | None) -> None:
    """--device names a device this machine has (else loading the checkpoint fails with a misleading
    error)."""
    import torch

    if device is None:
        return
    try:
        kind = torch.device(device).type
    except RuntimeError as err:
        raise ValueError(f"--device {device}: not a device name ({err}); use cpu, cuda or cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: this machine has no CUDA device torch can use "
                         "(torch.cuda.is_available() is False); use --device cpu, or leave it out")


def loss_share(text: str) -> float:
    """argparse type of --max-loss: the Spearman an int8 file may lose, as a share in [0, 1] (0.005 = 0.5
    points)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a share of Spearman in [0, 1] (0.005 = 0.5 "
                                         "points)")
    return value


def check_finished(run_dir: Path, force: bool) -> str | None:
    """A run whose results.json is not `ok` (failed, interrupted, paused at a halving rung) is refused for
    export, naming its status; with `force` it goes on, and the returned warning says what was exported."""
    from poolhead.run.record import unfinished

    said = unfinished(run_dir)
    if said is None:
        return None
    if not force:
        raise ValueError(f"{said}; export a finished run, or pass --force to export this checkpoint anyway")
    return f"warning: {said}; exported anyway (--force)"


def predictions_path(output: Path, name: str, results: dict[str, Any]) -> Path:
    """Where eval writes entry `name`'s predictions: beside its json, named after both (eval.json ->
    eval_<name>.csv, other.json -> other_<name>.csv), never over a file that this entry did not write (-2,
    -3...)."""
    own = (results.get(name) or {}).get("predictions")
    base = output.parent / f"{output.stem}_{name}.csv"
    path, n = base, 2
    while path.exists() and str(path) != own:
        path, n = base.with_name(f"{base.stem}-{n}.csv"), n + 1
    return path


FEATURE_FILES = {"hidden.npy", "lengths.npy", "pooler.npy", "meta.json"}  # what speed.cache writes there


def cache_made(path: Path) -> bool:
    """`path` (under cache_dir/features or cache_dir/tokens) is an entry the caches wrote, told by the names
    they give (a sha256 key, or `.tmp-` while being built) and, for feature entries, by the files inside
    them."""
    import re

    key = re.fullmatch(r"[0-9a-f]{64}|\.tmp-.+", path.name.removesuffix(".npz"))
    if path.parent.name == "tokens":
        return bool(key) and path.suffix == ".npz" and path.is_file() and not path.is_symlink()
    return bool(key) and path.is_dir() and not path.is_symlink() and all(
        p.name in FEATURE_FILES and p.is_file() and not p.is_symlink() for p in path.iterdir())


def clear_caches(root: Path) -> tuple[int, list[Path]]:
    """Delete the entries the feature and token caches made under `root` (and their folders, once empty);
    returns (bytes freed, what was left there because the caches did not make it: a user's files are never
    deleted)."""
    import shutil

    from poolhead.speed.cache import folder_size

    freed, left = 0, []
    for part in ("features", "tokens"):
        folder = root / part
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if not cache_made(path):
                left.append(path)
                continue
            freed += folder_size(path) if path.is_dir() else path.stat().st_size
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return freed, left
