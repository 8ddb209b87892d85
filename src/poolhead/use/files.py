"""What the `poolhead` commands may write or delete, checked before any work: predict's output file, eval's
prediction files, the cache entries `cache clear` removes, and the runs `export` takes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".json")


def check_output(output: Path, source: Path, default: Path) -> None:
    """predict's --output, before the model loads: a table suffix it writes, and never the input file itself (the
    same path, a hard link or a symlink to it: writing there would rewrite the input)."""
    if output.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"--output {output}: unknown output type {output.suffix.lower()!r}; use "
                         f"{', '.join(TABLE_SUFFIXES[:2] + TABLE_SUFFIXES[3:])}")
    if output.exists() and source.exists() and os.path.samefile(output, source):
        raise ValueError(f"--output {output} is the input file (the same file, or a link to it): predictions go to "
                         f"another file (default: {default}), the input is never overwritten")


def predictions_path(output: Path, name: str, results: dict[str, Any]) -> Path:
    """Where eval writes entry `name`'s predictions: beside its json, named after both (eval.json ->
    eval_<name>.csv, other.json -> other_<name>.csv), never over a file that this entry did not write (-2, -3...)."""
    own = (results.get(name) or {}).get("predictions")
    base = output.parent / f"{output.stem}_{name}.csv"
    path, n = base, 2
    while path.exists() and str(path) != own:
        path, n = base.with_name(f"{base.stem}-{n}.csv"), n + 1
    return path


FEATURE_FILES = {"hidden.npy", "lengths.npy", "pooler.npy", "meta.json"}  # what speed.cache writes in an entry


def cache_made(path: Path) -> bool:
    """`path` (under cache_dir/features or cache_dir/tokens) is an entry the caches wrote, told by the names they
    give (a sha256 key, or `.tmp-` while being built) and, for feature entries, by the files inside them."""
    import re

    key = re.fullmatch(r"[0-9a-f]{64}|\.tmp-.+", path.name.removesuffix(".npz"))
    if path.parent.name == "tokens":
        return bool(key) and path.suffix == ".npz" and path.is_file() and not path.is_symlink()
    return bool(key) and path.is_dir() and not path.is_symlink() and all(
        p.name in FEATURE_FILES and p.is_file() and not p.is_symlink() for p in path.iterdir())


def clear_caches(root: Path) -> tuple[int, list[Path]]:
    """Delete the entries the feature and token caches made under `root` (and their folders, once empty); returns
    (bytes freed, what was left there because the caches did not make it: a user's files are never deleted)."""
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
