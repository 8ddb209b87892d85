"""The LightningModule: encoder x pooling x head, for any input mode. Built by `poolhead.build`."""

from __future__ import annotations

import inspect
import logging
import math
import warnings
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.precision import Precision
from torch import Tensor, nn
from torchmetrics import MetricCollection

from poolhead.core import direction
from poolhead.core.encoder import Encoder
from poolhead.core.heads import Head
from poolhead.core.modes import Mode
from poolhead.core.pooling import Pooling
from poolhead.core.task import TaskSpec

log = logging.getLogger(__name__)
# Spearman keeps every prediction of an epoch: that is what it needs (and STS splits are small)
warnings.filterwarnings("ignore", message="Metric `SpearmanCorrcoef` will save all targets")


class SplitMetrics(nn.Module):
    """One split's metrics: the task's on predictions vs labels, the head's on outputs vs targets."""

    def __init__(self, task: TaskSpec, head: Head, prefix: str = "") -> None:
        super().__init__()
        self.on_predictions = MetricCollection(task.metrics(), prefix=prefix)
        self.on_outputs = MetricCollection(head.metrics(), prefix=prefix)

    def update(self, head: Head, output: Tensor, labels: Tensor) -> None:
        if len(self.on_predictions):
            self.on_predictions.update(head.predict(output), labels.float())
        if len(self.on_outputs):
            self.on_outputs.update(output, head.target(labels))

    def compute(self) -> dict[str, float]:
        values = {}
        for collection in (self.on_predictions, self.on_outputs):
            if len(collection):
                values |= {k: float(v) for k, v in collection.compute().items()}
        return values

    def reset(self) -> None:
        self.on_predictions.reset()
        self.on_outputs.reset()

    def higher_is_better(self, name: str) -> bool | None:
        for collection in (self.on_predictions, self.on_outputs):
            for key, metric in collection.items(keep_base=True):
                if name == key or name.startswith(f"{key}_"):
                    return metric.higher_is_better
        return None


class PoolheadModel(L.LightningModule):
    """pooling, head: partials completed here with the encoder's hidden size / the pooled size, the mode's pooled
    vectors per row and the task. The optimizer, scheduler and learning-rate settings: conf/optim/adamw.yaml."""

    def __init__(self, encoder: Encoder, pooling: Callable[..., Pooling], head: Callable[..., Head], task: TaskSpec,
                 mode: Mode, optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 scheduler: Callable[..., Any] | None = None, lr: float = 3e-5, head_lr: float | None = None,
                 weight_decay: float = 0.01, warmup_ratio: float = 0.1) -> None:
        super().__init__()
        self.encoder, self.mode, self.task = encoder, mode, task
        # a pooling gets the hidden size only if it asks for it: a plain nn.Module with forward(...) is a pooling too
        asks = "hidden_size" in inspect.signature(pooling).parameters
        self.pooling = pooling(**({"hidden_size": encoder.hidden_size} if asks else {}))
        needs_pooler = getattr(self.pooling, "needs_pooler", False)
        if needs_pooler and not encoder.has_pooler:
            raise ValueError(f"pooling=pooler needs a model with a pooler, and {encoder.name_or_path or 'this encoder'}"
                             " has none (e.g. DistilBERT): choose pooling=cls, mean, max, ...")
        if needs_pooler and encoder.pooler_is_random:
            log.warning("!!! pooling=pooler: %s has no trained pooler weights; its pooler is RANDOMLY INITIALISED "
                        "(learned from scratch here). Consider pooling=cls.", encoder.name_or_path)
        pooled_size = getattr(self.pooling, "output_dim", lambda size: size)(encoder.hidden_size)
        self.head = head(in_features=pooled_size, sides=mode.sides, task=task)
        self.optimizer_factory = optimizer or torch.optim.AdamW
        self.scheduler_factory = scheduler
        self.lr, self.head_lr, self.weight_decay, self.warmup_ratio = lr, head_lr or lr, weight_decay, warmup_ratio
        self.metrics = nn.ModuleDict({"val": SplitMetrics(task, self.head, "val/")})

    @property
    def trainable(self) -> bool:
        """False when nothing learns (e.g. a frozen encoder, a weightless pooling and the bi cosine head): such a
        configuration is evaluated as it is, a zero-shot baseline."""
        return any(p.requires_grad for p in self.parameters())

    def encode(self, features: dict[str, Tensor]) -> Tensor:
        """One batch of texts -> pooled vectors [B, H']."""
        return self.pooling(*self.encoder(features))

    def forward(self, features: list[dict[str, Tensor]]) -> Tensor:
        return self.head(*self.mode.pool(self.encode, features))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss = self.head.loss(self(batch["features"]), batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def _evaluate(self, batch: dict[str, Any], split: str) -> None:
        output = self(batch["features"])
        if not torch.isfinite(output).all():
            raise FloatingPointError(f"{split} outputs are not finite (NaN or inf) at epoch {self.current_epoch}, "
                                     f"step {self.global_step}: no metric is computed from them")
        self.log(f"{split}/loss", self.head.loss(output, batch["labels"]), batch_size=len(batch["labels"]))
        self.metrics[split].update(self.head, output, batch["labels"])

    def _log_epoch(self, split: str) -> None:
        self.log_dict(self.metrics[split].compute())
        self.metrics[split].reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def monitor_mode(self, monitor: str) -> str:
        """"max" or "min": which way `monitor` (e.g. val/spearman, val/loss) is better; ValueError when this model
        logs no such metric."""
        name = monitor.split("/", 1)[-1]
        if name != "loss" and self.metrics["val"].higher_is_better(name) is None:
            raise ValueError(f"monitor={monitor}: no such metric; this run logs val/loss and "
                             f"{sorted('val/' + k for k in self.metric_names())}")
        return direction.monitor_mode(monitor)

    def metric_names(self) -> list[str]:
        m = self.metrics["val"]
        return [k for c in (m.on_predictions, m.on_outputs) for k in c.keys(keep_base=True)]

    def configure_optimizers(self) -> dict[str, Any]:
        groups = []
        for module, lr in ((self.encoder, self.lr), (nn.ModuleList([self.pooling, self.head]), self.head_lr)):
            named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
            no_decay = lambda n: n.endswith("bias") or "norm" in n.lower()  # noqa: E731  (the BERT recipe)
            groups += [{"params": [p for n, p in named if not no_decay(n)], "lr": lr,
                        "weight_decay": self.weight_decay},
                       {"params": [p for n, p in named if no_decay(n)], "lr": lr, "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
        factory = self.optimizer_factory
        if self._loss_scaler() is not None and getattr(factory, "keywords", {}).get("fused"):
            # a fused optimizer unscales fp16 gradients itself, so they could not be clipped first
            factory = type(factory)(factory.func, *factory.args, **(factory.keywords | {"fused": False}))
        optimizer = factory(groups, lr=self.lr)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        steps = self.trainer.estimated_stepping_batches
        scheduler = self.scheduler_factory(optimizer=optimizer, num_warmup_steps=math.ceil(self.warmup_ratio * steps),
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
