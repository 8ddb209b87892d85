"""ONNX / OpenVINO (int8) files beside a checked torch export, by sentence-transformers' own exporters, each checked."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from poolhead.core.model import PoolheadModel
from poolhead.use.export.checks import PROBES, exported_scores, load_exported, probe_scores

BACKENDS = ("torch", "onnx", "openvino")
BACKEND_TOLERANCE = 1e-3  # fp32 ONNX / OpenVINO vs torch on the probe pairs (other kernels, other summation order)
MAX_INT8_LOSS = 0.005     # an int8 file may lose at most this much dev Spearman (0.5 points) against torch fp32
BACKEND_FILES = {("onnx", None): "onnx/model.onnx", ("openvino", None): "openvino/openvino_model.xml",
                 ("openvino", "int8"): "openvino/openvino_model_qint8_quantized.xml"}  # onnx int8: by the CPU's ISA
BACKEND_PACKAGES = {"onnx": "sentence-transformers[onnx] (optimum-onnx, onnxruntime)",
                    "openvino": "sentence-transformers[openvino] (optimum-intel, openvino, nncf)"}


def backend_refusal(model: PoolheadModel, fmt: str, backend: str, quantize: str | None) -> str | None:
    """Why `fmt` cannot carry `backend` (and `quantize`) files for `model`, or None when it can."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize {quantize!r}: only int8 is supported")
    if backend == "torch":
        return "--quantize int8 needs --backend onnx or openvino (torch weights stay fp32)" if quantize else None
    if fmt == "transformers":
        return (f"the transformers format is an AutoModelForSequenceClassification folder; sentence-transformers' "
                f"{backend} exporters write into sentence-transformers / cross-encoder folders: use --format "
                "cross-encoder (mode=cross) or sentence-transformers (mode=bi)")
    if quantize and model.task.kind != "score":
        return ("an int8 file is kept only when it loses at most max_loss dev Spearman; this model predicts labels, "
                "for which that check is not implemented: export fp32 (no --quantize)")
    return None


def onnx_isa() -> str:
    """The ONNX Runtime int8 config sentence-transformers names for this CPU: avx512_vnni, avx512, avx2 or arm64."""
    import platform

    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    return next((isa for isa in ("avx512_vnni", "avx512f", "avx2") if isa in flags), "avx2").replace("f", "")


def backend_file(backend: str, quantize: str | None) -> str:
    """The file sentence-transformers' exporter writes, relative to the folder (its naming convention)."""
    return BACKEND_FILES.get((backend, quantize)) or f"onnx/model_qint8_{onnx_isa()}.onnx"


def _backend_importable(backend: str) -> None:
    """Raise ImportError naming the extra when sentence-transformers cannot run `backend` here."""
    try:
        if backend == "onnx":
            import onnxruntime  # noqa: F401
            from optimum.exporters.onnx import main_export  # noqa: F401
            from optimum.onnxruntime import ORTModelForFeatureExtraction  # noqa: F401
        else:
            from optimum.intel.openvino import OVModelForFeatureExtraction  # noqa: F401
    except Exception as err:  # ImportError, or an optimum release that does not fit the installed transformers
        raise ImportError(f"--backend {backend} needs {BACKEND_PACKAGES[backend]} working with the installed "
                          f"transformers: pip install 'poolhead[{backend}]' ({type(err).__name__}: {err})") from err


def add_backend(model: PoolheadModel, folder: Path, fmt: str, backend: str, quantize: str | None,
                max_loss: float = MAX_INT8_LOSS) -> list[dict[str, Any]]:
    """Add `backend`'s fp32 file (and the int8 one) to the checked torch export in `folder`; check each; return what
    the model card says about them (file, check). Raises when a check fails (the caller removes the folder)."""
    pair, want = probe_scores(model, fmt)
    loaded = load_exported(folder, fmt, backend)  # exports the torch weights to the backend (fp32)
    with tempfile.TemporaryDirectory() as tmp:
        loaded.save_pretrained(tmp)  # writes <tmp>/<backend>/...: only that folder is taken
        shutil.copytree(Path(tmp) / backend, folder / backend, dirs_exist_ok=True)
    fp32 = backend_file(backend, None)
    got = exported_scores(folder, fmt, PROBES, pair, backend, fp32)
    diff = float(np.abs(got - want).max())
    if got.shape != want.shape or not diff <= BACKEND_TOLERANCE:
        raise RuntimeError(f"the {backend} file {fp32} gives other scores than poolhead (max |diff| {diff:.2e} > "
                           f"{BACKEND_TOLERANCE:g}); nothing was exported. Please report this as a poolhead bug.")
    files = [{"file": fp32, "backend": backend, "precision": "fp32",
              "check": f"probe pairs: max abs diff vs torch {diff:.1e} (tolerance {BACKEND_TOLERANCE:g})"}]
    if quantize:
        files.append(_quantized(model, folder, fmt, backend, loaded, max_loss))
    return files


def _quantized(model: PoolheadModel, folder: Path, fmt: str, backend: str, loaded: Any,
               max_loss: float) -> dict[str, Any]:
    """Write the int8 file with sentence-transformers' exporter, score it on the run's dev split, refuse a loss."""
    from scipy.stats import spearmanr
    from sentence_transformers.backend import (export_dynamic_quantized_onnx_model,
                                               export_static_quantized_openvino_model)

    from poolhead.use.export import ExportRefused
    from poolhead.use.predict import data_for

    datamodule = data_for(model)
    if backend == "onnx":  # dynamic: no calibration data
        export_dynamic_quantized_onnx_model(loaded, onnx_isa(), str(folder))
        how = f"ONNX Runtime dynamic int8 ({onnx_isa()}), by export_dynamic_quantized_onnx_model"
    else:  # static: calibrated on the run's training texts (the dev split is kept for the check)
        from optimum.intel import OVQuantizationConfig

        train = datamodule.rows("train")
        texts = train["text"].tolist() if "text_pair" not in train else [
            f"{a} {b}" for a, b in zip(train["text"], train["text_pair"])]
        with tempfile.TemporaryDirectory() as tmp:
            pd.DataFrame({"sentence": texts}).to_csv(Path(tmp) / "train.csv", index=False)
            export_static_quantized_openvino_model(loaded, OVQuantizationConfig(num_samples=min(300, len(texts))),
                                                   str(folder), dataset_name=tmp, dataset_config_name="default",
                                                   dataset_split="train", column_name="sentence")
        how = "OpenVINO static int8 (NNCF), calibrated on the run's training texts, by " \
              "export_static_quantized_openvino_model"
    name = backend_file(backend, "int8")
    if not (folder / name).exists():
        raise RuntimeError(f"sentence-transformers' exporter did not write {name}; nothing was exported")
    dev = datamodule.rows("val")
    text, pair = dev["text"].tolist(), dev["text_pair"].tolist() if model.mode.pair else None
    gold = dev["label"].to_numpy(dtype=float)
    torch_score = float(spearmanr(gold, exported_scores(folder, fmt, text, pair)).statistic)
    int8_score = float(spearmanr(gold, exported_scores(folder, fmt, text, pair, backend, name)).statistic)
    loss = torch_score - int8_score
    said = (f"dev Spearman (val split, {len(dev)} rows): torch fp32 {torch_score:.4f}, int8 {int8_score:.4f}, "
            f"loss {loss * 100:.2f} points (allowed {max_loss * 100:.2f})")
    if not loss <= max_loss:
        raise ExportRefused(f"the {backend} int8 file loses too much: {said}; nothing was exported (export fp32, or "
                            "allow more with --max-loss)")
    return {"file": name, "backend": backend, "precision": "int8", "check": said, "how": how}

