"""The LightningModule: encoder x pooling x head, for `single`, `cross` and `bi` input modes."""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from typing import Any, Callable

import lightning as L
import torch
from lightning.pytorch.plugins.precision import Precision
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, PearsonCorrCoef, SpearmanCorrCoef
from torchmetrics.classification import BinaryF1Score, MulticlassAccuracy, MulticlassF1Score
from transformers import get_scheduler

from poolhead.data.task import TaskSpec
from poolhead.encoder import Encoder, EncoderOutput
from poolhead.heads import ClassificationHead
from poolhead.pooling import Pooling

log = logging.getLogger(__name__)
# Spearman keeps every prediction of an epoch: that is what it needs (and STS splits are small)
warnings.filterwarnings("ignore", message="Metric `SpearmanCorrcoef` will save all targets")
MODES = ("single", "cross", "bi")


class SplitMetrics(nn.Module):
    """torchmetrics for one split: score metrics on predicted scores, F1 of scores binarised at the task's
    threshold, and accuracy/F1 on classes when the head classifies."""

    def __init__(self, task: TaskSpec, head: nn.Module, split: str) -> None:
        super().__init__()
        prefix = f"{split}/"
        self.score = self.binary = self.classes = None
        if task.kind == "score":
            self.score = MetricCollection({"pearson": PearsonCorrCoef(), "spearman": SpearmanCorrCoef(),
                                           "mse": MeanSquaredError(), "mae": MeanAbsoluteError()}, prefix=prefix)
            if task.binary_threshold is not None:
                self.threshold = task.binary_threshold
                self.binary = MetricCollection({"f1": BinaryF1Score()}, prefix=prefix)
        if isinstance(head, ClassificationHead):
            k = head.num_classes
            self.classes = MetricCollection({"accuracy": MulticlassAccuracy(k, average="micro"),
                                             "f1_macro": MulticlassF1Score(k, average="macro")}, prefix=prefix)

    def update(self, head: nn.Module, output: Tensor, labels: Tensor) -> list[MetricCollection]:
        if self.score is not None:
            pred = head.predict(output)
            self.score.update(pred, labels.float())
        if self.binary is not None:
            self.binary.update((pred >= self.threshold).long(), (labels >= self.threshold).long())
        if self.classes is not None:
            self.classes.update(output.argmax(-1), head.target(labels))
        return [c for c in (self.score, self.binary, self.classes) if c is not None]


class PoolheadModel(L.LightningModule):
    """Args:
        encoder: an `Encoder`.
        pooling: a partial of a `Pooling` class (completed with the encoder's hidden size).
        head: a partial of a head class (completed with the pooled size, mode and task).
        task: what the labels are (from the data module).
        mode: `single` (one text), `cross` (pair in one sequence) or `bi` (each text encoded and pooled alone).
        optim: lr (encoder), head_lr (head and pooling; default lr), weight_decay, betas, eps, scheduler
            (any `transformers.get_scheduler` name), warmup_ratio, fused.
    """

    def __init__(self, encoder: Encoder, pooling: Callable[..., Pooling], head: Callable[..., nn.Module],
                 task: TaskSpec, mode: str = "cross", optim: dict | None = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: choose one of {MODES}")
        self.encoder, self.mode, self.task = encoder, mode, task
        self.pooling = pooling(hidden_size=encoder.hidden_size)
        if self.pooling.needs_pooler and not encoder.has_pooler:
            raise ValueError(f"pooling=pooler needs a model with a pooler, and {encoder.name_or_path or 'this encoder'}"
                             " has none (e.g. DistilBERT): choose pooling=cls, mean, max, ...")
        if self.pooling.needs_pooler and encoder.pooler_is_random:
            log.warning("!!! pooling=pooler: %s has no trained pooler weights; its pooler is RANDOMLY INITIALISED "
                        "(learned from scratch here). Consider pooling=cls.", encoder.name_or_path)
        self.head = head(in_features=self.pooling.output_dim(encoder.hidden_size), mode=mode, task=task)
        self.optim = dict(optim or {})
        self.metrics = nn.ModuleDict({s: SplitMetrics(task, self.head, s) for s in ("val", "test")})
        self.save_hyperparameters({"mode": mode, "task": dataclasses.asdict(task), "optim": self.optim})

    def encode(self, features: dict[str, Tensor]) -> Tensor:
        """One batch of texts -> pooled vectors [B, H']. Batches from the feature cache carry the frozen encoder's
        `hidden_states` already, and skip it."""
        if "hidden_states" in features:
            out = EncoderOutput(features["hidden_states"], features["attention_mask"], features["pooler_output"])
        else:
            out = self.encoder(features)
        return self.pooling(*out)

    def forward(self, features: list[dict[str, Tensor]]) -> Tensor:
        if len(features) > 1 and "hidden_states" not in features[0]:
            # bi: both sides in one encoder pass (larger matrix products: ~12% faster training on CPU than two
            # passes); zeros pad the shorter side, masked out like any padding
            length = max(f["input_ids"].shape[1] for f in features)
            both = {k: torch.cat([F.pad(f[k], (0, length - f[k].shape[1])) for f in features]) for k in features[0]}
            pooled = self.encode(both).chunk(len(features))
        else:
            pooled = [self.encode(f) for f in features]
        return self.head(*pooled)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss = self.head.loss(self(batch["features"]), batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def _evaluate(self, batch: dict[str, Any], split: str) -> None:
        output = self(batch["features"])
        n = len(batch["labels"])
        self.log(f"{split}/loss", self.head.loss(output, batch["labels"]), batch_size=n)
        for collection in self.metrics[split].update(self.head, output, batch["labels"]):
            self.log_dict(collection, batch_size=n)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return {"index": batch["index"], "pred": self.head.predict(self(batch["features"])).float()}

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.optim
        lr = float(o.get("lr", 3e-5))
        head_lr = float(o.get("head_lr") or lr)
        decay = float(o.get("weight_decay", 0.01))
        groups = []
        for module, group_lr in ((self.encoder, lr), (nn.ModuleList([self.pooling, self.head]), head_lr)):
            named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
            # no weight decay on biases and LayerNorm weights (the BERT recipe)
            no_decay = [p for n, p in named if n.endswith("bias") or "norm" in n.lower()]
            with_decay = [p for n, p in named if not (n.endswith("bias") or "norm" in n.lower())]
            groups += [{"params": with_decay, "lr": group_lr, "weight_decay": decay},
                       {"params": no_decay, "lr": group_lr, "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
        # a fused AdamW unscales fp16 gradients itself, so they could not be clipped first: not with a loss scaler
        fused = bool(o.get("fused")) and self._loss_scaler() is None
        optimizer = torch.optim.AdamW(groups, betas=tuple(o.get("betas", (0.9, 0.999))), eps=float(o.get("eps", 1e-8)),
                                      fused=fused)
        steps = self.trainer.estimated_stepping_batches
        scheduler = get_scheduler(o.get("scheduler", "linear"), optimizer,
                                  num_warmup_steps=math.ceil(float(o.get("warmup_ratio", 0.1)) * steps),
                                  num_training_steps=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        if gradient_clip_val and self._loss_scaler() is None:
            # Lightning's mixed-precision plugin refuses to clip for any fused optimizer, because of fp16 loss
            # scaling; bf16 and fp32 gradients are not scaled, so clip them as usual
            Precision.clip_gradients(self.trainer.precision_plugin, optimizer, gradient_clip_val,
                                     gradient_clip_algorithm or "norm")
        else:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def _loss_scaler(self) -> Any:
        return getattr(self.trainer.precision_plugin, "scaler", None)
