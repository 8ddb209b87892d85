"""Strict reading: every row is kept as written, skipped with a warning (an empty text), or stops the run with a
DataError naming file, line and field; the policy table is README.md in this folder. Text is kept byte for byte: only
the line ending (\\n or \\r\\n) and a UTF-8 BOM go."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger("poolhead.data")

STS_FIELDS = ("genre", "file", "year", "id", "score", "sentence1", "sentence2")
STS_NAMES = {"text": "sentence1", "text_pair": "sentence2", "label": "score"}  # field names for messages
TABLE_NAMES = {"text": "text", "text_pair": "text_pair", "label": "label"}
Row = tuple[int, dict[str, Any]]  # (line or item number, {"text", "text_pair", "label"} raw values)


class DataError(ValueError):
    """A data file is not what its config promises; the message names the file, the line (or item) and the field."""


@dataclass
class Split:
    """One split as read: the kept rows in input order, where each came from, and how many were skipped."""

    source: str  # file path, or hub name[split]
    unit: str  # "line" or "item": what `where` counts
    text: list[str]
    text_pair: list[str] | None
    label: list  # float scores or str class names, as read
    where: list[int]
    read: int
    skipped: int = 0
    names: dict[str, str] = field(default_factory=lambda: dict(TABLE_NAMES))  # key -> field name for messages

    def __len__(self) -> int:
        return len(self.text)

    def at(self, i: int, key: str) -> str:
        """Where row i's `key` ("text", "text_pair", "label") came from, for messages."""
        return f"{self.source} {self.unit} {self.where[i]}, field {self.names[key]}"

    def take(self, positions: Sequence[int]) -> Split:
        """The rows at `positions`, in that order, as a new split (read = the rows taken, none skipped)."""
        pick = lambda xs: None if xs is None else [xs[p] for p in positions]  # noqa: E731
        return replace(self, text=pick(self.text), text_pair=pick(self.text_pair), label=pick(self.label),
                       where=pick(self.where), read=len(positions), skipped=0)

    def frame(self) -> pd.DataFrame:
        """Columns text, text_pair (pair data), label; the index is the position in the split."""
        cols = {"text": self.text} | ({"text_pair": self.text_pair} if self.text_pair is not None else {})
        return pd.DataFrame(cols | {"label": self.label})


def read_text(path: Path) -> str:
    """The file decoded as strict UTF-8 (a BOM is dropped); undecodable bytes and empty files stop the run."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(f"{path} line {line}: bytes {data[err.start:err.end + 3]!r}... are not valid UTF-8 "
                        "(re-save the file as UTF-8)") from None
    if not text.strip():
        raise DataError(f"{path}: empty file")
    return text.rstrip("\r\n")  # trailing newlines end the last row; they are not rows


def read_sts(path: Path, header: bool = False) -> list[Row]:
    """STS-format lines: tab-separated genre, file, year, id, score, sentence1, sentence2 [, extras ignored].
    Written by hand because pandas and csv silently accept ragged rows and treat `"` as quoting.
    Only "\\n" ends a line (str.splitlines would also split on \\x0b, \\x1c, \\u2028 ... inside sentences)."""
    rows, first = [], None
    for no, line in enumerate(read_text(path).split("\n"), 1):
        line = line.removesuffix("\r")
        fields = line.split("\t")
        if header and no > 1 and line == first:
            raise DataError(f"{path} line {no}, field score: the line repeats the header (line 1); a header is not "
                            "a data row (remove the line: files joined with their headers?)")
        if no == 1:  # a header is told apart by its score field: a name, not a number
            first = line
            named = len(fields) > 4 and not _is_number(fields[4])
            if header and not named:
                raise DataError(f"{path} line 1, field score: expected a header (a column name), got the line "
                                f"{line[:80]!r}; if the file has no header, set data.header=false")
            if named and not header:
                raise DataError(f"{path} line 1, field score: {fields[4]!r} is not a number; if line 1 is a header, "
                                "set data.header=true")
            if header:
                continue
        if len(fields) < len(STS_FIELDS):
            raise DataError(f"{path} line {no}, field {STS_FIELDS[len(fields)]}: missing (the line has {len(fields)} "
                            f"tab-separated fields, expected {len(STS_FIELDS)}: {', '.join(STS_FIELDS)})")
        rows.append((no, {"label": fields[4], "text": fields[5], "text_pair": fields[6]}))
    if not rows:
        raise DataError(f"{path}: no data rows (only a header)")
    return rows


CONFIG_KEY = "data.{key}=COLUMN"  # how a missing column is named: the train.py key (predict: its flag)


def read_table(path: Path, columns: dict[str, str], optional: Sequence[str] = (), keep_record: bool = False,
               setting: str = CONFIG_KEY) -> tuple[list[Row], str]:
    """Rows of a .csv (header, "-quoting), .tsv (header, tab-separated, no quoting), .jsonl (an object a line) or
    .json (a list of objects; columns may be dotted paths like labels.real-label), mapped to the keys of `columns`
    ({"text": column, ...}), and the unit their numbers count ("line" or "item"). `optional` columns may be absent;
    `keep_record` keeps each whole input row (to write back); `setting` names a column in errors (predict: its flag)."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".tab", ".jsonl", ".json"):
        raise DataError(f"{path}: unknown file type {suffix!r}; use .csv, .tsv, .jsonl or .json")
    text = read_text(path)
    if suffix == ".json":
        records, unit = _json_items(path, text), "item"
    elif suffix == ".jsonl":
        records, unit = _jsonl_lines(path, text), "line"
    else:
        required = {k: c for k, c in columns.items() if k not in optional}
        records, unit = _delimited_lines(path, text, required, "," if suffix == ".csv" else "\t", setting), "line"
    rows = [(where, pick_fields(record, columns, f"{path} {unit} {where}", optional, setting)
             | ({"record": record} if keep_record else {})) for where, record in records]
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows, unit


def build_split(rows: Iterable[Row], source: str, unit: str, *, pair: bool, task: str | None,
                score_range: tuple[float, float] | None = None, scale: float = 1.0,
                names: dict[str, str] | None = None) -> Split:
    """Check every row and keep it, skip it (empty text) or raise DataError (see the module docstring).
    task=None: rows without labels (to predict); every label is None."""
    names = names or TABLE_NAMES
    split = Split(source, unit, [], [] if pair else None, [], [], read=0, names=dict(names))
    empty: list[int] = []
    for where, row in rows:
        split.read += 1
        at = lambda key, where=where: f"{source} {unit} {where}, field {names[key]}"  # noqa: E731
        if task is None:
            label: float | str | tuple | None = None
        elif task == "score":
            label = _score(row["label"], at("label"), score_range, scale)
        elif task == "multilabel":
            label = _label_set(row["label"], at("label"))
        else:
            label = _name(row["label"], at("label"))
        texts = [_text(row[key], at(key)) for key in (("text", "text_pair") if pair else ("text",))]
        if any(not t.strip() for t in texts):
            empty.append(where)
            continue
        split.text.append(texts[0])
        if pair:
            split.text_pair.append(texts[1])
        split.label.append(label)
        split.where.append(where)
    split.skipped = len(empty)
    if empty:
        shown = ", ".join(f"{unit} {w}" for w in empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        log.warning("%s: skipped %d row(s) with an empty text: %s", source, len(empty), shown)
    if split.read == 0:
        raise DataError(f"{source}: no data rows")
    if not split.text:
        raise DataError(f"{source}: every row has an empty text")
    return split


def pick_fields(record: dict, columns: dict[str, str], at: str, optional: Sequence[str] = (),
                setting: str = CONFIG_KEY) -> dict[str, Any]:
    """{key: record[column]} for each key -> column (dotted columns reach into nested objects); missing: DataError,
    unless the key is `optional` (then it is left out)."""
    row = {}
    for key, column in columns.items():
        row[key] = _field_of(record, column)
        if row[key] is _MISSING and key in optional:
            del row[key]
        elif row[key] is _MISSING:
            raise DataError(f"{at}, field {column}: missing (this row has {sorted(record)}; "
                            f"set {_setting(setting, key)} to read another one)")
    return row


_MISSING = object()


def _field_of(record: dict, column: str) -> Any:
    if column in record:
        return record[column]
    value: Any = record
    for part in column.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _score(value: Any, at: str, score_range: tuple[float, float] | None, scale: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DataError(f"{at}: {value!r} is not a number")
    if isinstance(value, str) and "_" in value:  # Python's float reads "3_5" as 35
        raise DataError(f"{at}: {value!r} is not a number (Python would read it as {value.replace('_', '')}: "
                        "write it without underscores)")
    try:
        score = float(value)
    except ValueError:
        raise DataError(f"{at}: {value!r} is not a number") from None
    if not math.isfinite(score):
        raise DataError(f"{at}: {value!r} is not a finite number")
    if scale != 1.0:
        score = round(score * scale, 6)
    if score_range is not None and not score_range[0] <= score <= score_range[1]:
        shown = str(value).strip() if scale == 1.0 else f"{score:g}"  # as written (5.0000001 is not "5")
        raise DataError(f"{at}: {shown} is outside the declared score range [{score_range[0]:g}, {score_range[1]:g}]")
    return score


def _name(value: Any, at: str) -> str:
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise DataError(f"{at}: {value!r} is not a class label (expected a string or an integer)")
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or not str(value).strip():
        raise DataError(f"{at}: empty class label")
    return str(value)


def _label_set(value: Any, at: str) -> tuple[str, ...]:
    """A multi-label cell: a JSON list of label names (may be empty: no label applies)."""
    if not isinstance(value, list):
        raise DataError(f"{at}: {value!r} is not a list of labels (multilabel data: a JSON list per row in "
                        ".json/.jsonl, or several 0/1 columns: data.label=[col1,col2,...])")
    names = tuple(_name(v, at) for v in value)
    if len(set(names)) != len(names):
        raise DataError(f"{at}: {value!r} names a label twice")
    return tuple(sorted(names))


def zero_one_columns(record: dict[str, Any], columns: list[str], at: str) -> list[str]:
    """Several 0/1 columns -> the names of those that are 1 (anything but 0/1 stops the run)."""
    names = []
    for column in columns:
        value = record[column]
        if str(value).strip() not in ("0", "1") or isinstance(value, (bool, float)):
            raise DataError(f"{at}, field {column}: {value!r} is not 0 or 1 (data.label lists 0/1 columns)")
        if str(value).strip() == "1":
            names.append(column)
    return names


def _text(value: Any, at: str) -> str:
    if value is None:
        return ""  # a missing value in JSON: an empty text, skipped
    if not isinstance(value, str):
        raise DataError(f"{at}: {value!r} is not a text")
    return value


def _setting(template: str, key: str) -> str:
    return template.format(key=key, flag=key.replace("_", "-"))


def _delimited_lines(path: Path, text: str, columns: dict[str, str], delimiter: str,
                     setting: str) -> list[tuple[int, dict]]:
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    records = []
    try:
        header = next(reader)
        _no_repeated_names(path, header)
        for key, column in columns.items():
            if column not in header:
                raise DataError(f"{path} line 1, field {column}: no such column (columns: {header}); "
                                f"set {_setting(setting, key)}")
        end = reader.line_num  # a row starts on the line after the previous one ended (quoted fields span lines)
        for fields in reader:
            no, end = end + 1, reader.line_num
            if fields == header:
                raise DataError(f"{path} line {no}, field {header[0]}: the line repeats the header (line 1); a "
                                "header is not a data row (remove the line: files joined with their headers?)")
            if len(fields) != len(header):
                name = header[len(fields)] if len(fields) < len(header) else f"#{len(header) + 1} (extra)"
                raise DataError(f"{path} line {no}, field {name}: {len(fields)} fields, the header has {len(header)}")
            records.append((no, dict(zip(header, fields, strict=True))))
    except csv.Error as err:
        raise DataError(f"{path} line {reader.line_num}: {err}") from None
    return records


def _no_repeated_names(path: Path, header: list[str]) -> None:
    """A header naming a column twice stops the run: a row read as {name: value} would keep only the last
    one."""
    seen: dict[str, int] = {}
    for i, name in enumerate(header, 1):
        if name in seen:
            raise DataError(f"{path} line 1, field {name}: the column name {name!r} is repeated (columns "
                            f"{seen[name]} and {i}); a row would keep only one of them. Rename one")
        seen[name] = i


class _RepeatedKey(ValueError):
    """An object of a JSON file names a key twice (Python's json keeps the last one silently)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: the object as a dict, or _RepeatedKey naming the repeated key."""
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise _RepeatedKey(key)
        record[key] = value
    return record


def _repeated(path: Path, where: str, key: str) -> DataError:
    return DataError(f"{path} {where}, field {key}: the key {key!r} is repeated in one object; a row would "
                     "keep only the last one. Rename one")


def _jsonl_lines(path: Path, text: str) -> list[tuple[int, dict]]:
    records = []
    for no, line in enumerate(text.split("\n"), 1):
        try:
            record = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            raise DataError(f"{path} line {no}: not a JSON object ({err.msg})") from None
        except _RepeatedKey as key:
            raise _repeated(path, f"line {no}", str(key)) from None
        if not isinstance(record, dict):
            raise DataError(f"{path} line {no}: not a JSON object")
        records.append((no, record))
    return records


def _json_items(path: Path, text: str) -> list[tuple[int, dict]]:
    try:
        items = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        raise DataError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from None
    except _RepeatedKey as key:
        raise _repeated(path, _item_with_repeat(text), str(key)) from None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of objects, got {type(items).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"{path} item {i}: not a JSON object")
    return list(enumerate(items))


def _item_with_repeat(text: str) -> str:
    """Which item of a valid JSON list holds an object with a repeated key: `item N (line L)`, decoded one by
    one."""
    decoder, pos, item = json.JSONDecoder(object_pairs_hook=_unique_keys), text.index("[") + 1, 0
    while True:
        pos = len(text) - len(text[pos:].lstrip())
        if text[pos] == "]":
            return "an item"
        try:
            _, pos = decoder.raw_decode(text, pos)
        except _RepeatedKey:
            return f"item {item} (line {text[:pos].count(chr(10)) + 1})"
        pos = len(text) - len(text[pos:].lstrip())
        pos, item = pos + (text[pos] == ","), item + 1
