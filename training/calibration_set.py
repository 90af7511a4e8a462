"""Calibration and evaluation face sets: a data spec (``training.dataspec``) read as runtime crops.

:func:`load` reads a spec as :class:`CalibrationSet`: uint8 BGR crops of ``meta.input_size``, fed
through ``runtime.preprocess.to_input`` batch by batch, in a seeded order balanced between real
and fake (:func:`select`). Video specs are read only here (``training.extract.video_crops``); a
video that cannot be decoded and a sampled frame without a face are counted in
:attr:`CalibrationSet.skipped`. Read by calibration.quantize and calibration.report, export.engine
``--calib-data`` (``export.trt_calibrator``, which keys its cache on :meth:`CalibrationSet.cache_key`)
and benchmarks.accuracy. Like ``training.dataspec`` it needs numpy and OpenCV only (export.engine
uses it where torch is absent).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from runtime.errors import UserError
from runtime.media import VIDEO_EXTS
from runtime.meta import Meta
from runtime.preprocess import resize_square, to_input
from training.dataspec import (
    SPEC_HELP,
    _kind,
    is_synthetic,
    labelled_files,
    open_items,
    parse_generated,
    parse_synthetic,
    read_crop,
    split_for,
    synthetic_spec,
)


@dataclass
class CalibrationSet:
    """Runtime crops (N×S×S×3 uint8 BGR), their labels (0 real, 1 fake, or None) and the metadata."""

    crops: np.ndarray
    labels: np.ndarray | None
    meta: Meta
    source: str
    skipped: int = 0  # unreadable videos, sampled frames without a face
    groups: list[str] | None = None  # each item's face or video id, where the spec has them

    def __len__(self) -> int:
        return len(self.crops)

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """float32 NCHW batches from ``runtime.preprocess.to_input``, in order; the last may be short."""
        for i in range(0, len(self.crops), batch_size):
            yield to_input(self.crops[i:i + batch_size], self.meta)

    def inputs(self) -> np.ndarray:
        """All samples as one float32 NCHW array."""
        return to_input(self.crops, self.meta)

    @property
    def data_sha256(self) -> str:
        """sha256 of the crops and labels in order (what the model is calibrated on)."""
        h = hashlib.sha256(f"{self.crops.shape}|{self.crops.dtype}".encode())
        h.update(np.ascontiguousarray(self.crops).tobytes())
        if self.labels is not None:
            h.update(np.asarray(self.labels, np.uint8).tobytes())
        return h.hexdigest()

    def cache_key(self) -> dict[str, Any]:
        """The data and the preprocessing it is fed through: any change must invalidate a cache."""
        return {"data_sha256": self.data_sha256, "samples": len(self), "preprocess": preprocess_params(self.meta)}


def preprocess_params(meta: Meta) -> dict[str, Any]:
    """The metadata fields that change the model's input tensor."""
    return {"input_size": meta.input_size, "color": meta.color, "mean": [float(v) for v in meta.mean],
            "std": [float(v) for v in meta.std], "face_margin": float(meta.face_margin),
            "input_name": meta.input_name}


def select(items: Sequence[Any], labels: Sequence[int] | None, n: int | None, seed: int = 0) -> list[int]:
    """Indices of ``n`` items: seeded shuffle, balanced real/fake and interleaved when labelled."""
    rng = np.random.default_rng(seed)
    total = len(items)
    n = total if n is None else min(n, total)
    if labels is None:
        return [int(i) for i in rng.permutation(total)[:n]]
    lab = np.asarray(labels)
    pools = [list(rng.permutation(np.flatnonzero(lab == c))) for c in (0, 1)]
    want = [min(len(pools[0]), n // 2 + n % 2), min(len(pools[1]), n // 2)]
    short = n - sum(want)  # one class has fewer than half: fill from the other
    for c in (0, 1):
        extra = min(short, len(pools[c]) - want[c])
        want[c] += extra
        short -= extra
    chosen = [pools[0][:want[0]], pools[1][:want[1]]]
    out = []
    for k in range(max(want)):  # real, fake, real, fake, ...
        out += [int(chosen[c][k]) for c in (0, 1) if k < want[c]]
    return out


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="face", disable=not enabled, leave=False)


def _from_videos(root: Path, n: int, seed: int, meta: Meta, progress: bool,
                 detector_factory: Callable[[], Any] | None) -> tuple[list[np.ndarray], list[int] | None, int]:
    files, labels, _ = ([root], None, []) if root.is_file() else labelled_files(root, VIDEO_EXTS)
    if not files:
        raise UserError(f"{root}: no videos ({', '.join(VIDEO_EXTS)}) found; pass {SPEC_HELP}")
    from runtime.faces import make_detector
    from training.extract import video_crops

    detector = (detector_factory or make_detector)()
    order = select(files, labels, len(files), seed)
    per_video = max(1, math.ceil(n / len(order)))
    crops, out_labels, skipped = [], [], 0
    with _progress(n, "calibration frames", progress) as bar:
        for i in order:
            stats: dict = {}
            try:
                got = [c for _, _, c in video_crops(files[i], per_video, detector, meta.input_size,
                                                    meta.face_margin, stats=stats, align=meta.face_align)]
                skipped += stats["wanted"] - stats["read"] + stats["no_face"]
            except UserError:  # not a readable video
                got = []
                skipped += 1
            got = got[: n - len(crops)]
            crops += got
            out_labels += [labels[i] if labels is not None else 0] * len(got)
            bar.update(len(got))
            if len(crops) >= n:
                break
    return crops, (out_labels if labels is not None else None), skipped


def load(spec: str | Path, meta: Meta, size: int | None = 256, seed: int = 0, held_out: bool = False,
         need_labels: bool = False, progress: bool = True, detector_factory: Callable[[], Any] | None = None,
         split: str | None = None, vary: bool = False) -> CalibrationSet:
    """Up to ``size`` samples (None: all) of ``spec`` as runtime crops, in :func:`select`'s order.

    ``held_out``: the set is for evaluation (:func:`split_for` role "evaluate", else "calibrate");
    ``split`` overrides that choice. Synthetic forgeries are drawn with ``seed`` for calibration
    and with seed 0 for evaluation, so every evaluation tool scores the same items. ``vary``
    (synthetic only): every item, real or fake, is a seeded colour/sharpness variant of its face
    (``training.sample_faces.vary_face``), so 20 held-out faces stand for many viewing conditions.
    """
    if size is not None and size < 1:
        raise UserError(f"--calib-size {size}: expected a positive number of samples")
    name = str(spec)
    split = split if split is not None else split_for(name, "evaluate" if held_out else "calibrate")
    labels: list[int] | None
    groups: list[str] | None = None
    skipped = 0
    if is_synthetic(name):
        given, families = parse_synthetic(name)
        n = size if given is None else given if size is None else min(given, size)
        items = open_items(synthetic_spec(n, families, like=name), meta, split)
        item_seed = 0 if held_out else seed
        with _progress(len(items), f"{parse_generated(name).base} faces", progress) as bar:
            crops = []
            for i in range(len(items)):
                rng = np.random.default_rng([item_seed & 0xFFFFFFFF, 0, i])
                crops.append(resize_square(items.crop(i, rng, vary=vary), meta.input_size))
                bar.update(1)
        labels = list(items.labels)
        groups = list(items.videos)
    elif _kind(Path(name).expanduser()) == "videos":
        crops, labels, skipped = _from_videos(Path(name).expanduser(), size or 256, seed, meta, progress,
                                              detector_factory)
    else:
        files = open_items(name, meta, split, need_labels=need_labels)
        order = select(files.paths, files.labels, size, seed)
        with _progress(len(order), "calibration data", progress) as bar:
            crops = []
            for i in order:
                crops.append(resize_square(read_crop(files.paths[i]), meta.input_size))
                bar.update(1)
        labels = None if files.labels is None else [files.labels[i] for i in order]
        groups = [files.videos[i] for i in order]
    if not crops:
        raise UserError(f"{name}: no usable face crops ({skipped} unreadable videos or frames without a face); "
                        f"pass {SPEC_HELP}")
    if need_labels and labels is None:
        raise UserError(f"{name}: the evaluation set needs labels; use real/ and fake/ subfolders, "
                        "a manifest with a label column, or 'synthetic'")
    arr = np.stack(crops).astype(np.uint8, copy=False)
    return CalibrationSet(arr, None if labels is None else np.asarray(labels, np.int64), meta, name, skipped, groups)
