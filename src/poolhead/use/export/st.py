"""The sentence-transformers format (mode=bi), and the modules the cross-encoder format shares with it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from poolhead.core import pooling as P
from poolhead.core.model import PoolheadModel

ST_POOLING = {P.PoolerOutput: "cls", P.CLS: "cls", P.Mean: "mean", P.Max: "max",
              P.MeanSqrtLen: "mean_sqrt_len_tokens", P.WeightedMean: "weightedmean"}
ST_MODES = "cls, mean, max, mean_sqrt_len_tokens, weightedmean, lasttoken"


def refusal(model: PoolheadModel) -> str | None:
    if model.mode.name == "bi":
        return None
    return (f"mode={model.mode.name}: a SentenceTransformer embeds each text on its own (mode=bi); use the "
            "cross-encoder or transformers format")


def dense(weight: torch.Tensor, bias: torch.Tensor, activation: nn.Module, output: str | None = None) -> nn.Module:
    from sentence_transformers.sentence_transformer.modules import Dense

    return Dense(weight.shape[1], weight.shape[0], activation_function=activation,
                 init_weight=weight.detach().clone(), init_bias=bias.detach().clone(), module_output_name=output)


def st_modules(model: PoolheadModel, folder: Path) -> list[nn.Module]:
    """Transformer (truncating as poolhead) + Pooling (+ the pooler as Dense/Tanh) + the head's hidden layers."""
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    encoder = model.encoder
    encoder.model.save_pretrained(folder)
    encoder.tokenizer.save_pretrained(folder)
    modules = [Transformer(str(folder), max_seq_length=encoder.max_length),
               Pooling(encoder.hidden_size, ST_POOLING[type(model.pooling)])]
    if isinstance(model.pooling, P.PoolerOutput):
        modules.append(dense(encoder.model.pooler.dense.weight, encoder.model.pooler.dense.bias, nn.Tanh()))
    return modules + [dense(layer.weight, layer.bias, type(act)()) for layer, act in model.head.hidden_layers()]


def to_sentence_transformers(model: PoolheadModel, to: Path) -> None:
    """mode=bi: embeddings whose cosine is the head's output, (pred - low) / (high - low)."""
    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory() as tmp:
        st = SentenceTransformer(modules=st_modules(model, Path(tmp)), similarity_fn_name="cosine", device="cpu")
        st.save(str(to), create_model_card=False)
