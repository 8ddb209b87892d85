"""TextDataModule: rows read strictly -> tokenized once (disk cache) -> length-grouped, dynamically padded batches.
Subclasses say where rows come from (`read`); everything after reading is shared. A worked example, the batch
layout and the bad-input policy: README.md in this folder."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset
from transformers import AutoTokenizer

from poolhead.core.hub import from_hub_or_folder
from poolhead.core.modes import Mode
from poolhead.core.task import KINDS, TaskSpec
from poolhead.data.read import DataError, Split
from poolhead.data.sampling import LengthGroupedBatchSampler, sorted_order
from poolhead.data.tokens import Collate, Encoded, cached_encode, fingerprint

log = logging.getLogger("poolhead.data")
SPLITS = ("train", "val", "test")


class TextDataModule(L.LightningDataModule):
    """Shared machinery; a subclass implements `read()` (split name -> Split) and `pair` (texts come in pairs).
    Its settings: README.md in this folder, "Settings"."""

    pair: bool = True

    def __init__(self, tokenizer: Any, mode: Mode, max_length: int = 128, seed: int = 0,
                 cache_dir: str | Path | None = None, *, name: str | None = None, task: str = "score",
                 score_range: Sequence[float] | None = None, binary_threshold: float | None = None,
                 batch_size: int = 32, eval_batch_size: int = 128, val_fraction: float = 0.1,
                 group_by_length: bool = True, num_workers: int = 0, unk_warning: float = 0.01) -> None:
        super().__init__()
        self.name = name or type(self).__name__
        if not isinstance(mode, Mode):
            raise TypeError(f"mode must be a poolhead.core.modes.Mode (conf/mode/*.yaml), got {mode!r}")
        if self.pair and not mode.pair:
            raise ValueError(f"data {self.name!r} holds text pairs, but mode={mode.name} encodes one text. Use "
                             "mode=cross (the pair joined: [CLS] a [SEP] b [SEP]) or mode=bi (each text encoded on its "
                             "own).")
        if not self.pair and mode.pair:
            raise ValueError(f"data {self.name!r} has one text per row, but mode={mode.name} needs pairs. Use "
                             "mode=single, or name the second text's column: data.text_pair=COLUMN.")
        if task not in KINDS:
            raise ValueError(f"data.task must be one of {KINDS}, got {task!r}")
        self.tokenizer_name, self.mode, self.max_length, self.seed = tokenizer, mode, max_length, int(seed)
        self.cache_dir = Path(cache_dir or "~/.cache/poolhead").expanduser()
        self.task_kind, self.binary_threshold = task, binary_threshold
        self.score_range = tuple(float(x) for x in score_range) if score_range is not None else None
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.val_fraction, self.group_by_length, self.unk_warning = val_fraction, group_by_length, unk_warning
        self._tokenizer: Any = None
        self._splits: dict[str, Split] = {}
        self._data: dict[str, Encoded] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._task: TaskSpec | None = None

    # --- what a subclass provides -------------------------------------------------------------------------------
    def read(self) -> dict[str, Split]:
        """Split name ("train", optional "val", "test") -> rows, checked (see poolhead.data.read.build_split)."""
        raise NotImplementedError

    # --- setup ----------------------------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            if isinstance(self.tokenizer_name, (str, Path)):
                self._tokenizer = from_hub_or_folder(AutoTokenizer.from_pretrained, str(self.tokenizer_name),
                                                     "tokenizer", "encoder.tokenizer=/path/to/folder")
            else:
                self._tokenizer = self.tokenizer_name
        return self._tokenizer

    def setup(self, stage: str | None = None) -> None:
        """Read, check, carve val, map labels and tokenize (or load the cached tokens); later calls do nothing."""
        if self._data:
            return
        splits = self.read()
        counts = {k: {"read": s.read, "kept": len(s), "skipped": s.skipped} for k, s in splits.items()}
        sources = {"test": "absent"} | {k: s.source for k, s in splits.items()}
        if self.task_kind != "score":
            self._check_spellings(splits["train"])
        elif self.score_range is None:
            self.score_range = self._score_range_of(splits)
        if "val" not in splits:
            splits["train"], splits["val"] = self._carve_val(splits["train"])
            counts["train"] |= {"kept": len(splits["train"]), "to_val": len(splits["val"])}
            counts["val"] = {"read": len(splits["val"]), "kept": len(splits["val"]), "skipped": 0}
            sources["val"] = f"carved from train: val_fraction={self.val_fraction}, seed={self.seed}"
        counts.setdefault("test", {"read": 0, "kept": 0, "skipped": 0})
        self._task = self._make_task(splits["train"])
        labels = {key: self._label_ids(split) for key, split in splits.items()}  # unseen labels fail before tokenizing
        tokenizer_id = fingerprint(self.tokenizer)
        data = {}
        for key, split in splits.items():
            sides = cached_encode(self.tokenizer, tokenizer_id, split.text, split.text_pair, self.mode,
                                  self.max_length, self.cache_dir, f"{self.name} {key}")
            data[key] = Encoded(sides, labels[key])
        self._splits, self._data, self._counts = splits, data, {k: counts[k] for k in SPLITS}
        for key, c in self._counts.items():
            moved = f", {c['to_val']} moved to val" if "to_val" in c else ""
            log.info("%s %s: read %d rows (%s), kept %d, skipped %d (empty text)%s", self.name, key, c["read"],
                     sources[key], c["kept"], c["skipped"], moved)
        for key, n in self.truncated.items():
            if n:
                log.warning("%s %s: %d of %d rows were cut to max_length=%s tokens", self.name, key, n,
                            len(data[key]), self.max_length)
        if self.unk_rate > self.unk_warning:
            log.warning("%s train: %.1f%% of the tokens are %s: the tokenizer does not fit this language or "
                        "script (data.unk_warning=%g); pick an encoder trained on it", self.name, 100 * self.unk_rate,
                        self.tokenizer.unk_token, self.unk_warning)

    def _score_range_of(self, splits: dict[str, Split]) -> tuple[float, float]:
        """No declared score range: the training file's lowest and highest score, with a warning (what 0-5 data
        expects, where the 0-1 default left a bi cosine unable to reach its targets); val/test must lie inside."""
        train = splits["train"]
        low, high = min(train.label), max(train.label)
        if not low < high:
            raise DataError(f"{train.source}: every training score is {low:g}, so no score range can be read from "
                            "the data; declare it: data.score_range=[LOW,HIGH]")
        log.warning("%s: no data.score_range given: read [%g, %g] from the training scores of %s (the head maps "
                    "this range to [0, 1]); set data.score_range=[LOW,HIGH] if the scale is wider", self.name, low,
                    high, train.source)
        for _name, split in splits.items():
            for i, score in enumerate(split.label):
                if not low <= score <= high:
                    raise DataError(f"{split.at(i, 'label')}: {score:g} is outside the score range [{low:g}, "
                                    f"{high:g}] read from the training file (no data.score_range given); declare "
                                    "the scale: data.score_range=[LOW,HIGH]")
        return float(low), float(high)

    def _carve_val(self, train: Split) -> tuple[Split, Split]:
        """A seeded share of train as val; for class tasks stratified (each class keeps its share in both, so a
        rare class never lands in val alone)."""
        n = len(train)
        n_val = round(n * self.val_fraction)
        if not 0 < n_val < n:
            raise DataError(f"{train.source}: cannot carve val_fraction={self.val_fraction} of {n} training rows as "
                            "a val split; give a val file or change data.val_fraction")
        rng = np.random.default_rng(self.seed)
        if self.task_kind == "class":
            # systematic sample over the rows shuffled, then grouped by class: each class gives its share
            labels = np.array(train.label, dtype=object)
            order = rng.permutation(n)
            order = order[np.argsort(labels[order], kind="stable")]
            val = order[((np.arange(n_val) + 0.5) * n / n_val).astype(int)]
            for name in set(labels[val]) - set(labels[np.setdiff1d(np.arange(n), val)]):
                val = val[labels[val] != name]  # a class never lands in val alone
            if len(val) == 0:
                raise DataError(f"{train.source}: no class has rows to spare for a val split of val_fraction="
                                f"{self.val_fraction}; give a val file")
            val = np.sort(val)
        else:
            val = np.sort(rng.permutation(n)[:n_val])
        keep = np.setdiff1d(np.arange(n), val)
        return replace(train.take(keep.tolist()), read=train.read, skipped=train.skipped), train.take(val.tolist())

    def _make_task(self, train: Split) -> TaskSpec:
        if self.task_kind == "score":
            return TaskSpec("score", self.score_range, None, self.binary_threshold)
        names = self._names(train)
        by_number = all(name.lstrip("-").isdigit() for name in names)  # "2" < "10" for integer labels
        return TaskSpec(self.task_kind, None, tuple(sorted(names, key=int if by_number else str)), None)

    def _names(self, split: Split) -> set[str]:
        """The label names a class or multilabel split uses."""
        return set(split.label) if self.task_kind == "class" else {n for labels in split.label for n in labels}

    def _check_spellings(self, train: Split) -> None:
        """Labels that differ only by case, surrounding spaces or number formatting (pos / Pos / "pos ", 1 / 1.0)
        are one label written two ways: stop, naming both spellings and where each first occurs."""
        names = self._names(train)
        seen: dict[str, str] = {}
        for name in sorted(names):
            key = name.strip().casefold()
            try:
                key = repr(float(key))
            except ValueError:
                pass
            if key in seen:
                first = [next(i for i, v in enumerate(train.label) if n == v or (isinstance(v, tuple) and n in v))
                         for n in (seen[key], name)]
                raise DataError(f"{train.at(first[1], 'label')}: class label {name!r} and {seen[key]!r} "
                                f"({train.at(first[0], 'label')}) differ only in case, spaces or number format; "
                                "write one label one way")
            seen[key] = name

    @property
    def truncated(self) -> dict[str, int]:
        """Rows per split with a text (or side) cut to max_length."""
        data = self._ready(table=self._data)
        return {key: int(np.any([side.get("truncated", np.zeros(len(data[key]), bool)) for side in data[key].sides],
                                axis=0).sum()) if key in data else 0 for key in SPLITS}

    @property
    def unk_rate(self) -> float:
        """Share of the training tokens that are the tokenizer's unknown token."""
        unk = self.tokenizer.unk_token_id
        ids = np.concatenate([side["input_ids"] for side in self._ready("train", self._data)["train"].sides])
        return float(np.mean(ids == unk)) if unk is not None and len(ids) else 0.0

    def _label_ids(self, split: Split) -> list:
        """Class ids (class tasks), 0/1 lists over label_names (multilabel), scores as read (score tasks)."""
        if self.task.kind == "score":
            return split.label
        ids = {name: i for i, name in enumerate(self.task.label_names)}
        for i, labels in enumerate(split.label):
            for name in [labels] if self.task.kind == "class" else labels:
                if name not in ids:
                    raise DataError(f"{split.at(i, 'label')}: class label {name!r} does not occur in the training "
                                    f"split (training labels: {list(ids)})")
        if self.task.kind == "class":
            return [ids[name] for name in split.label]
        return [[float(name in labels) for name in self.task.label_names] for labels in split.label]

    # --- what the rest of the system reads ---------------------------------------------------------------------
    @property
    def task(self) -> TaskSpec:
        if self._task is None:
            raise RuntimeError(f"data {self.name!r}: call setup() before reading .task")
        return self._task

    def source(self, split: str) -> str:
        """Where a split was read from (a file path, or hub name[split]), for messages."""
        return self._ready(split)[split].source

    @property
    def has_test(self) -> bool:
        return "test" in self._ready()

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """{"train": {"read", "kept", "skipped"[, "to_val"]}, "val": {...}, "test": {...}} (test zeros if absent)."""
        self._ready()
        return {k: dict(v) for k, v in self._counts.items()}

    @property
    def sizes(self) -> dict[str, int]:
        return {k: c["kept"] for k, c in self.counts.items()}

    def rows(self, split: str) -> pd.DataFrame:
        """The split's rows in input order (index = position): text, text_pair (pairs), label (gold, as read)."""
        return self._ready(split)[split].frame()

    def save_label_map(self, path: str | Path) -> Path | None:
        """Write {id: name} as JSON for class tasks (nothing for score tasks); returns the path written."""
        if self.task.kind != "class":
            return None
        path = Path(path)
        path.write_text(json.dumps({str(i): n for i, n in enumerate(self.task.label_names)}, indent=2,
                                   ensure_ascii=False) + "\n")
        return path

    # --- dataloaders -----------------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        data = self._ready("train", self._data)["train"]
        # batches drawn from (seed, epoch) alone, so a resumed run sees the batches an uninterrupted one sees;
        # group_by_length=false: groups of one batch, i.e. plain random batches
        sampler = LengthGroupedBatchSampler(data.lengths, self.batch_size, seed=self.seed, steps_done=self._steps_done,
                                            group_batches=50 if self.group_by_length else 1)
        return self._loader(data, batch_sampler=sampler)

    def _steps_done(self) -> int:
        """Batches trained so far: a resume mid-epoch continues at the batch after the last one trained."""
        trainer = self.trainer
        if trainer is None or trainer.accumulate_grad_batches != 1:
            return 0
        return trainer.global_step

    def val_dataloader(self) -> DataLoader:
        return self.predict_dataloader("val")

    def predict_dataloader(self, split: str = "val") -> DataLoader:
        """Evaluation order: longest rows first, never shuffled; batch["index"] puts predictions back in order."""
        data = self._ready(split, self._data)[split]
        order = sorted_order(data.lengths) if self.group_by_length else np.arange(len(data))
        return self._loader(Subset(data, order.tolist()), batch_size=self.eval_batch_size, shuffle=False)

    def token_sides(self) -> list[tuple[str, dict[str, np.ndarray]]]:
        """Every side of every split as flat token ids + lengths, named for logs (what the feature cache encodes)."""
        return [(f"{self.name} {key} side {i}", {k: side[k] for k in ("input_ids", "token_type_ids", "lengths")
                                                  if k in side})
                for key, data in self._ready(table=self._data).items() for i, side in enumerate(data.sides)]

    def _loader(self, dataset: Any, **kwargs: Any) -> DataLoader:
        dtype = torch.long if self.task.kind == "class" else torch.float32
        # its own generator: creating the iterator would otherwise draw a seed from torch's global RNG, which the
        # dropout masks use, and a resumed run (RNG restored from the checkpoint) would then drop other units
        return DataLoader(dataset, collate_fn=Collate(self.tokenizer, dtype), num_workers=self.num_workers,
                          pin_memory=torch.cuda.is_available(), persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.seed), **kwargs)

    def _ready(self, split: str | None = None, table: dict | None = None) -> dict:
        table = self._splits if table is None else table
        if not self._data:
            raise RuntimeError(f"data {self.name!r}: call setup() first")
        if split is not None and split not in table:
            raise ValueError(f"data {self.name!r} has no {split!r} split (it has {list(table)})")
        return table
