"""A trained model on new rows: a data file tokenized as its run's data was, or texts given in code."""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Subset

from poolhead.core.model import PoolheadModel
from poolhead.data.sampling import sorted_order
from poolhead.data.tokens import Collate, Encoded, encode
from poolhead.run.evaluate import outputs


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
