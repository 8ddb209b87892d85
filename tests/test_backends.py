"""`poolhead export --backend onnx|openvino [--quantize int8]` and `poolhead predict --backend`: fast engines.

ONNX runs in the main venv (PyTorch's exporter, ONNX Runtime; no optimum); OpenVINO in `.venv-openvino` (`make
test-backends`, where every test here runs). Each fp32 file, run by ONNX Runtime under sentence-transformers'
own modules (as its `backend="onnx"` runs it) or by sentence-transformers itself (OpenVINO), gives poolhead
predict's scores within the export's tolerance (BACKEND_RTOL of the output's range); an int8 file is kept only
within the allowed dev loss, a signed loss (an int8 file that scores higher is kept); `predict --backend`
gives `predict`'s scores in input order. Tests of a backend skip, saying why, where its runtime cannot import.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST, compose_cfg, predict_cli
from test_use import class_pairs, demo_pairs, predicted, tiny_run

import poolhead
from poolhead import build
from poolhead.use.cli import main as cli
from poolhead.use.export import (
    BACKEND_RTOL,
    ExportRefused,
    backend_file,
    backend_importable,
    backend_refusal,
    export,
    loss_refusal,
    st_loads_onnx,
)
from poolhead.use.export import backends as backends_module

FORMAT = {"bi": "sentence-transformers", "cross": "cross-encoder"}
SCALE = {"sentence-transformers": 2.0, "cross-encoder": 5.0}  # the output's range: cosine, STS score 0-5


def needs(backend: str) -> None:
    try:
        backend_importable(backend)
    except ImportError as err:
        pytest.skip(str(err))


@pytest.mark.parametrize(
    "overrides, fmt, quantize, words",
    [
        (
            lambda d: ["mode=cross", "pooling=pooler"],
            "transformers",
            None,
            ["AutoModelForSequenceClassification", "use --format cross-encoder"],
        ),
        (lambda d: ["mode=bi"], "sentence-transformers", "int8", None),  # holds it
        (
            lambda d: ["mode=bi", "pooling=attention"],
            "sentence-transformers",
            "int8",
            None,
        ),  # holds it (custom module)
        (
            lambda d: ["mode=bi", "encoder.layers=[-1,-2]"],
            "sentence-transformers",
            None,
            ["encoder.layers=[-1, -2]", "last layer's states"],
        ),
        (
            lambda d: [
                "mode=cross",
                "head=classification",
                "data=csv",
                f"data.train={class_pairs(d)}",
                "data.text_pair=text_pair",
                "data.task=class",
            ],
            "cross-encoder",
            "int8",
            ["not implemented", "fp32"],
        ),
    ],
)
def test_formats_that_cannot_hold_a_backend_are_refused_with_the_reason(
    tmp_path, overrides, fmt, quantize, words
):
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
    assert (
        cli(
            [
                "export",
                str(run_dir),
                "--to",
                str(tmp_path / "out"),
                "--format",
                "transformers",
                "--backend",
                "openvino",
            ]
        )
        == 1
    )
    assert "AutoModelForSequenceClassification" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("backend_runs")
    return {mode: tiny_run(root / mode, [f"mode={mode}", "pooling=mean"]) for mode in ("bi", "cross")}


def ort_through_st(folder: Path, fmt: str, text: list[str], pair: list[str], file_name: str) -> np.ndarray:
    """ONNX Runtime runs the file in place of module 0, sentence-transformers' own modules do the rest: what
    its backend="onnx" computes, without optimum (and without poolhead's engine code)."""
    import onnxruntime as ort
    from sentence_transformers import CrossEncoder, SentenceTransformer

    cls = SentenceTransformer if fmt == "sentence-transformers" else CrossEncoder
    model = cls(str(folder), device="cpu", trust_remote_code=(folder / "poolhead_pooling.py").exists())
    session = ort.InferenceSession(str(folder / file_name))
    names = [i.name for i in session.get_inputs()]

    def run(inputs: list) -> torch.Tensor:
        features = model.preprocess(inputs)
        feed = {n: features[n].numpy().astype(np.int64) for n in names}
        features["token_embeddings"] = torch.from_numpy(session.run(["last_hidden_state"], feed)[0])
        with torch.no_grad():
            for module in list(model)[1:]:
                features = module(features)
        return features["sentence_embedding" if fmt == "sentence-transformers" else "scores"]

    if fmt == "cross-encoder":
        return run(list(zip(text, pair, strict=True))).squeeze(-1).double().numpy()
    return torch.nn.functional.cosine_similarity(run(text), run(pair)).double().numpy()


def library(
    folder: Path, fmt: str, text: list[str], pair: list[str], backend: str, file_name: str
) -> np.ndarray:
    """The backend file as a user loads it from the model card: by sentence-transformers where it runs the
    backend here, else (ONNX without optimum) by ONNX Runtime under sentence-transformers' modules."""
    if backend == "onnx" and st_loads_onnx() is not None:
        return ort_through_st(folder, fmt, text, pair, file_name)
    from sentence_transformers import CrossEncoder, SentenceTransformer

    kwargs = dict(backend=backend, model_kwargs={"file_name": file_name}, device="cpu")
    if fmt == "cross-encoder":
        return np.asarray(CrossEncoder(str(folder), **kwargs).predict(list(zip(text, pair, strict=True))), dtype=float)
    model = SentenceTransformer(str(folder), **kwargs)
    return model.similarity_pairwise(model.encode(text), model.encode(pair)).double().numpy()


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.parametrize("mode", ["bi", "cross"])
def test_backend_export_reproduces_poolhead_predict(runs, tmp_path, backend, mode):
    needs(backend)
    run_dir, fmt = runs[mode], FORMAT[mode]
    source = demo_pairs(tmp_path, rows=30)
    assert (
        cli(["predict", str(run_dir), "--input", str(source), "--output", str(tmp_path / "p.csv"), "--quiet"])
        == 0
    )
    frame = pd.read_csv(tmp_path / "p.csv")
    folder = tmp_path / "out"
    # the tiny random encoder's dev Spearman is near 0 and int8 moves it at random: allow any loss here, the
    # refusal is tested below
    assert (
        cli(
            [
                "export",
                str(run_dir),
                "--to",
                str(folder),
                "--backend",
                backend,
                "--quantize",
                "int8",
                "--max-loss",
                "1",
            ]
        )
        == 0
    )
    text, pair = frame["sentence1"].tolist(), frame["sentence2"].tolist()
    want = predicted(frame, fmt, "score", (0.0, 5.0))
    fp32 = library(folder, fmt, text, pair, backend, backend_file(backend, None))
    assert np.abs(fp32 - want).max() <= BACKEND_RTOL * SCALE[fmt]
    int8 = library(folder, fmt, text, pair, backend, backend_file(backend, "int8"))
    assert int8.shape == want.shape and np.isfinite(int8).all()
    card = (folder / "README.md").read_text()
    for name in (backend_file(backend, None), backend_file(backend, "int8")):
        assert (folder / name).exists() and f'model_kwargs={{"file_name": "{name}"}}' in card
    assert "dev Spearman (val split" in card and "torch fp32" in card
    assert (folder / "model.safetensors").exists(), "the torch weights stay"
    if backend == "onnx":
        assert "ort.InferenceSession" in card and "tokenizer.json" in card


@pytest.mark.parametrize(
    "torch_score, int8_score, refused",
    [
        (0.80, 0.82, False),  # int8 scores higher: it lost nothing (abs() would call that a loss of 2 points)
        (0.80, 0.796, False),  # 0.4 points lost, within 0.5
        (0.80, 0.79, True),  # 1 point lost
    ],
)
def test_the_int8_loss_is_signed(torch_score, int8_score, refused):
    assert (loss_refusal(torch_score, int8_score, 0.005) is not None) == refused


def int8_export(run: Path, to: Path, max_loss: str) -> list[str]:
    """`poolhead export RUN --to TO --backend onnx --quantize int8 --max-loss MAX_LOSS`, as arguments."""
    return ["export", str(run), "--to", str(to), "--backend", "onnx", "--quantize", "int8", "--max-loss", max_loss]


def fake_int8(monkeypatch, run_dir: Path, better: bool) -> None:
    """The ONNX int8 file's predictions replaced by a ranking of the dev split's gold (better: the gold's
    order, Spearman 1; else its reverse, Spearman -1), whatever the tiny model predicts."""
    from poolhead.use import predict as predict_module

    gold = predict_module.data_for(poolhead.load(run_dir)).rows("val")["label"].to_numpy(dtype=float)
    engine, predict_texts = backends_module.on_engine, predict_module.predict_texts

    def on_engine(model, file, backend):
        made = engine(model, file, backend)
        made.fake = "qint8" in Path(file).name
        return made

    def predicted_texts(model, text, *args, **kwargs):
        if not getattr(model, "fake", False) or len(text) != len(gold):
            return predict_texts(model, text, *args, **kwargs)
        return torch.tensor(0.5 + (gold if better else -gold) / 20)  # a monotone map into the head's output

    monkeypatch.setattr(backends_module, "on_engine", on_engine)
    monkeypatch.setattr(predict_module, "predict_texts", predicted_texts)


@pytest.mark.parametrize("better", [True, False])
def test_int8_is_kept_when_it_scores_higher_and_refused_beyond_the_loss(
    runs, tmp_path, capsys, monkeypatch, better
):
    needs("onnx")
    if st_loads_onnx() is None:
        pytest.skip(
            "sentence-transformers runs ONNX here: the int8 check goes through it, not poolhead's engine"
        )
    fake_int8(monkeypatch, runs["cross"], better)
    code = cli(int8_export(runs["cross"], tmp_path / "out", "0"))
    if better:
        assert code == 0, capsys.readouterr().err
        assert "int8 1.0000" in (tmp_path / "out" / "README.md").read_text()
    else:
        assert code == 1 and "loses too much" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["-1", "5", "x"])
def test_max_loss_is_range_checked_before_any_work(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as stop:
        cli(int8_export(tmp_path / "no-run", tmp_path / "out", value))
    assert stop.value.code == 2 and "--max-loss" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_predict_on_a_backend_equals_predict_in_input_order(runs, tmp_path, backend):
    needs(backend)
    run_dir = runs["cross"]
    source = demo_pairs(tmp_path, rows=30)
    frame = pd.read_csv(source)
    frame.insert(0, "id", range(len(frame)))
    frame.iloc[::-1].to_csv(source, index=False)  # rows out of length order and reversed: order must be kept
    out = {}
    for name, flags in (("torch", []), (backend, ["--backend", backend])):
        assert (
            predict_cli(run_dir, source, tmp_path / f"{name}.csv", *flags)
            == 0
        )
        out[name] = pd.read_csv(tmp_path / f"{name}.csv")
    assert out[backend]["id"].tolist() == out["torch"]["id"].tolist() == frame["id"].tolist()[::-1]
    diff = np.abs(out[backend]["pred"].to_numpy() - out["torch"]["pred"].to_numpy()).max()
    assert diff <= BACKEND_RTOL * 5.0, diff
    assert diff > 0 or backend == "openvino", "the engine ran (bit-equal to torch would mean torch ran)"
    model = poolhead.load(run_dir, backend=backend)
    assert type(model.encoder.model).__name__ == "EngineEncoder"
    from poolhead.use.predict import predict_texts

    scores = model.head.predict(
        predict_texts(model, frame["sentence1"].tolist()[::-1], frame["sentence2"].tolist()[::-1])
    ).numpy()
    assert np.abs(scores - out["torch"]["pred"].to_numpy()).max() <= BACKEND_RTOL * 5.0


def test_sentence_transformers_loads_the_onnx_files_itself_once_it_can(runs, tmp_path):
    """The files sit where, and carry the input / output names with which, sentence-transformers'
    backend="onnx" loads them; it needs optimum-onnx, which does not import with transformers 5 yet:
    skipped until it does."""
    needs("onnx")
    why = st_loads_onnx()
    if why:
        pytest.skip(why)
    folder = tmp_path / "out"
    assert cli(["export", str(runs["bi"]), "--to", str(folder), "--backend", "onnx"]) == 0
    text = ["A man is playing a guitar.", "The cat sleeps."]
    got = library(folder, "sentence-transformers", text, text[::-1], "onnx", backend_file("onnx", None))
    assert (
        np.abs(
            got
            - ort_through_st(folder, "sentence-transformers", text, text[::-1], backend_file("onnx", None))
        ).max()
        <= 1e-5
    )


def test_the_cards_onnx_runtime_code_runs_as_printed_with_the_measured_settings(runs, tmp_path):
    """The model card's ONNX Runtime snippet runs on the export (its session settings accepted, its states those
    of a plain session); the graph holds ONNX's Attention op on 3-D inputs (no Transpose left) and the session
    keeps residual + LayerNorm unfused, which a default session fuses: the settings benchmarks/onnx_levers.py
    measures."""
    needs("onnx")
    import re

    import onnx
    import onnxruntime as ort

    from poolhead.use.export.onnx_files import ORT_SETTINGS, ort_session

    folder = tmp_path / "out"
    assert cli(["export", str(runs["bi"]), "--to", str(folder), "--backend", "onnx"]) == 0
    card = (folder / "README.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", card, re.S) if "ort.InferenceSession" in b)
    assert all(f'"{key}", "{value}"' in code for key, value in ORT_SETTINGS.items())
    scope: dict = {}
    exec(code.replace("PATH/TO/THIS/FOLDER", str(folder)), scope)
    plain = ort.InferenceSession(str(folder / "onnx" / "model.onnx"))
    want = plain.run(["last_hidden_state"], {n: scope["batch"][n].astype(np.int64) for n in scope["names"]})[0]
    assert np.abs(scope["states"] - want).max() <= 1e-5

    ops = [n.op_type for n in onnx.load(folder / "onnx" / "model.onnx").graph.node]
    assert "Attention" in ops and "Transpose" not in ops

    def fused_ops(options) -> set[str]:
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        ort.InferenceSession(str(folder / "onnx" / "model.onnx"), options, providers=["CPUExecutionProvider"])
        return {n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node}

    assert "SkipLayerNormalization" in fused_ops(ort.SessionOptions()), "the control: a default session fuses"
    assert "SkipLayerNormalization" not in fused_ops(ort_session(folder / "onnx" / "model.onnx").get_session_options())


SUBNORMAL_PROBE = """
import sys
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper
from poolhead.use.export.onnx_files import ORT_SETTINGS, session_options

x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
graph = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["y"])], "probe", [x], [y])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
options = session_options(ORT_SETTINGS) if sys.argv[1] == "poolhead" else ort.SessionOptions()
session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
print(session.run(None, {"x": np.full(4, 1e-20, np.float32)})[0][0])
"""


def test_poolheads_onnx_runtime_sessions_flush_subnormals():
    """A masked attention score's softmax is a subnormal number, slow on x86 (benchmarks/onnx_levers.py):
    poolhead's session settings, which the model card prints, flush them to zero; ONNX Runtime's defaults keep
    them (the control). Each in a fresh process, as ONNX Runtime sets the calling thread's mode at a process's
    first session."""
    needs("onnx")
    import subprocess
    import sys

    def square_of_1e_minus_20(settings: str) -> float:
        out = subprocess.run([sys.executable, "-c", SUBNORMAL_PROBE, settings], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return float(out.stdout)

    assert 0 < square_of_1e_minus_20("defaults") < np.finfo(np.float32).tiny, "the control: 1e-40 is subnormal"
    assert square_of_1e_minus_20("poolhead") == 0.0


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
    """The real MiniLM fine-tuned on the demo pairs as `make train` does (shorter): fp32 within the tolerance,
    int8 within the default 0.5 points, and `predict --backend` with it."""
    needs(backend)
    run_dir = tiny_run(
        tmp_path / "run",
        ["encoder=minilm", "mode=bi", "pooling=mean", "data.batch_size=8", "data.eval_batch_size=16"],
    )
    source = demo_pairs(tmp_path, rows=20)
    assert (
        predict_cli(run_dir, source, tmp_path / "p.csv", "--batch-size", "16")
        == 0
    )
    frame = pd.read_csv(tmp_path / "p.csv")
    folder = tmp_path / "out"
    assert cli(["export", str(run_dir), "--to", str(folder), "--backend", backend, "--quantize", "int8"]) == 0
    text, pair = frame["sentence1"].tolist(), frame["sentence2"].tolist()
    want = predicted(frame, "sentence-transformers", "score", (0.0, 5.0))
    got = library(folder, "sentence-transformers", text, pair, backend, backend_file(backend, None))
    assert np.abs(got - want).max() <= BACKEND_RTOL * 2.0
    assert (
        "loss" in (folder / "README.md").read_text()
    )  # kept: within the default 0.5 points on the demo dev split
    if backend == "onnx":
        assert (
            predict_cli(run_dir, source, tmp_path / "q.csv", "--backend", "onnx", "--quantize", "int8")
            == 0
        )
        int8 = pd.read_csv(tmp_path / "q.csv")["pred"].to_numpy()
        assert (
            np.abs(int8 - frame["pred"].to_numpy()).max() <= 0.25
        )  # int8: close, not equal (5% of the range)
