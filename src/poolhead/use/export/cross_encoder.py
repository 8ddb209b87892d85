"""The cross-encoder format (mode=cross): the sentence-transformers modules with Dense layers ending in
"scores"."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from poolhead.core.model import PoolheadModel
from poolhead.use.export.st import dense, save_code, st_modules
from poolhead.use.export.transformers_format import label_names


def refusal(model: PoolheadModel) -> str | None:
    if model.mode.name != "cross":
        return f"mode={model.mode.name}: a CrossEncoder encodes a pair joined as one input (mode=cross)"
    if model.head.affine_out() is None:
        return (
            f"the expected score over {model.head.num_classes} score bins is a softmax-weighted sum, which "
            "no "
            "Dense layer computes (2 bins are a sigmoid, and export); use one head.bin_edges edge or "
            "head=regression"
        )
    return None


def to_cross_encoder(model: PoolheadModel, to: Path) -> None:
    """The score on the data's own scale (range folded into the last Dense), class logits, or label logits
    (activation Sigmoid: probabilities)."""
    from sentence_transformers import CrossEncoder

    weight, bias, sigmoid, low, span = model.head.affine_out()
    activation = nn.Sigmoid() if model.task.kind == "multilabel" else nn.Identity()
    with tempfile.TemporaryDirectory() as tmp:
        modules = st_modules(model, Path(tmp))
        if sigmoid:  # low + span * sigmoid(o)
            modules += [
                dense(weight, bias, nn.Sigmoid()),
                dense(torch.tensor([[span]]), torch.tensor([low]), nn.Identity(), "scores"),
            ]
        else:  # low + span * o, folded
            modules.append(dense(weight * span, bias * span + low, nn.Identity(), "scores"))
        if model.task.kind != "score":
            label_names(modules[0].model.config, model)
        CrossEncoder(modules=modules, activation_fn=activation, device="cpu").save(
            str(to), create_model_card=False
        )
    save_code(model, to)
