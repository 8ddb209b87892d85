"""Heads: pooled vectors -> outputs, with the loss, the predictions and the metrics that belong to them.
Each head is a partial in `conf/head/<name>.yaml`, completed with the pooled size, the pooled vectors per row (`sides`:
1 for single/cross, 2 for bi) and the TaskSpec. The model only talks to `Head`: a new head is a class and a yaml."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MultilabelF1Score
from torchmetrics.wrappers import ClasswiseWrapper

from poolhead.core.task import TaskSpec


def mlp(in_features: int, hidden_dims: Sequence[int], dropout: float, activation: str) -> tuple[nn.Module, int]:
    """Dropout -> (Linear -> activation -> Dropout) per hidden dim; returns the module and its output size."""
    layers: list[nn.Module] = [nn.Dropout(dropout)]
    for dim in hidden_dims:
        layers += [nn.Linear(in_features, dim), getattr(nn, activation)(), nn.Dropout(dropout)]
        in_features = dim
    return nn.Sequential(*layers), in_features


def read_pair(pooled: tuple[Tensor, ...]) -> Tensor:
    """One pooled vector as it is; two (bi) as (u, v, |u - v|), SBERT's softmax-objective features."""
    return torch.cat([pooled[0], pooled[1], (pooled[0] - pooled[1]).abs()], -1) if len(pooled) == 2 else pooled[0]


class Head(nn.Module):
    """The protocol the model relies on; heads run in float32 even under autocast (bf16 keeps ~3 digits of a score).
    forward(*pooled) -> output;  target(labels) -> what the loss compares with;  loss(output, labels);
    predict(output) -> predictions on the label's own scale (a score, a class id, 0/1 per label);
    probabilities(output) -> [B, K] or None;  metrics() -> torchmetrics updated with (output, target(labels)).
    Optional, for exports: hidden_layers() and affine_out() describe the layers another library rebuilds."""

    kinds: tuple[str, ...] = ()  # task kinds this head can answer

    def __init__(self, task: TaskSpec) -> None:
        super().__init__()
        if task.kind not in self.kinds:
            raise ValueError(f"head {type(self).__name__} answers {'/'.join(self.kinds)} tasks, but this data is a "
                             f"{task.kind} task: {HINT[task.kind]}")
        self.task = task

    def __call__(self, *pooled: Tensor) -> Tensor:
        with torch.autocast(pooled[0].device.type, enabled=False):
            return super().__call__(*(x.float() for x in pooled))

    def target(self, labels: Tensor) -> Tensor:
        return labels

    def loss(self, output: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def predict(self, output: Tensor) -> Tensor:
        raise NotImplementedError

    def probabilities(self, output: Tensor) -> Tensor | None:
        return None

    def metrics(self) -> dict[str, Metric]:
        return {}

    def hidden_layers(self) -> list[tuple[nn.Linear, nn.Module]]:
        """Each hidden Linear of the head's mlp() body with the activation after it."""
        body = list(getattr(self, "body", ()))
        return [(layer, body[i + 1]) for i, layer in enumerate(body) if isinstance(layer, nn.Linear)]

    def affine_out(self) -> tuple[Tensor, Tensor, bool, float, float] | None:
        """The output layer as (weight, bias, sigmoid, low, span): the score is low + span * f(x @ weight.T + bias),
        f the sigmoid or the identity (class heads: their logits, 0 + 1 * x @ weight.T + bias); None: no such map."""
        return None


HINT = {"score": "use head=regression or head=classification (score bins)", "class": "use head=classification",
        "multilabel": "use head=multilabel"}


class RegressionHead(Head):
    """One value per row. One pooled vector: MLP -> Linear(1). Two (bi): cos(MLP(u), MLP(v)), as
    sentence-transformers' CosineSimilarityLoss. Targets are labels scaled to [0, 1] when the data declares a score
    range. loss=bce: a sigmoid output trained with binary cross-entropy on the [0, 1] target (the recipe of
    sentence-transformers' CrossEncoder for STS); one pooled vector only."""

    kinds = ("score",)
    losses = {"mse": F.mse_loss, "l1": F.l1_loss, "huber": F.huber_loss,
              "bce": F.binary_cross_entropy_with_logits}

    def __init__(self, in_features: int, sides: int, task: TaskSpec, hidden_dims: Sequence[int] = (),
                 dropout: float = 0.1, activation: str = "GELU", loss: str = "mse") -> None:
        super().__init__(task)
        if loss not in self.losses:
            raise ValueError(f"head.loss={loss!r}: choose one of {sorted(self.losses)}")
        if loss == "bce" and sides != 1:
            raise ValueError("head.loss=bce trains a logit, and mode=bi scores a cosine in [-1, 1]: use mode=cross "
                             "with head.loss=bce, or head.loss=mse with mode=bi")
        self.loss_name, self.loss_fn = loss, self.losses[loss]
        self.low, self.high = task.score_range or (0.0, 1.0)
        self.body, dim = mlp(in_features, hidden_dims, dropout, activation)
        self.out = nn.Linear(dim, 1) if sides == 1 else None

    def forward(self, *pooled: Tensor) -> Tensor:
        if self.out is None:
            u, v = (self.body(x) for x in pooled)
            return F.cosine_similarity(u, v, dim=-1)
        return self.out(self.body(pooled[0])).squeeze(-1)

    def target(self, labels: Tensor) -> Tensor:
        return (labels.float() - self.low) / (self.high - self.low)

    def loss(self, output: Tensor, labels: Tensor) -> Tensor:
        return self.loss_fn(output, self.target(labels))

    def predict(self, output: Tensor) -> Tensor:
        unit = output.float().sigmoid() if self.loss_name == "bce" else output.float()
        return self.low + unit * (self.high - self.low)

    def affine_out(self) -> tuple[Tensor, Tensor, bool, float, float] | None:
        return None if self.out is None else (self.out.weight, self.out.bias, self.loss_name == "bce", self.low,
                                              self.high - self.low)


class ClassificationHead(Head):
    """K logits, cross-entropy. On score data (STS) the classes are bins of the score cut at `bin_edges`
    (default [3.0]: similar when score >= 3, the KLUE-STS convention) and `predict` returns the expected score
    (class probabilities x bin centres), so Spearman/Pearson compare with regression heads. Two pooled vectors
    (bi) are read as (u, v, |u - v|), SBERT's softmax objective."""

    kinds = ("score", "class")

    def __init__(self, in_features: int, sides: int, task: TaskSpec, hidden_dims: Sequence[int] = (),
                 dropout: float = 0.1, activation: str = "GELU", label_smoothing: float = 0.0,
                 class_weights: Sequence[float] | None = None, bin_edges: Sequence[float] = (3.0,)) -> None:
        super().__init__(task)
        self.label_smoothing = label_smoothing
        self.is_score = task.kind == "score"
        if self.is_score:
            if not bin_edges:
                raise ValueError("head.bin_edges=[]: give at least one edge, e.g. head.bin_edges=[3.0]")
            low, high = task.score_range or (min(bin_edges) - 1.0, max(bin_edges) + 1.0)
            edges = [low, *sorted(bin_edges), high]
            self.register_buffer("edges", torch.tensor(sorted(bin_edges), dtype=torch.float32), persistent=False)
            centres = [(a + b) / 2 for a, b in pairwise(edges)]
            self.register_buffer("centres", torch.tensor(centres, dtype=torch.float32), persistent=False)
            self.num_classes = len(centres)
        else:
            self.num_classes = task.num_classes
        if class_weights is not None and len(class_weights) != self.num_classes:
            raise ValueError(f"head.class_weights has {len(class_weights)} values for {self.num_classes} classes")
        weights = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)
        self.body, dim = mlp(in_features * (3 if sides == 2 else 1), hidden_dims, dropout, activation)
        self.out = nn.Linear(dim, self.num_classes)

    def forward(self, *pooled: Tensor) -> Tensor:
        return self.out(self.body(read_pair(pooled)))

    def target(self, labels: Tensor) -> Tensor:
        return torch.bucketize(labels.float(), self.edges, right=True) if self.is_score else labels

    def loss(self, output: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(output, self.target(labels), weight=self.class_weights,
                               label_smoothing=self.label_smoothing)

    def predict(self, output: Tensor) -> Tensor:
        """Expected score on score data, the class id otherwise."""
        return output.softmax(-1) @ self.centres if self.is_score else output.argmax(-1)

    def probabilities(self, output: Tensor) -> Tensor | None:
        return None if self.is_score else output.float().softmax(-1)

    def affine_out(self) -> tuple[Tensor, Tensor, bool, float, float] | None:
        """2 score bins: c0 + (c1 - c0) * softmax(o)[1] = c0 + (c1 - c0) * sigmoid(o1 - o0); 3 or more: no such map."""
        w, b = self.out.weight, self.out.bias
        if not self.is_score:
            return w, b, False, 0.0, 1.0
        if self.num_classes != 2:
            return None
        c0, c1 = self.centres.tolist()
        return (w[1] - w[0])[None], (b[1] - b[0])[None], True, c0, c1 - c0

    def metrics(self) -> dict[str, Metric]:
        k = self.num_classes
        return {"accuracy": MulticlassAccuracy(k, average="micro"), "f1_macro": MulticlassF1Score(k, average="macro")}


class MultiLabelHead(Head):
    """K independent sigmoid outputs (any subset of the labels), binary cross-entropy with logits: the
    `multi_label_classification` problem type of transformers' *ForSequenceClassification. A label is predicted
    when its probability passes `threshold`. Two pooled vectors (bi) are read as (u, v, |u - v|)."""

    kinds = ("multilabel",)

    def __init__(self, in_features: int, sides: int, task: TaskSpec, hidden_dims: Sequence[int] = (),
                 dropout: float = 0.1, activation: str = "GELU", threshold: float = 0.5) -> None:
        super().__init__(task)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"head.threshold={threshold}: must lie strictly between 0 and 1")
        self.threshold, self.labels = threshold, list(task.label_names)
        self.body, dim = mlp(in_features * (3 if sides == 2 else 1), hidden_dims, dropout, activation)
        self.out = nn.Linear(dim, len(self.labels))

    def forward(self, *pooled: Tensor) -> Tensor:
        return self.out(self.body(read_pair(pooled)))

    def loss(self, output: Tensor, labels: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(output, labels.float())

    def predict(self, output: Tensor) -> Tensor:
        return (output.float().sigmoid() >= self.threshold).long()

    def probabilities(self, output: Tensor) -> Tensor | None:
        return output.float().sigmoid()

    def affine_out(self) -> tuple[Tensor, Tensor, bool, float, float] | None:
        return self.out.weight, self.out.bias, False, 0.0, 1.0

    def metrics(self) -> dict[str, Metric]:
        k, t = len(self.labels), self.threshold
        return {"f1_micro": MultilabelF1Score(k, threshold=t, average="micro"),
                "f1_macro": MultilabelF1Score(k, threshold=t, average="macro"),
                "f1": ClasswiseWrapper(MultilabelF1Score(k, threshold=t, average=None), labels=self.labels,
                                       prefix="f1_")}
