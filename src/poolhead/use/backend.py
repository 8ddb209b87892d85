"""A run's model on a fast engine: `poolhead predict RUN --backend onnx|openvino` and `poolhead.load(run,
backend=)`.

The encoder runs the export's graph (ONNX Runtime, or OpenVINO reading the same ONNX file), the pooling and
head stay in torch, so the outputs are those of the torch model (within the export's fp32 tolerance), in input
order. The graph is written and checked on first use, beside the run: <run>/backends/<checkpoint
sha256[:12]>-<GRAPH>/onnx/model.onnx (int8: model_qint8_<isa>.onnx, kept only within the allowed dev loss)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from poolhead.core.model import PoolheadModel
from poolhead.run.record import run_folder
from poolhead.use.export.backends import MAX_INT8_LOSS, backend_file, check_engine, check_engine_int8
from poolhead.use.export.engine import ENGINES, importable, on_engine
from poolhead.use.export.onnx_files import GRAPH, onnx_isa, quantize_int8, write_onnx


def load_on(
    run: str | Path,
    backend: str,
    quantize: str | None = None,
    trust_remote_code: bool = False,
    max_loss: float = MAX_INT8_LOSS,
) -> PoolheadModel:
    """The run's model (a run folder or .ckpt) with its encoder on `backend` (`quantize`: "int8", ONNX only).
    """
    from poolhead.run.build import load
    from poolhead.run.checkpoint import checkpoint_file

    refuse(backend, quantize)
    checkpoint = checkpoint_file(run)
    model = load(checkpoint, "cpu", trust_remote_code)
    return on_engine(model, engine_file(model, checkpoint, backend, quantize, max_loss), backend)


def refuse(backend: str, quantize: str | None) -> None:
    """Settings checked before any work: a known engine whose runtime imports here, int8 on ONNX only."""
    if backend not in ENGINES:
        raise ValueError(f"backend {backend!r}: choose one of torch, {', '.join(ENGINES)}")
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize {quantize!r}: only int8 is supported")
    if quantize and backend != "onnx":
        raise ValueError(
            "--quantize int8 with --backend openvino: predict quantizes ONNX files only (dynamic int8); "
            "use --backend onnx --quantize int8, or poolhead export --backend openvino --quantize int8"
        )
    importable(backend)


def engine_file(
    model: PoolheadModel,
    checkpoint: Path,
    backend: str,
    quantize: str | None,
    max_loss: float = MAX_INT8_LOSS,
) -> Path:
    """The checked graph of `checkpoint`, written on first use into the run's backends/ folder."""
    folder = backends_folder(checkpoint)
    fp32 = folder / backend_file("onnx", None)
    if not fp32.exists():
        keep(fp32, lambda tmp: write_onnx(model, tmp), lambda tmp: check_engine(model, tmp, "onnx"))
    marker = fp32.with_name(
        f"{fp32.name}.{backend}.check.json"
    )  # OpenVINO compiles the same file: checked once
    if backend != "onnx" and not marker.exists():
        marker.write_text(json.dumps({"file": fp32.name, "check": check_engine(model, fp32, backend)}) + "\n")
    if not quantize:
        return fp32
    int8 = folder / backend_file("onnx", "int8")
    if not int8.exists():
        keep(
            int8,
            lambda tmp: quantize_int8(fp32, tmp, onnx_isa()),
            lambda tmp: check_engine_int8(model, tmp, "onnx", max_loss),
        )
    return int8


def backends_folder(checkpoint: Path) -> Path:
    """<run>/backends/<the checkpoint's sha256, 12 hex>-<GRAPH>: a new checkpoint, or a graph written another
    way, gets new files (the old ones stay)."""
    digest = hashlib.sha256()
    with open(checkpoint, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return run_folder(checkpoint) / "backends" / f"{digest.hexdigest()[:12]}-{GRAPH}"


def keep(path: Path, write, check) -> None:
    """Write `path` under a temporary name, check it, then move it into place with the check beside it: a file
    that failed its check, or a half-written one, is never found."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        said = check(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    path.with_name(path.name + ".check.json").write_text(
        json.dumps({"file": path.name, "check": said}) + "\n"
    )

