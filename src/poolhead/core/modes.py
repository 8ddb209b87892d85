"""Input modes: how a row's texts reach the encoder and how many pooled vectors meet the head. One class each,
one `conf/mode/<name>.yaml` each. Heads read `sides` (pooled vectors per row); exports read the mode's class.

    single  one text                                  -> 1 pooled vector
    cross   a pair joined: [CLS] a [SEP] b [SEP]      -> 1 pooled vector
    bi      each text of a pair encoded on its own    -> 2 pooled vectors (u, v); the head decides how they meet
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

Features = dict[str, Tensor]


class Mode:
    name: str = ""
    pair: bool = True  # the data must hold text pairs
    sides: int = 1  # pooled vectors per row

    def tokenize(self, tokenizer: Any, text: list[str], text_pair: list[str] | None, max_length: int | None) -> list:
        """One tokenizer output (unpadded ids) per side."""
        raise NotImplementedError

    def pool(self, encode: Callable[[Features], Tensor], features: list[Features]) -> list[Tensor]:
        """Padded features per side -> pooled vectors per side, via `encode` (encoder + pooling)."""
        return [encode(f) for f in features]

    def __repr__(self) -> str:
        return self.name


def _kwargs(max_length: int | None) -> dict[str, Any]:
    return dict(truncation=True, max_length=max_length, return_attention_mask=False)


class Single(Mode):
    name, pair, sides = "single", False, 1

    def tokenize(self, tokenizer, text, text_pair, max_length):
        return [tokenizer(text, **_kwargs(max_length))]


class Cross(Mode):
    name, pair, sides = "cross", True, 1

    def tokenize(self, tokenizer, text, text_pair, max_length):
        return [tokenizer(text, text_pair, **_kwargs(max_length))]


class Bi(Mode):
    name, pair, sides = "bi", True, 2

    def tokenize(self, tokenizer, text, text_pair, max_length):
        return [tokenizer(text, **_kwargs(max_length)), tokenizer(text_pair, **_kwargs(max_length))]

    def pool(self, encode, features):
        # both sides in one encoder pass (larger matrix products than two passes); zeros pad the shorter side,
        # masked out like any padding
        length = max(f["input_ids"].shape[1] for f in features)
        both = {k: torch.cat([F.pad(f[k], (0, length - f[k].shape[1])) for f in features]) for k in features[0]}
        if torch.is_grad_enabled():
            return list(encode(both).chunk(len(features)))
        return list(_encode_by_length(encode, both, chunks=len(features)).chunk(len(features)))


def _encode_by_length(encode: Callable[[Features], Tensor], features: Features, chunks: int) -> Tensor:
    """`encode(features)` with the rows sorted by length and encoded in `chunks` batches, each cut to its longest row
    (evaluation: the sides of a bi pair differ in length, so one pass would pad many more tokens).
    Only trailing all-padding columns are cut: a left-padded batch keeps its width, so positions never change."""
    mask = features["attention_mask"]
    order = torch.argsort(mask.sum(1), descending=True, stable=True)
    pooled = []
    for rows in order.chunk(chunks):
        part = {k: v[rows] for k, v in features.items()}
        width = int(part["attention_mask"].any(0).nonzero().max()) + 1 if part["attention_mask"].any() else 1
        pooled.append(encode({k: v[:, :width] for k, v in part.items()}))
    return torch.cat(pooled)[torch.argsort(order)]
