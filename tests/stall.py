"""A callback for tests/test_durability.py's requeue test: a run started fresh stalls after its first epoch (a job
longer than its time limit); a run resumed from a checkpoint trains on. In a `_target_`, with tests/ on PYTHONPATH."""

import time

import lightning as L


class StallFresh(L.Callback):
    """Sleep `seconds` once, at epoch 1's first batch (last.ckpt is written), unless `fit` was given a checkpoint."""

    def __init__(self, seconds: float = 300.0) -> None:
        self.seconds, self.stalled = seconds, False

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.current_epoch == 1 and trainer.ckpt_path is None and not self.stalled:
            self.stalled = True
            time.sleep(self.seconds)
