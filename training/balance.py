"""Class balance for training sets such as FaceForensics++ (4-6 fakes per real video).

``--balance sampler`` draws each training item with probability 1 / (2 · size of its class), with
replacement, so a batch is half real and half fake on average while an epoch keeps the data set's
length: the class-balanced sampling most FF++ detectors train with (the other common remedy,
more frames per real video, is ``training.datasets --real-frames``). The draw is seeded by
(seed, epoch) and split across DDP processes, so runs are reproducible and processes disjoint.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler

BALANCE = ("none", "sampler")


def class_weights(labels: Sequence[int]) -> torch.Tensor:
    """Per-item weights that give both classes the same total (one class present: uniform)."""
    y = torch.as_tensor(list(labels), dtype=torch.long)
    counts = torch.bincount(y, minlength=2).double()
    present = int((counts > 0).sum())
    per_class = torch.where(counts > 0, 1.0 / (present * counts.clamp(min=1)), torch.zeros_like(counts))
    return per_class[y]


class ClassBalancedSampler(Sampler[int]):
    """Indices drawn by :func:`class_weights` with replacement; ``len(labels) // world`` per process."""

    def __init__(self, labels: Sequence[int], seed: int = 0, rank: int = 0, world: int = 1) -> None:
        self.weights = class_weights(labels)
        self.seed, self.rank, self.world, self.epoch = int(seed), int(rank), int(world), 0
        self.per_rank = len(self.weights) // self.world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        drawn = torch.multinomial(self.weights, self.per_rank * self.world, replacement=True, generator=gen)
        return iter(drawn[self.rank::self.world].tolist())
