"""The Python API a sentence-transformers user recognises: `poolhead.load(run).predict(pairs or texts)` gives
what `poolhead predict` writes (scores on the data's scale, class labels, label sets), in input order and
however it is batched; `.encode(texts)` of a bi run gives the vectors sentence-transformers gives for the
run's export; and the README's example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT
from test_use import class_pairs, class_texts, demo_pairs, tiny_run

import poolhead
from poolhead.use.cli import main as cli

RUNS = {  # name -> overrides given a data folder
    "bi-regression": lambda d: ["mode=bi", "pooling=mean"],
    "cross-classes": lambda d: [
        "mode=cross",
        "pooling=cls",
        "head=classification",
        "data=csv",
        f"data.train={class_pairs(d)}",
        "data.text_pair=text_pair",
        "data.task=class",
    ],
    "single-labelsets": lambda d: [
        "mode=single",
        "pooling=mean",
        "head=multilabel",
        "data=csv",
        f"data.train={class_pairs(d, multilabel=True)}",
        "data.text_pair=null",
        "data.task=multilabel",
    ],
    "single-classes": lambda d: [
        "mode=single",
        "pooling=cls",
        "head=classification",
        "data=csv",
        f"data.train={class_texts(d)}",
        "data.task=class",
    ],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    made = {}
    for name, overrides in RUNS.items():
        folder = tmp_path_factory.mktemp(name)
        made[name] = tiny_run(folder / "run", overrides(folder))
    return made


def rows_of(run_dir, tmp_path) -> tuple[pd.DataFrame, list]:
    """The input rows `poolhead predict` and `model.predict` both score: demo pairs, or the run's training
    file without labels; as a frame and as the list `predict` takes."""
    model = poolhead.load(run_dir)
    train = model.description.config["data"].get("train")
    if train is None:
        frame = pd.read_csv(demo_pairs(tmp_path)).drop(columns="score")
        return frame, list(zip(frame["sentence1"], frame["sentence2"], strict=True))
    frame = (pd.read_json(train, lines=True) if train.endswith(".jsonl") else pd.read_csv(train)).drop(
        columns="label"
    )
    if model.mode.pair:
        return frame, list(zip(frame["text"], frame["text_pair"], strict=True))
    frame = frame[["text"]]
    return frame, frame["text"].tolist()


@pytest.mark.parametrize("name", RUNS)
def test_predict_gives_poolhead_predicts_column_in_input_order(runs, name, tmp_path):
    """The bug it catches: `predict` returning the head's raw output (a cosine, logits) instead of the run's
    prediction (the issue: 0.7079 where the run predicts 3.5), or rows in the batches' length order."""
    frame, inputs = rows_of(runs[name], tmp_path)
    frame.to_csv(tmp_path / "in.csv", index=False)
    assert (
        cli(
            [
                "predict",
                str(runs[name]),
                "--input",
                str(tmp_path / "in.csv"),
                "--output",
                str(tmp_path / "out.csv"),
                "--quiet",
            ]
        )
        == 0
    )
    want = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)["pred"].tolist()
    model = poolhead.load(runs[name], device="cpu")
    got = model.predict(
        inputs, batch_size=7
    )  # batches of 7, sorted by length inside: the order must come back
    if model.task.kind == "score":
        assert isinstance(got, np.ndarray) and np.abs(got - np.asarray(want, dtype=float)).max() <= 1e-5
        lo, hi = model.task.score_range
        assert lo <= got.min() and got.max() <= hi, "scores on the data's scale"
    elif model.task.kind == "class":
        assert got == want
    else:
        assert ["|".join(labels) for labels in got] == want and all(isinstance(g, list) for g in got)
    assert (
        model.predict(inputs[3]) == got[3]
        if not isinstance(got, np.ndarray)
        else abs(model.predict(inputs[3]) - got[3]) <= 1e-5
    ), "one input: one prediction"


def test_encode_gives_the_sentence_transformers_exports_vectors(runs, tmp_path):
    """The bug it catches: `encode` missing (the issue's AttributeError), or vectors other than those the head
    reads (another pooling, normalised, another max_length): compared with the exported SentenceTransformer's
    vectors."""
    from sentence_transformers import SentenceTransformer

    run_dir = runs["bi-regression"]
    assert cli(["export", str(run_dir), "--to", str(tmp_path / "st")]) == 0
    texts = pd.read_csv(demo_pairs(tmp_path))["sentence1"].tolist()
    model = poolhead.load(run_dir, device="cpu")
    got = model.encode(texts, batch_size=5)
    want = SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(texts)
    assert isinstance(got, np.ndarray) and got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5
    shared = "\n".join(f.read_text() for f in (tmp_path / "st").rglob("*") if f.suffix in (".json", ".md"))
    assert poolhead.minilm_path() not in shared, "no local install path in a folder meant to be shared"
    tensor = model.encode(texts[:3], convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and torch.allclose(tensor, torch.from_numpy(got[:3]), atol=1e-6)


def test_encode_refuses_a_cross_run_and_predict_refuses_texts_for_pairs(runs):
    model = poolhead.load(runs["cross-classes"], device="cpu")
    with pytest.raises(ValueError, match="mode=bi run's; this run is mode=cross"):
        model.encode(["A cat."])
    with pytest.raises(ValueError, match=r"input 1: this mode=cross run scores pairs"):
        model.predict([("A cat.", "A dog."), "A lone text."])


def test_readme_python_example_runs(runs, tmp_path):
    """The README's Python block, run as written with its run folder replaced by a real run's: it must not go
    stale (the issue: the README pointed at `predict_texts`, which returns raw cosines)."""
    text = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "poolhead.load(" in b)
    code = block.replace("logs/train/runs/<run>", str(runs["bi-regression"]))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_eval_scores_a_held_out_file_with_the_runs_columns_and_no_train_file(runs, tmp_path):
    """The bug it catches (issue 42): `eval` needing data.train (and data.text, data.label, data.task again)
    to score one held-out file, where `predict` reuses the run's column names. Its accuracy is the one
    computed from `poolhead predict`'s output on the same file."""
    import json

    run_dir = runs["single-classes"]
    held = pd.read_csv(poolhead.load(run_dir).description.config["data"]["train"]).iloc[::3]
    held.to_csv(tmp_path / "held.csv", index=False)
    out = tmp_path / "eval.json"
    assert (
        cli(["eval", str(run_dir), "data=csv", f"data.test={tmp_path / 'held.csv'}", "--output", str(out)])
        == 0
    )
    entry = json.loads(out.read_text())["csv"]
    assert list(entry["rows"]) == ["test"] and entry["rows"]["test"] == len(held)
    assert (
        cli(
            [
                "predict",
                str(run_dir),
                "--input",
                str(tmp_path / "held.csv"),
                "--output",
                str(tmp_path / "p.csv"),
                "--quiet",
            ]
        )
        == 0
    )
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert entry["metrics"]["test/accuracy"] == pytest.approx(
        (predicted["pred"] == predicted["label"]).mean()
    )
