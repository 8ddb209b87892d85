"""Feature cache: a frozen encoder's token states, computed once per split side and memory-mapped for every later
job, keyed by sha256(encoder weights, layers, token ids); built atomically, checked against its meta.json before every
read, evicted least recently used past `paths.cache_max_gb`. Layout and guarantees: docs/feature-cache.md.
Hand-written because nothing in Lightning/HF caches model outputs on disk with these checks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from poolhead.core.encoder import Encoder, EncoderOutput

log = logging.getLogger(__name__)
VERSION = "poolhead-features-1"
DTYPE = np.float16


def weights_fingerprint(encoder: Encoder) -> str:
    h = hashlib.sha256(json.dumps([VERSION, encoder.layers, type(encoder.model).__name__]).encode())
    for name, tensor in sorted(encoder.model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class CachedSide:
    """One side of a split, memory-mapped: row i -> (hidden [T_i, H], pooler [H] | None)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.hidden = np.load(folder / "hidden.npy", mmap_mode="r")
        self.lengths = np.load(folder / "lengths.npy")
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)])
        self.pooler = np.load(folder / "pooler.npy", mmap_mode="r") if (folder / "pooler.npy").exists() else None

    def __len__(self) -> int:
        return len(self.lengths)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.hidden[self.starts[i]:self.starts[i + 1]], None if self.pooler is None else self.pooler[i]


class FeatureCache:
    """`cache_dir/features/<key>/`: see the module docstring."""

    def __init__(self, cache_dir: str | Path, max_gb: float | None = None) -> None:
        self.root = Path(cache_dir).expanduser() / "features"
        self.max_bytes = None if max_gb is None else int(float(max_gb) * 2**30)
        self.in_use: set[Path] = set()  # entries this run reads: never evicted by it

    def side(self, encoder: Encoder, fingerprint: str, ids: dict[str, np.ndarray], batch_size: int = 128,
             autocast: torch.dtype | None = None, what: str = "") -> CachedSide:
        """The cached states for one side (`ids`: flat `input_ids`, optional flat `token_type_ids`, `lengths`)."""
        h = hashlib.sha256(fingerprint.encode())
        for name in sorted(ids):
            h.update(name.encode())
            h.update(np.ascontiguousarray(ids[name]).tobytes())
        folder = self.root / h.hexdigest()
        self.in_use.add(folder)
        if self.valid(folder):
            log.info("%s: encoder features from cache %s", what, folder)
            os.utime(folder / "meta.json")  # last use, for eviction
            return CachedSide(folder)
        if folder.exists():
            log.warning("%s: feature cache entry %s is partial or corrupt; rebuilding it", what, folder)
            shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-"))
        try:
            self._build(tmp, encoder, ids, batch_size, autocast)
            tmp.rename(folder)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not self.valid(folder):  # another process may have won the race with the same entry
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("%s: encoded %d rows once in %.1fs, cached at %s", what, len(ids["lengths"]),
                 time.perf_counter() - start, folder)
        self.evict()
        return CachedSide(folder)

    def evict(self) -> list[Path]:
        """Past `max_gb`, delete the least recently used entries that this run does not read; returns them."""
        if self.max_bytes is None:
            return []
        sizes = {folder: folder_size(folder) for folder, _ in self.entries()}
        total = sum(sizes.values())
        removed = []
        for folder in sorted(sizes, key=_last_used):
            if total <= self.max_bytes:
                break
            if folder not in self.in_use:
                shutil.rmtree(folder, ignore_errors=True)
                total -= sizes[folder]
                removed.append(folder)
        if removed:
            log.info("feature cache over %.1f GiB: removed %d least recently used entries", self.max_bytes / 2**30,
                     len(removed))
        if total > self.max_bytes:
            log.warning("feature cache: this run alone needs %.2f GiB, over paths.cache_max_gb=%.2f", total / 2**30,
                        self.max_bytes / 2**30)
        return removed

    @staticmethod
    def valid(folder: Path) -> bool:
        try:
            meta = json.loads((folder / "meta.json").read_text())
            return meta["version"] == VERSION and all(
                (folder / name).stat().st_size == size and _sha256(folder / name) == digest
                for name, (size, digest) in meta["files"].items())
        except (OSError, ValueError, KeyError, TypeError):
            return False

    @torch.no_grad()
    def _build(self, folder: Path, encoder: Encoder, ids: dict[str, np.ndarray], batch_size: int,
               autocast: torch.dtype | None) -> None:
        lengths = ids["lengths"].astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        has_pooler = encoder.has_pooler
        hidden = np.lib.format.open_memmap(folder / "hidden.npy", "w+", DTYPE, (int(starts[-1]), encoder.hidden_size))
        pooler = np.zeros((len(lengths), encoder.hidden_size), DTYPE) if has_pooler else None
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        encoder.to(device).eval()
        order = np.argsort(-lengths, kind="stable")  # long rows together: little padding
        for batch in np.array_split(order, max(1, -(-len(order) // batch_size))):
            features = {k: v.to(device) for k, v in _pad_batch(ids, starts, lengths, batch).items()}
            with torch.autocast(device.type, dtype=autocast) if autocast else contextlib.nullcontext():
                out = encoder(features)
            states = out.last_hidden_state.float().cpu().numpy()
            for j, row in enumerate(batch):
                hidden[starts[row]:starts[row + 1]] = states[j, :lengths[row]]
            if has_pooler:
                pooler[batch] = out.pooler_output.float().cpu().numpy()
        hidden.flush()
        del hidden
        np.save(folder / "lengths.npy", lengths)
        if has_pooler:
            np.save(folder / "pooler.npy", pooler)
        files = {p.name: (p.stat().st_size, _sha256(p)) for p in sorted(folder.glob("*.npy"))}
        (folder / "meta.json").write_text(json.dumps({"version": VERSION, "rows": len(lengths),
                                                      "hidden_size": encoder.hidden_size, "dtype": "float16",
                                                      "files": files}, indent=1))

    def entries(self) -> Iterator[tuple[Path, dict[str, Any] | None]]:
        for folder in sorted(self.root.glob("[!.]*")) if self.root.exists() else []:  # not .tmp-* being built
            try:
                yield folder, json.loads((folder / "meta.json").read_text())
            except (OSError, ValueError):
                yield folder, None


def _last_used(folder: Path) -> float:
    """meta.json's mtime (touched on every read), or the folder's for a partial entry."""
    meta = folder / "meta.json"
    return (meta if meta.exists() else folder).stat().st_mtime


def folder_size(folder: Path) -> int:
    """Bytes of the files under `folder` (0 if it does not exist)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _pad_batch(ids: dict[str, np.ndarray], starts: np.ndarray, lengths: np.ndarray, rows: np.ndarray
               ) -> dict[str, Tensor]:
    width = int(lengths[rows].max())
    out = {}
    for name in ("input_ids", "token_type_ids"):
        if name in ids:
            array = np.zeros((len(rows), width), np.int64)
            for j, row in enumerate(rows):
                array[j, :lengths[row]] = ids[name][starts[row]:starts[row + 1]]
            out[name] = torch.from_numpy(array)
    out["attention_mask"] = torch.from_numpy((np.arange(width)[None, :] < lengths[rows][:, None]).astype(np.int64))
    return out


class CachedEncoder(nn.Module):
    """A frozen encoder whose token states come from the feature cache: the same `EncoderOutput` as the encoder.
    Chosen by `poolhead.build` (encoder.freeze=true, cache_features=true). A batch whose rows (recognised by their
    token ids) are all in the cache is served from disk; any other batch runs the encoder."""

    def __init__(self, encoder: Encoder, cache: FeatureCache | None = None, sides: Sequence[tuple[str, dict]] = (),
                 batch_size: int = 128, autocast: torch.dtype | None = None) -> None:
        super().__init__()
        if not encoder.freeze:
            raise ValueError("the feature cache serves a frozen encoder only: set encoder.freeze=true, or "
                             "cache_features=false")
        self.encoder = encoder
        self.rows: dict[bytes, tuple[CachedSide, int]] = {}
        fingerprint = weights_fingerprint(encoder) if sides else ""
        for what, ids in sides:  # ("demo train", {"input_ids": flat, "token_type_ids": flat, "lengths": per row})
            side = cache.side(encoder, fingerprint, ids, batch_size, autocast, what)
            starts = side.starts
            for i in range(len(side)):
                self.rows[_row_key({k: ids[k][starts[i]:starts[i + 1]] for k in KEYS if k in ids})] = (side, i)

    def __getattr__(self, name: str) -> Any:  # hidden_size, has_pooler, tokenizer, ...: the encoder's
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["encoder"], name)

    def forward(self, features: dict[str, Tensor]) -> EncoderOutput:
        mask = features["attention_mask"]
        real = mask.bool().cpu().numpy()
        ids = {k: features[k].cpu().numpy() for k in KEYS if k in features}
        hits = [self.rows.get(_row_key({k: v[j][real[j]] for k, v in ids.items()})) for j in range(len(real))]
        if not hits or any(hit is None for hit in hits):
            return self.encoder(features)
        hidden = torch.zeros(*mask.shape, self.encoder.hidden_size)
        rows = [side.row(i) for side, i in hits]
        # one copy for the batch: the real positions in row-major order are the rows' cached states, one after another
        states = np.concatenate([states for states, _ in rows]).astype(np.float32)
        hidden[torch.from_numpy(real)] = torch.from_numpy(states)
        pooler = None
        if rows[0][1] is not None:
            pooler = torch.from_numpy(np.stack([pooled for _, pooled in rows]).astype(np.float32))
        device = mask.device
        return EncoderOutput(hidden.to(device), mask, None if pooler is None else pooler.to(device))


KEYS = ("input_ids", "token_type_ids")


def _row_key(row: dict[str, np.ndarray]) -> bytes:
    return b"|".join(np.ascontiguousarray(row[k], dtype=np.int64).tobytes() for k in KEYS if k in row)
