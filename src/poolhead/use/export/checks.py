"""An export read back through its own library, and compared with poolhead's outputs on probe pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from poolhead.core.model import PoolheadModel


class ExportRefused(ValueError):
    """The model has no exact equivalent in the asked format; the message says why and which formats hold it.
    """


PROBES = [
    "A man is playing a guitar.",
    "A woman is slicing an onion in the kitchen.",
    "The cat sleeps.",
    " ".join(["A very long sentence that goes on"] * 60),
]  # longer than any max_length: truncation must agree


def expected(model: PoolheadModel, output: torch.Tensor, fmt: str) -> np.ndarray:
    """What the export gives for poolhead's head outputs `output`: the cosine (sentence-transformers, (pred -
    low) / (high - low)), else the score on the data's scale, class probabilities (softmax) or label
    probabilities."""
    if fmt == "sentence-transformers":
        return output.double().numpy()
    probabilities = model.head.probabilities(output)
    return (model.head.predict(output) if probabilities is None else probabilities).double().numpy()


def probe_scores(model: PoolheadModel, fmt: str) -> tuple[list[str] | None, np.ndarray]:
    """The probes' second texts (None for a single-text model) and what an export of `model` must give for
    them."""
    from poolhead.use.predict import predict_texts

    pair = PROBES[1:] + PROBES[:1] if model.mode.pair else None
    return pair, expected(model, predict_texts(model, PROBES, pair, precision="32-true"), fmt)


def load_exported(folder: str | Path, fmt: str, backend: str = "torch", file_name: str | None = None) -> Any:
    """The exported folder as its library loads it: SentenceTransformer / CrossEncoder (on `backend`, from
    `file_name` such as onnx/model.onnx), or None for the transformers format."""
    if fmt == "transformers":
        return None
    import sentence_transformers as st

    kwargs: dict[str, Any] = (
        {}
        if backend == "torch"
        else {"backend": backend, "model_kwargs": {"file_name": file_name} if file_name else {}}
    )
    cls = st.SentenceTransformer if fmt == "sentence-transformers" else st.CrossEncoder
    loaded = cls(str(folder), device="cpu", trust_remote_code=carries_code(folder), **kwargs)
    name = card_name(folder)
    if name:
        loaded.model_card_data.model_name = name  # sentence-transformers does not read it back from a folder
    return loaded


def carries_code(folder: str | Path) -> bool:
    """Whether the export holds a pooling as code (poolhead_pooling.py): loading it needs
    trust_remote_code=True."""
    return (Path(folder) / "poolhead_pooling.py").exists()


def card_name(folder: str | Path) -> str | None:
    """The model_name in the front matter of an export's README.md (None: not a poolhead export card)."""
    readme = Path(folder) / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    if not text.startswith("---\n"):
        return None
    front = yaml.safe_load(text.split("---\n", 2)[1]) or {}
    return front.get("model_name")


def exported_scores(
    folder: str | Path,
    fmt: str,
    text: list[str],
    text_pair: list[str] | None,
    backend: str = "torch",
    file_name: str | None = None,
) -> np.ndarray:
    """Score texts with the exported folder through its own library, on the scale `expected` describes."""
    loaded = load_exported(folder, fmt, backend, file_name)
    if fmt == "sentence-transformers":
        u, v = (loaded.encode(t, convert_to_tensor=True, batch_size=64) for t in (text, text_pair))
        return loaded.similarity_pairwise(u, v).double().numpy()
    if fmt == "cross-encoder":
        softmax = loaded.num_labels > 1 and isinstance(loaded.activation_fn, nn.Identity)
        scores = loaded.predict(
            list(zip(text, text_pair, strict=True)), apply_softmax=softmax, convert_to_tensor=True, batch_size=64
        )
        return scores.double().cpu().numpy()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    classifier = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        inputs = tokenizer(text, text_pair, truncation=True, padding=True, return_tensors="pt")
        logits = classifier(**inputs).logits.double()
    kind = classifier.config.problem_type
    if kind == "regression":
        return logits[:, 0].numpy()
    return (logits.sigmoid() if kind == "multi_label_classification" else logits.softmax(-1)).numpy()


def check(model: PoolheadModel, folder: Path, fmt: str, tolerance: float = 1e-4) -> None:
    """Load the export back and compare it with poolhead on probe pairs; raise when they differ."""
    pair, want = probe_scores(model, fmt)
    got = exported_scores(folder, fmt, PROBES, pair)
    if got.shape != want.shape or not np.allclose(got, want, atol=tolerance, rtol=0):
        raise RuntimeError(
            f"the {fmt} export gives other scores than poolhead ({got.ravel()[:4]} vs "
            f"{want.ravel()[:4]}); nothing was exported. Please report this as a poolhead bug."
        )
