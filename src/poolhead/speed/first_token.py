"""The last layer computes only the token a cls/pooler pooling reads: exact, and about 10/12 of that layer's matmul
FLOPs fewer (keys and values are still computed for every token)."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from poolhead.core.encoder import Encoder, EncoderOutput
from poolhead.speed.dropout import scaled_dot_product_attention


def skip_unread_tokens(encoder: Encoder, fast_dropout: bool = False) -> bool:
    """Patch `encoder` so its last layer computes queries, attention output and feed-forward for the first real token
    alone (-> states [B, 1, H], mask [B, 1]). For BERT-style layers (BERT, RoBERTa, ELECTRA) with `layers: [-1]` and
    an encoder that trains (a frozen one's cached states serve every pooling); returns whether it is on."""
    last = _last_bert_layer(encoder)
    if last is None or encoder.freeze or encoder.layers != [-1]:
        return False
    first: dict[str, Tensor] = {}  # each row's first real token, set per batch, read by the last layer
    last.forward = functools.partial(_first_token_layer, last, first, fast_dropout)  # the instance's: same weights
    encoder.forward = functools.partial(_first_token_forward, type(encoder).forward.__get__(encoder), first)
    return True


def _last_bert_layer(encoder: Encoder) -> nn.Module | None:
    layers = getattr(getattr(encoder.model, "encoder", None), "layer", None)
    last = layers[-1] if layers is not None and len(layers) else None
    attention = getattr(last, "attention", None)
    if (attention is None or not hasattr(last, "feed_forward_chunk") or getattr(last, "is_decoder", False)
            or not all(hasattr(attention.self, name) for name in ("query", "key", "value", "attention_head_size"))):
        return None
    return last


def _first_token_forward(forward: Any, first: dict[str, Tensor], features: dict[str, Tensor]) -> EncoderOutput:
    mask = features["attention_mask"]
    first["index"] = mask.argmax(1)
    return forward(features)._replace(attention_mask=mask.new_ones(len(mask), 1))


def _first_token_layer(layer: nn.Module, first: dict[str, Tensor], fast_dropout: bool, hidden: Tensor,
                       attention_mask: Tensor | None = None, *args: Any, **kwargs: Any) -> Tensor:
    """A BERT layer's forward for one query per row (the first real token): -> [B, 1, H]. Written out because HF's
    attention takes one tensor for queries, keys and values."""
    heads = layer.attention.self
    rows = torch.arange(len(hidden), device=hidden.device)
    index = first.get("index", torch.zeros_like(rows))
    query_in = hidden[rows, index].unsqueeze(1)  # [B, 1, H]
    def split(x: Tensor) -> Tensor:  # [B, T, H] -> [B, heads, T, H / heads]
        return x.view(len(hidden), -1, heads.num_attention_heads, heads.attention_head_size).transpose(1, 2)

    mask = None if attention_mask is None else attention_mask[rows, :, index].unsqueeze(2)  # [B, 1, 1, T]
    attention = scaled_dot_product_attention if fast_dropout else F.scaled_dot_product_attention
    context = attention(split(heads.query(query_in)), split(heads.key(hidden)), split(heads.value(hidden)),
                        attn_mask=mask, dropout_p=heads.dropout.p if heads.training else 0.0,
                        scale=getattr(heads, "scaling", None))
    attended = layer.attention.output(context.transpose(1, 2).reshape(len(hidden), 1, -1), query_in)
    return layer.feed_forward_chunk(attended)
