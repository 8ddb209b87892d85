"""The encoder: any Hugging Face AutoModel (hub name or local folder), or a random one from a config (tests)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, PreTrainedModel

from poolhead.core.hub import from_hub_or_folder

log = logging.getLogger(__name__)


class EncoderOutput(NamedTuple):
    last_hidden_state: Tensor  # [B, T, H]: the chosen layer(s), averaged ([B, 1, H]: speed.first_token)
    attention_mask: Tensor  # [B, T] ([B, 1]: speed.first_token)
    pooler_output: Tensor | None  # [B, H], or None when the model has no pooler


class Encoder(nn.Module):
    """Wraps an AutoModel and returns what a pooling needs. Its settings: the `encoder:` block of conf/train.yaml
    and conf/encoder/tiny.yaml (a random model from `config`); `skip_unread_tokens`, `fast_dropout`: poolhead.speed."""

    def __init__(
        self,
        name_or_path: str | None = None,
        tokenizer: str | None = None,
        config: dict | None = None,
        max_length: int = 128,
        freeze: bool = False,
        gradient_checkpointing: bool = False,
        layers: Sequence[int] = (-1,),
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
        self.model.train(not freeze)  # from_pretrained returns eval mode, and Lightning keeps modules' modes
        self._accepts = set(inspect.signature(self.model.forward).parameters)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def has_pooler(self) -> bool:
        return getattr(self.model, "pooler", None) is not None

    def train(self, mode: bool = True) -> Encoder:
        super().train(mode)
        if self.freeze:
            self.model.eval()  # a frozen encoder never uses dropout
        return self

    def forward(self, features: dict[str, Tensor]) -> EncoderOutput:
        inputs = {k: v for k, v in features.items() if k in self._accepts}  # e.g. RoBERTa takes no token_type_ids
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            out = self.model(**inputs, output_hidden_states=self.layers != [-1], return_dict=True)
        if self.layers == [-1]:
            hidden = out.last_hidden_state
        else:
            hidden = torch.stack([out.hidden_states[i] for i in self.layers]).mean(0)
        return EncoderOutput(hidden, features["attention_mask"], getattr(out, "pooler_output", None))

