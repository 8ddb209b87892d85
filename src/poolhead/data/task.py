"""What the data asks of the model: a score to regress or a class to pick."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TaskSpec:
    """The task a data module poses, fixed after `setup()`.

    kind: "score" (regress a number, e.g. STS 0-5) or "class" (pick one of `label_names`).
    score_range: (low, high) of gold scores when declared (STS: (0.0, 5.0)).
    label_names: class names by id (class tasks only), sorted for determinism.
    binary_threshold: scores >= this count as positive for a binarised F1 (STS: 3.0).
    """

    kind: Literal["score", "class"]
    score_range: tuple[float, float] | None = None
    label_names: tuple[str, ...] | None = None
    binary_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("score", "class"):
            raise ValueError(f"task kind must be 'score' or 'class', got {self.kind!r}")
        if self.kind == "class" and not self.label_names:
            raise ValueError("a class task needs label_names")
        if self.score_range is not None and not self.score_range[0] < self.score_range[1]:
            raise ValueError(f"score_range must be (low, high) with low < high, got {self.score_range}")

    @property
    def num_classes(self) -> int | None:
        return len(self.label_names) if self.label_names is not None else None

    @property
    def monitor(self) -> str:
        """The main validation metric: Spearman correlation for scores, accuracy for classes."""
        return "spearman" if self.kind == "score" else "accuracy"
