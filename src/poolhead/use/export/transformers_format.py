"""The transformers format: pooling=pooler and a linear head as AutoModelForSequenceClassification."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from poolhead.core import pooling as P
from poolhead.core.heads import RegressionHead
from poolhead.core.model import PoolheadModel


def refusal(model: PoolheadModel) -> str | None:
    head, readout = model.head, model.head.affine_out()
    if model.mode.name == "bi":
        return (
            "mode=bi scores cos(u, v) of two encoder passes, a sequence classifier encodes one input: "
            "use sentence-transformers"
        )
    if model.encoder.layers != [-1]:
        return (
            f"encoder.layers={model.encoder.layers} averages hidden layers, a sequence classifier reads "
            "the last one: use the cross-encoder format"
        )
    if type(model.pooling) is not P.PoolerOutput:
        return (
            f"pooling {type(model.pooling).__name__}: AutoModelForSequenceClassification classifies the "
            "encoder's pooler output (pooling=pooler only); use the cross-encoder format"
        )
    if head.hidden_layers():
        return (
            "head.hidden_dims is not empty: the transformers classifier is one Linear; use the cross-encoder "
            "format"
        )
    if (
        readout is None or readout[2]
    ):  # no bare logit: a sigmoid after it, or a softmax-weighted sum of logits
        if isinstance(head, RegressionHead):
            return (
                "head.loss=bce predicts sigmoid(logit) on the score range, a transformers regression model "
                "outputs the bare logit: use the cross-encoder format"
            )
        return (
            "a classification head on score bins predicts the expected score over the bins, which is not a "
            "logit: use the cross-encoder format (2 bins) or head=regression"
        )
    if not _pooler_then_linear(model):
        return (
            f"{model.encoder.model.config.model_type}'s ForSequenceClassification head is not the pooler "
            "followed by one Linear; use the cross-encoder format"
        )
    return None


def to_transformers(model: PoolheadModel, to: Path) -> None:
    """Regression: num_labels=1 on the data's scale; classes: num_labels=K with id2label; multilabel:
    problem_type multi_label_classification."""
    classifier = _classifier(model)
    # CrossEncoder(DIR) reads this; without it, a 1-label model gets Sigmoid (STS scores squashed into 0-1)
    activation = (
        "torch.nn.modules.activation.Sigmoid"
        if model.task.kind == "multilabel"
        else "torch.nn.modules.linear.Identity"
    )
    classifier.config.sentence_transformers = {"activation_fn": activation}
    classifier.save_pretrained(to)
    tokenizer = model.encoder.tokenizer
    tokenizer.model_max_length = model.encoder.max_length
    tokenizer.save_pretrained(to)


def _classifier(model: PoolheadModel) -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    encoder, kind = model.encoder.model, model.task.kind
    weight, bias, _, low, span = model.head.affine_out()
    config = encoder.config.__class__.from_dict(encoder.config.to_dict())
    config.num_labels = len(weight)
    config.problem_type = {"score": "regression", "multilabel": "multi_label_classification"}.get(
        kind, "single_label_classification"
    )
    if kind != "score":
        label_names(config, model)
    classifier = AutoModelForSequenceClassification.from_config(config)
    classifier.base_model.load_state_dict(encoder.state_dict())
    with torch.no_grad():
        classifier.classifier.weight.copy_(weight * span)
        classifier.classifier.bias.copy_(bias * span + low)
    return classifier.eval()


def _pooler_then_linear(model: PoolheadModel) -> bool:
    from transformers import AutoModelForSequenceClassification

    config = model.encoder.model.config
    try:
        probe = AutoModelForSequenceClassification.from_config(config.__class__.from_dict(config.to_dict()))
    except ValueError:  # no sequence classification class for this model type
        return False
    linear = isinstance(getattr(probe, "classifier", None), nn.Linear)
    return linear and getattr(probe.base_model, "pooler", None) is not None


def label_names(config: Any, model: PoolheadModel) -> None:
    names = model.task.label_names
    config.id2label = {i: name for i, name in enumerate(names)}
    config.label2id = {name: i for i, name in enumerate(names)}
