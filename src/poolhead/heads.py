"""Heads: pooled vectors -> a score (regression) or K logits (classification), with their loss.

Each head is a partial in `conf/head/<name>.yaml`; the model completes it with the pooled size, the input mode and
the data's TaskSpec. A head knows how to turn gold labels into training targets (`target`) and outputs into
predictions on the label's own scale (`predict`), so every head is scored on the same metrics.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from poolhead.data.task import TaskSpec


def full_precision(forward):
    """Run a head in float32 even under bf16/fp16 autocast: it is tiny, and bf16 keeps ~3 digits of a score."""

    def wrapped(self, *pooled: Tensor) -> Tensor:
        with torch.autocast(pooled[0].device.type, enabled=False):
            return forward(self, *(x.float() for x in pooled))

    return wrapped


def mlp(in_features: int, hidden_dims: Sequence[int], dropout: float, activation: str) -> tuple[nn.Module, int]:
    """Dropout -> (Linear -> activation -> Dropout) per hidden dim; returns the module and its output size."""
    layers: list[nn.Module] = [nn.Dropout(dropout)]
    for dim in hidden_dims:
        layers += [nn.Linear(in_features, dim), getattr(nn, activation)(), nn.Dropout(dropout)]
        in_features = dim
    return nn.Sequential(*layers), in_features


class RegressionHead(nn.Module):
    """One value per item. `cross`/`single`: MLP -> Linear(1). `bi`: cos(MLP(u), MLP(v)), as sentence-transformers'
    CosineSimilarityLoss. Targets are labels scaled to [0, 1] when the data declares a score range."""

    losses = {"mse": F.mse_loss, "l1": F.l1_loss, "huber": F.huber_loss}

    def __init__(self, in_features: int, mode: str, task: TaskSpec, hidden_dims: Sequence[int] = (),
                 dropout: float = 0.1, activation: str = "GELU", loss: str = "mse") -> None:
        super().__init__()
        if task.kind != "score":
            raise ValueError(f"head=regression needs score labels, but this data has class labels "
                             f"{list(task.label_names or [])}: use head=classification")
        if loss not in self.losses:
            raise ValueError(f"head.loss={loss!r}: choose one of {sorted(self.losses)}")
        self.mode, self.loss_fn = mode, self.losses[loss]
        self.low, self.high = task.score_range or (0.0, 1.0)
        self.body, dim = mlp(in_features, hidden_dims, dropout, activation)
        self.out = None if mode == "bi" else nn.Linear(dim, 1)

    @full_precision
    def forward(self, *pooled: Tensor) -> Tensor:
        if self.mode == "bi":
            u, v = (self.body(x) for x in pooled)
            return F.cosine_similarity(u, v, dim=-1)
        return self.out(self.body(pooled[0])).squeeze(-1)

    def target(self, labels: Tensor) -> Tensor:
        return (labels.float() - self.low) / (self.high - self.low)

    def loss(self, output: Tensor, labels: Tensor) -> Tensor:
        return self.loss_fn(output, self.target(labels))

    def predict(self, output: Tensor) -> Tensor:
        return self.low + output.float() * (self.high - self.low)


class ClassificationHead(nn.Module):
    """K logits, cross-entropy. On score data (STS) the classes are bins of the score cut at `bin_edges`
    (default [3.0]: similar when score >= 3, the KLUE-STS convention) and `predict` returns the expected score
    (class probabilities x bin centres), so Spearman/Pearson compare with regression heads. `bi` reads
    (u, v, |u - v|) as SBERT's softmax objective."""

    def __init__(self, in_features: int, mode: str, task: TaskSpec, hidden_dims: Sequence[int] = (),
                 dropout: float = 0.1, activation: str = "GELU", label_smoothing: float = 0.0,
                 class_weights: Sequence[float] | None = None, bin_edges: Sequence[float] = (3.0,)) -> None:
        super().__init__()
        self.mode, self.label_smoothing = mode, label_smoothing
        self.is_score = task.kind == "score"
        if self.is_score:
            low, high = task.score_range or (min(bin_edges) - 1.0, max(bin_edges) + 1.0)
            edges = [low, *sorted(bin_edges), high]
            self.register_buffer("edges", torch.tensor(sorted(bin_edges), dtype=torch.float32), persistent=False)
            centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
            self.register_buffer("centres", torch.tensor(centres, dtype=torch.float32), persistent=False)
            self.num_classes = len(centres)
        else:
            self.num_classes = task.num_classes
        if class_weights is not None and len(class_weights) != self.num_classes:
            raise ValueError(f"head.class_weights has {len(class_weights)} values for {self.num_classes} classes")
        weights = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)
        self.body, dim = mlp(in_features * (3 if mode == "bi" else 1), hidden_dims, dropout, activation)
        self.out = nn.Linear(dim, self.num_classes)

    @full_precision
    def forward(self, *pooled: Tensor) -> Tensor:
        x = torch.cat([pooled[0], pooled[1], (pooled[0] - pooled[1]).abs()], -1) if self.mode == "bi" else pooled[0]
        return self.out(self.body(x))

    def target(self, labels: Tensor) -> Tensor:
        return torch.bucketize(labels.float(), self.edges, right=True) if self.is_score else labels

    def loss(self, output: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(output, self.target(labels), weight=self.class_weights,
                               label_smoothing=self.label_smoothing)

    def predict(self, output: Tensor) -> Tensor:
        """Expected score on score data, the class id otherwise."""
        return output.softmax(-1) @ self.centres if self.is_score else output.argmax(-1)
