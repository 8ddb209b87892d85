"""The sentence-transformers format (mode=bi), and the modules the cross-encoder format shares with it."""

from __future__ import annotations

import importlib.util
import inspect
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from poolhead.core import pooling as P
from poolhead.core.model import PoolheadModel

ST_POOLING = {
    P.PoolerOutput: "cls",
    P.CLS: "cls",
    P.Mean: "mean",
    P.Max: "max",
    P.MeanSqrtLen: "mean_sqrt_len_tokens",
    P.WeightedMean: "weightedmean",
}
CODE_MODULE = Path(__file__).with_name(
    "poolhead_pooling.py"
)  # the custom module an export carries at its root


def refusal(model: PoolheadModel) -> str | None:
    if model.mode.name == "bi":
        return None
    return (
        f"mode={model.mode.name}: a SentenceTransformer embeds each text on its own (mode=bi); use the "
        "cross-encoder or transformers format"
    )


def dense(
    weight: torch.Tensor, bias: torch.Tensor, activation: nn.Module, output: str | None = None
) -> nn.Module:
    from sentence_transformers.sentence_transformer.modules import Dense

    return Dense(
        weight.shape[1],
        weight.shape[0],
        activation_function=activation,
        init_weight=weight.detach().clone(),
        init_bias=bias.detach().clone(),
        module_output_name=output,
    )


def st_modules(model: PoolheadModel, folder: Path) -> list[nn.Module]:
    """Transformer (truncating as poolhead) [+ WeightedLayerPooling for `encoder.layers`] + Pooling, or
    poolhead's own pooling as a custom module (+ the pooler as Dense/Tanh) + the head's hidden layers."""
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    encoder = model.encoder
    averaged = encoder.layers != [-1]
    encoder.model.config.output_hidden_states = averaged  # the Transformer module then passes every layer on
    try:
        encoder.model.save_pretrained(folder)
    finally:
        encoder.model.config.output_hidden_states = False
    encoder.tokenizer.save_pretrained(folder)
    modules = [Transformer(str(folder), max_seq_length=encoder.max_length)]
    if averaged:
        modules.append(
            layer_average(encoder.layers, encoder.model.config.num_hidden_layers, encoder.hidden_size)
        )
    if carries_code(model):
        modules.append(custom_pooling(model))
    else:
        modules.append(Pooling(encoder.hidden_size, ST_POOLING[type(model.pooling)]))
    if isinstance(model.pooling, P.PoolerOutput):
        modules.append(dense(encoder.model.pooler.dense.weight, encoder.model.pooler.dense.bias, nn.Tanh()))
    return modules + [
        dense(layer.weight, layer.bias, type(act)()) for layer, act in model.head.hidden_layers()
    ]


def carries_code(model: PoolheadModel) -> bool:
    """Whether the export holds the pooling as code (a poolhead module), not as sentence-transformers'
    Pooling."""
    return type(model.pooling) not in ST_POOLING


def layer_average(layers: list[int], num_layers: int, hidden_size: int) -> nn.Module:
    """sentence-transformers' WeightedLayerPooling as poolhead's mean of `layers` (weight = times listed)."""
    from sentence_transformers.sentence_transformer.modules import WeightedLayerPooling

    chosen = [i % (num_layers + 1) for i in layers]  # hidden_states holds the embeddings and every layer
    start = min(chosen)
    weights = torch.zeros(num_layers + 1 - start)
    for i in chosen:
        weights[i - start] += 1
    return WeightedLayerPooling(hidden_size, num_layers, start, nn.Parameter(weights))


def code_module() -> Any:
    """poolhead_pooling.py imported as the top-level module `poolhead_pooling`, the name modules.json records.
    """
    if "poolhead_pooling" not in sys.modules:
        spec = importlib.util.spec_from_file_location("poolhead_pooling", CODE_MODULE)
        module = importlib.util.module_from_spec(spec)
        sys.modules["poolhead_pooling"] = module
        spec.loader.exec_module(module)
    return sys.modules["poolhead_pooling"]


def custom_pooling(model: PoolheadModel) -> nn.Module:
    """The trained pooling inside a sentence-transformers module that carries its source file and weights."""
    pooling = model.pooling
    cls = type(pooling)
    source = inspect.getsourcefile(cls)
    if source is None or cls.__qualname__ != cls.__name__:
        raise ValueError(
            f"pooling {cls.__qualname__}: not a top-level class of a source file; an export carries "
            "the file that defines it, so define it at the top level of a .py file"
        )
    if getattr(pooling, "needs_pooler", False):
        raise ValueError(
            f"pooling {cls.__name__} reads the pooler output, which sentence-transformers' Transformer "
            "module does not pass on"
        )
    config = (model.description.config.get("pooling") or {}) if model.description else {}
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    if "hidden_size" in inspect.signature(cls).parameters:
        kwargs["hidden_size"] = model.encoder.hidden_size
    pooled = getattr(pooling, "output_dim", lambda size: size)(model.encoder.hidden_size)
    return code_module().PoolheadPooling(
        Path(source).name, cls.__name__, kwargs, pooled, pooling=_copy(pooling, cls, kwargs)
    )


def _copy(pooling: nn.Module, cls: type, kwargs: dict[str, Any]) -> nn.Module:
    """A fresh instance from the config with the trained weights: what the folder rebuilds, checked here
    first."""
    fresh = cls(**kwargs)
    fresh.load_state_dict(pooling.state_dict())
    return fresh


def to_sentence_transformers(model: PoolheadModel, to: Path) -> None:
    """mode=bi: embeddings whose cosine is the head's output, (pred - low) / (high - low)."""
    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory() as tmp:
        st = SentenceTransformer(
            modules=st_modules(model, Path(tmp)), similarity_fn_name="cosine", device="cpu"
        )
        st.save(str(to), create_model_card=False)
    save_code(model, to)


def save_code(model: PoolheadModel, to: Path) -> None:
    """poolhead_pooling.py at the folder's root, where modules.json's `poolhead_pooling.PoolheadPooling`
    points."""
    if carries_code(model):
        shutil.copyfile(CODE_MODULE, to / CODE_MODULE.name)
