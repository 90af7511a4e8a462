"""Torch datasets for training and evaluation, over the items a data spec lists.

``open_dataset(spec, meta, train, ...)`` returns a :class:`FaceDataset` whose items are
``(x, label, index)``: ``x`` float32 3×S×S from ``runtime.preprocess.to_input`` (the runtime's
normalisation; crops of another size are resized there), ``label`` a float32 scalar tensor
(0 real, 1 fake), ``index`` the item's position. Every dataset has ``.labels`` (list of int) and
``.videos`` (list of str, the group for video-level metrics), ``image(i)`` (the uint8 BGR crop
before normalisation) and ``set_epoch(e)``. What a spec means (crops folder, CSV manifest,
``synthetic[:n]``), how video ids and splits are chosen, and which errors are raised is
``training.dataspec``'s, the one reader every tool shares.

Randomness (augmentation, self-blending, the synthetic faces' training variants) is drawn from a
generator seeded by (seed, epoch, index), so an item is reproducible whatever the DataLoader's
workers or order. Call ``set_epoch(e)`` each epoch; with ``num_workers > 0`` do not use
``persistent_workers`` (the workers would keep the old epoch). Evaluation datasets
(``train=False``) always use epoch 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from runtime.meta import Meta
from runtime.preprocess import to_input
from training.augment import Augment
from training.dataspec import CropFiles, SyntheticFaces, open_items

AugmentArg = Union[None, bool, Callable[[np.ndarray, np.random.Generator], np.ndarray]]


class FaceDataset(Dataset):
    """A spec's items with per-item generators, augmentation and the runtime's normalisation."""

    def __init__(self, items: CropFiles | SyntheticFaces, meta: Meta, train: bool, seed: int = 0,
                 augment: AugmentArg = None) -> None:
        self.items = items
        self.meta = meta
        self.labels: list[int] = list(items.labels or [])
        self.videos: list[str] = list(items.videos)
        self.train = bool(train)
        self.seed = int(seed or 0)
        self.epoch = 0
        self.spec = items.spec
        if augment is None:  # a set that degrades its faces itself says what else it wants
            augment = (items.default_augment() if hasattr(items, "default_augment") else Augment()) if train else False
        self.augment = augment or None

    def __len__(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Draw new random perturbations for the next epoch (training datasets only); items with a
        curriculum (``training.blend_set``'s camera ramp) hear of it too."""
        self.epoch = int(epoch)
        if self.train and hasattr(self.items, "set_epoch"):
            self.items.set_epoch(self.epoch)

    def rng(self, index: int) -> np.random.Generator:
        epoch = self.epoch if self.train else 0
        return np.random.default_rng([self.seed & 0xFFFFFFFF, epoch, int(index)])

    def image(self, index: int) -> np.ndarray:
        """The uint8 BGR crop item ``index`` feeds to the network (after augmentation)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} outside 0..{len(self) - 1}")
        rng = self.rng(index)
        img = self.items.crop(index, rng, vary=self.train)
        if self.augment is not None:
            img = self.augment(img, rng)
        return img

    def __getitem__(self, index: int):
        x = to_input(self.image(index), self.meta)[0]
        return torch.from_numpy(x), torch.tensor(float(self.labels[index]), dtype=torch.float32), int(index)

    def summary(self) -> dict:
        """What the dataset holds, for logs and the checkpoint's ``meta.training``."""
        fake = sum(self.labels)
        return {"spec": self.spec, "items": len(self), "real": len(self) - fake, "fake": fake,
                "videos": len(set(self.videos))}


def open_dataset(spec: str | Path, meta: Meta, train: bool, split: str | None = None, seed: int = 0,
                 augment: AugmentArg = None, val_fraction: float = 0.2, check_files: bool = True) -> FaceDataset:
    """A labelled dataset of ``spec`` (``training.dataspec.open_items``), ``split`` of it.

    ``augment``: None = the default :class:`Augment` when ``train`` and none otherwise; False =
    none; or any ``f(img, rng) -> img``. ``check_files`` verifies every image's header up front.
    """
    items = open_items(spec, meta, split, val_fraction, need_labels=True, check_files=check_files)
    return FaceDataset(items, meta, train, seed, augment)
