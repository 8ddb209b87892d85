"""The int8 export's check keeps a file by the dev Spearman it loses against torch fp32 (signed): one that
scores higher is kept, one that loses more than --max-loss is refused. No optimum or ONNX Runtime needed: the
exporter and the scoring are stood in for, the decision is the real one (`backends._quantized`)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from poolhead.use.export import ExportRefused, backends

GOLD = np.arange(8, dtype=float)
SHUFFLED = np.array([0, 2, 1, 3, 5, 4, 6, 7], dtype=float)  # Spearman 0.952 against GOLD
WORSE = np.array([2, 0, 1, 5, 3, 4, 7, 6], dtype=float)  # Spearman 0.833


def quantize(tmp_path, monkeypatch, torch_scores, int8_scores, max_loss=0.005):
    """`backends._quantized` for the onnx backend, with torch fp32 scoring `torch_scores` and int8
    `int8_scores` on a dev split whose gold scores are GOLD."""
    def fake_export(loaded, isa, folder):
        path = tmp_path / backends.backend_file("onnx", "int8")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("int8")

    def scores(folder, fmt, text, pair, backend="torch", name=None):
        return int8_scores if backend == "onnx" else torch_scores

    rows = pd.DataFrame({"text": [f"t{i}" for i in GOLD], "label": GOLD})
    datamodule = SimpleNamespace(rows=lambda split: rows)
    monkeypatch.setattr("sentence_transformers.backend.export_dynamic_quantized_onnx_model", fake_export)
    monkeypatch.setattr("poolhead.use.predict.data_for", lambda model: datamodule)
    monkeypatch.setattr(backends, "exported_scores", scores)
    model = SimpleNamespace(mode=SimpleNamespace(pair=False))
    return backends._quantized(model, tmp_path, "sentence-transformers", "onnx", None, max_loss)


def test_an_int8_file_that_scores_higher_is_kept(tmp_path, monkeypatch):
    """Bug caught: the loss taken as an absolute value, so an int8 file scoring 4.8 points *higher* than
    torch fp32 was refused as if it had lost them."""
    gain = spearmanr(GOLD, GOLD).statistic - spearmanr(GOLD, SHUFFLED).statistic
    assert gain > 0.04
    kept = quantize(tmp_path, monkeypatch, torch_scores=SHUFFLED, int8_scores=GOLD)
    assert kept["precision"] == "int8" and f"loss {-gain * 100:.2f} points" in kept["check"], kept


def test_an_int8_file_that_loses_more_than_max_loss_is_refused(tmp_path, monkeypatch):
    said = r"int8 file loses too much: .*loss 11\.90 points \(allowed 0\.50\)"
    with pytest.raises(ExportRefused, match=said):
        quantize(tmp_path, monkeypatch, torch_scores=SHUFFLED, int8_scores=WORSE)
