"""The encoder as an ONNX graph (PyTorch's exporter) and its int8 copy (ONNX Runtime's quantizer), without
optimum.

The graph is what optimum's feature-extraction export writes and sentence-transformers' `backend="onnx"`
loads: inputs input_ids, attention_mask (and token_type_ids when the encoder takes them), output
last_hidden_state, both axes dynamic (batch_size, sequence_length). The pooling and head stay in torch, as in
sentence-transformers."""

from __future__ import annotations

import logging
import platform
import warnings
from pathlib import Path

import torch
from torch import nn

from poolhead.core.model import PoolheadModel

OUTPUT = "last_hidden_state"
AXES = ("batch_size", "sequence_length")  # optimum's names for the dynamic axes
# The graph's and ONNX Runtime's settings that benchmarks/onnx_levers.py measures, each on and off:
OPSET = 23  # attention as ONNX's Attention op, one fused kernel in ONNX Runtime (loads in onnxruntime >= 1.23)
GRAPH = f"opset{OPSET}-attention3d"  # names how write_graph writes (the cache of predict's files is keyed by it)
ORT_SETTINGS = {
    # ONNX Runtime's fused residual + LayerNorm CPU kernel is slower than the two ops it replaces
    "optimization.disable_specified_optimizers": "SkipLayerNormFusion",
    # its threads stop spinning when a run ends: the pooling runs in torch, on the same cores, between runs
    "session.force_spinning_stop": "1",
    # subnormals flushed to zero: ONNX Runtime's softmax gives a masked (padding) score a subnormal weight, not
    # 0, and each costs x86 a slow microcode step. It sets the mode on its threads and, at a process's first
    # session, on the calling thread (torch and numpy there too)
    "session.set_denormal_as_zero": "1",
}
ISA_FLAGS = (
    ("avx512_vnni", "avx512_vnni"),
    ("avx512f", "avx512"),
    ("avx2", "avx2"),
)  # cpuinfo flag -> ISA name


class LastHiddenState(nn.Module):
    """The Hugging Face encoder with named inputs and one output, as the graph's signature."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True)), return_dict=True).last_hidden_state


def plain_encoder(model: PoolheadModel) -> nn.Module:
    """A fresh copy of the encoder's Hugging Face model with its trained weights, in fp32 and eval mode, free
    of poolhead.speed's patches (a first-token last layer, fast dropout): the graph is the model as
    published."""
    from transformers import AutoModel

    source = model.encoder.model
    fresh = AutoModel.from_config(source.config, attn_implementation="sdpa")
    fresh.load_state_dict(source.state_dict())
    return fresh.float().eval()


def input_names(model: PoolheadModel) -> list[str]:
    """input_ids, attention_mask, and token_type_ids when the encoder takes them (RoBERTa does not)."""
    accepts = model.encoder._accepts
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in accepts else [])


def write_onnx(model: PoolheadModel, path: Path) -> Path:
    """The poolhead model's encoder (its trained weights, without poolhead.speed's patches) as `path`."""
    return write_graph(plain_encoder(model), input_names(model), path)


def write_graph(
    encoder: nn.Module, names: list[str], path: Path, opset: int = OPSET, attention_3d: bool = True
) -> Path:
    """A Hugging Face encoder as an ONNX graph, by torch.onnx.export's dynamo exporter (the TorchScript one
    traces transformers 5's attention mask into constants and can give wrong states for other shapes), with
    its Attention ops on 3-D inputs (onnx_attention; `attention_3d=False` keeps the exporter's graph)."""
    from poolhead.use.export.onnx_attention import attention_3d as rewrite

    ids = torch.arange(2 * 9).reshape(2, 9) % 100 + 100  # any token ids: the shapes are what the export traces
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # a padded row
    inputs = tuple({"input_ids": ids, "attention_mask": mask}.get(n, torch.zeros_like(ids)) for n in names)
    dims = tuple({0: torch.export.Dim(AXES[0]), 1: torch.export.Dim(AXES[1])} for _ in names)
    path.parent.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                LastHiddenState(encoder.float().eval(), names),
                inputs,
                input_names=names,
                output_names=[OUTPUT],
                dynamic_shapes={"inputs": dims},
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
    finally:
        quiet.setLevel(level)
    if attention_3d:
        rewrite(program.model)
    program.save(str(path), external_data=False)
    return path


def session_options(settings: dict[str, str] = ORT_SETTINGS):
    """ONNX Runtime SessionOptions carrying `settings` (the model card gives the same lines, for optimum's
    `session_options` too)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    for key, value in settings.items():
        options.add_session_config_entry(key, value)
    return options


def ort_session(file: Path, settings: dict[str, str] = ORT_SETTINGS):
    """An ONNX Runtime CPU session for `file` with `settings`."""
    import onnxruntime as ort

    return ort.InferenceSession(str(file), session_options(settings), providers=["CPUExecutionProvider"])


def onnx_isa() -> str:
    """The CPU's int8 instruction set as sentence-transformers names its ONNX files: avx512_vnni, avx512, avx2
    or arm64."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    info = Path("/proc/cpuinfo")
    flags = set(info.read_text().split()) if info.exists() else set()
    return next((isa for flag, isa in ISA_FLAGS if flag in flags), "avx2")


def quantize_int8(source: Path, target: Path, isa: str) -> Path:
    """ONNX Runtime's dynamic int8 quantization of `source` (after its pre-processing: shape inference and
    graph optimisation), as optimum configures it per ISA: int8 weights per channel; 7-bit ranges
    (reduce_range) on AVX2 and AVX-512 without VNNI, whose int8 products can saturate."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            str(prepared),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=isa in ("avx2", "avx512"),
            op_types_to_quantize=["MatMul", "Gemm"],
        )
    return target
