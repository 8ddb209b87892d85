"""A poolhead model whose encoder runs on ONNX Runtime or OpenVINO: pooling and head stay in torch (as in
sentence-transformers' backends), so every mode, pooling and head scores as `poolhead predict` does."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from poolhead.core.model import PoolheadModel
from poolhead.use.export.onnx_files import ORT_SETTINGS, ort_session

ENGINES = ("onnx", "openvino")
INSTALL = {
    "onnx": "pip install 'poolhead[onnx]' (onnx, onnxruntime, onnxscript: no optimum, any transformers)",
    "openvino": "make .venv-openvino/.installed, then run poolhead from .venv-openvino/bin (its own venv: "
    "optimum-intel pins an older transformers than poolhead's main venv)",
}


def importable(backend: str) -> None:
    """Raise ImportError naming the one install that works, when `backend`'s runtime cannot import here."""
    try:
        if backend == "onnx":
            import onnxruntime  # noqa: F401
        else:
            import openvino  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f"--backend {backend} needs {INSTALL[backend]} ({type(err).__name__}: {err})"
        ) from err


class EngineEncoder(nn.Module):
    """Stands in for the Hugging Face encoder: input ids -> last_hidden_state from the engine (the pooler,
    when the model has one, runs in torch on the first token's state, as the model's own pooler does)."""

    def __init__(
        self,
        file: Path,
        backend: str,
        pooler: nn.Module | None = None,
        settings: dict[str, str] = ORT_SETTINGS,  # ONNX Runtime's session settings
    ) -> None:
        super().__init__()
        self.file, self.backend, self.pooler = Path(file), backend, pooler
        self.run, self.names = _session(self.file, backend, settings)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        **_: Any,
    ) -> BaseModelOutputWithPooling:
        if output_hidden_states:
            raise ValueError(
                "encoder.layers averaging needs every layer's states; the engine's graph gives the last"
            )
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feed = {
            n: (given[n] if given[n] is not None else torch.zeros_like(input_ids))
            .cpu()
            .numpy()
            .astype(np.int64)
            for n in self.names
        }
        hidden = torch.from_numpy(np.ascontiguousarray(self.run(feed), dtype=np.float32)).to(input_ids.device)
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=pooled)


def _session(file: Path, backend: str, settings: dict[str, str]) -> tuple[Any, list[str]]:
    """(feed -> last_hidden_state, the graph's input names) for ONNX Runtime (with `settings`) or OpenVINO."""
    importable(backend)
    if backend == "onnx":
        session = ort_session(file, settings)
        return (lambda feed: session.run(["last_hidden_state"], feed)[0]), [
            i.name for i in session.get_inputs()
        ]
    import openvino as ov

    # f32 inference for an fp32 file: on CPUs with AMX or AVX-512 BF16 OpenVINO would otherwise run it in bf16
    compiled = ov.Core().compile_model(str(file), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    output = compiled.output("last_hidden_state")
    return (lambda feed: compiled(feed)[output]), [i.get_any_name() for i in compiled.inputs]


def on_engine(model: PoolheadModel, file: Path, backend: str) -> PoolheadModel:
    """A copy of `model` whose encoder runs `file` on `backend`; the copy's pooling and head are the model's
    own."""
    if backend not in ENGINES:
        raise ValueError(f"backend {backend!r}: choose one of {', '.join(ENGINES)}")
    if model.encoder.layers != [-1]:
        raise ValueError(
            f"encoder.layers={model.encoder.layers} averages hidden layers; an ONNX / OpenVINO graph "
            "gives the last layer's states (as sentence-transformers' backends load it): use torch"
        )
    engine = copy.deepcopy(model).float().cpu().eval()
    if "encoder" in engine.encoder._modules:  # a frozen encoder's feature cache (speed.cache.CachedEncoder)
        engine.encoder = engine.encoder._modules["encoder"]
    encoder = engine.encoder
    pooler = getattr(encoder.model, "pooler", None)
    encoder.model = EngineEncoder(file, backend, pooler)
    encoder.__dict__.pop(
        "forward", None
    )  # poolhead.speed's first-token lever patches the instance: the engine
    encoder._accepts = {"input_ids", "attention_mask", "token_type_ids"}  # runs the whole graph
    return engine
