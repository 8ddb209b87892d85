"""What the data asks of the model (a score, one class, or a set of labels), the metrics that judge it, and which
kind of task picks the default monitor. Which way a metric is better: `poolhead.core.direction`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric, PearsonCorrCoef, SpearmanCorrCoef
from torchmetrics.classification import BinaryF1Score

from poolhead.core.direction import MAIN_METRIC

KINDS = ("score", "class", "multilabel")


class ThresholdF1(BinaryF1Score):
    """F1 of scores binarised at a threshold (STS: similar when the score is >= 3)."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.cut = threshold

    def update(self, preds: Tensor, target: Tensor) -> None:
        super().update((preds >= self.cut).long(), (target >= self.cut).long())


class Pearson(PearsonCorrCoef):
    higher_is_better = True  # torchmetrics leaves it unset; monitor=val/pearson needs a direction


@dataclass(frozen=True)
class TaskSpec:
    """The task a data module poses, fixed after `setup()`.
    kind: "score" (a number, e.g. STS 0-5), "class" (one of `label_names`) or "multilabel" (any subset of them).
    score_range: (low, high) of gold scores when declared. label_names: class names by id, sorted.
    binary_threshold: scores >= this count as positive for a binarised F1 (STS: 3.0)."""

    kind: Literal["score", "class", "multilabel"]
    score_range: tuple[float, float] | None = None
    label_names: tuple[str, ...] | None = None
    binary_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind != "score" and not self.label_names:
            raise ValueError(f"a {self.kind} task needs label_names")
        if self.score_range is not None and not self.score_range[0] < self.score_range[1]:
            raise ValueError(f"score_range must be (low, high) with low < high, got {self.score_range}")

    @property
    def num_classes(self) -> int | None:
        return len(self.label_names) if self.label_names is not None else None

    @property
    def monitor(self) -> str:
        """The main validation metric's name: Spearman for scores, accuracy for classes, micro F1 for label sets."""
        return MAIN_METRIC[self.kind]

    def metrics(self) -> dict[str, Metric]:
        """Metrics of the head's predictions on the label's own scale against the gold labels (score tasks: every
        head is judged on the same numbers). Class and multilabel metrics come from the head (`Head.metrics`)."""
        if self.kind != "score":
            return {}
        metrics = {"pearson": Pearson(), "spearman": SpearmanCorrCoef(), "mse": MeanSquaredError(),
                   "mae": MeanAbsoluteError()}
        return metrics | ({"f1": ThresholdF1(self.binary_threshold)} if self.binary_threshold is not None else {})
