"""Dropout with cheaper random numbers on CPU: the same Bernoulli masks in distribution, from fewer random bits.
Each 64-bit draw of torch's own generator gives four 16-bit numbers (seeds and resumes replay the same masks); p is
rounded to a multiple of 1/65536. GPUs keep torch's fused kernels."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel

ATTENTION = "poolhead_sdpa"  # sdpa, whose training-time attention dropout uses the masks below on CPU


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """F.dropout(x, p, training) with four 16-bit numbers per 64-bit draw on CPU."""
    if not training or p == 0.0 or x.device.type != "cpu":
        return F.dropout(x, p, training)
    if p >= 1.0:
        return x * 0.0
    words = torch.empty(math.ceil(x.numel() / 4), dtype=torch.int64).random_(-2**63, 2**63 - 1)  # all 64 bits
    keep = words.view(torch.int16)[:x.numel()].view(x.shape) >= round(p * 65536) - 32768
    return x.mul(keep).mul_(1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """nn.Dropout (same `p`, same place in the model) drawing its masks with `dropout`."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, scale: float | None = None) -> Tensor:
    """F.scaled_dot_product_attention; with dropout on CPU written out (as torch's own math fallback computes it
    then) so that the attention weights' dropout uses `dropout`. `attn_mask`: boolean (True = attend) or additive."""
    if dropout_p == 0.0 or query.device.type != "cpu":
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)
    scores = torch.matmul(query, key.transpose(-1, -2)) * (scale if scale is not None else query.size(-1) ** -0.5)
    if attn_mask is not None:
        scores = (scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min) if attn_mask.dtype == torch.bool
                  else scores + attn_mask)
    return torch.matmul(dropout(scores.softmax(-1), dropout_p), value)


def sdpa_fast_dropout(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                      dropout: float = 0.0, scaling: float | None = None, **kwargs) -> tuple[Tensor, None]:
    """Hugging Face's sdpa attention, computed by `scaled_dot_product_attention` for a plain encoder's attention
    (not causal, one key/value head per query head, no position bias); anything else goes to Hugging Face's."""
    if (getattr(module, "is_causal", False) or getattr(module, "num_key_value_groups", 1) != 1
            or kwargs.get("position_bias") is not None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    context = scaled_dot_product_attention(query, key, value, attention_mask, dropout, scaling)
    return context.transpose(1, 2).contiguous(), None


ALL_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_fast_dropout)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)


def use_fast_dropout(model: PreTrainedModel) -> bool:
    """Swap every nn.Dropout for `Dropout` and, where the model runs sdpa attention, its attention for
    `sdpa_fast_dropout`; returns whether the attention was swapped too (models with their own attention keep
    torch's dropout there)."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p, child.inplace))
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    try:
        model.set_attn_implementation(ATTENTION)
    except (ValueError, NotImplementedError):
        return False
    return True
