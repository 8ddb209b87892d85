"""Data: strict readers, a TaskSpec, and TextDataModule subclasses (one per kind of source) that Hydra builds.
Their settings, the batch layout and the bad-input policy: README.md in this folder."""

from poolhead.core.task import TaskSpec
from poolhead.data.module import TextDataModule
from poolhead.data.read import DataError, Split
from poolhead.data.sampling import LengthGroupedBatchSampler
from poolhead.data.sources import DEMO_DIR, DemoSts, KlueSts, StsData, TableData

__all__ = ["DEMO_DIR", "DataError", "DemoSts", "KlueSts", "LengthGroupedBatchSampler", "Split", "StsData",
           "TableData", "TaskSpec", "TextDataModule"]
