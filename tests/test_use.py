"""Using a trained model: `poolhead predict`, `poolhead eval`, `poolhead export`, and the first run's closing lines.

Round trips: for every pooling x head x mode the export table holds, a real (tiny) run is exported and the folder,
loaded by sentence-transformers / transformers themselves, gives `poolhead predict`'s scores to 1e-5 (fp32); every
other combination is refused with its reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import FAST, ROOT, compose_cfg

import poolhead
from poolhead import build
from poolhead.data.sources import DEMO_DIR
from poolhead.run.train import run
from poolhead.use.cli import main as cli
from poolhead.use.export import ExportRefused, choose

# a real run, as short as one can be: one training step, one validation batch (best.ckpt), no test split
SHORT = [*FAST, "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "test=false"]
LONG = " ".join(["the quick brown fox jumps over the lazy dog"] * 40)  # past max_length: truncation must agree
EXPORTABLE_POOLINGS = ["pooler", "cls", "mean", "max", "mean_sqrt_len", "weighted_mean"]
CLASSES = {"same": ("A man plays a guitar.", "A man is playing a guitar."),
           "related": ("A man plays a guitar.", "A woman sings a song."),
           "other": ("A man plays a guitar.", "The stock market fell today.")}


def demo_pairs(folder: Path, rows: int = 40) -> Path:
    """The first demo dev pairs as sentence1,sentence2,score (the column names of the STS hub copies), plus one pair
    longer than max_length."""
    lines = (DEMO_DIR / "sts-dev.csv").read_text().splitlines()[:rows]
    fields = [line.split("\t") for line in lines]
    frame = pd.DataFrame({"sentence1": [f[5] for f in fields] + [LONG],
                          "sentence2": [f[6] for f in fields] + [LONG[::-1]],
                          "score": [float(f[4]) for f in fields] + [2.5]})
    frame.to_csv(folder / "pairs.csv", index=False)
    return folder / "pairs.csv"


def class_pairs(folder: Path, multilabel: bool = False) -> Path:
    """Pairs with a class (or a set of labels) each, as .jsonl: data=csv training data."""
    records = []
    for i in range(60):
        name = list(CLASSES)[i % 3]
        a, b = CLASSES[name]
        label = [name] + (["long"] if i % 2 else []) if multilabel else name
        records.append({"text": f"{a} ({i})", "text_pair": b, "label": label})
    path = folder / ("labels.jsonl" if multilabel else "classes.jsonl")
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def class_texts(folder: Path) -> Path:
    rows = ["text,label"] + [f"{'great good fine' if i % 2 else 'bad awful poor'} item {i},{'pos' if i % 2 else 'neg'}"
                             for i in range(60)]
    (folder / "texts.csv").write_text("\n".join(rows) + "\n")
    return folder / "texts.csv"


# case -> (overrides given a data folder, formats that hold it); every case is one tiny run
CASES = {
    **{f"bi-{p}-regression": (lambda d, p=p: ["mode=bi", f"pooling={p}"], ["sentence-transformers"])
       for p in EXPORTABLE_POOLINGS},
    **{f"cross-{p}-regression": (lambda d, p=p: ["mode=cross", f"pooling={p}"],
                                 ["cross-encoder"] + (["transformers"] if p == "pooler" else []))
       for p in EXPORTABLE_POOLINGS},
    **{f"cross-{p}-score_bins": (lambda d, p=p: ["mode=cross", f"pooling={p}", "head=classification"],
                                 ["cross-encoder"]) for p in EXPORTABLE_POOLINGS},
    "bi-mean-mlp": (lambda d: ["mode=bi", "pooling=mean", "head.hidden_dims=[16]"], ["sentence-transformers"]),
    "cross-cls-mlp": (lambda d: ["mode=cross", "pooling=cls", "head.hidden_dims=[16]", "+head.activation=ReLU"],
                      ["cross-encoder"]),
    "cross-mean-bce": (lambda d: ["mode=cross", "pooling=mean", "head.loss=bce"], ["cross-encoder"]),
    "cross-pooler-classes": (lambda d: ["mode=cross", "pooling=pooler", "head=classification", "data=csv",
                                        f"data.train={class_pairs(d)}", "data.text_pair=text_pair", "data.task=class"],
                             ["cross-encoder", "transformers"]),
    "cross-pooler-multilabel": (lambda d: ["mode=cross", "pooling=pooler", "head=multilabel", "data=csv",
                                           f"data.train={class_pairs(d, multilabel=True)}", "data.text_pair=text_pair",
                                           "data.task=multilabel"], ["cross-encoder", "transformers"]),
    "single-pooler-classes": (lambda d: ["mode=single", "pooling=pooler", "head=classification", "data=csv",
                                         f"data.train={class_texts(d)}", "data.task=class"], ["transformers"]),
}


def predict_file(train: str | None, folder: Path) -> Path:
    """What `poolhead predict` reads: the demo pairs for STS runs, else the run's training texts without labels,
    plus a row past max_length."""
    if train is None:
        return demo_pairs(folder)
    frame = pd.read_json(train, lines=True) if train.endswith(".jsonl") else pd.read_csv(train)
    frame = frame.drop(columns="label")
    frame.loc[len(frame)] = {c: LONG for c in frame.columns}
    frame.to_csv(folder / "unlabelled.csv", index=False)
    return folder / "unlabelled.csv"


def tiny_run(out: Path, overrides: list[str]) -> Path:
    results = run(compose_cfg([*SHORT, *overrides], out))
    assert results["status"] == "ok", results["error"]
    return out


def library_scores(folder: Path, fmt: str, text: list[str], text_pair: list[str] | None, kind: str) -> np.ndarray:
    """The exported folder run by its own library only: cosine of embeddings, CrossEncoder scores (softmax for
    classes), or the transformers classifier's logits (softmax / sigmoid for classes / label sets)."""
    if fmt == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(folder), device="cpu")
        u, v = (model.encode(t, convert_to_tensor=True) for t in (text, text_pair))
        return F.cosine_similarity(u, v).double().numpy()
    if fmt == "cross-encoder":
        from sentence_transformers import CrossEncoder

        return np.asarray(CrossEncoder(str(folder), device="cpu").predict(list(zip(text, text_pair, strict=True)),
                                                                          apply_softmax=kind == "class"), dtype=float)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        logits = model(**tokenizer(text, text_pair, truncation=True, padding=True, return_tensors="pt")).logits.double()
    return {"score": logits[:, 0], "class": logits.softmax(-1), "multilabel": logits.sigmoid()}[kind].numpy()


def predicted(frame: pd.DataFrame, fmt: str, kind: str, score_range: tuple[float, float]) -> np.ndarray:
    """poolhead predict's columns on the exported model's scale (a bi-encoder's cosine: (pred - low) / (high - low))."""
    if kind != "score":
        return frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy(dtype=float)
    low, high = score_range
    pred = frame["pred"].to_numpy(dtype=float)
    return (pred - low) / (high - low) if fmt == "sentence-transformers" else pred


@pytest.mark.parametrize("case", CASES)
def test_export_round_trip_gives_poolhead_predict_scores(tmp_path, case):
    overrides, formats = CASES[case]
    given = overrides(tmp_path)
    run_dir = tiny_run(tmp_path / "run", given)
    source = predict_file(next((o.split("=", 1)[1] for o in given if o.startswith("data.train=")), None), tmp_path)
    assert cli(["predict", str(run_dir), "--input", str(source), "--output", str(tmp_path / "pred.csv"),
                "--quiet"]) == 0
    frame = pd.read_csv(tmp_path / "pred.csv")
    model = poolhead.load(run_dir)
    kind, score_range = model.task.kind, model.task.score_range or (0.0, 1.0)
    text_columns = [c for c in ("sentence1", "sentence2", "text", "text_pair") if c in frame]
    text = frame[text_columns[0]].tolist()
    text_pair = frame[text_columns[1]].tolist() if len(text_columns) > 1 else None
    for fmt in formats:
        folder = tmp_path / fmt
        assert cli(["export", str(run_dir), "--to", str(folder), "--format", fmt]) == 0
        got = library_scores(folder, fmt, text, text_pair, kind)
        want = predicted(frame, fmt, kind, score_range)
        assert got.shape == want.shape, (fmt, got.shape, want.shape)
        assert np.abs(got - want).max() <= 1e-5, (fmt, np.abs(got - want).max())
        card = (folder / "README.md").read_text()
        assert "## Load it" in card and "## poolhead config" in card and str(run_dir) in card
    auto = {"bi": "sentence-transformers", "cross": "cross-encoder", "single": "transformers"}[model.mode.name]
    assert choose(model) == auto


REFUSED = {  # overrides, format -> words the refusal must say
    **{f"bi-{p}-classification": (["mode=bi", f"pooling={p}", "head=classification"], "auto",
                                  ["(u, v, |u - v|)", "Formats that hold it: none"]) for p in EXPORTABLE_POOLINGS},
    "layers-into-transformers": (["mode=cross", "pooling=pooler", "encoder.layers=[0,-1]"], "transformers",
                                 ["encoder.layers=[0, -1]", "Formats that hold it: cross-encoder"]),
    "three-score-bins": (["mode=cross", "head=classification", "head.bin_edges=[2.0,4.0]"], "cross-encoder",
                         ["3 score bins", "Formats that hold it: none"]),
    "mean-into-transformers": (["mode=cross", "pooling=mean"], "transformers",
                               ["pooling=pooler only", "Formats that hold it: cross-encoder"]),
    "mlp-into-transformers": (["mode=cross", "pooling=pooler", "head.hidden_dims=[8]"], "transformers",
                              ["one Linear", "Formats that hold it: cross-encoder"]),
    "bce-into-transformers": (["mode=cross", "pooling=pooler", "head.loss=bce"], "transformers", ["bare logit"]),
    "bins-into-transformers": (["mode=cross", "pooling=pooler", "head=classification"], "transformers",
                               ["not a logit"]),
    "bi-into-transformers": (["mode=bi"], "transformers",
                             ["two encoder passes", "Formats that hold it: sentence-transformers"]),
    "cross-into-sentence-transformers": (["mode=cross"], "sentence-transformers", ["each text on its own"]),
}


@pytest.mark.parametrize("case", REFUSED)
def test_combinations_without_an_exact_equivalent_are_refused_with_the_reason(tmp_path, case):
    overrides, fmt, words = REFUSED[case]
    _, model = build(compose_cfg([*FAST, *overrides], tmp_path))
    with pytest.raises(ExportRefused) as refused:
        choose(model, fmt)
    for word in words:
        assert word in str(refused.value), (word, str(refused.value))


def test_refused_export_writes_nothing_and_says_why(tmp_path, capsys):
    run_dir = tiny_run(tmp_path / "run", ["mode=bi", "head=classification"])
    assert cli(["export", str(run_dir), "--to", str(tmp_path / "out")]) == 1
    assert "(u, v, |u - v|)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_export_best_of_a_sweep_takes_the_reports_best_job(tmp_path):
    sweep = tmp_path / "sweep"
    for job, pooling in enumerate(["mean", "cls"]):
        tiny_run(sweep / str(job), ["mode=bi", f"pooling={pooling}"])
        (sweep / str(job) / ".hydra").mkdir()
        (sweep / str(job) / ".hydra" / "overrides.yaml").write_text(f"- pooling={pooling}\n")
    spearman = {job: json.loads((sweep / job / "results.json").read_text())["metrics"]["val/spearman"] for job in "01"}
    best = max(spearman, key=spearman.get)
    assert cli(["export", str(sweep), "--best", "--to", str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"| checkpoint | {sweep / best / 'checkpoints' / 'best.ckpt'} |" in card


# --- predict ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("demo_run"), ["mode=cross", "pooling=mean"])


def test_predict_without_labels_reproduces_the_runs_predictions_in_input_order(demo_run, tmp_path):
    """The demo val rows, unlabelled, in a .jsonl with an empty row in the middle: `pred` equals predictions.csv's."""
    lines = (DEMO_DIR / "sts-dev.csv").read_text().splitlines()
    fields = [line.split("\t") for line in lines]
    records = [{"sentence1": f[5], "sentence2": f[6], "id": i} for i, f in enumerate(fields)]
    records.insert(3, {"sentence1": "  ", "sentence2": "skipped: empty first text", "id": -1})
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert cli(["predict", str(demo_run), "--input", str(tmp_path / "rows.jsonl"), "--quiet"]) == 0
    out = pd.read_json(tmp_path / "rows.pred.jsonl", lines=True)
    assert out["id"].tolist() == [r["id"] for r in records], "every input row, in input order"
    assert pd.isna(out.loc[3, "pred"]) and out.drop(index=3)["pred"].notna().all()
    expected = pd.read_csv(demo_run / "predictions.csv").query("split == 'val'")["pred"].to_numpy()
    assert np.abs(out.drop(index=3)["pred"].to_numpy() - expected).max() <= 1e-6


def test_the_bundled_example_pairs_predict(demo_run, tmp_path):
    """The file the end of `python train.py` suggests."""
    assert cli(["predict", str(demo_run), "--input", str(DEMO_DIR / "pairs.csv"), "--output", str(tmp_path / "p.csv"),
                "--quiet"]) == 0
    frame = pd.read_csv(tmp_path / "p.csv")
    assert list(frame.columns) == ["sentence1", "sentence2", "pred"] and frame["pred"].notna().all()


@pytest.mark.parametrize("suffix, content, where", [
    (".csv", "sentence1,sentence2,score\nA cat.,A dog.,1.0\nA man.,A woman.,abc\n",
     "line 3, field score: 'abc' is not a number"),
    (".csv", "sentence1,sentence2,score\nA cat.,A dog.,1.0\nA man.,A woman.,7.5\n",
     "line 3, field score: 7.5 is outside"),
    (".tsv", "sentence1\tsentence2\nA cat.\tA dog.\nA man.\n", "line 3, field sentence2: 1 fields"),
    (".jsonl", '{"sentence1": "A cat.", "sentence2": "A dog."}\n{"sentence1": "A man.", \n',
     "line 2: not a JSON object"),
    (".jsonl", '{"sentence1": "A cat.", "sentence2": "A dog.", "score": 1}\n{"sentence1": "A", "sentence2": "B"}\n',
     "line 2, field score: missing, but line 1 has one"),
    (".csv", "text,other\nA cat.,A dog.\n", "line 1, field sentence1: no such column"),
    (".csv", "id,sentence1,sentence2,id\n1,A cat.,A dog.,2\n",
     "line 1, field id: the column name 'id' is repeated"),
])
def test_predict_stops_at_a_bad_row_naming_file_and_line(demo_run, tmp_path, capsys, suffix, content, where):
    path = tmp_path / f"rows{suffix}"
    path.write_text(content)
    assert cli(["predict", str(demo_run), "--input", str(path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{path} {where}" in err, err
    assert not (tmp_path / f"rows.pred{suffix}").exists()


def test_predict_keeps_labels_and_other_columns_and_writes_each_format(demo_run, tmp_path):
    (tmp_path / "rows.tsv").write_text("id\tsentence1\tsentence2\tscore\nx\tA cat sleeps.\tA cat is sleeping.\t4.5\n"
                                       'y\tHe said "hi".\tThe market fell.\t0.5\n')
    for suffix in (".tsv", ".csv", ".json"):
        out = tmp_path / f"out{suffix}"
        assert cli(["predict", str(demo_run), "--input", str(tmp_path / "rows.tsv"), "--output", str(out),
                    "--quiet"]) == 0
        frame = pd.read_json(out) if suffix == ".json" else pd.read_csv(out, sep="\t" if suffix == ".tsv" else ",")
        assert list(frame.columns) == ["id", "sentence1", "sentence2", "score", "pred"]
        assert frame["sentence1"].tolist() == ["A cat sleeps.", 'He said "hi".'] and frame["pred"].notna().all()


# --- eval -------------------------------------------------------------------------------------------------------
def test_eval_on_the_training_data_repeats_the_runs_metrics(demo_run):
    assert cli(["eval", str(demo_run), "data=demo", "--split", "val"]) == 0
    entry = json.loads((demo_run / "eval.json").read_text())["demo"]
    results = json.loads((demo_run / "results.json").read_text())["metrics"]
    assert entry["rows"] == {"val": 100}
    assert entry["metrics"]["val/spearman"] == pytest.approx(results["val/spearman"], abs=1e-6)
    assert Path(entry["predictions"]).exists()


def test_eval_of_another_file_of_the_same_format_keeps_the_earlier_entry(demo_run, tmp_path):
    """Bug caught: two folders (or csv files) of one data format share a data name, and the second eval replaced the
    first one's entry in eval.json."""
    other = tmp_path / "other"
    other.mkdir()
    for split in ("train", "dev"):
        lines = (DEMO_DIR / f"sts-{split}.csv").read_text().splitlines()
        (other / f"sts-{split}.csv").write_text("\n".join(lines[:40]) + "\n")
    out = tmp_path / "eval.json"
    for folder in (DEMO_DIR, other, DEMO_DIR):
        assert cli(["eval", str(demo_run), "data=stsb", f"data.dir={folder}", "--split", "val", "--output",
                    str(out)]) == 0
    entries = json.loads(out.read_text())
    assert len(entries) == 2, list(entries)  # the third eval is of the first folder again: same entry
    assert sorted(e["rows"]["val"] for e in entries.values()) == [40, 100]


def test_eval_refuses_other_tasks_and_non_data_overrides(demo_run, tmp_path, capsys):
    assert cli(["eval", str(demo_run), "data=csv", f"data.train={class_pairs(tmp_path)}", "data.text_pair=text_pair",
                "data.task=class"]) == 1
    assert "poses another task" in capsys.readouterr().err
    assert cli(["eval", str(demo_run), "data=demo", "pooling=cls"]) == 1
    assert "data=<group>" in capsys.readouterr().err


def test_eval_mteb_gives_poolhead_spearman_on_local_sts_files(tmp_path, capsys):
    """MTEB's cosine_spearman of the bi run's export, on the demo val rows read from local files, is poolhead's own."""
    pytest.importorskip("mteb")
    run_dir = tiny_run(tmp_path / "run", ["mode=bi", "pooling=mean"])
    assert cli(["eval", str(run_dir), "data=demo", "--split", "val", "--mteb"]) == 0
    entry = json.loads((run_dir / "eval.json").read_text())["demo"]
    assert entry["mteb"]["val"]["cosine_spearman"] == pytest.approx(entry["metrics"]["val/spearman"], abs=1e-4)
    assert entry["mteb"]["model_name"].startswith("poolhead/demo-bi-mean-regression-run-")
    # the printed figure is MTEB's Spearman, not its Pearson under that name (they differ here by > 1e-3)
    mteb = entry["mteb"]["val"]
    assert abs(mteb["cosine_spearman"] - mteb["cosine_pearson"]) > 1e-3
    assert f"MTEB cosine_spearman {mteb['cosine_spearman']:.4f}" in capsys.readouterr().out


def test_eval_mteb_refuses_a_cross_run(demo_run, capsys):
    pytest.importorskip("mteb")
    assert cli(["eval", str(demo_run), "data=demo", "--split", "val", "--mteb"]) == 1
    assert "mode=bi run only" in capsys.readouterr().err


@pytest.mark.real
def test_eval_of_an_stsb_run_on_korsts_dev_writes_spearman(shared_data_dir, tmp_path):
    folder = tmp_path / "stsb"
    folder.mkdir()
    for name, rows in (("sts-train.csv", 200), ("sts-dev.csv", 100)):
        lines = (shared_data_dir / "stsb" / name).read_text(encoding="utf-8").splitlines(keepends=True)[:rows]
        (folder / name).write_text("".join(lines), encoding="utf-8")
    run_dir = tiny_run(tmp_path / "run", ["mode=cross", "data=stsb", f"data.dir={folder}"])
    korsts = shared_data_dir / "korsts"
    assert cli(["eval", str(run_dir), "data=korsts", f"data.dir={korsts}", "--split", "val"]) == 0
    entry = json.loads((run_dir / "eval.json").read_text())["korsts"]
    assert entry["data"]["dir"] == str(korsts) and entry["rows"]["val"] > 1000
    assert -1 <= entry["metrics"]["val/spearman"] <= 1


# --- real MiniLM ------------------------------------------------------------------------------------------------
@pytest.mark.real
@pytest.mark.parametrize("overrides, formats", [
    (["mode=bi", "pooling=mean"], ["sentence-transformers"]),
    (["mode=cross", "pooling=pooler"], ["cross-encoder", "transformers"]),
])
def test_minilm_export_round_trip(tmp_path, overrides, formats):
    run_dir = tiny_run(tmp_path / "run", ["encoder=minilm", "data.batch_size=8", "data.eval_batch_size=16", *overrides])
    source = demo_pairs(tmp_path, rows=30)
    assert cli(["predict", str(run_dir), "--input", str(source), "--output", str(tmp_path / "pred.csv"), "--quiet",
                "--batch-size", "16"]) == 0
    frame = pd.read_csv(tmp_path / "pred.csv")
    for fmt in formats:
        assert cli(["export", str(run_dir), "--to", str(tmp_path / fmt), "--format", fmt]) == 0
        got = library_scores(tmp_path / fmt, fmt, frame["sentence1"].tolist(), frame["sentence2"].tolist(), "score")
        assert np.abs(got - predicted(frame, fmt, "score", (0.0, 5.0))).max() <= 1e-5, fmt


# --- the first run ----------------------------------------------------------------------------------------------
def test_train_py_ends_saying_where_everything_is_without_library_noise(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "POOLHEAD_CACHE": str(tmp_path / "cache")}
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if Path(p).resolve() != Path(sys.executable).parent.resolve())  # not activated
    env["PATH"] = path
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *SHORT, "hydra.run.dir=run"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-10:]
    assert last[0].startswith("Done: val/spearman "), last
    for expected in ("run folder       run", "results          run/results.json",
                     "predictions      run/predictions.csv", "best checkpoint  run/checkpoints/best.ckpt",
                     "train.py -m", "poolhead predict run", "poolhead eval run", "poolhead export run"):
        assert any(expected in line for line in last), expected
    console = proc.stdout + proc.stderr
    for noise in ("💡 Tip", "litlogger", "LeafSpec", "FLOPs"):
        assert noise not in console, noise
    assert console.count("Seed set to") == 1 and "INFO: " not in console, "each Lightning line once"
    # the next commands run as printed, with the virtualenv not activated (PATH without its bin folder)
    predict = next(line for line in last if " predict run " in line).split("#")[0].split()
    done = subprocess.run([*predict, "--output", "p.csv", "--quiet"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (predict, done.stderr[-2000:])
    assert (tmp_path / "p.csv").exists()


# --- what every export folder carries ---------------------------------------------------------------------------
def test_each_export_has_its_own_model_name_and_the_heads_similarity(tmp_path):
    """MTEB keys its cache by model_card_data.model_name: two configs from one base encoder must not share one."""
    from poolhead.use.export import card_name, load_exported

    names = set()
    for pooling in ("mean", "cls"):
        run_dir = tiny_run(tmp_path / pooling, ["mode=bi", f"pooling={pooling}"])
        folder = tmp_path / f"out-{pooling}"
        assert cli(["export", str(run_dir), "--to", str(folder)]) == 0
        name = card_name(folder)
        assert name and name.startswith("poolhead/") and pooling in name
        loaded = load_exported(folder, "sentence-transformers")
        assert loaded.model_card_data.model_name == name
        assert json.loads((folder / "config_sentence_transformers.json").read_text())["similarity_fn_name"] == "cosine"
        assert loaded.similarity_fn_name == "cosine"
        names.add(name)
    assert len(names) == 2


def test_transformers_export_loads_right_in_cross_encoder(tmp_path):
    """CrossEncoder(DIR) on a 1-label transformers folder applies Sigmoid unless config.json says otherwise."""
    from sentence_transformers import CrossEncoder

    run_dir = tiny_run(tmp_path / "run", ["mode=cross", "pooling=pooler"])
    source = demo_pairs(tmp_path, rows=20)
    assert cli(["predict", str(run_dir), "--input", str(source), "--output", str(tmp_path / "p.csv"), "--quiet"]) == 0
    frame = pd.read_csv(tmp_path / "p.csv")
    assert cli(["export", str(run_dir), "--to", str(tmp_path / "out"), "--format", "transformers"]) == 0
    scores = CrossEncoder(str(tmp_path / "out"), device="cpu").predict(list(zip(frame["sentence1"],
                                                                                 frame["sentence2"], strict=True)))
    assert np.abs(np.asarray(scores, dtype=float) - frame["pred"].to_numpy()).max() <= 1e-5


def test_model_card_names_the_base_encoder_by_hub_id_and_weights_sha256(tiny_encoder):
    import hashlib

    from poolhead.use.export import base_encoder, hub_id

    folder = Path(poolhead.minilm_path())
    row = base_encoder(str(folder), tiny_encoder())
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert row == f"sentence-transformers/all-MiniLM-L6-v2 (model.safetensors sha256 {sha})"
    assert str(folder) not in row
    assert hub_id("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5" and hub_id("/no/such/folder") is None


def test_export_files_follow_the_users_umask(demo_run, tmp_path):
    old = os.umask(0o022)
    try:
        assert cli(["export", str(demo_run), "--to", str(tmp_path / "out")]) == 0
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777 for p in (tmp_path / "out").rglob("*")}
    assert modes["out/model.safetensors"] == 0o644, modes
    assert all(m == (0o755 if (tmp_path / k).is_dir() else 0o644) for k, m in modes.items()), modes


def test_predict_writes_back_the_data_it_read_unchanged(demo_run, tmp_path, capsys):
    """A tiny float, a large integer id column with one missing value, JSON and JSONL out: the values come back as
    they went in (pandas' to_json cut floats to 10 digits, 1e-12 became 0.0; the ids became floats and two of them
    equal). --output equal to --input is refused and the input left as it was."""
    records = [{"sentence1": "A cat.", "sentence2": "A dog.", "id": 2 ** 62 + 1, "tiny": 1e-12},
               {"sentence1": "A man.", "sentence2": "A woman.", "id": None, "tiny": 0.5},
               {"sentence1": "A car.", "sentence2": "A bus.", "id": 2 ** 62 + 2, "tiny": 3.0}]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    for suffix in (".jsonl", ".json"):
        out = tmp_path / f"out{suffix}"
        assert cli(["predict", str(demo_run), "--input", str(tmp_path / "rows.jsonl"), "--output", str(out),
                    "--quiet"]) == 0
        text = out.read_text()
        got = [json.loads(line) for line in text.splitlines()] if suffix == ".jsonl" else json.loads(text)
        assert [r["id"] for r in got] == [r["id"] for r in records], suffix
        assert [r["tiny"] for r in got] == [r["tiny"] for r in records], suffix
    before = (tmp_path / "rows.jsonl").read_bytes()
    assert cli(["predict", str(demo_run), "--input", str(tmp_path / "rows.jsonl"), "--output",
                str(tmp_path / "rows.jsonl"), "--quiet"]) == 1
    assert "is the input file" in capsys.readouterr().err
    assert (tmp_path / "rows.jsonl").read_bytes() == before


@pytest.mark.parametrize("suffix, content, flag", [
    (".csv", "text,other\nA cat.,A dog.\n", "--text COLUMN"),
    (".jsonl", '{"sentence1": "A cat.", "other": "A dog."}\n', "--text-pair COLUMN"),
])
def test_predict_missing_column_names_the_predict_flag_not_a_train_key(demo_run, tmp_path, capsys, suffix, content,
                                                                      flag):
    path = tmp_path / f"rows{suffix}"
    path.write_text(content)
    assert cli(["predict", str(demo_run), "--input", str(path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert flag in err and "data." not in err, err


def strict_json(path: Path) -> dict:
    """The file parsed as JSON proper: Python's json reads NaN and Infinity, which JSON (and most readers)
    reject."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def sts_csv(path: Path, scores: list[float]) -> Path:
    rows = [f"A cat number {i} sleeps.,A dog number {i} runs.,{s}" for i, s in enumerate(scores)]
    path.write_text("sentence1,sentence2,score\n" + "\n".join(rows) + "\n")
    return path


def eval_csv(run_dir: Path, data: Path, output: Path) -> int:
    return cli(["eval", str(run_dir), "data=csv", f"data.train={data}", f"data.val={data}",
                "data.text=sentence1", "data.text_pair=sentence2", "data.label=score",
                "data.score_range=[0,5]", "--split", "val", "--output", str(output)])


@pytest.mark.parametrize("scores, reason", [([3.0, 3.0, 3.0], "the gold scores are constant (all 3)"),
                                            ([2.0], "1 row: a correlation needs at least 2")])
def test_eval_writes_null_and_the_reason_for_an_undefined_correlation(demo_run, tmp_path, capsys, scores,
                                                                      reason):
    """Bug: eval.json got a bare NaN (not JSON) for Pearson on constant gold scores, and Spearman 0.0 for them
    and for a single row: an undefined correlation reported as "no correlation"."""
    assert eval_csv(demo_run, sts_csv(tmp_path / "rows.csv", scores), tmp_path / "eval.json") == 0
    entry = strict_json(tmp_path / "eval.json")["csv"]
    assert entry["metrics"]["val/spearman"] is None and entry["metrics"]["val/pearson"] is None
    assert reason in entry["undefined"]["val/spearman"] and reason in entry["undefined"]["val/pearson"]
    assert entry["metrics"]["val/mse"] is not None, "a defined metric stays a number"
    assert f"spearman undefined: {reason}" in capsys.readouterr().out


def test_a_multilabel_f1_that_is_0_over_0_is_null_with_the_reason():
    """Bug: F1 of a label no row has and none is predicted (0/0) was reported as 0.0, as torchmetrics gives it:
    an undefined score read as a total miss. A label predicted where no row has it is a real 0 (the control)."""
    from torchmetrics.classification import MultilabelF1Score

    from poolhead.run.evaluate import Metrics, undefined_f1

    names = ["a", "b", "c"]
    labels = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 0, 0]])
    pred = torch.tensor([[1, 0, 1], [0, 0, 0], [0, 0, 0]])  # c predicted once, never gold: F1 0, defined
    per_label = MultilabelF1Score(3, average=None)(pred, labels).tolist()
    values = Metrics({"val/f1_micro": float(MultilabelF1Score(3, average="micro")(pred, labels)),
                      **{f"val/f1_{n}": v for n, v in zip(names, per_label, strict=True)}})
    assert values["val/f1_b"] == 0.0, "torchmetrics' value for 0/0"
    got = undefined_f1(values, labels, pred, names)
    assert got["val/f1_b"] is None and "no row has label 'b' and none is predicted" in got.undefined["val/f1_b"]
    assert got["val/f1_c"] == 0.0 and got["val/f1_a"] == pytest.approx(2 / 3) and got["val/f1_micro"] is not None
    nothing = torch.zeros(3, 3, dtype=torch.long)
    values = Metrics({"val/f1_micro": 0.0, "val/f1_macro": 0.0, "val/f1_a": 0.0, "val/loss": 0.7})
    got = undefined_f1(values, nothing, nothing, names)
    assert got["val/f1_micro"] is None and got["val/f1_macro"] is None and got["val/f1_a"] is None
    assert got["val/loss"] == 0.7 and "no row has a label and none is predicted" in got.undefined["val/f1_micro"]


def test_evaluate_reports_a_multilabel_f1_of_0_over_0_as_null(tmp_path):
    """The same, through the scoring every command uses: a label the val rows lack, with a threshold nothing
    reaches, has no F1; micro F1 over the labels the rows have is a real 0."""
    from poolhead.run.evaluate import evaluate

    def rows(path: Path, labels: list[list[str]]) -> Path:
        path.write_text("".join(json.dumps({"text": f"item {i}", "label": label}) + "\n"
                                for i, label in enumerate(labels)))
        return path

    train = rows(tmp_path / "train.jsonl", [["x"], ["y"], ["x", "y"]] * 4)
    val = rows(tmp_path / "val.jsonl", [["x"]] * 4)
    datamodule, model = build(compose_cfg([*FAST, "data=csv", f"data.train={train}", f"data.val={val}",
                                           "data.task=multilabel", "mode=single", "head=multilabel",
                                           "head.threshold=0.999999"], tmp_path))
    datamodule.setup("fit")
    _, metrics, _ = evaluate(model.eval(), datamodule, "val")
    assert metrics["val/f1_y"] is None and "no row has label 'y'" in metrics.undefined["val/f1_y"]
    assert metrics["val/f1_micro"] == 0.0 and metrics["val/f1_x"] == 0.0


def test_two_evals_into_one_folder_with_other_outputs_keep_both_prediction_files(demo_run, tmp_path):
    """Bug: both wrote <folder>/eval_csv.csv: the second eval's predictions replaced the first one's."""
    files = {"a": sts_csv(tmp_path / "a.csv", [0.5, 1.5, 4.0]),
             "b": sts_csv(tmp_path / "b.csv", [1.0, 2.0, 3.0, 5.0])}
    for name, data in files.items():
        assert eval_csv(demo_run, data, tmp_path / f"{name}.json") == 0
    for name, data in files.items():
        predictions = Path(strict_json(tmp_path / f"{name}.json")["csv"]["predictions"])
        assert pd.read_csv(predictions)["gold"].tolist() == pd.read_csv(data)["score"].tolist(), name


def test_cache_clear_deletes_only_what_the_caches_made(tmp_path, capsys):
    """Bug: `poolhead cache clear --cache-dir D` deleted D/features and D/tokens whatever they held (a user's
    file there was listed as a PARTIAL entry, then deleted)."""
    root, key = tmp_path / "cache", "ab" * 32
    made = {f"features/{key}/meta.json": "{}", f"features/{key}/hidden.npy": "x",
            f"features/{'cd' * 32}/lengths.npy": "x", "features/.tmp-k2j4/hidden.npy": "x",
            f"tokens/{key}.npz": "x", "tokens/.tmp-q1w2.npz": "x"}
    mine = {"features/notes.txt": "mine", "features/study/scores.csv": "mine", "tokens/mine.npz": "mine",
            f"features/{'ef' * 32}/hidden.npy": "x", f"features/{'ef' * 32}/my_results.csv": "mine"}
    for name, text in (made | mine).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert cli(["cache", "info", "--cache-dir", str(root)]) == 0
    assert "notes.txt" in capsys.readouterr().out
    assert cli(["cache", "clear", "--cache-dir", str(root)]) == 0
    err = capsys.readouterr().err
    assert {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} == set(mine)
    for name in ("notes.txt", "study", "mine.npz", "ef" * 32):
        assert name in err, err


def test_predict_refuses_an_output_it_cannot_write_before_the_model_loads(demo_run, tmp_path, capsys,
                                                                         monkeypatch):
    """Bugs: `--output` a hard link of the input rewrote the input (only an equal path was refused); `--output
    x.txt` was refused only after every row was predicted."""
    import poolhead.use.cli

    source = demo_pairs(tmp_path)
    os.link(source, tmp_path / "link.csv")
    before = source.read_bytes()
    monkeypatch.setattr(poolhead.use.cli, "_load", lambda *a, **k: pytest.fail("the model was loaded"))
    for output, said in (("link.csv", "is the input file (the same file, or a link to it)"),
                         ("pairs.txt", "unknown output type '.txt'")):
        command = ["predict", str(demo_run), "--input", str(source), "--output", str(tmp_path / output)]
        assert cli(command) == 1
        assert said in capsys.readouterr().err
    assert source.read_bytes() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="the check is for a machine without CUDA")
def test_predict_on_cuda_without_a_gpu_says_so(demo_run, tmp_path, capsys):
    """Bug: `--device cuda` on a CPU machine blamed a "truncated" checkpoint."""
    assert cli(["predict", str(demo_run), "--input", str(demo_pairs(tmp_path)), "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert "--device cuda: this machine has no CUDA device" in err and "truncated" not in err, err


@pytest.mark.parametrize("value", ["-1", "5", "nan"])
def test_export_max_loss_is_range_checked_before_anything_runs(demo_run, tmp_path, capsys, value):
    """Bug: --max-loss -1 or 5 was taken as given (every int8 file refused, or any loss accepted)."""
    with pytest.raises(SystemExit) as stop:
        cli(["export", str(demo_run), "--to", str(tmp_path / "out"), "--max-loss", value])
    assert stop.value.code == 2 and "--max-loss" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


UNFINISHED = [  # (results.json, what the refusal or warning says)
    ({"status": "failed", "error": "interrupted (SystemExit); run the same command again to resume"},
     "status 'failed' (interrupted (SystemExit)"),
    ({"status": "paused", "rung": {"step": 3}}, "status 'paused' (step 3 of a halving sweep)"),
]


@pytest.mark.parametrize("record, said", UNFINISHED)
def test_export_of_a_run_that_did_not_finish_is_refused_unless_forced(demo_run, tmp_path, capsys, record,
                                                                      said):
    """Bug: an interrupted run, or a job paused at a halving rung, exported without a word."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir)
    (run_dir / "results.json").write_text(json.dumps(record))
    assert cli(["export", str(run_dir), "--to", str(tmp_path / "out")]) == 1
    assert said in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert cli(["export", str(run_dir), "--to", str(tmp_path / "out"), "--force"]) == 0
    assert f"warning: {run_dir / 'results.json'} says {said}" in capsys.readouterr().err


@pytest.mark.parametrize("record, said", [
    *UNFINISHED, ("{\"status\": \"o", "is not a JSON record (damaged or cut short)")])
def test_predict_eval_and_load_of_a_run_that_did_not_finish_say_so(demo_run, tmp_path, capsys, record, said):
    """Bug: predict, eval and poolhead.load scored with an interrupted run's checkpoint, or a job's paused at a
    halving rung, without a word (export refused it). The finished run is the control: no warning."""
    import shutil
    import warnings

    from poolhead.run.record import UnfinishedRunWarning

    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir)
    (run_dir / "results.json").write_text(record if isinstance(record, str) else json.dumps(record))
    pairs = demo_pairs(tmp_path, rows=5)
    assert cli(["predict", str(run_dir), "--input", str(pairs), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"poolhead: warning: {run_dir / 'results.json'}" in err and said in err, err
    with pytest.warns(UnfinishedRunWarning, match=re.escape(said)):
        poolhead.load(run_dir / "checkpoints" / "best.ckpt", device="cpu")
    assert cli(["eval", str(run_dir), "data=demo", "--split", "val"]) == 0
    assert said in json.loads((run_dir / "eval.json").read_text())["demo"]["unfinished"]
    assert said in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnfinishedRunWarning)
        poolhead.load(demo_run, device="cpu")
        assert cli(["predict", str(demo_run), "--input", str(pairs), "--output", str(tmp_path / "ok.csv"),
                    "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_export_best_of_a_sweep_without_a_finished_job_leaves_its_files(tmp_path, capsys):
    """Bug: `export --best` on a sweep whose jobs all failed rewrote its summary files before refusing."""
    sweep = tmp_path / "sweep"
    for pooling in ("mean", "cls"):
        (sweep / pooling / ".hydra").mkdir(parents=True)
        (sweep / pooling / ".hydra" / "overrides.yaml").write_text(f"- pooling={pooling}\n")
        (sweep / pooling / "results.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    (sweep / "summary.md").write_text("the report as the sweep left it\n")
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    assert cli(["export", str(sweep), "--best", "--to", str(tmp_path / "out")]) == 1
    assert "no job finished ok" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == before


def test_predict_refuses_an_input_column_named_as_its_own_output(demo_run, tmp_path, capsys):
    """Bug: an input column named `pred` was dropped from the output (replaced by the predictions) with a
    note: predict's output must hold every input column as it was."""
    path = tmp_path / "rows.csv"
    path.write_text("sentence1,sentence2,pred\nA cat.,A dog.,my own score\n")
    assert cli(["predict", str(demo_run), "--input", str(path), "--quiet"]) == 1
    assert f"{path}: column(s) ['pred'] have the names of the columns predict adds" in capsys.readouterr().err
    assert not (tmp_path / "rows.pred.csv").exists()
