"""Batches of rows of similar length, so little of each batch is padding."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length rows (for `DataLoader(batch_sampler=...)`).
    Each epoch (`set_epoch`, else one up per pass): a seeded permutation cut into groups of `batch_size *
    group_batches` rows, each sorted by length and cut into batches, the batches shuffled. Under DDP every rank draws
    the same batches and keeps every world-size-th one, padded so all ranks take as many steps."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int = 0, group_batches: int = 50,
                 drop_last: bool = False, steps_done: Callable[[], int] | None = None) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.group_batches, self.drop_last = batch_size, seed, group_batches, drop_last
        self.epoch = 0
        self.steps_done = steps_done  # batches trained so far (a resume mid-epoch skips those of this epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def sampler(self) -> LengthGroupedBatchSampler:
        """Lightning calls `batch_sampler.sampler.set_epoch(epoch)`: point it here."""
        return self

    def __len__(self) -> int:  # this rank's batches; groups hold whole batches, so only the last batch can be short
        n, b = len(self.lengths), self.batch_size
        batches = n // b if self.drop_last else -(-n // b)
        return -(-batches // _world()[1])

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        done = self.steps_done() - self.epoch * len(self) if self.steps_done else 0
        skip = done if 0 < done < len(self) else 0  # read at the first batch: after Lightning restored a checkpoint
        self.epoch += 1
        perm, group = rng.permutation(len(self.lengths)), self.batch_size * self.group_batches
        batches = []
        for start in range(0, len(perm), group):
            chunk = perm[start:start + group]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        order = rng.permutation(len(batches))
        rank, world = _world()
        for i in np.resize(order, len(self) * world)[rank::world][skip:]:
            yield batches[i].tolist()


def _world() -> tuple[int, int]:
    """(rank, world size) of torch.distributed, (0, 1) without it."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def sorted_order(lengths: np.ndarray) -> np.ndarray:
    """Positions from longest to shortest (ties in input order): evaluation batches with little padding."""
    return np.argsort(-np.asarray(lengths), kind="stable")
