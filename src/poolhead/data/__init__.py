"""Data: strict readers, a TaskSpec, and TextDataModule subclasses (one per kind of source) that Hydra builds.

    hydra.utils.instantiate(cfg.data, tokenizer=TOK, mode=Mode(), max_length=N, seed=S, cache_dir=DIR)

Bad input stops the run with a DataError naming file, line and field; rows with an empty text are skipped, counted
and logged: README.md in this folder.
"""

from poolhead.core.task import TaskSpec
from poolhead.data.module import TextDataModule
from poolhead.data.read import DataError, Split
from poolhead.data.sampling import LengthGroupedBatchSampler
from poolhead.data.sources import DEMO_DIR, DemoSts, KlueSts, StsData, TableData

__all__ = ["DEMO_DIR", "DataError", "DemoSts", "KlueSts", "LengthGroupedBatchSampler", "Split", "StsData",
           "TableData", "TaskSpec", "TextDataModule"]
