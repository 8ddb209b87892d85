"""Every pooling a grid can pick exports: attention, a custom pooling and `encoder.layers` averaging, which
sentence-transformers' Pooling cannot hold, go out as a custom module (its code and weights in the folder)
or as sentence-transformers' own WeightedLayerPooling.

Each export is loaded by sentence-transformers itself (`trust_remote_code=True`) and must give `poolhead
predict`'s scores; the custom pooling's folder is loaded in a fresh interpreter where the user's module is not
importable, so the folder must carry the code. Bugs caught: a custom module that rebuilds the pooling without
its trained weights, a layer average over the wrong layers, a folder that loads only where the user's code is
on the path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, predict_cli
from test_use import demo_pairs, predicted, tiny_run

from poolhead.use.cli import main as cli

README_POOLING = (
    (ROOT / "README.md").read_text().split("```python\n# my_pooling.py\n", 1)[1].split("```", 1)[0]
)


def predict_then_export(run_dir: Path, tmp_path: Path, *flags: str) -> tuple[pd.DataFrame, Path]:
    source = demo_pairs(tmp_path, rows=30)
    assert (
        predict_cli(run_dir, source, tmp_path / "p.csv", *flags)
        == 0
    )
    folder = tmp_path / "out"
    assert cli(["export", str(run_dir), "--to", str(folder), *flags]) == 0
    return pd.read_csv(tmp_path / "p.csv"), folder


def st_scores(folder: Path, fmt: str, frame: pd.DataFrame) -> np.ndarray:
    """The folder as sentence-transformers loads it (custom code trusted): cosine, or CrossEncoder scores."""
    from sentence_transformers import CrossEncoder, SentenceTransformer

    text, pair = frame["sentence1"].tolist(), frame["sentence2"].tolist()
    if fmt == "cross-encoder":
        model = CrossEncoder(str(folder), device="cpu", trust_remote_code=True)
        return np.asarray(model.predict(list(zip(text, pair, strict=True))), dtype=float)
    model = SentenceTransformer(str(folder), device="cpu", trust_remote_code=True)
    return model.similarity_pairwise(model.encode(text), model.encode(pair)).double().numpy()


@pytest.mark.parametrize(
    "overrides, fmt, code",
    [
        (["mode=bi", "pooling=attention"], "sentence-transformers", True),
        (["mode=cross", "pooling=attention"], "cross-encoder", True),
        (["mode=bi", "pooling=mean", "encoder.layers=[-1,-2]"], "sentence-transformers", False),
        (["mode=bi", "pooling=attention", "encoder.layers=[0,-1]"], "sentence-transformers", True),
    ],
)
def test_poolings_beyond_sentence_transformers_pooling_export_and_reproduce(tmp_path, overrides, fmt, code):
    run_dir = tiny_run(tmp_path / "run", overrides)
    frame, folder = predict_then_export(run_dir, tmp_path)
    got, want = st_scores(folder, fmt, frame), predicted(frame, fmt, "score", (0.0, 5.0))
    assert np.abs(got - want).max() <= 1e-5, np.abs(got - want).max()
    card = (folder / "README.md").read_text()
    assert ("This folder carries code" in card) == code and ("trust_remote_code=True" in card) == code
    assert (folder / "poolhead_pooling.py").exists() == code
    types = [m["type"] for m in json.loads((folder / "modules.json").read_text())]
    assert ("poolhead_pooling.PoolheadPooling" in types) == code
    if "encoder.layers=[-1,-2]" in overrides:
        assert any(t.endswith("WeightedLayerPooling") for t in types), types


def test_a_folder_that_carries_code_is_not_loaded_without_trust_remote_code(tmp_path):
    from sentence_transformers import SentenceTransformer

    _, folder = predict_then_export(tiny_run(tmp_path / "run", ["mode=bi", "pooling=attention"]), tmp_path)
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(str(folder), device="cpu")


@pytest.mark.slow
def test_a_readme_custom_pooling_exports_with_its_code_and_loads_where_that_code_is_not_importable(
    tmp_path, monkeypatch
):
    """README "Add a pooling" (FirstLast), trained here; the export loads in a fresh interpreter without it.
    """
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "my_pooling.py").write_text(README_POOLING)
    monkeypatch.syspath_prepend(str(code_dir))
    run_dir = tiny_run(tmp_path / "run", ["mode=bi", "pooling=mean", "pooling._target_=my_pooling.FirstLast"])
    frame, folder = predict_then_export(run_dir, tmp_path, "--trust-remote-code")
    assert (folder / "1_PoolheadPooling" / "my_pooling.py").read_text() == README_POOLING
    frame[["sentence1", "sentence2"]].to_csv(tmp_path / "texts.csv", index=False)
    script = (
        "import sys, numpy as np, pandas as pd\n"
        "from sentence_transformers import SentenceTransformer\n"
        "f = pd.read_csv(sys.argv[2])\n"
        "m = SentenceTransformer(sys.argv[1], device='cpu', trust_remote_code=True)\n"
        "np.save(sys.argv[3], m.similarity_pairwise(m.encode(f.sentence1.tolist()), "
        "m.encode(f.sentence2.tolist())).double().numpy())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(tmp_path / "texts.csv"), str(tmp_path / "cos.npy")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "cos.npy")
    assert np.abs(got - predicted(frame, "sentence-transformers", "score", (0.0, 5.0))).max() <= 1e-5
