"""ONNX / OpenVINO (int8) files beside a checked torch export, each checked before the folder is kept.

ONNX: PyTorch's exporter and ONNX Runtime's quantizer (no optimum: no optimum-onnx release imports with
transformers 5). OpenVINO: sentence-transformers' own exporters (optimum-intel), in the OpenVINO venv."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from poolhead.core.model import PoolheadModel
from poolhead.use.export.checks import ExportRefused, expected, exported_scores, load_exported, probe_scores
from poolhead.use.export.engine import INSTALL, importable, on_engine
from poolhead.use.export.onnx_files import onnx_isa, quantize_int8, write_onnx

BACKENDS = ("torch", "onnx", "openvino")
BACKEND_RTOL = (
    2e-3  # fp32 ONNX / OpenVINO vs torch on the probe pairs, times the output's range (other kernels)
)
MAX_INT8_LOSS = 0.005  # an int8 file may lose at most this much dev Spearman (0.5 points) against torch fp32
BACKEND_FILES = {
    ("onnx", None): "onnx/model.onnx",
    ("openvino", None): "openvino/openvino_model.xml",
    ("openvino", "int8"): "openvino/openvino_model_qint8_quantized.xml",
}  # onnx int8: by the CPU's ISA


def backend_refusal(model: PoolheadModel, fmt: str, backend: str, quantize: str | None) -> str | None:
    """Why `fmt` cannot carry `backend` (and `quantize`) files for `model`, or None when it can."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize {quantize!r}: only int8 is supported")
    if backend == "torch":
        return (
            "--quantize int8 needs --backend onnx or openvino (torch weights stay fp32)" if quantize else None
        )
    if fmt == "transformers":
        return (
            f"the transformers format is an AutoModelForSequenceClassification folder; the {backend} files "
            "hold the encoder of a sentence-transformers / cross-encoder folder: use --format cross-encoder "
            "(mode=cross) or sentence-transformers (mode=bi)"
        )
    if model.encoder.layers != [-1]:
        return (
            f"encoder.layers={model.encoder.layers} averages hidden layers, and sentence-transformers' "
            f"{backend} backend gives the module after it the last layer's states only: export without "
            "--backend"
        )
    if quantize and model.task.kind != "score":
        return (
            "an int8 file is kept only when it loses at most max_loss dev Spearman; this model predicts "
            "labels, "
            "for which that check is not implemented: export fp32 (no --quantize)"
        )
    return None


def backend_file(backend: str, quantize: str | None) -> str:
    """The file sentence-transformers loads, relative to the folder (its naming convention)."""
    return BACKEND_FILES.get((backend, quantize)) or f"onnx/model_qint8_{onnx_isa()}.onnx"


def backend_importable(backend: str) -> None:
    """Raise ImportError naming the one install that works, before anything is written."""
    importable(backend)
    try:
        if backend == "onnx":
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401  (torch.onnx.export's dynamo exporter)
        else:
            from optimum.intel.openvino import OVModelForFeatureExtraction  # noqa: F401
    except (
        Exception
    ) as err:  # ImportError, or an optimum release that does not fit the installed transformers
        raise ImportError(
            f"--backend {backend} needs {INSTALL[backend]} ({type(err).__name__}: {err})"
        ) from err


def st_loads_onnx() -> str | None:
    """None when sentence-transformers can run backend="onnx" here, else why not (it needs optimum-onnx)."""
    try:
        from optimum.onnxruntime import ORTModelForFeatureExtraction  # noqa: F401
    except Exception as err:
        return f"sentence-transformers' backend='onnx' needs optimum-onnx ({type(err).__name__}: {err})"
    return None


def scale(model: PoolheadModel, fmt: str) -> float:
    """The range of what the export outputs (fmt "predict": poolhead's pred): a cosine spans 2, a score its
    data's range, a probability 1."""
    if model.task.kind != "score":
        return 1.0
    if fmt == "sentence-transformers":
        return 2.0
    low, high = model.task.score_range or (0.0, 1.0)
    return float(high - low)


def add_backend(
    model: PoolheadModel,
    folder: Path,
    fmt: str,
    backend: str,
    quantize: str | None,
    max_loss: float = MAX_INT8_LOSS,
) -> list[dict[str, Any]]:
    """Add `backend`'s fp32 file (and the int8 one) to the checked torch export in `folder`; check each;
    return what the model card says about them (file, check). Raises when a check fails (the caller removes
    the folder)."""
    if backend == "onnx":
        write_onnx(model, folder / backend_file("onnx", None))
        loaded = None
    else:
        loaded = load_exported(folder, fmt, backend)  # optimum-intel converts the torch weights (fp32)
        with tempfile.TemporaryDirectory() as tmp:
            loaded.save_pretrained(tmp)  # writes <tmp>/<backend>/...: only that folder is taken
            shutil.copytree(Path(tmp) / backend, folder / backend, dirs_exist_ok=True)
    files = [check_fp32(model, folder, fmt, backend)]
    if quantize:
        files.append(quantized(model, folder, fmt, backend, loaded, max_loss))
    return files


def fp32_scores(model: PoolheadModel, folder: Path, fmt: str, backend: str) -> np.ndarray:
    """The probe pairs scored through the backend file: by sentence-transformers where it loads that backend
    here, else (ONNX without optimum) by ONNX Runtime under poolhead's own pooling and head."""
    pair, _ = probe_scores(model, fmt)
    name = backend_file(backend, None)
    if backend == "openvino" or st_loads_onnx() is None:
        from poolhead.use.export.checks import PROBES

        return exported_scores(folder, fmt, PROBES, pair, backend, name)
    return engine_probe_scores(model, folder / name, backend, fmt)


def engine_probe_scores(model: PoolheadModel, file: Path, backend: str, fmt: str) -> np.ndarray:
    """What the export's scale gives for the probe pairs, with the encoder on `backend` running `file`."""
    from poolhead.use.export.checks import PROBES
    from poolhead.use.predict import predict_texts

    pair = PROBES[1:] + PROBES[:1] if model.mode.pair else None
    return expected(
        model, predict_texts(on_engine(model, file, backend), PROBES, pair, precision="32-true"), fmt
    )


def check_fp32(model: PoolheadModel, folder: Path, fmt: str, backend: str) -> dict[str, Any]:
    """The fp32 file's probe scores against torch's, within BACKEND_RTOL of the output's range."""
    _, want = probe_scores(model, fmt)
    got = fp32_scores(model, folder, fmt, backend)
    name, tolerance = backend_file(backend, None), BACKEND_RTOL * scale(model, fmt)
    diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    if not diff <= tolerance:
        raise RuntimeError(
            f"the {backend} file {name} gives other scores than poolhead (max |diff| {diff:.2e} > "
            f"{tolerance:.2g}, {BACKEND_RTOL:g} of the output's range {scale(model, fmt):g}); nothing "
            "was exported. Please report this as a poolhead bug."
        )
    return {
        "file": name,
        "backend": backend,
        "precision": "fp32",
        "check": f"probe pairs: max abs diff vs torch {diff:.1e} (tolerance {tolerance:.2g}, "
        f"{BACKEND_RTOL:g} "
        f"of the output's range)",
    }


def check_engine(model: PoolheadModel, file: Path, backend: str) -> str:
    """`poolhead predict`'s outputs on the probe pairs with the encoder running `file` against torch's, within
    BACKEND_RTOL of the range of pred; returns what was checked, raises when they differ."""
    from poolhead.use.export.checks import PROBES
    from poolhead.use.predict import predict_texts

    pair = PROBES[1:] + PROBES[:1] if model.mode.pair else None
    want = expected(model, predict_texts(model, PROBES, pair, precision="32-true"), "predict")
    got = expected(
        model, predict_texts(on_engine(model, file, backend), PROBES, pair, precision="32-true"), "predict"
    )
    diff, tolerance = float(np.abs(got - want).max()), BACKEND_RTOL * scale(model, "predict")
    if not diff <= tolerance:
        raise RuntimeError(
            f"{file} on {backend} gives other predictions than torch (max |diff| {diff:.2e} > "
            f"{tolerance:.2g}); it was not kept. Please report this as a poolhead bug."
        )
    return f"probe pairs: max abs diff vs torch {diff:.1e} (tolerance {tolerance:.2g})"


def check_engine_int8(model: PoolheadModel, file: Path, backend: str, max_loss: float) -> str:
    """The int8 `file`'s dev Spearman against torch fp32's on the run's val split; raises beyond `max_loss`.
    """
    from scipy.stats import spearmanr

    from poolhead.use.predict import data_for, predict_texts

    dev = data_for(model).rows("val")
    text, pair = dev["text"].tolist(), dev["text_pair"].tolist() if model.mode.pair else None
    gold = dev["label"].to_numpy(dtype=float)
    score = {
        name: float(
            spearmanr(
                gold, expected(m, predict_texts(m, text, pair, precision="32-true"), "predict")
            ).statistic
        )
        for name, m in (("torch", model), ("int8", on_engine(model, file, backend)))
    }
    said = (
        f"dev Spearman (val split, {len(dev)} rows): torch fp32 {score['torch']:.4f}, "
        f"int8 {score['int8']:.4f}, "
        f"loss {(score['torch'] - score['int8']) * 100:.2f} points (allowed {max_loss * 100:.2f})"
    )
    if loss_refusal(score["torch"], score["int8"], max_loss):
        raise ExportRefused(
            f"the {backend} int8 file loses too much: {said}; it was not kept (use fp32, or allow "
            "more with --max-loss)"
        )
    return said


def loss_refusal(torch_score: float, int8_score: float, max_loss: float) -> str | None:
    """Why an int8 file is refused: it lost more than `max_loss` (signed: an int8 file that scores higher
    loses nothing), else None."""
    loss = torch_score - int8_score
    return None if loss <= max_loss else f"loss {loss * 100:.2f} points > allowed {max_loss * 100:.2f}"


def quantized(
    model: PoolheadModel, folder: Path, fmt: str, backend: str, loaded: Any, max_loss: float
) -> dict[str, Any]:
    """Write the int8 file, score it on the run's dev split against torch fp32, refuse a loss above
    `max_loss`."""
    from poolhead.use.predict import data_for

    datamodule = data_for(model)
    name = backend_file(backend, "int8")
    if backend == "onnx":  # dynamic: no calibration data
        quantize_int8(folder / backend_file("onnx", None), folder / name, onnx_isa())
        how = f"ONNX Runtime dynamic int8 ({onnx_isa()}), by onnxruntime.quantization.quantize_dynamic"
    else:
        how = openvino_int8(loaded, folder, datamodule)
    if not (folder / name).exists():
        raise RuntimeError(f"the {backend} quantizer did not write {name}; nothing was exported")
    if backend == "onnx" and st_loads_onnx() is not None:  # ONNX Runtime under poolhead's pooling and head
        said = check_engine_int8(model, folder / name, backend, max_loss)
    else:
        said = library_int8_check(model, folder, fmt, backend, name, datamodule.rows("val"), max_loss)
    return {"file": name, "backend": backend, "precision": "int8", "check": said, "how": how}


def library_int8_check(
    model: PoolheadModel, folder: Path, fmt: str, backend: str, name: str, dev: pd.DataFrame, max_loss: float
) -> str:
    """The int8 file's dev Spearman through sentence-transformers against the torch export's; raises beyond
    `max_loss`."""
    from scipy.stats import spearmanr

    text, pair = dev["text"].tolist(), dev["text_pair"].tolist() if model.mode.pair else None
    gold = dev["label"].to_numpy(dtype=float)
    torch_score = float(spearmanr(gold, exported_scores(folder, fmt, text, pair)).statistic)
    int8_score = float(spearmanr(gold, exported_scores(folder, fmt, text, pair, backend, name)).statistic)
    said = (
        f"dev Spearman (val split, {len(dev)} rows): torch fp32 {torch_score:.4f}, int8 {int8_score:.4f}, "
        f"loss {(torch_score - int8_score) * 100:.2f} points (allowed {max_loss * 100:.2f})"
    )
    if loss_refusal(torch_score, int8_score, max_loss):
        raise ExportRefused(
            f"the {backend} int8 file loses too much: {said}; nothing was exported (export fp32, or "
            "allow more with --max-loss)"
        )
    return said


def openvino_int8(loaded: Any, folder: Path, datamodule: Any) -> str:
    """OpenVINO static int8 by sentence-transformers' exporter (NNCF), calibrated on the run's training texts
    (the dev split is kept for the check); returns how it was made."""
    from optimum.intel import OVQuantizationConfig
    from sentence_transformers.backend import export_static_quantized_openvino_model

    train = datamodule.rows("train")
    texts = (
        train["text"].tolist()
        if "text_pair" not in train
        else [f"{a} {b}" for a, b in zip(train["text"], train["text_pair"], strict=True)]
    )
    with tempfile.TemporaryDirectory() as tmp:
        pd.DataFrame({"sentence": texts}).to_csv(Path(tmp) / "train.csv", index=False)
        export_static_quantized_openvino_model(
            loaded,
            OVQuantizationConfig(num_samples=min(300, len(texts))),
            str(folder),
            dataset_name=tmp,
            dataset_config_name="default",
            dataset_split="train",
            column_name="sentence",
        )
    return (
        "OpenVINO static int8 (NNCF), calibrated on the run's training texts, by "
        "export_static_quantized_openvino_model"
    )
