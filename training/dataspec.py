"""Calibration and evaluation data: face crops exactly as the runtime feeds them to the model.

Every source ends as uint8 BGR crops of ``meta.input_size`` (what ``runtime/preprocess.py``'s
``crop_face`` / ``resize_square`` produce) and goes through ``to_input`` batch by batch, so an
INT8 scale is fitted on the very tensors the deployed model will see. Sources:

- a folder of crops: ``real/`` and ``fake/`` below it (labelled), or any images (unlabelled);
- a CSV manifest ``path,label[,video]`` (paths relative to the manifest);
- a folder of videos (or one video): evenly spaced frames, largest face by ``runtime.faces``,
  cropped by ``crop_face`` with the metadata's margin; ``real/`` / ``fake/`` subfolders label them;
- ``synthetic``: offline real faces and their self-blended forgeries (``training.data``).

Selection is deterministic (sorted sources, seeded shuffle) and balanced between real and fake
where labels exist. :attr:`CalibrationSet.data_sha256` hashes the crops and labels in order;
:meth:`CalibrationSet.cache_key` adds the preprocessing parameters, for cache keys.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np

from runtime.errors import UserError
from runtime.media import IMAGE_EXTS, VIDEO_EXTS
from runtime.meta import Meta
from runtime.preprocess import as_bgr8, face_crop, resize_square, to_input

LABELS = {"0": 0, "real": 0, "1": 1, "fake": 1}
SPEC_HELP = "a crops folder (real/, fake/), a CSV manifest, a videos folder or file, or 'synthetic'"


@dataclass
class CalibrationSet:
    """Runtime crops (N×S×S×3 uint8 BGR), their labels (0 real, 1 fake, or None) and the metadata."""

    crops: np.ndarray
    labels: np.ndarray | None
    meta: Meta
    source: str
    skipped: int = 0  # unreadable files, frames without a face

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


# --- selection -------------------------------------------------------------------------------
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


# --- readers ---------------------------------------------------------------------------------
def read_crop(path: Path, size: int) -> np.ndarray | None:
    """A crop file decoded as the runtime decodes images (any depth/channels → 8-bit BGR), resized
    to the input size as ``to_input`` would: the crop already holds the face margin."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None or img.size == 0:
        return None
    return resize_square(as_bgr8(img), size)


def _files(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts and p.is_file())


def _labelled_files(root: Path, exts: tuple[str, ...]) -> tuple[list[Path], list[int] | None]:
    if (root / "real").is_dir() or (root / "fake").is_dir():
        files, labels = [], []
        for name, label in (("real", 0), ("fake", 1)):
            found = _files(root / name, exts) if (root / name).is_dir() else []
            files += found
            labels += [label] * len(found)
        return files, labels
    return _files(root, exts), None


def read_manifest(path: Path) -> tuple[list[Path], list[int], list[str]]:
    """``path,label[,video]`` rows (a header row is allowed); paths relative to the manifest."""
    files, labels, videos = [], [], []
    with open(path, newline="") as f:
        for row_no, row in enumerate(csv.reader(f), 1):
            if not row or row[0].startswith("#"):
                continue
            if row_no == 1 and row[0].strip().lower() == "path":
                continue
            label = LABELS.get(row[1].strip().lower()) if len(row) > 1 else None
            if label is None:
                raise UserError(f"{path}:{row_no}: expected 'path,label[,video]' with label 0/1/real/fake, "
                                f"got {','.join(row)[:120]!r}; fix the manifest")
            p = Path(row[0].strip())
            files.append(p if p.is_absolute() else path.parent / p)
            labels.append(label)
            videos.append(row[2].strip() if len(row) > 2 else p.stem)
    return files, labels, videos


def _video_crops(path: Path, frames: int, meta: Meta, detector: Any) -> tuple[list[np.ndarray], int]:
    """Up to ``frames`` evenly spaced frames: the largest face of each, cropped as the runtime does.

    Frames are decoded in order (grab, then retrieve only the wanted ones), as the runtime reads a
    file, rather than by seeking, which some codecs do inexactly.
    """
    cap = cv2.VideoCapture(str(path))
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if not cap.isOpened() or count <= 0:
            return [], 1
        wanted = {int(round(i)) for i in np.linspace(0, count - 1, min(frames, count))}
        crops, missed = [], 0
        for idx in range(max(wanted) + 1):
            if not cap.grab():
                missed += len([w for w in wanted if w >= idx])
                break
            if idx not in wanted:
                continue
            ok, frame = cap.retrieve()
            boxes = detector.detect(as_bgr8(frame)) if ok and frame is not None else []
            if not boxes:
                missed += 1
                continue
            crops.append(face_crop(as_bgr8(frame), boxes[0], getattr(boxes[0], "landmarks", None), meta.face_margin,
                                   meta.input_size, meta.face_align))
        return crops, missed
    finally:
        cap.release()


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="face", disable=not enabled, leave=False)


def _from_files(files: list[Path], labels: list[int] | None, n: int | None, seed: int, meta: Meta,
                progress: bool) -> tuple[list[np.ndarray], list[int], int]:
    """Decode files in the balanced order of :func:`select`. An unreadable file is skipped (and
    counted) and the next file of the same class taken instead, so the balance holds."""
    from collections import deque

    order = select(files, labels, len(files), seed)  # everything: real, fake, real, ... then the rest
    lab = labels if labels is not None else [0] * len(files)
    pools = {c: deque(i for i in order if lab[i] == c) for c in (0, 1)}
    target = len(order) if n is None else min(n, len(order))
    crops, out_labels, skipped = [], [], 0
    with _progress(target, "calibration data", progress) as bar:
        for want in (lab[i] for i in order):
            if len(crops) >= target:
                break
            pool = pools[want] or pools[1 - want]
            while pool:
                i = pool.popleft()
                crop = read_crop(files[i], meta.input_size)
                if crop is not None:
                    crops.append(crop)
                    out_labels.append(lab[i])
                    bar.update(1)
                    break
                skipped += 1
    return crops, out_labels, skipped


def _from_videos(root: Path, n: int, seed: int, meta: Meta, progress: bool,
                 detector_factory: Callable[[], Any] | None) -> tuple[list[np.ndarray], list[int] | None, int]:
    files, labels = ([root], None) if root.is_file() else _labelled_files(root, VIDEO_EXTS)
    if not files:
        raise UserError(f"{root}: no videos ({', '.join(VIDEO_EXTS)}) found; pass {SPEC_HELP}")
    from runtime.faces import make_detector

    detector = (detector_factory or make_detector)()
    order = select(files, labels, len(files), seed)
    per_video = max(1, math.ceil(n / len(order)))
    crops, out_labels, skipped = [], [], 0
    with _progress(n, "calibration frames", progress) as bar:
        for i in order:
            got, missed = _video_crops(files[i], per_video, meta, detector)
            skipped += missed
            got = got[: n - len(crops)]
            crops += got
            out_labels += [labels[i] if labels is not None else 0] * len(got)
            bar.update(len(got))
            if len(crops) >= n:
                break
    return crops, (out_labels if labels is not None else None), skipped


def _synthetic(spec: str, n: int, seed: int, meta: Meta, held_out: bool,
               progress: bool) -> tuple[list[np.ndarray], list[int]]:
    """Offline real faces and self-blended forgeries of them (``training.data``, needs torch),
    alternating real / fake: the training faces for calibration, the validation faces
    (``held_out``) for evaluation, split exactly as training splits them."""
    from training.data import open_dataset

    ds = open_dataset(spec if ":" in spec else f"{spec}:{n}", meta, train=False,
                      split="val" if held_out else "train", seed=seed, augment=False)
    crops = []
    with _progress(len(ds), "synthetic faces", progress) as bar:
        for i in range(len(ds)):
            crops.append(resize_square(ds.image(i), meta.input_size))
            bar.update(1)
    return crops, list(ds.labels)


# --- entry point -----------------------------------------------------------------------------
def load(spec: str | Path, meta: Meta, size: int | None = 256, seed: int = 0, held_out: bool = False,
         need_labels: bool = False, progress: bool = True,
         detector_factory: Callable[[], Any] | None = None) -> CalibrationSet:
    """Load ``size`` samples (None: all of a folder/manifest) from ``spec`` as runtime crops.

    ``held_out`` picks the synthetic validation faces (for evaluation); other sources are used as
    given, so pass a different folder for evaluation than for calibration.
    """
    if size is not None and size < 1:
        raise UserError(f"--calib-size {size}: expected a positive number of samples")
    name = str(spec)
    crops: list[np.ndarray]
    labels: list[int] | None
    skipped = 0
    if name == "synthetic" or name.startswith("synthetic:"):
        crops, labels = _synthetic(name, size or 256, seed, meta, held_out, progress)
    else:
        path = Path(spec)
        if not path.exists():
            raise UserError(f"{path}: not found; pass {SPEC_HELP}")
        if path.is_file() and path.suffix.lower() == ".csv":
            files, labs, _ = read_manifest(path)
            crops, labels, skipped = _from_files(files, labs, size, seed, meta, progress)
        elif (path.is_file() and path.suffix.lower() in VIDEO_EXTS) or (path.is_dir() and not _files(path, IMAGE_EXTS)):
            crops, labels, skipped = _from_videos(path, size or 256, seed, meta, progress, detector_factory)
        elif path.is_dir():
            files, labs = _labelled_files(path, IMAGE_EXTS)
            crops, got, skipped = _from_files(files, labs, size, seed, meta, progress)
            labels = got if labs is not None else None
        else:
            raise UserError(f"{path}: unsupported file type; pass {SPEC_HELP}")
    if not crops:
        raise UserError(f"{name}: no usable face crops ({skipped} unreadable files or frames without a face); "
                        f"pass {SPEC_HELP}")
    if need_labels and labels is None:
        raise UserError(f"{name}: the evaluation set needs labels; use real/ and fake/ subfolders, "
                        "a manifest with a label column, or 'synthetic'")
    arr = np.stack(crops).astype(np.uint8, copy=False)
    lab = None if labels is None else np.asarray(labels, np.int64)
    return CalibrationSet(arr, lab, meta, name, skipped)
