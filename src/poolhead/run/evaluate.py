"""Predictions in input order, and the metrics computed from exactly those predictions.
`evaluate` is the one evaluation path: `train.run` scores the best checkpoint with it (results.json and
predictions.csv come from the same tensors), and `poolhead.load` + `evaluate` reproduces them from the checkpoint."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from poolhead.core.model import PoolheadModel, SplitMetrics
from poolhead.run.plan import autocast_dtype


@torch.inference_mode()
def outputs(model: PoolheadModel, loader: DataLoader, precision: str | None = None,
            progress: bool = False) -> dict[str, torch.Tensor]:
    """The head's outputs, labels (when the data has them) and row index for every batch, in loader order.
    precision: autocast as the run trained (default) or as named ("32-true": none)."""
    model.eval()
    description = getattr(model, "description", None)  # set by poolhead.build / poolhead.load (the run layer)
    dtype = autocast_dtype(precision or (description.precision if description else None))
    device = model.device
    parts: dict[str, list] = {"output": [], "labels": [], "index": []}
    for batch in tqdm(loader, desc="predicting", unit="batch", disable=not progress, leave=False):
        features = [{k: v.to(device) for k, v in side.items()} for side in batch["features"]]
        with torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext():
            parts["output"].append(model(features).float().cpu())
        parts["index"].append(batch["index"])
        if "labels" in batch:
            parts["labels"].append(batch["labels"])
    return {k: torch.cat(v) for k, v in parts.items() if v}


def evaluate_splits(model: PoolheadModel, datamodule: Any, splits: list[str], precision: str | None = None
                    ) -> tuple[pd.DataFrame, dict[str, Any], dict[str, str], dict[str, float]]:
    """`evaluate` over `splits`: (predictions of all, in split then input order; metrics; the undefined ones'
    reasons; seconds per split), as a run's predictions.csv and `poolhead eval` write them."""
    frames, metrics, undefined, seconds = [], {}, {}, {}
    for split in splits:
        frame, values, seconds[split] = evaluate(model, datamodule, split, precision)
        frames.append(frame)
        metrics, undefined = metrics | values, undefined | values.undefined
    return pd.concat(frames, ignore_index=True), metrics, undefined, seconds


def evaluate(model: PoolheadModel, datamodule: Any, split: str,
             precision: str | None = None) -> tuple[pd.DataFrame, Metrics, float]:
    """(predictions in input order, metrics `<split>/<name>` incl. loss, seconds) for one split of
    `datamodule`; an undefined metric is None, with its reason in `Metrics.undefined`."""
    start = time.perf_counter()
    result = outputs(model, datamodule.predict_dataloader(split), precision)
    seconds = time.perf_counter() - start
    order = torch.argsort(result["index"])
    output, labels = result["output"][order], result["labels"][order]
    if not torch.isfinite(output).all():
        bad = result["index"][order][~torch.isfinite(output).reshape(len(output), -1).all(-1)]
        raise FloatingPointError(f"{split}: the model's outputs are not finite (NaN or inf) for rows "
                                 f"{bad[:5].tolist()}; no metric is computed from them")
    metrics = SplitMetrics(model.task, model.head, f"{split}/")
    metrics.update(model.head, output, labels)
    values = {f"{split}/loss": float(model.head.loss(output, labels))} | metrics.compute()
    gold = labels.double() if model.task.kind == "score" else None
    values = defined(values, gold, model.head.predict(output).double() if gold is not None else None)
    if model.task.kind == "multilabel":
        values = undefined_f1(values, labels, model.head.predict(output), model.task.label_names)
    rows = datamodule.rows(split)
    return prediction_frame(model, rows, output, split), values, seconds


class Metrics(dict):
    """Metric values by name; a metric the rows cannot define is None, and `undefined` says why (a correlation
    of constant scores is not 0, and NaN is not JSON)."""

    def __init__(self, values: dict[str, float | None], undefined: dict[str, str] | None = None) -> None:
        super().__init__(values)
        self.undefined = dict(undefined or {})


CORRELATIONS = ("pearson", "spearman")


def defined(values: dict[str, float], gold: torch.Tensor | None = None,
            pred: torch.Tensor | None = None) -> Metrics:
    """`values` with every undefined metric as None plus the reason: correlations over fewer than 2 rows or
    over constant gold scores or predictions (torchmetrics gives 0 or NaN there), and any value that is not
    finite."""
    undefined = {}
    for key in values:
        why = _undefined_correlation(gold, pred) if key.rsplit("/", 1)[-1] in CORRELATIONS else None
        why = why or (None if math.isfinite(values[key]) else f"not a finite number ({values[key]})")
        if why:
            undefined[key] = why
    return Metrics({k: None if k in undefined else v for k, v in values.items()}, undefined)


def undefined_f1(values: Metrics, labels: torch.Tensor, pred: torch.Tensor, names: list[str]) -> Metrics:
    """`values` with a multilabel F1 that is 0/0 as None plus the reason (torchmetrics gives 0): micro and macro
    F1 when no row has a label and none is predicted; a label's own F1 when no row has it and none predicts it
    (the macro mean over the labels still counts it as 0, as torchmetrics and scikit-learn's default do)."""
    undefined = dict(values.undefined)
    for key in values:
        metric = key.rsplit("/", 1)[-1]
        if metric in ("f1_micro", "f1_macro"):
            columns, what = slice(None), "no row has a label and none is predicted"
        elif metric.startswith("f1_") and metric[3:] in names:
            columns, what = names.index(metric[3:]), f"no row has label {metric[3:]!r} and none is predicted"
        else:
            continue
        if not labels[:, columns].any() and not pred[:, columns].any():
            undefined[key] = f"{what}: F1 is 0/0"
    return Metrics({k: None if k in undefined else v for k, v in values.items()}, undefined)


def _undefined_correlation(gold: torch.Tensor | None, pred: torch.Tensor | None) -> str | None:
    if gold is None or pred is None:
        return None
    if len(gold) < 2:
        return f"{len(gold)} row: a correlation needs at least 2"
    for name, values in (("gold scores", gold), ("predictions", pred)):
        if bool((values == values[0]).all()):
            return f"the {name} are constant (all {float(values[0]):g}): a correlation is undefined"
    return None


def prediction_frame(model: PoolheadModel, rows: pd.DataFrame, output: torch.Tensor, split: str | None = None
                     ) -> pd.DataFrame:
    """index, split, gold (when `rows` has labels), pred; for label tasks pred as label names, pred_id and one
    prob_<label> column per label."""
    head, names = model.head, model.task.label_names
    frame = pd.DataFrame({"index": rows.index})
    if split is not None:
        frame["split"] = split
    if "label" in rows:
        frame["gold"] = [_as_text(v) for v in rows["label"]] if names else rows["label"].to_numpy()
    pred = head.predict(output)
    if model.task.kind == "class":
        frame["pred"] = [names[i] for i in pred.tolist()]
        frame["pred_id"] = pred.numpy()
    elif model.task.kind == "multilabel":
        frame["pred"] = ["|".join(n for n, on in zip(names, row, strict=True) if on) for row in pred.tolist()]
    else:
        frame["pred"] = pred.double().numpy()
    probabilities = head.probabilities(output)
    if probabilities is not None:
        for i, name in enumerate(names):
            frame[f"prob_{name}"] = probabilities[:, i].double().numpy()
    return frame


def _as_text(label: Any) -> str:
    return "|".join(label) if isinstance(label, (tuple, list)) else str(label)
