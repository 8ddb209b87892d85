"""Poolings: token states [B, T, H] -> one vector per text [B, H].
Each class is one `conf/pooling/<name>.yaml` (a partial: the model adds `hidden_size`). All are padding-aware, never
write into the encoder's output, and stay finite in bf16/fp16 (masks use the dtype's minimum, not -1e9).
To add one: subclass `Pooling`, implement `forward`, add a yaml with its `_target_`."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Pooling(nn.Module):
    """forward(last_hidden_state [B,T,H], attention_mask [B,T], pooler_output [B,H] | None) -> [B,H]."""

    needs_pooler: bool = False
    reads_first_token_only: bool = False  # True: the encoder may compute its last layer for that token alone

    def __init__(self, hidden_size: int | None = None) -> None:
        super().__init__()  # the model passes the encoder's hidden size; only learned poolings use it

    def forward(self, last_hidden_state: Tensor, attention_mask: Tensor, pooler_output: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def output_dim(self, hidden_size: int) -> int:
        return hidden_size


def _masked_sum(hidden: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of hidden [B,T,H] weighted by [B,T], and the weights' total [B,1]; in float32, as bf16 sums drift."""
    weights = weights.unsqueeze(-1).float()
    hidden = hidden.float().masked_fill(weights == 0, 0.0)  # padding may hold inf/NaN: 0 * inf would be NaN
    return (hidden * weights).sum(1), weights.sum(1).clamp(min=1.0)


class PoolerOutput(Pooling):
    """The encoder's own pooler: tanh(W · h_CLS), as BertForSequenceClassification uses it."""

    needs_pooler = True
    reads_first_token_only = True

    def forward(self, last_hidden_state: Tensor, attention_mask: Tensor, pooler_output: Tensor | None = None) -> Tensor:
        if pooler_output is None:
            raise ValueError("pooling=pooler needs the encoder's pooler_output, and this encoder has no pooler")
        return pooler_output


class CLS(Pooling):
    """The raw hidden state of the first real token ([CLS] / <s>), also when padding is on the left."""

    reads_first_token_only = True

    def forward(self, last_hidden_state: Tensor, attention_mask: Tensor, pooler_output: Tensor | None = None) -> Tensor:
        first = attention_mask.argmax(1)
        return last_hidden_state[torch.arange(len(first), device=first.device), first]


class Mean(Pooling):
    """Average of the real tokens."""

    def forward(self, last_hidden_state: Tensor, attention_mask: Tensor, pooler_output: Tensor | None = None) -> Tensor:
        total, count = _masked_sum(last_hidden_state, attention_mask)
        return total / count


class MeanSqrtLen(Pooling):
    """Sum of the real tokens divided by sqrt(length), as in sentence-transformers."""

    def forward(self, last_hidden_state: Tensor, attention_mask: Tensor, pooler_output: Tensor | None = None) -> Tensor:
        total, count = _masked_sum(last_hidden_state, attention_mask)
        return total / count.sqrt()


class Max(Pooling):
    """Element-wise maximum over the real tokens."""

    def forward(self, last_hidden_state: Tensor, attention_mask: Tensor, pooler_output: Tensor | None = None) -> Tensor:
        padding = attention_mask.unsqueeze(-1) == 0
        return last_hidden_state.masked_fill(padding, torch.finfo(last_hidden_state.dtype).min).max(1).values


class WeightedMean(Pooling):
    """Position-weighted mean (SGPT): token i of a text gets weight i (1-based), so later tokens count more."""

    def forward(self, last_hidden_state: Tensor, attention_mask: Tensor, pooler_output: Tensor | None = None) -> Tensor:
        # cumsum numbers real tokens 1, 2, ... also when padding is on the left; padding stays 0.
        total, count = _masked_sum(last_hidden_state, attention_mask.cumsum(1) * attention_mask)
        return total / count


class Attention(Pooling):
    """A learned query attends over the real tokens (softmax in float32, masked with the dtype's minimum)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden_size, 1, bias=False)

    def forward(self, last_hidden_state: Tensor, attention_mask: Tensor, pooler_output: Tensor | None = None) -> Tensor:
        scores = self.query(last_hidden_state).squeeze(-1).float() / math.sqrt(last_hidden_state.size(-1))
        scores = scores.masked_fill(attention_mask == 0, torch.finfo(torch.float32).min)
        total, _ = _masked_sum(last_hidden_state, scores.softmax(dim=1))
        return total
