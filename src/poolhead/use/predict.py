"""A trained model on new rows: a data file tokenized as its run's data was, or texts given in code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Subset

from poolhead.core.model import PoolheadModel
from poolhead.data.read import DataError, build_split, read_table
from poolhead.data.sampling import sorted_order
from poolhead.data.tokens import Collate, Encoded, encode
from poolhead.run.evaluate import outputs, prediction_frame
from poolhead.use.guards import check_columns_kept


def data_for(model: PoolheadModel, data: dict[str, Any] | None = None, cache_dir: str | None = None) -> Any:
    """The data module of `model`'s run (or `data`, a conf/data config), tokenized as the model was trained:
    its tokenizer, mode, max_length and seed come from the checkpoint."""
    config = model.description.config
    datamodule = instantiate(OmegaConf.create(data or config["data"]), tokenizer=model.encoder.tokenizer,
                             mode=model.mode, max_length=config["encoder"]["max_length"], seed=config["seed"],
                             cache_dir=cache_dir)
    datamodule.setup("predict")
    return datamodule


def text_loader(model: PoolheadModel, text: list[str], text_pair: list[str] | None,
                batch_size: int = 128) -> DataLoader:
    """New texts tokenized as the model's data was (its tokenizer, mode and max_length), in batches from the longest
    row to the shortest; batch["index"] is the row's position in `text`."""
    tokenizer, max_length = model.encoder.tokenizer, model.description.max_length
    data = Encoded(encode(tokenizer, text, text_pair, model.mode, max_length), [0.0] * len(text))
    return DataLoader(Subset(data, sorted_order(data.lengths).tolist()), batch_size=batch_size, shuffle=False,
                      collate_fn=Collate(tokenizer, torch.float32))


def predict_texts(model: PoolheadModel, text: list[str], text_pair: list[str] | None = None,
                  precision: str | None = None, batch_size: int = 128, progress: bool = False) -> torch.Tensor:
    """The head's outputs for new texts (pairs: `text_pair`), in input order; `prediction_frame` turns them into
    predictions."""
    result = outputs(model, text_loader(model, text, text_pair, batch_size), precision, progress)
    return result["output"][torch.argsort(result["index"])]


def prediction_columns(model: PoolheadModel) -> list[str]:
    """The columns `run.evaluate.prediction_frame` adds for `model`: pred; classes: pred_id; labels:
    prob_<label>."""
    task = model.task
    if task.kind == "score":
        return ["pred"]
    return ["pred", *(["pred_id"] if task.kind == "class" else []),
            *(f"prob_{name}" for name in task.label_names)]


def predict_file(model: PoolheadModel, path: Path, columns: dict[str, str], precision: str | None = None,
                 batch_size: int = 128, progress: bool = False) -> tuple[pd.DataFrame, Any]:
    """Every row of `path` (read strictly, as training reads), in input order, with the predictions added
    (rows skipped for an empty text keep their place, without one), and the split read. `columns`: text,
    text_pair (pair models), label (used when every row has one)."""
    rows, unit = read_table(path, columns, optional=("label",), keep_record=True, setting="--{flag} COLUMN")
    labelled = [where for where, row in rows if "label" in row]
    if labelled and len(labelled) < len(rows):
        missing = next(where for where, row in rows if "label" not in row)
        raise DataError(f"{path} {unit} {missing}, field {columns['label']}: missing, but {unit} "
                        f"{labelled[0]} has one; label every row or none")
    task = model.task.kind if labelled else None
    split = build_split(rows, str(path), unit, pair=model.mode.pair, task=task,
                        score_range=model.task.score_range, names=columns)
    check_columns_kept([row["record"] for _, row in rows], prediction_columns(model), path)  # before any work
    scores = predict_texts(model, split.text, split.text_pair, precision, batch_size, progress)
    frame = prediction_frame(model, split.frame(), scores).drop(columns=["index", "gold"], errors="ignore")
    position = {where: i for i, (where, _) in enumerate(rows)}
    frame.index = [position[where] for where in split.where]  # skipped rows keep their place, unpredicted
    # values as read: an id column with a missing value stays whole numbers (pandas would make them floats,
    # and two large ids equal)
    records = pd.DataFrame([row["record"] for _, row in rows], dtype=object)
    return records.join(frame), split
