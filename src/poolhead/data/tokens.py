"""Tokenize once, cache on disk (`cache_dir/tokens/<sha256>.npz`, keyed by tokenizer, max_length, mode and texts;
ids unpadded), pad per batch to its own longest row with `tokenizer.pad`."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers.utils import logging as transformers_logging

from poolhead.core.modes import Mode

log = logging.getLogger("poolhead.data")
CACHE_VERSION = "poolhead-tokens-2"
Side = dict[str, np.ndarray]  # "input_ids" (flat), optional "token_type_ids" (flat), "lengths"; one per side


def fingerprint(tokenizer: Any) -> str:
    """sha256 of what decides the ids: class, the fast tokenizer's full spec (or the vocab), special tokens."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)  # call-time settings the tokenizer keeps from its last call
        spec.pop("padding", None)
        h.update(json.dumps(spec, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    return h.hexdigest()


def encode(tokenizer: Any, text: list[str], text_pair: list[str] | None, mode: Mode,
           max_length: int | None) -> list[Side]:
    """Token ids, unpadded, one side per pooled vector of the mode (poolhead.core.modes); each side's `truncated` marks
    the rows that had more tokens than max_length (counted, never hidden)."""
    sides = [_pack(out) for out in mode.tokenize(tokenizer, text, text_pair, max_length)]
    if max_length is None:
        return sides
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # "longer than the model's maximum" is what is being measured here
    try:
        full = mode.tokenize(tokenizer, text, text_pair, 10**9)
    finally:
        transformers_logging.set_verbosity(verbosity)
    for side, out in zip(sides, full, strict=True):
        side["truncated"] = np.fromiter(map(len, out["input_ids"]), np.int64, len(text)) > side["lengths"]
    return sides


def cached_encode(tokenizer: Any, tokenizer_id: str, text: list[str], text_pair: list[str] | None, mode: Mode,
                  max_length: int | None, cache_dir: Path, what: str) -> list[Side]:
    """`encode`, read from `cache_dir/tokens` when this exact job was done before; written atomically."""
    key = hashlib.sha256(json.dumps([CACHE_VERSION, tokenizer_id, mode.name, max_length, text, text_pair],
                                    ensure_ascii=False).encode()).hexdigest()
    path = Path(cache_dir).expanduser() / "tokens" / f"{key}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                sides = [{k.split("_", 1)[1]: z[k] for k in z.files if k.startswith(f"{s}_")}
                         for s in range(int(z["sides"]))]
            log.info("%s: tokens from cache %s", what, path)
            return sides
        except Exception as err:
            log.warning("%s: unreadable token cache %s (%s); tokenizing again", what, path, err)
    sides = encode(tokenizer, text, text_pair, mode, max_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{s}_{k}": v for s, side in enumerate(sides) for k, v in side.items()}
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", suffix=".npz", delete=False) as f:
        np.savez(f, sides=np.array(len(sides)), **arrays)
    os.replace(f.name, path)
    log.info("%s: tokenized %d rows (mode=%s, max_length=%s), cached at %s", what, len(text), mode, max_length, path)
    return sides


def _pack(out: Any) -> Side:
    ids = out["input_ids"]
    side = {"lengths": np.fromiter(map(len, ids), np.int64, len(ids)),
            "input_ids": np.fromiter(itertools.chain.from_iterable(ids), np.int64)}
    if "token_type_ids" in out:
        side["token_type_ids"] = np.fromiter(itertools.chain.from_iterable(out["token_type_ids"]), np.int64)
    return side


class Encoded(Dataset):
    """A tokenized split: item i is (i, [features per side], label i); `lengths` are a row's longest side, its width
    once padded (a bi batch pads both sides to one width), what length-grouped batches and eval order sort by."""

    def __init__(self, sides: list[Side], labels: list) -> None:
        self.sides = [side | {"starts": np.concatenate([[0], np.cumsum(side["lengths"])])} for side in sides]
        self.labels = labels
        self.lengths = np.max([side["lengths"] for side in sides], axis=0)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[int, list[dict[str, list[int]]], Any]:
        features = []
        for side in self.sides:
            a, b = side["starts"][i], side["starts"][i + 1]
            features.append({k: side[k][a:b].tolist() for k in ("input_ids", "token_type_ids") if k in side})
        return i, features, self.labels[i]


class Collate:
    """Items -> {"features": [padded dict per side], "labels": Tensor[B], "index": LongTensor[B]}."""

    def __init__(self, tokenizer: Any, label_dtype: torch.dtype) -> None:
        self.tokenizer, self.label_dtype = tokenizer, label_dtype

    def __call__(self, items: list[tuple[int, list[dict], Any]]) -> dict[str, Any]:
        index, features, labels = zip(*items, strict=True)
        padded = [dict(self.tokenizer.pad([f[s] for f in features], return_tensors="pt"))
                  for s in range(len(features[0]))]
        return {"features": padded, "labels": torch.tensor(labels, dtype=self.label_dtype),
                "index": torch.tensor(index, dtype=torch.long)}
