"""Speed levers, none of which changes what a model computes, applied to a built model in one call (`apply`) by
config: fast_dropout, skip_unread_tokens, the feature cache, keep_freed_memory (docs/speed.md). `poolhead.core`
knows nothing of them; `poolhead.run.build` calls `apply` for training and for `poolhead.load`."""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig

from poolhead.core.model import PoolheadModel
from poolhead.speed.cache import CachedEncoder, FeatureCache
from poolhead.speed.dropout import use_fast_dropout
from poolhead.speed.first_token import skip_unread_tokens
from poolhead.speed.memory import keep_freed_memory

log = logging.getLogger(__name__)
SPEED_KEYS = ("skip_unread_tokens", "fast_dropout")  # keys of the `encoder` config that are this package's


def apply(model: PoolheadModel, cfg: DictConfig, datamodule: Any = None,
          autocast: torch.dtype | None = None) -> PoolheadModel:
    """The levers `cfg` asks for, on `model`. With a `datamodule` (training) a frozen encoder's cache is filled for
    its splits, computed under `autocast` as the run computes; without one (a loaded checkpoint) the cache is
    empty and the encoder runs."""
    encoder = model.encoder
    keep_freed_memory(cfg.get("keep_freed_memory", True))
    fast_dropout = bool(cfg.encoder.get("fast_dropout", True)) and not encoder.freeze
    if fast_dropout and not use_fast_dropout(encoder.model):
        log.info("encoder: %s does not run sdpa attention, so its attention dropout keeps torch's masks (the other "
                 "dropout layers use poolhead.speed.dropout)", type(encoder.model).__name__)
    if cfg.encoder.get("skip_unread_tokens", True) and getattr(model.pooling, "reads_first_token_only", False):
        skip_unread_tokens(encoder, fast_dropout)
    if encoder.freeze and cfg.get("cache_features"):
        if datamodule is None:
            model.encoder = CachedEncoder(encoder)  # same parameter names as in training
        else:
            cache = FeatureCache(cfg.paths.cache_dir, cfg.paths.cache_max_gb)
            model.encoder = CachedEncoder(encoder, cache, datamodule.token_sides(), datamodule.eval_batch_size,
                                          autocast)
    return model
