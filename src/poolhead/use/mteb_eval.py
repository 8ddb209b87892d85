"""MTEB's STS evaluation of a bi run's checked sentence-transformers export on local STS rows (no hub, no cache).

    poolhead eval RUN data=stsb data.dir=../shared/data/stsb --mteb
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

MAIN_SCORES = ("cosine_spearman", "cosine_pearson", "spearman", "pearson")


def local_sts_task(name: str, rows: dict[str, pd.DataFrame], score_range: tuple[float, float]) -> Any:
    """An MTEB STS task over rows already read (split -> text, text_pair, label), scored on `score_range`."""
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata

    metadata = TaskMetadata(
        name=f"poolhead-local-{name}", type="STS", main_score="cosine_spearman", category="t2t",
        description=f"poolhead's local STS files {name!r} (no hub download)", reference=None,
        dataset={"path": f"local/{name}", "revision": "local"}, eval_splits=list(rows), eval_langs=["eng-Latn"],
        date=None, dialect=[], domains=[], task_subtypes=[], license="not specified", annotations_creators=None,
        modalities=["text"], sample_creation=None, bibtex_citation="")

    class LocalSTS(AbsTaskSTS):
        min_score, max_score = score_range

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            self.dataset = DatasetDict({split: Dataset.from_dict({
                "sentence1": frame["text"].tolist(), "sentence2": frame["text_pair"].tolist(),
                "score": frame["label"].astype(float).tolist()}) for split, frame in rows.items()})
            self.data_loaded = True

    LocalSTS.metadata = metadata
    return LocalSTS()


def mteb_scores(model: Any, datamodule: Any, splits: list[str], checkpoint: str | Path = "") -> dict[str, Any]:
    """MTEB STS scores of a bi run's export on `datamodule`'s splits: {split: {cosine_spearman, ...}, model_name}."""
    try:
        import mteb
    except ImportError as err:
        raise ImportError("--mteb needs mteb>=2: pip install 'poolhead[mteb]'") from err
    from poolhead.use.export import choose, export, load_exported

    if model.mode.name != "bi":
        raise ValueError(f"--mteb scores embeddings (MTEB STS): a mode=bi run only, this one is "
                         f"mode={model.mode.name}")
    fmt = choose(model, "sentence-transformers")
    rows = {split: datamodule.rows(split) for split in splits}
    task = local_sts_task(datamodule.name, rows, tuple(model.task.score_range or (0.0, 1.0)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = export(model, Path(tmp) / "export", fmt, {"checkpoint": str(checkpoint)})
        encoder = load_exported(folder, fmt)
        result = mteb.evaluate(encoder, tasks=[task], cache=None, show_progress_bar=False)
    scores = result.task_results[0].scores
    out: dict[str, Any] = {"model_name": encoder.model_card_data.model_name, "mteb_version": mteb.__version__}
    for split in splits:
        entry = scores[split][0]
        out[split] = {k: float(entry[k]) for k in MAIN_SCORES if k in entry}
    return out
