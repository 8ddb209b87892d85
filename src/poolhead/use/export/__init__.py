"""A trained model as a folder sentence-transformers or transformers load, kept only when it gives poolhead's
scores.

export(poolhead.load("logs/train/runs/<run>"), "exported/", fmt="auto")"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from poolhead.core.heads import ClassificationHead, MultiLabelHead, RegressionHead
from poolhead.core.model import PoolheadModel
from poolhead.use.export import cross_encoder, st, transformers_format
from poolhead.use.export.backends import (  # noqa: F401  (the package's API)
    BACKEND_RTOL,
    BACKENDS,
    MAX_INT8_LOSS,
    add_backend,
    backend_file,
    backend_importable,
    backend_refusal,
    loss_refusal,
    st_loads_onnx,
)
from poolhead.use.export.card import base_encoder, export_name, hub_id, model_card  # noqa: F401
from poolhead.use.export.checks import (  # noqa: F401
    PROBES,
    ExportRefused,
    card_name,
    carries_code,
    check,
    expected,
    exported_scores,
    load_exported,
)
from poolhead.use.export.onnx_files import onnx_isa  # noqa: F401

FORMATS = ("sentence-transformers", "cross-encoder", "transformers")
AUTO = {
    "bi": ("sentence-transformers",),
    "cross": ("cross-encoder", "transformers"),
    "single": ("transformers",),
}
FORMAT = {
    "sentence-transformers": (st.refusal, st.to_sentence_transformers),  # (refusal, writer)
    "cross-encoder": (cross_encoder.refusal, cross_encoder.to_cross_encoder),
    "transformers": (transformers_format.refusal, transformers_format.to_transformers),
}


def refusal(model: PoolheadModel, fmt: str) -> str | None:
    """Why `fmt` cannot hold `model` with the same outputs, or None when it can."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: choose one of {', '.join(FORMATS)} (or auto)")
    head, mode = model.head, model.mode.name
    if not isinstance(head, (RegressionHead, ClassificationHead, MultiLabelHead)):
        return (
            f"head {type(head).__name__} is not one of poolhead's heads; its outputs have no known equivalent"
        )
    if mode == "bi" and not isinstance(head, RegressionHead):
        return (
            "mode=bi with a classification head reads (u, v, |u - v|): no format holds that (a "
            "SentenceTransformer scores pairs by cosine); train mode=bi head=regression, or mode=cross"
        )
    return FORMAT[fmt][0](model)


def formats_for(model: PoolheadModel) -> list[str]:
    """The formats that hold `model` exactly."""
    return [fmt for fmt in FORMATS if refusal(model, fmt) is None]


def choose(model: PoolheadModel, fmt: str = "auto") -> str:
    """`fmt`, or for auto the first format of the model's mode that holds it; ExportRefused says why not."""
    candidates = AUTO[model.mode.name] if fmt == "auto" else (fmt,)
    reasons = {f: refusal(model, f) for f in candidates}
    for f, reason in reasons.items():
        if reason is None:
            return f
    holders = formats_for(model)
    why = "; ".join(f"{f}: {r}" for f, r in reasons.items())
    raise ExportRefused(
        f"cannot export this model ({describe(model)}) exactly. {why}. Formats that hold it: "
        f"{', '.join(holders) if holders else 'none'}"
    )


def describe(model: PoolheadModel) -> str:
    config = model.description.config if model.description else {}
    return (
        f"mode={model.mode.name}, pooling={type(model.pooling).__name__}, head={type(model.head).__name__}, "
        f"encoder.layers={model.encoder.layers}" + (f", data={config['data'].get('name')}" if config else "")
    )


def export(
    model: PoolheadModel,
    to: str | Path,
    fmt: str = "auto",
    card: dict[str, Any] | None = None,
    backend: str = "torch",
    quantize: str | None = None,
    max_loss: float = MAX_INT8_LOSS,
) -> Path:
    """Write `model` in `fmt` into the new or empty folder `to`, check it, add the `backend` (`quantize`)
    files and README.md (with the facts in `card`: checkpoint, metrics). Returns the folder."""
    fmt = choose(model, fmt)
    why = backend_refusal(model, fmt, backend, quantize)
    if why:
        raise ExportRefused(
            f"cannot add a {backend}{' int8' if quantize else ''} file to a {fmt} export: {why}"
        )
    if backend != "torch":
        backend_importable(backend)  # before anything is written
    if fmt != "transformers":
        try:
            import sentence_transformers  # noqa: F401
        except ImportError as err:
            raise ImportError(
                f"the {fmt} format needs sentence-transformers>=6: pip install 'sentence-transformers>=6'"
            ) from err
    to = Path(to)
    if to.exists() and any(to.iterdir()):
        raise FileExistsError(f"{to}: not empty; export into a new folder (or remove it first)")
    model = model.float().cpu().eval()
    card = dict(card or {})
    try:
        FORMAT[fmt][1](model, to)
        check(model, to, fmt)
        if backend != "torch":
            card["backends"] = add_backend(model, to, fmt, backend, quantize, max_loss)
    except Exception:
        shutil.rmtree(to, ignore_errors=True)
        raise
    card.setdefault("model_name", export_name(model, card))
    (to / "README.md").write_text(model_card(model, fmt, card))
    shareable(to)
    return to


def shareable(folder: Path) -> None:
    """Files and folders of an export get the user's umask (model.safetensors was written 0600 by a temporary
    file): an export is meant to be shared."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
