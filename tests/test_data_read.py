"""Strict reading: real STS-B / KorSTS files read exactly, and every kind of bad input named by file, line and field."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

import poolhead
from poolhead.core.modes import Cross, Single
from poolhead.data import DataError, StsData, TableData

TOK = poolhead.minilm_path()


def sts_line(score: str, a: str, b: str, *extra: str) -> str:
    return "\t".join(["demo", "test", "2025", "0001", score, a, b, *extra]) + "\n"


def sts_dir(tmp_path: Path, train: str, dev: str | None = None, name: str = "sts-train.csv") -> Path:
    folder = tmp_path / "sts"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(train, encoding="utf-8")
    dev = dev if dev is not None else sts_line("1.0", "A dev sentence.", "Another one.") * 3
    (folder / "sts-dev.csv").write_text(dev, encoding="utf-8")
    return folder


def sts(folder: Path, tmp_path: Path, **kwargs) -> StsData:
    dm = StsData(dir=folder, name="t", tokenizer=TOK, mode=Cross(), max_length=32, seed=0,
                 cache_dir=tmp_path / "cache", **kwargs)
    dm.setup("fit")
    return dm


GOOD = sts_line("4.2", "A cat sits.", "A cat is sitting.") + sts_line("0.5", "Rain today.", "Stocks fell.")


# --- real files ------------------------------------------------------------------------------------------------------
@pytest.mark.real
def test_stsb_reads_every_row_exactly(shared_data_dir: Path, tmp_path: Path) -> None:
    folder = shared_data_dir / "stsb"
    dm = sts(folder, tmp_path)
    assert dm.sizes == {"train": 5749, "val": 1500, "test": 0} and not dm.has_test
    assert dm.counts["train"] == {"read": 5749, "kept": 5749, "skipped": 0}
    train, val = dm.rows("train"), dm.rows("val")
    assert list(train.columns) == ["text", "text_pair", "label"] and list(train.index) == list(range(5749))
    assert train["label"].sum() == pytest.approx(15528.043) and val["label"].sum() == pytest.approx(3545.861)
    assert train["label"].between(0, 5).all()
    raw = (folder / "sts-train.csv").read_bytes().decode().split("\n")[:-1]  # CRLF file, one row a line
    quoted = train["text"].str.contains('"') | train["text_pair"].str.contains('"')
    assert sum('"' in line for line in raw) == quoted.sum() > 0  # `"` is a character, never quoting
    extra = [i for i, line in enumerate(raw) if line.count("\t") > 6]
    assert len(extra) == 197
    for i in extra[:3] + extra[-1:]:  # rows with 2 extra trailing fields: kept, extras ignored
        fields = raw[i].rstrip("\r").split("\t")
        assert train.loc[i].tolist() == [fields[5], fields[6], float(fields[4])]
    assert not train["text"].str.endswith("\r").any() and not train["text_pair"].str.endswith("\r").any()


@pytest.mark.real
def test_korsts_three_splits_with_header(shared_data_dir: Path) -> None:
    # read() only: MiniLM's English WordPiece takes ~8 s on 8,600 Korean pairs (the datamodule tests tokenize STS-B)
    dm = StsData(dir=shared_data_dir / "korsts", header=True, tokenizer=TOK, mode=Cross(),
                 files={"train": "sts-train.tsv", "val": "sts-dev.tsv", "test": "sts-test.tsv"})
    splits = dm.read()
    assert {k: (s.read, len(s), s.skipped) for k, s in splits.items()} == {
        "train": (5749, 5749, 0), "val": (1500, 1500, 0), "test": (1379, 1379, 0)}
    assert sum(splits["test"].label) == pytest.approx(3596.317)
    assert sum(splits["train"].label) == pytest.approx(15528.043)
    assert splits["train"].where[0] == 2 and "sentence1" not in splits["train"].text  # the header is not a row
    assert sum('"' in a + b for a, b in zip(splits["train"].text, splits["train"].text_pair, strict=True)) == 260


# --- what is kept as written ----------------------------------------------------------------------------------------
def test_quotes_extras_crlf_and_bom_are_kept_or_ignored(tmp_path: Path) -> None:
    train = ("\ufeff" + sts_line("5", 'He said "hi".', '"Hi," he said.', "src", "src")).replace("\n", "\r\n") + GOOD
    dm = sts(sts_dir(tmp_path, train), tmp_path)
    assert dm.rows("train").loc[0].tolist() == ['He said "hi".', '"Hi," he said.', 5.0]
    assert len(dm.rows("train")) == 3


def test_line_breaks_other_than_newline_stay_inside_the_text(tmp_path: Path) -> None:
    dm = sts(sts_dir(tmp_path, sts_line("3", "a\x0bb\u2028c", "d") + GOOD), tmp_path)
    assert dm.rows("train").loc[0, "text"] == "a\x0bb\u2028c" and dm.sizes["train"] == 3


# --- bad input stops the run -----------------------------------------------------------------------------------------
@pytest.mark.bad_input
@pytest.mark.parametrize("line, message", [
    (sts_line("abc", "a", "b"), "line 2, field score: 'abc' is not a number"),
    (sts_line("nan", "a", "b"), "line 2, field score: 'nan' is not a finite number"),
    (sts_line("-inf", "a", "b"), "line 2, field score: '-inf' is not a finite number"),
    (sts_line("", "a", "b"), "line 2, field score: '' is not a number"),
    (sts_line("5.5", "a", "b"), "line 2, field score: 5.5 is outside the declared score range [0, 5]"),
    (sts_line("3_5", "a", "b"), "line 2, field score: '3_5' is not a number"),
    ("demo\ttest\t2025\t0001\t3.0\tonly one sentence\n", "line 2, field sentence2: missing"),
    ("\n", "line 2, field file: missing"),
])
def test_bad_sts_rows_stop_the_run(tmp_path: Path, line: str, message: str) -> None:
    folder = sts_dir(tmp_path, GOOD[: GOOD.index("\n") + 1] + line + GOOD)
    with pytest.raises(DataError, match="sts-train.csv " + message.replace("[", r"\[").replace("]", r"\]")):
        sts(folder, tmp_path)


@pytest.mark.bad_input
def test_bad_row_in_dev_names_the_dev_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"sts-dev.csv line 1, field score: 'x' is not a number"):
        sts(sts_dir(tmp_path, GOOD, dev=sts_line("x", "a", "b")), tmp_path)


@pytest.mark.bad_input
def test_undecodable_bytes_name_the_line(tmp_path: Path) -> None:
    folder = sts_dir(tmp_path, GOOD)
    (folder / "sts-train.csv").write_bytes(GOOD.encode() + sts_line("1", "caf\xe9", "b").encode("latin-1"))
    with pytest.raises(DataError, match=r"sts-train.csv line 3: bytes .* not valid UTF-8"):
        sts(folder, tmp_path)


@pytest.mark.bad_input
@pytest.mark.parametrize("content", ["", "\n\n", "  \r\n"])
def test_empty_file_stops_the_run(tmp_path: Path, content: str) -> None:
    with pytest.raises(DataError, match=r"sts-train.csv: empty file"):
        sts(sts_dir(tmp_path, content), tmp_path)


@pytest.mark.bad_input
def test_header_only_file_stops_the_run(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"sts-train.csv: no data rows"):
        sts(sts_dir(tmp_path, "genre\tfile\tyear\tid\tscore\tsentence1\tsentence2\n"), tmp_path, header=True)


@pytest.mark.bad_input
def test_header_setting_must_match_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"sts-train.csv line 1, field score: expected a header .*data.header=false"):
        sts(sts_dir(tmp_path, GOOD), tmp_path, header=True)  # would have dropped a data row
    with pytest.raises(DataError, match=r"sts-train.csv line 1, field score: 'score' is not a number; .*header=true"):
        sts(sts_dir(tmp_path, "genre\tfile\tyear\tid\tscore\tsentence1\tsentence2\n" + GOOD), tmp_path)


@pytest.mark.bad_input
def test_missing_folder_and_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.dir=.*nowhere: no such folder .*pass data.dir="):
        sts(tmp_path / "nowhere", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"sts-train.csv: no such file"):
        sts(tmp_path / "empty", tmp_path)


# --- empty text is skipped, counted and logged ---------------------------------------------------------------------
def test_empty_text_rows_are_skipped_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    train = GOOD + sts_line("2", "", "b") + sts_line("2", "a", "   ") + GOOD
    with caplog.at_level(logging.INFO, logger="poolhead.data"):
        dm = sts(sts_dir(tmp_path, train), tmp_path)
    assert dm.counts["train"] == {"read": 6, "kept": 4, "skipped": 2}
    assert list(dm.rows("train").index) == [0, 1, 2, 3]
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("sts-train.csv" in m and "line 3, line 4" in m for m in warning)
    info = [r.getMessage() for r in caplog.records]
    assert any("t train: read 6 rows" in m and "kept 4, skipped 2" in m for m in info)


@pytest.mark.bad_input
def test_a_file_of_only_empty_texts_stops_the_run(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="every row has an empty text"):
        sts(sts_dir(tmp_path, sts_line("1", "", "b") * 3), tmp_path)


# --- tables: csv / tsv / jsonl / json -------------------------------------------------------------------------------
def table(tmp_path: Path, **kwargs) -> TableData:
    kwargs = {"tokenizer": TOK, "mode": Single(), "max_length": 32, "seed": 0, "cache_dir": tmp_path / "c"} | kwargs
    dm = TableData(**kwargs)
    dm.setup("fit")
    return dm


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


CLASS_CSV = "text,label\n" + "".join(f'"row {i}, with a comma",{"pos" if i % 2 else "neg"}\n' for i in range(20))


def test_csv_class_task_with_quoting(tmp_path: Path) -> None:
    dm = table(tmp_path, train=write(tmp_path / "t.csv", CLASS_CSV), task="class")
    assert dm.task.label_names == ("neg", "pos") and dm.task.num_classes == 2 and dm.task.monitor == "accuracy"
    assert dm.sizes == {"train": 18, "val": 2, "test": 0}
    assert dm.rows("train")["text"].str.contains(", with a comma").all()


def test_integer_labels_sort_as_numbers(tmp_path: Path) -> None:
    lines = "".join(json.dumps({"sentence": f"s{i}", "y": [2, 10, 1][i % 3]}) + "\n" for i in range(30))
    dm = table(tmp_path, train=write(tmp_path / "t.jsonl", lines), text="sentence", label="y", task="class")
    assert dm.task.label_names == ("1", "2", "10")
    assert json.loads(dm.save_label_map(tmp_path / "labels.json").read_text()) == {"0": "1", "1": "2", "2": "10"}


@pytest.mark.bad_input
def test_unseen_class_label_in_val_stops_the_run(tmp_path: Path) -> None:
    val = write(tmp_path / "v.csv", "text,label\na,pos\nb,neutral\n")
    with pytest.raises(DataError,
                       match=r"v.csv line 3, field label: class label 'neutral' does not occur in the train"):
        table(tmp_path, train=write(tmp_path / "t.csv", CLASS_CSV), val=val, task="class")


@pytest.mark.bad_input
def test_empty_class_label_stops_the_run(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"t.csv line 3, field label: empty class label"):
        table(tmp_path, train=write(tmp_path / "t.csv", "text,label\na,pos\nb,\n"), task="class")


@pytest.mark.bad_input
def test_csv_missing_column_and_ragged_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"t.csv line 1, field sentence: no such column .*data.text=COLUMN"):
        table(tmp_path, train=write(tmp_path / "t.csv", "text,label\na,1\n"), text="sentence")
    with pytest.raises(DataError, match=r"t.csv line 3, field label: 1 fields, the header has 2"):
        table(tmp_path, train=write(tmp_path / "t.csv", "text,label\na,1\nb\nc,2\n"))
    with pytest.raises(DataError, match=r"t.csv line 5, field #3 \(extra\): 3 fields, the header has 2"):
        table(tmp_path, train=write(tmp_path / "t.csv", 'text,label\na,1\n"multi\nline",2\nc,2,x\n'))


def test_tsv_keeps_quotes(tmp_path: Path) -> None:
    rows = "".join(f'say "{i}"\t{i / 10}\n' for i in range(20))
    dm = table(tmp_path, train=write(tmp_path / "t.tsv", "text\tlabel\n" + rows), score_range=[0, 2])
    assert sorted(dm.rows("train")["text"].tolist() + dm.rows("val")["text"].tolist())[0] == 'say "0"'
    assert dm.task.score_range == (0.0, 2.0) and dm.rows("val")["label"].dtype == float


@pytest.mark.bad_input
def test_jsonl_and_json_problems_name_line_or_item(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"t.jsonl line 2: not a JSON object"):
        table(tmp_path, train=write(tmp_path / "t.jsonl", '{"text": "a", "label": 1}\n{"text": "b", \n'))
    with pytest.raises(DataError, match=r"t.jsonl line 2, field label: missing"):
        table(tmp_path, train=write(tmp_path / "t.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n'))
    items = [{"text": "a", "label": 1}, {"text": "b", "label": "high"}]
    with pytest.raises(DataError, match=r"t.json item 1, field label: 'high' is not a number"):
        table(tmp_path, train=write(tmp_path / "t.json", json.dumps(items)))
    with pytest.raises(DataError, match=r"t.json item 0, field text: 3 is not a text"):
        table(tmp_path, train=write(tmp_path / "t.json", json.dumps([{"text": 3, "label": 1}])))
    with pytest.raises(DataError, match=r"unknown file type '.xlsx'"):
        table(tmp_path, train=write(tmp_path / "t.xlsx", "x"))


@pytest.mark.bad_input
def test_table_without_train_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"needs a training file: data.train=PATH"):
        table(tmp_path)


@pytest.mark.bad_input
@pytest.mark.parametrize("split_file", ["sts-train.csv", "sts-dev.csv", "sts-test.csv"])
@pytest.mark.parametrize("score, shown", [("-0.5", "-0.5"), ("5.5", "5.5"), ("-0.0001", "-0.0001")])
def test_both_score_bounds_are_checked_on_every_split(tmp_path: Path, split_file: str, score: str, shown: str) -> None:
    """A score below 0 or above 5 in train, dev or test stops the run naming that file and line."""
    bad = GOOD + sts_line(score, "a", "b")
    folder = sts_dir(tmp_path, bad if split_file == "sts-train.csv" else GOOD,
                     dev=bad if split_file == "sts-dev.csv" else None)
    if split_file == "sts-test.csv":
        (folder / "sts-test.csv").write_text(bad, encoding="utf-8")
    with pytest.raises(DataError, match=rf"{split_file} line 3, field score: {shown} is outside the declared score "
                                        r"range \[0, 5\]"):
        sts(folder, tmp_path)


@pytest.mark.bad_input
@pytest.mark.parametrize("hub_score, shown", [(-0.02, "-0.1"), (1.02, "5.1")])
def test_both_score_bounds_are_checked_after_hub_scaling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         hub_score: float, shown: str) -> None:
    """sentence-transformers/stsb stores score / 5: the range is checked on the scaled score, both ends."""
    import datasets

    rows = {"sentence1": ["a", "b", "c"], "sentence2": ["x", "y", "z"], "score": [0.5, hub_score, 0.1]}
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(rows)}))
    with pytest.raises(DataError, match=rf"sentence-transformers/stsb\[train\] item 1, field score: {shown} is "
                                        r"outside the declared score range"):
        sts(None, tmp_path, hub="sentence-transformers/stsb")


# --- issue 14: nothing changed silently ----------------------------------------------------------------------------
def table_file(tmp_path: Path, rows: list[str], name: str = "t.csv", header: str = "text,label") -> str:
    (tmp_path / name).write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return str(tmp_path / name)


@pytest.mark.bad_input
@pytest.mark.parametrize("spellings", [("pos", "Pos"), ("pos", "pos "), ("1", "1.0")])
def test_labels_that_differ_only_in_case_spaces_or_number_format_stop_the_run(tmp_path, spellings):
    rows = [f"text {i},{spellings[i % 2] if i < 4 else 'neg'}" for i in range(12)]
    path = table_file(tmp_path, rows)
    a, b = sorted(spellings)
    with pytest.raises(DataError, match=rf"t.csv line \d, field label: class label {b!r} and {a!r} \(.*t.csv line \d, "
                                        r"field label\) differ only in case, spaces or number format"):
        TableData(train=path, task="class", **common(tmp_path)).setup()


@pytest.mark.bad_input
def test_json_labels_1_and_1_point_0_are_one_label_written_two_ways(tmp_path):
    lines = [json.dumps({"text": f"t{i}", "label": [1, 1.0, 2][i % 3]}) for i in range(12)]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"class label '1.0' and '1'"):
        TableData(train=str(tmp_path / "t.jsonl"), task="class", **common(tmp_path)).setup()


@pytest.mark.parametrize("seed", range(20))
def test_val_carved_from_train_is_stratified_so_a_rare_class_stays_in_train(tmp_path, seed):
    rows = [f"common text {i},common" for i in range(60)] + ["rare text a,rare", "rare text b,rare"]
    dm = TableData(train=table_file(tmp_path, rows), task="class", val_fraction=0.5, **common(tmp_path, seed=seed))
    dm.setup()
    assert "rare" in dm.task.label_names and "rare" in set(dm.rows("train")["label"])
    assert dm.sizes["val"] == 30 + 1, "each class gives its share: 30 of 60 common, 1 of 2 rare"


@pytest.mark.bad_input
def test_a_score_is_shown_as_written(tmp_path):
    with pytest.raises(DataError, match=r"field score: 5.0000001 is outside the declared score range \[0, 5\]"):
        sts(sts_dir(tmp_path, GOOD + sts_line("5.0000001", "a", "b")), tmp_path)


def test_truncated_texts_are_counted_per_split_and_logged(tmp_path, caplog):
    rows = [f"{'word ' * (40 if i % 4 == 0 else 3)}{i},{i % 5}" for i in range(20)]
    dm = TableData(train=table_file(tmp_path, rows), val=table_file(tmp_path, rows[:8], "v.csv"), task="score",
                   **common(tmp_path, max_length=16))
    with caplog.at_level(logging.WARNING, logger="poolhead.data"):
        dm.setup()
    assert dm.truncated == {"train": 5, "val": 2, "test": 0}
    assert "train: 5 of 20 rows were cut to max_length=16 tokens" in caplog.text


def test_a_tokenizer_that_does_not_know_the_script_warns_with_the_unk_rate(tmp_path, caplog):
    rows = [f"{'ꙮ ꙮ ꙮ' if i % 2 else 'plain words'} {i},{i % 5}" for i in range(20)]  # not in MiniLM's vocabulary
    dm = TableData(train=table_file(tmp_path, rows), task="score", **common(tmp_path))
    with caplog.at_level(logging.WARNING, logger="poolhead.data"):
        dm.setup()
    assert dm.unk_rate > 0.2 and f"{100 * dm.unk_rate:.1f}% of the tokens are [UNK]" in caplog.text
    plain = TableData(train=table_file(tmp_path, [f"plain words {i},{i % 5}" for i in range(20)], "p.csv"),
                      task="score", **common(tmp_path))
    plain.setup()
    assert plain.unk_rate == 0.0


@pytest.mark.real
def test_korean_through_an_english_wordpiece_warns(shared_data_dir, tmp_path, caplog):
    dm = StsData(dir=shared_data_dir / "korsts", header=True, files={"train": "sts-train.tsv", "val": "sts-dev.tsv"},
                 tokenizer=TOK, mode=Cross(), max_length=128, seed=0, cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="poolhead.data"):
        dm.setup()
    assert dm.unk_rate > 0.01 and "[UNK]" in caplog.text, dm.unk_rate


# --- issue 32: silent inputs are errors ---------------------------------------------------------------------------
@pytest.mark.bad_input
@pytest.mark.parametrize("name, content, where", [
    ("t.json", '[{"text": "a", "label": "2.5"}, {"text": "b", "label": "3_5"}]', "t.json item 1, field label"),
    ("t.csv", "text,label\na,2.5\nb,1_000\n", "t.csv line 3, field label"),
])
def test_a_score_with_an_underscore_stops_the_run(tmp_path, name, content, where):
    """Python's float("3_5") is 35: a score written with an underscore is refused, not read as another number."""
    with pytest.raises(DataError, match=rf"{where}: '(3_5|1_000)' is not a number"):
        table(tmp_path, train=write(tmp_path / name, content), score_range=[0, 5000])


@pytest.mark.bad_input
@pytest.mark.parametrize("name, header, row, where", [
    ("t.csv", "text,label", "{i} words,{c}", "t.csv line 7, field text"),
    ("t.tsv", "text\tlabel", "{i} words\t{c}", "t.tsv line 7, field text"),
])
def test_a_header_repeated_inside_a_table_stops_the_run(tmp_path, name, header, row, where):
    """Two files joined with their headers: the second header is not a class named `label`."""
    rows = [row.format(i=i, c="pos" if i % 2 else "neg") for i in range(10)]
    path = write(tmp_path / name, "\n".join([header, *rows[:5], header, *rows[5:]]) + "\n")
    with pytest.raises(DataError, match=rf"{where}: the line repeats the header \(line 1\)"):
        table(tmp_path, train=path, task="class")


@pytest.mark.bad_input
def test_a_header_repeated_inside_an_sts_file_with_a_header_stops_the_run(tmp_path):
    head = "genre\tfile\tyear\tid\tscore\tsentence1\tsentence2\n"
    with pytest.raises(DataError, match=r"sts-train.csv line 4, field score: the line repeats the header \(line 1\)"):
        sts(sts_dir(tmp_path, head + GOOD + head + GOOD), tmp_path, header=True)


def test_without_a_score_range_it_is_read_from_the_training_scores_with_a_warning(tmp_path, caplog):
    """data=csv, a 0-5 file, no data.score_range: the task's range is [0, 5] (the head's old 0-1 default left a bi
    cosine unable to reach its targets), and a warning says where it came from."""
    rows = [f"text {i},{i % 6}" for i in range(24)]
    with caplog.at_level(logging.WARNING, logger="poolhead.data"):
        dm = table(tmp_path, train=table_file(tmp_path, rows), task="score")
    assert dm.task.score_range == (0.0, 5.0)
    assert "no data.score_range given: read [0, 5] from the training scores of" in caplog.text
    assert "t.csv" in caplog.text
    declared = table(tmp_path, train=table_file(tmp_path, rows), task="score", score_range=[0, 10])
    assert declared.task.score_range == (0.0, 10.0)


@pytest.mark.bad_input
def test_without_a_score_range_val_scores_outside_the_training_range_or_one_score_stop_the_run(tmp_path):
    train = table_file(tmp_path, [f"text {i},{i % 4}" for i in range(20)])
    val = table_file(tmp_path, ["a,1", "b,4.5"], "v.csv")
    with pytest.raises(DataError, match=r"v.csv line 3, field label: 4.5 is outside the score range \[0, 3\] read "
                                        r"from the training file .*data.score_range=\[LOW,HIGH\]"):
        table(tmp_path, train=train, val=val, task="score")
    with pytest.raises(DataError, match=r"t2.csv: every training score is 2, .*data.score_range=\[LOW,HIGH\]"):
        table(tmp_path, train=table_file(tmp_path, [f"text {i},2" for i in range(20)], "t2.csv"), task="score")


def common(tmp_path: Path, **changes) -> dict:
    return {"tokenizer": TOK, "mode": Single(), "max_length": 32, "seed": 0, "cache_dir": tmp_path / "c"} | changes


def test_data_readme_states_the_bad_input_count_the_tests_try():
    """The count in src/poolhead/data/README.md is what `pytest -m bad_input --collect-only` finds (rerun
    `make data-readme` after adding one)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "bad_input", "--collect-only", "-q", "-p",
                           "no:xdist", str(Path(__file__).parent)], capture_output=True, text=True, timeout=120)
    count = sum(1 for line in proc.stdout.splitlines() if "::" in line)
    assert count > 30, proc.stdout[-2000:]  # the collection itself worked
    readme = (Path(poolhead.__file__).parent / "data" / "README.md").read_text()
    assert f"{count} bad-input test cases" in readme, f"{count}: run make data-readme"


@pytest.mark.bad_input
@pytest.mark.parametrize("name, content, where", [
    ("t.csv", "text,label,text\na,1,b\n",
     "line 1, field text: the column name 'text' is repeated (columns 1 and 3)"),
    ("t.tsv", "label\ttext\tlabel\n1\ta\t2\n", "line 1, field label: the column name 'label' is repeated"),
    ("t.jsonl", '{"text": "a", "label": 1}\n{"text": "a", "label": 1, "text": "b"}\n',
     "line 2, field text: the key 'text' is repeated in one object"),
    ("t.json", '[{"text": "a", "label": 1},\n {"text": "b", "label": 2, "label": 3}]',
     "item 1 (line 2), field label: the key 'label' is repeated in one object"),
])
def test_a_repeated_column_name_stops_the_run_naming_file_and_column(tmp_path: Path, name: str, content: str,
                                                                     where: str) -> None:
    """Bug: rows were built with dict(zip(header, fields)) (and json keeps the last key), so training silently
    read the last of two same-named columns and `poolhead predict` dropped the first from its output."""
    path = write(tmp_path / name, content)
    with pytest.raises(DataError) as info:
        table(tmp_path, train=path)
    assert f"{path} {where}" in str(info.value)
