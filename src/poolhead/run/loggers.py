"""Lightning's CSVLogger, continued on resume instead of started over."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from poolhead.run.record import atomic_write


class _ContinuingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:  # Lightning deletes an existing metrics.csv here
        path = Path(self.metrics_file_path)
        if path.is_file():
            with path.open(newline="") as f:
                self.metrics_keys = sorted(csv.DictReader(f).fieldnames or [])


class ContinuingCSVLogger(CSVLogger):
    """CSVLogger that appends to an existing metrics.csv (new columns rewrite the header, rows stay). `train.run`
    decides what the file holds before training: on a resume, the rows logged before the checkpoint's step; on a
    fresh run, nothing (see `prepare_metrics_file`)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment


def prepare_metrics_file(path: Path, resume_step: int | None) -> int:
    """Fresh run: remove an old metrics.csv. Resume from `resume_step`: keep the rows logged before it (the steps a
    killed run logged past its checkpoint are trained and logged again). Returns the rows kept."""
    if not path.is_file():
        return 0
    if resume_step is None:
        path.unlink()
        return 0
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], [r for r in reader if int(float(r["step"])) < resume_step]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, text.getvalue())  # a kill here keeps the full history, not a cut one
    return len(rows)
