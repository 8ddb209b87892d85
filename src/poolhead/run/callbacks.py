"""Lightning callbacks (and a checkpoint writer) that Lightning itself lacks."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states


class RNGState(L.Callback):
    """Saves the RNG states in checkpoints and restores them on resume, so a resumed run draws the same dropout
    masks and batches as an uninterrupted one (Lightning checkpoints keep model, optimizer and loops, not RNGs)."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = _collect_rng_states()
        kind, keys, pos, has_gauss, gauss = states["numpy"]  # numpy arrays cannot pass torch's weights_only load
        states["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
        checkpoint["rng_states"] = states

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if "rng_states" in checkpoint:
            self._pending = checkpoint["rng_states"]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # restored here, not at load time, because Lightning reseeds/creates iterators in between
        self._restore()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._restore()  # a resume mid-epoch: Lightning does not call on_train_epoch_start again

    def _restore(self) -> None:
        if getattr(self, "_pending", None) is not None:
            kind, keys, pos, has_gauss, gauss = self._pending["numpy"]
            self._pending["numpy"] = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
            _set_rng_states(self._pending)
            self._pending = None


class TrainThroughput(L.Callback):
    """Training seconds and samples: each epoch from its start to its last training batch, so validation and
    checkpointing are not counted (Lightning's Timer counts both as training)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.samples = 0
        self._start = self._last = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._start is None:  # a resume mid-epoch: no on_train_epoch_start
            self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.samples += len(batch["labels"])
        self._last = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.pause()

    def state_dict(self) -> dict[str, Any]:
        """Saved in each checkpoint, this epoch's training so far included: a resumed run adds to the
        totals (a finished run resumed with ckpt_path=last keeps its training time, not 0.0)."""
        running = self._last - self._start if self._start is not None else 0.0
        return {"seconds": self.seconds + running, "samples": self.samples}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds, self.samples = float(state_dict["seconds"]), int(state_dict["samples"])

    def pause(self) -> None:
        """Counts the epoch's training so far (its end, or a stop within it)."""
        if self._start is not None:
            self.seconds += self._last - self._start
            self._start = self._last = None

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0


class StopOnNonFinite(L.Callback):
    """Stops the run at the first NaN/inf loss or gradient, naming the step, the epoch and the likely cause, before
    the optimizer writes NaN into the weights; the checkpoints written so far stay as they were."""

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(self._message(trainer, f"the training loss is {loss.item()}"))

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.stack(torch._foreach_norm(grads))).all():
            raise FloatingPointError(self._message(trainer, "a gradient is not finite"))

    @staticmethod
    def _message(trainer: L.Trainer, what: str) -> str:
        lrs = sorted({g["lr"] for opt in trainer.optimizers for g in opt.param_groups})
        cause = (f"learning rates {lrs} too high?" if max(lrs, default=0) >= 1e-2 else "fp16 overflow?"
                 if "16-mixed" == str(trainer.precision) else "a learning rate too high for this model, or bad inputs?")
        return (f"{what} at epoch {trainer.current_epoch}, step {trainer.global_step}: training stopped (likely "
                f"cause: {cause}). The last good checkpoint is kept in checkpoints/; lower optim.lr / optim.head_lr "
                "or use trainer.precision=32-true / bf16-mixed, and start the run again")


class RungReached(Exception):
    """Raised by `StopAtStep`: the run trained the steps it was asked for and its state is in last.ckpt."""


class StopAtStep(L.Callback):
    """Ends training after `step` optimizer steps as an interruption would, for successive halving
    (poolhead.sweep.halving): the state goes to `last_path` and nothing else runs (no extra validation, no
    best-checkpoint update), so the run continued later from that file is the one-go run. Mid-epoch it stops before
    the next batch starts (raising RungReached); at an epoch's end, after that epoch's validation."""

    def __init__(self, step: int, last_path: str) -> None:
        self.step, self.last_path, self.stopped_at = step, last_path, None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if trainer.global_step >= self.step:
            self.stopped_at = trainer.global_step
            self._between_batches = True
            trainer.save_checkpoint(self.last_path)
            raise RungReached(f"stopped at step {trainer.global_step} (stop_at_step={self.step})")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if getattr(self, "_between_batches", False):  # Lightning's restart adds one to the logging step, taking any
            loop = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]  # mid-epoch save for one made within a
            loop["_batches_that_stepped"] -= 1                                # batch (on_train_batch_end)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.step <= trainer.global_step < trainer.estimated_stepping_batches:
            self.stopped_at = trainer.global_step
            trainer.save_checkpoint(self.last_path)
            trainer.should_stop = True


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written with `sweep.atomic_write` (temp file beside the target, fsync, rename): Lightning's own
    writer moves a temp file from the system temp folder, a copy over the old file when that is another file system,
    so a kill or a full disk mid-save left a truncated last.ckpt. Loads are weights_only: no pickled code runs."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's own writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        from poolhead.run.record import atomic_write

        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, buffer.getbuffer())

    def load_checkpoint(self, path: Any, map_location: Any = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)
