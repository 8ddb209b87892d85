"""The encoder: any Hugging Face AutoModel (hub name or local folder), or a random one from a config (tests)."""

from __future__ import annotations

import functools
import inspect
import logging
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModel, PreTrainedModel

from poolhead.dropout import scaled_dot_product_attention, use_fast_dropout
from poolhead.hub import from_hub_or_folder

log = logging.getLogger(__name__)


class EncoderOutput(NamedTuple):
    last_hidden_state: Tensor  # [B, T, H]: the chosen layer(s), averaged ([B, 1, H] with first_token_only)
    attention_mask: Tensor  # [B, T] ([B, 1] with first_token_only)
    pooler_output: Tensor | None  # [B, H], or None when the model has no pooler


class Encoder(nn.Module):
    """Wraps an AutoModel and returns what a pooling needs.

    Args:
        name_or_path: hub name or local folder; None builds a random model from `config` (tests, smoke runs).
        tokenizer: tokenizer name or folder (default: `name_or_path`); the data module reads it.
        config: AutoConfig kwargs (e.g. `model_type: bert, hidden_size: 32`) for a random model.
        max_length: tokens per text; the data module truncates to it.
        freeze: keep the encoder's weights fixed (eval mode, no gradients).
        gradient_checkpointing: trade compute for memory.
        layers: indices into the model's hidden_states (0 is the embedding output, -1 the last layer); several are
            averaged, e.g. [0, -1] is SimCSE's first-last average.
        skip_unread_tokens: let the last layer compute only the token a cls/pooler pooling reads
            (`compute_first_token_only`; exact, false only to measure it).
        fast_dropout: draw dropout masks on CPU with `poolhead.dropout` (same distribution, 2-3x cheaper than
            torch's); false gives torch's own masks.
    """

    def __init__(
        self,
        name_or_path: str | None = None,
        tokenizer: str | None = None,
        config: dict | None = None,
        max_length: int = 128,
        freeze: bool = False,
        gradient_checkpointing: bool = False,
        layers: Sequence[int] = (-1,),
        skip_unread_tokens: bool = True,
        fast_dropout: bool = True,
    ) -> None:
        super().__init__()
        if name_or_path is None and config is None:
            raise ValueError("encoder needs `name_or_path` (hub name or local folder) or `config` (a random model)")
        self.name_or_path = name_or_path
        self.tokenizer = tokenizer or name_or_path
        if self.tokenizer is None:
            raise ValueError("encoder built from `config` needs `tokenizer` (a tokenizer name or folder)")
        self.max_length = max_length
        self.freeze = freeze
        self.layers = list(layers)
        self.skip_unread_tokens = skip_unread_tokens
        self.pooler_is_random = False
        if name_or_path is None:
            self.model: PreTrainedModel = AutoModel.from_config(AutoConfig.for_model(**dict(config)))
        else:
            self.model, info = from_hub_or_folder(
                AutoModel.from_pretrained, name_or_path, "encoder",
                "encoder.name_or_path=/path/to/model_folder", output_loading_info=True,
            )
            self.pooler_is_random = any(key.startswith("pooler.") for key in info.get("missing_keys", []))
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        if freeze:
            self.model.requires_grad_(False)
        self.fast_dropout = fast_dropout and not freeze
        if self.fast_dropout and not use_fast_dropout(self.model):
            log.info("encoder: %s does not run sdpa attention, so its attention dropout keeps torch's masks (the "
                     "other dropout layers use poolhead.dropout)", type(self.model).__name__)
        self.model.train(not freeze)  # from_pretrained returns eval mode, and Lightning keeps modules' modes
        self._accepts = set(inspect.signature(self.model.forward).parameters)
        self.first_token_only = False
        self._first: Tensor | None = None  # the first real token of each row, for the last layer's shortcut

    def compute_first_token_only(self) -> bool:
        """For poolings that read only the first token (cls, pooler): the last layer computes queries, attention
        output and feed-forward for that one position (keys and values for all). Exact; saves ~10/12 of the last
        layer's matmul FLOPs (~14% of a 6-layer encoder's). On for BERT-style layers (BERT, RoBERTa, ELECTRA) with
        `layers: [-1]` and an encoder that trains (a frozen one's cached states serve every pooling); returns
        whether it is on."""
        last = getattr(getattr(getattr(self.model, "encoder", None), "layer", None), "__getitem__", None)
        last = last(-1) if last else None
        attention = getattr(last, "attention", None)
        if (self.freeze or self.layers != [-1] or attention is None or not hasattr(last, "feed_forward_chunk")
                or getattr(last, "is_decoder", False) or not all(hasattr(attention.self, name) for name in
                                                                 ("query", "key", "value", "attention_head_size"))):
            return False
        last.forward = functools.partial(_first_token_layer, last, self)  # the instance's: weights keep their names
        self.first_token_only = True
        return True

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def has_pooler(self) -> bool:
        return getattr(self.model, "pooler", None) is not None

    def train(self, mode: bool = True) -> "Encoder":
        super().train(mode)
        if self.freeze:
            self.model.eval()  # a frozen encoder never uses dropout
        return self

    def forward(self, features: dict[str, Tensor]) -> EncoderOutput:
        inputs = {k: v for k, v in features.items() if k in self._accepts}  # e.g. RoBERTa takes no token_type_ids
        mask = features["attention_mask"]
        self._first = mask.argmax(1) if self.first_token_only else None
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            out = self.model(**inputs, output_hidden_states=self.layers != [-1], return_dict=True)
        if self.first_token_only:
            return EncoderOutput(out.last_hidden_state, mask[:, :1].new_ones(len(mask), 1),
                                 getattr(out, "pooler_output", None))
        if self.layers == [-1]:
            hidden = out.last_hidden_state
        else:
            hidden = torch.stack([out.hidden_states[i] for i in self.layers]).mean(0)
        return EncoderOutput(hidden, features["attention_mask"], getattr(out, "pooler_output", None))


def _first_token_layer(layer: nn.Module, encoder: Encoder, hidden: Tensor, attention_mask: Tensor | None = None,
                       *args, **kwargs) -> Tensor:
    """A BERT layer's forward for one query per row (the first real token): -> [B, 1, H]. Written out because HF's
    attention takes one tensor for queries, keys and values."""
    heads = layer.attention.self
    rows = torch.arange(len(hidden), device=hidden.device)
    first = encoder._first if encoder._first is not None else torch.zeros_like(rows)
    query_in = hidden[rows, first].unsqueeze(1)  # [B, 1, H]
    split = lambda x: x.view(len(hidden), -1, heads.num_attention_heads, heads.attention_head_size).transpose(1, 2)  # noqa: E731
    mask = None if attention_mask is None else attention_mask[rows, :, first].unsqueeze(2)  # [B, 1, 1, T]
    attention = scaled_dot_product_attention if encoder.fast_dropout else F.scaled_dot_product_attention
    context = attention(split(heads.query(query_in)), split(heads.key(hidden)), split(heads.value(hidden)),
                        attn_mask=mask, dropout_p=heads.dropout.p if heads.training else 0.0,
                        scale=getattr(heads, "scaling", None))
    attended = layer.attention.output(context.transpose(1, 2).reshape(len(hidden), 1, -1), query_in)
    return layer.feed_forward_chunk(attended)
