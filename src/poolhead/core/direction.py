"""Which way a metric is better, by its name alone: known before any model is built (an Optuna study's direction,
a checkpoint's `mode`), and the one place poolhead decides it (tests check it against each metric's own
`higher_is_better`). Imports nothing: a sweep that skips every job stays free of torch."""

LOWER_IS_BETTER = ("loss", "mse", "mae")  # every other metric poolhead logs is higher-is-better
MAIN_METRIC = {"score": "spearman", "class": "accuracy", "multilabel": "f1_micro"}  # of each task kind


def default_monitor(kind: str | None) -> str:
    """What `monitor: null` means for a task kind (data.task; STS data: score): its main validation metric."""
    return f"val/{MAIN_METRIC[kind or 'score']}"


def monitor_mode(monitor: str) -> str:
    """"min" or "max" for a logged metric such as val/spearman or val/loss."""
    return "min" if monitor.rsplit("/", 1)[-1] in LOWER_IS_BETTER else "max"
