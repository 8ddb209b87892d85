"""`poolhead export --backend onnx|openvino [--quantize int8]`: sentence-transformers' own ONNX / OpenVINO files.

Each backend file, loaded by sentence-transformers with `backend=` and the `file_name` the model card names, gives
poolhead predict's scores to BACKEND_TOLERANCE (fp32), or its dev Spearman within the allowed loss (int8); a format
that cannot hold a backend is refused with the reason. The backend tests skip, saying why, where the backend's
packages cannot run with the installed transformers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, compose_cfg
from test_use import class_pairs, demo_pairs, predicted, tiny_run

from poolhead import build
from poolhead.use.cli import main as cli
from poolhead.use.export import (
    BACKEND_TOLERANCE,
    ExportRefused,
    _backend_importable,
    backend_file,
    backend_refusal,
    export,
)


def needs(backend: str) -> None:
    try:
        _backend_importable(backend)
    except ImportError as err:
        pytest.skip(str(err))


@pytest.mark.parametrize("overrides, fmt, quantize, words", [
    (lambda d: ["mode=cross", "pooling=pooler"], "transformers", None,
     ["AutoModelForSequenceClassification", "use --format cross-encoder"]),
    (lambda d: ["mode=bi"], "sentence-transformers", "int8", None),  # holds it
    (lambda d: ["mode=cross", "head=classification", "data=csv", f"data.train={class_pairs(d)}",
                "data.text_pair=text_pair", "data.task=class"], "cross-encoder", "int8", ["not implemented", "fp32"]),
])
def test_formats_that_cannot_hold_a_backend_are_refused_with_the_reason(tmp_path, overrides, fmt, quantize, words):
    _, model = build(compose_cfg([*FAST, *overrides(tmp_path)], tmp_path))
    why = backend_refusal(model, fmt, "onnx", quantize)
    if words is None:
        assert why is None
        return
    for word in words:
        assert word in why, (word, why)
    assert "needs --backend onnx or openvino" in backend_refusal(model, fmt, "torch", "int8")


def test_refused_backend_writes_nothing(tmp_path, capsys):
    run_dir = tiny_run(tmp_path / "run", ["mode=cross", "pooling=pooler"])
    assert cli(["export", str(run_dir), "--to", str(tmp_path / "out"), "--format", "transformers",
                "--backend", "openvino"]) == 1
    assert "AutoModelForSequenceClassification" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("backend_runs")
    return {mode: tiny_run(root / mode, [f"mode={mode}", "pooling=mean"]) for mode in ("bi", "cross")}


def library(folder: Path, fmt: str, text: list[str], pair: list[str], backend: str, file_name: str) -> np.ndarray:
    """The backend file run by sentence-transformers only, as a user loads it from the model card."""
    from sentence_transformers import CrossEncoder, SentenceTransformer

    kwargs = dict(backend=backend, model_kwargs={"file_name": file_name}, device="cpu")
    if fmt == "cross-encoder":
        return np.asarray(CrossEncoder(str(folder), **kwargs).predict(list(zip(text, pair))), dtype=float)
    model = SentenceTransformer(str(folder), **kwargs)
    return model.similarity_pairwise(model.encode(text), model.encode(pair)).double().numpy()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.parametrize("mode", ["bi", "cross"])
def test_backend_export_loads_with_sentence_transformers_backend_and_reproduces(runs, tmp_path, backend, mode):
    needs(backend)
    run_dir, fmt = runs[mode], {"bi": "sentence-transformers", "cross": "cross-encoder"}[mode]
    source = demo_pairs(tmp_path, rows=30)
    assert cli(["predict", str(run_dir), "--input", str(source), "--output", str(tmp_path / "p.csv"), "--quiet"]) == 0
    frame = pd.read_csv(tmp_path / "p.csv")
    folder = tmp_path / "out"
    # the tiny random encoder's dev Spearman is near 0 and int8 moves it at random: allow any loss here, the
    # refusal is tested below
    assert cli(["export", str(run_dir), "--to", str(folder), "--backend", backend, "--quantize", "int8",
                "--max-loss", "2"]) == 0
    text, pair = frame["sentence1"].tolist(), frame["sentence2"].tolist()
    want = predicted(frame, fmt, "score", (0.0, 5.0))
    fp32 = library(folder, fmt, text, pair, backend, backend_file(backend, None))
    assert np.abs(fp32 - want).max() <= BACKEND_TOLERANCE
    int8 = library(folder, fmt, text, pair, backend, backend_file(backend, "int8"))
    assert int8.shape == want.shape and np.isfinite(int8).all()
    card = (folder / "README.md").read_text()
    for name in (backend_file(backend, None), backend_file(backend, "int8")):
        assert (folder / name).exists() and f'model_kwargs={{"file_name": "{name}"}}' in card
    assert "dev Spearman (val split" in card and "torch fp32" in card
    assert (folder / "model.safetensors").exists(), "the torch weights stay"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_int8_beyond_the_allowed_loss_is_refused_and_nothing_kept(runs, tmp_path, capsys, backend):
    needs(backend)
    assert cli(["export", str(runs["bi"]), "--to", str(tmp_path / "out"), "--backend", backend, "--quantize", "int8",
                "--max-loss", "-1"]) == 1  # a negative loss: no int8 file can be kept
    assert "loses too much" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_backend_file_names_are_sentence_transformers_own(tmp_path):
    assert backend_file("onnx", None) == "onnx/model.onnx"
    assert backend_file("openvino", None) == "openvino/openvino_model.xml"
    assert backend_file("openvino", "int8") == "openvino/openvino_model_qint8_quantized.xml"
    assert backend_file("onnx", "int8").startswith("onnx/model_qint8_")
    _, model = build(compose_cfg([*FAST, "mode=cross", "pooling=pooler"], tmp_path))
    with pytest.raises(ExportRefused, match="transformers export"):
        export(model, tmp_path / "out", "transformers", backend="onnx")
    assert not (tmp_path / "out").exists()


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_minilm_backend_export_reproduces_and_int8_stays_within_the_loss(tmp_path, backend):
    """The real MiniLM, one training step on the demo pairs: fp32 to BACKEND_TOLERANCE, int8 within 0.5 points."""
    needs(backend)
    run_dir = tiny_run(tmp_path / "run", ["encoder=minilm", "mode=bi", "pooling=mean", "data.batch_size=8",
                                          "data.eval_batch_size=16"])
    source = demo_pairs(tmp_path, rows=20)
    assert cli(["predict", str(run_dir), "--input", str(source), "--output", str(tmp_path / "p.csv"), "--quiet",
                "--batch-size", "16"]) == 0
    frame = pd.read_csv(tmp_path / "p.csv")
    folder = tmp_path / "out"
    assert cli(["export", str(run_dir), "--to", str(folder), "--backend", backend, "--quantize", "int8"]) == 0
    got = library(folder, "sentence-transformers", frame["sentence1"].tolist(), frame["sentence2"].tolist(), backend,
                  backend_file(backend, None))
    assert np.abs(got - predicted(frame, "sentence-transformers", "score", (0.0, 5.0))).max() <= BACKEND_TOLERANCE
    assert "loss" in (folder / "README.md").read_text()  # kept: within the default 0.5 points on the demo dev split
