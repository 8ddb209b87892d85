"""Where rows come from: one TextDataModule subclass per kind of source; each conf/data/*.yaml names one."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from poolhead.core.hub import OfflineError
from poolhead.data.module import TextDataModule
from poolhead.data.read import (
    STS_NAMES,
    DataError,
    Split,
    build_split,
    pick_fields,
    read_sts,
    read_table,
    zero_one_columns,
)

log = logging.getLogger("poolhead.data")
DEMO_DIR = Path(__file__).parent / "demo"
STS_FILES = {"train": "sts-train.csv", "val": "sts-dev.csv", "test": "sts-test.csv"}
STS_TASK = {"task": "score", "score_range": (0.0, 5.0), "binary_threshold": 3.0}
PAIR_COLUMNS = {"text": "sentence1", "text_pair": "sentence2"}


class StsData(TextDataModule):
    """STS-format files (STS Benchmark, KorSTS, the demo set) from `dir`, or a hub copy when `dir` is None.
    Settings: README.md in this folder."""

    def __init__(self, dir: str | Path | None = None, files: dict[str, str] | None = None, header: bool = False,
                 hub: str | None = None, hub_scale: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**(STS_TASK | {"name": "sts"} | kwargs))
        self.dir, self.header, self.hub, self.hub_scale = dir, header, hub, hub_scale
        self.files = dict(files or STS_FILES)

    def read(self) -> dict[str, Split]:
        if self.dir is None:
            if self.hub is None:
                raise DataError(f"data {self.name!r} has no hub copy: pass data.dir=/path/to/{self.name} "
                                f"(a folder with {', '.join(self.files.values())})")
            return read_hub(self.hub, None, {"train": "train", "val": "validation", "test": "test"},
                            PAIR_COLUMNS | {"label": "score"}, self, scale=self.hub_scale, hint=self.hint)
        folder = Path(self.dir).expanduser()
        if not folder.is_dir():
            raise DataError(f"data.dir={self.dir}: no such folder ({self.hint})")
        splits = {}
        for key, file in self.files.items():
            path = folder / file
            if key != "train" and not path.exists():
                log.info("%s: no %s in %s, so %s", self.name, file, folder,
                         "val is carved from train" if key == "val" else f"no {key} split")
                continue
            splits[key] = build_split(read_sts(path, self.header), str(path), "line", pair=True, task="score",
                                      score_range=self.score_range, names=STS_NAMES)
        return splits

    @property
    def hint(self) -> str:
        f = self.files
        return f"pass data.dir=/path/to/{self.name}, a folder with {f['train']}, {f['val']} (optional: {f['test']})"


class DemoSts(StsData):
    """Bundled demo set (src/poolhead/data/demo, by scripts/make_demo.py): offline; a smoke test, not a benchmark."""

    def __init__(self, dir: str | Path = DEMO_DIR, **kwargs: Any) -> None:
        super().__init__(dir=dir, **({"name": "demo"} | kwargs))


class KlueSts(TextDataModule):
    """KLUE-STS: train -> train (val carved off by val_fraction, seeded), dev -> test (KLUE's test labels are not
    public). From `dir` (klue-sts-v1.1_train.json, klue-sts-v1.1_dev.json) or, when `dir` is None, the hub."""

    FILES = {"train": "klue-sts-v1.1_train.json", "test": "klue-sts-v1.1_dev.json"}
    COLUMNS = PAIR_COLUMNS | {"label": "labels.real-label"}

    def __init__(self, dir: str | Path | None = None, hub: str | None = "klue/klue", **kwargs: Any) -> None:
        super().__init__(**(STS_TASK | {"name": "klue_sts"} | kwargs))
        self.dir, self.hub = dir, hub

    def read(self) -> dict[str, Split]:
        hint = f"pass data.dir=/path/to/klue_sts, a folder with {', '.join(self.FILES.values())}"
        if self.dir is None:
            if self.hub is None:
                raise DataError(f"data {self.name!r}: {hint}")
            return read_hub(self.hub, "sts", {"train": "train", "test": "validation"}, self.COLUMNS, self, hint=hint)
        splits = {}
        for key, file in self.FILES.items():
            rows, unit = read_table(Path(self.dir).expanduser() / file, self.COLUMNS)
            splits[key] = build_split(rows, str(Path(self.dir) / file), unit, pair=True, task="score",
                                      score_range=self.score_range, names=self.COLUMNS)
        return splits


class TableData(TextDataModule):
    """Any .csv / .tsv / .jsonl / .json files with named columns: one text or a pair, a score, a class or labels.
    Settings: conf/data/csv.yaml and README.md in this folder."""

    def __init__(self, train: str | Path | None = None, val: str | Path | None = None, test: str | Path | None = None,
                 text: str = "text", text_pair: str | None = None, label: str | Sequence[str] = "label",
                 **kwargs: Any) -> None:
        self.files = {"train": train, "val": val, "test": test}
        self.label_columns = None if isinstance(label, str) else list(label)
        if self.label_columns is not None and kwargs.get("task") != "multilabel":
            raise ValueError(f"data.label={self.label_columns} lists several columns: that is multilabel data "
                             "(data.task=multilabel); otherwise name one column")
        label_keys = {f"label:{c}": c for c in self.label_columns} if self.label_columns else {"label": label}
        self.columns = {"text": text} | label_keys | ({"text_pair": text_pair} if text_pair else {})
        super().__init__(**({"name": "csv"} | kwargs))

    @property
    def pair(self) -> bool:
        return "text_pair" in self.columns

    def read(self) -> dict[str, Split]:
        if self.files["train"] is None:
            raise DataError(f"data {self.name!r} needs a training file: data.train=PATH (.csv, .tsv, .jsonl or .json)")
        splits = {}
        for key, file in self.files.items():
            if file is not None:
                path = Path(file).expanduser()
                rows, unit = read_table(path, self.columns)
                names = self.columns
                if self.label_columns:
                    rows = [(where, {"label": zero_one_columns({c: row[f"label:{c}"] for c in self.label_columns},
                                                                self.label_columns, f"{path} {unit} {where}")}
                             | {k: v for k, v in row.items() if not k.startswith("label:")}) for where, row in rows]
                    names = self.columns | {"label": "+".join(self.label_columns)}
                splits[key] = build_split(rows, str(path), unit, pair=self.pair, task=self.task_kind,
                                          score_range=self.score_range, names=names)
        return splits


def read_hub(name: str, config: str | None, splits: dict[str, str], columns: dict[str, str], dm: TextDataModule,
             scale: float = 1.0, hint: str = "") -> dict[str, Split]:
    """Splits of a Hugging Face Hub dataset (ours -> theirs in `splits`), checked like files; offline: OfflineError."""
    import datasets

    try:
        hub = datasets.load_dataset(name, config)
    except (OSError, ConnectionError, ValueError) as err:  # offline, or no such dataset
        first = str(err).splitlines()[0] if str(err) else ""
        raise OfflineError(f"Could not load dataset {name!r} from the Hugging Face Hub ({type(err).__name__}: "
                           f"{first}).\nIf this machine is offline, use local files: {hint}") from err
    out = {}
    for ours, theirs in splits.items():
        if theirs in hub:
            rows = [(i, pick_fields(r, columns, f"{name}[{theirs}] item {i}")) for i, r in enumerate(hub[theirs])]
            out[ours] = build_split(rows, f"{name}[{theirs}]", "item", pair=dm.pair, task=dm.task_kind,
                                    score_range=dm.score_range, scale=scale, names=columns)
    return out
