"""Data: strict readers, a TaskSpec, and TextDataModule subclasses (one per kind of source) that Hydra builds.
Their settings, the batch layout and the bad-input policy: README.md in this folder."""

from importlib import import_module

_HOME = {"TaskSpec": "poolhead.core.task", "TextDataModule": "poolhead.data.module", "DataError": "poolhead.data.read",
         "Split": "poolhead.data.read", "LengthGroupedBatchSampler": "poolhead.data.sampling",
         **dict.fromkeys(["DEMO_DIR", "DemoSts", "KlueSts", "StsData", "TableData"], "poolhead.data.sources")}
__all__ = sorted(_HOME)


def __getattr__(name: str):  # on first use: the readers (a sweep's skip, its report) need no torch or Lightning
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'poolhead.data' has no attribute {name!r}")
