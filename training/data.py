"""Training and evaluation datasets: folders of crops, CSV manifests, synthetic forgeries.

``open_dataset(spec, meta, train, ...)`` returns a torch ``Dataset`` whose items are
``(x, label, index)``: ``x`` float32 3×S×S from ``runtime.preprocess.to_input`` (the runtime's
normalisation; crops of another size are resized there), ``label`` a float32 scalar tensor
(0 real, 1 fake), ``index`` the item's position. Every dataset has ``.labels`` (list of int) and
``.videos`` (list of str, the group for video-level metrics), ``image(i)`` (the uint8 BGR crop
before normalisation) and ``set_epoch(e)``.

Specs:

* a folder with ``real/`` and/or ``fake/`` below it holding image crops (any depth). Video id:
  the path of the file's folder below ``real|fake`` (``real/clip01/000012.png`` → ``clip01``;
  what ``training.extract`` writes); for files directly in ``real|fake``, the file stem without a
  trailing ``_f<digits>`` frame suffix (``fake/clip07_f0031.png`` → ``clip07``).
* a CSV manifest with a header: ``path,label[,video]``; label ``0``/``1`` or ``real``/``fake``;
  relative paths are resolved against the CSV's folder; an empty or absent video makes the file
  its own video.
* ``synthetic`` or ``synthetic:<n>``: the offline real faces (``training.sample_faces``) as label
  0 and their self-blends (``training.synthetic``) as label 1, alternating, ``n`` items (default
  two per face); the video id is the face id.

A video id that occurs under both labels is qualified as ``real/<id>`` and ``fake/<id>``, so a
video never mixes labels. ``split="train"|"val"`` keeps a stable ~80/20 partition of the video
(face) ids that does not depend on ``seed``: validation faces/videos are never seen in training.
Image files are checked when the dataset is opened: a missing or unreadable one is a UserError
naming it (no silent skipping: a skipped crop would change the metrics unnoticed).

Randomness (augmentation, self-blending) is drawn from a generator seeded by (seed, epoch,
index), so an item is reproducible whatever the DataLoader's workers or order. Call
``set_epoch(e)`` each epoch; with ``num_workers > 0`` do not use ``persistent_workers`` (the
workers would keep the old epoch). Evaluation datasets (``train=False``) always use epoch 0.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Callable, Sequence, Union

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from runtime.errors import UserError
from runtime.media import IMAGE_EXTS
from runtime.meta import Meta
from runtime.preprocess import to_input
from training.augment import Augment
from training.sample_faces import sample_real_faces, split_ids, vary_face
from training.synthetic import self_blend

LABELS = ("real", "fake")
_FRAME_SUFFIX = re.compile(r"_f\d+$")
AugmentArg = Union[None, bool, Callable[[np.ndarray, np.random.Generator], np.ndarray]]


class FaceDataset(Dataset):
    """Common part: labels, video ids, per-item generators, augmentation, normalisation."""

    def __init__(self, meta: Meta, labels: Sequence[int], videos: Sequence[str], train: bool, seed: int,
                 augment: AugmentArg, spec: str) -> None:
        self.meta = meta
        self.labels: list[int] = [int(v) for v in labels]
        self.videos: list[str] = list(videos)
        self.train = bool(train)
        self.seed = int(seed or 0)
        self.epoch = 0
        self.spec = spec
        if augment is None:
            augment = Augment() if train else False
        self.augment = augment or None

    def __len__(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Draw new random perturbations for the next epoch (training datasets only)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        epoch = self.epoch if self.train else 0
        return np.random.default_rng([self.seed & 0xFFFFFFFF, epoch, int(index)])

    def _crop(self, index: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def image(self, index: int) -> np.ndarray:
        """The uint8 BGR crop item ``index`` feeds to the network (after augmentation)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} outside 0..{len(self) - 1}")
        rng = self.rng(index)
        img = self._crop(index, rng)
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


class FilesDataset(FaceDataset):
    """Crops stored as image files (from a folder or a CSV manifest)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], videos: Sequence[str], meta: Meta,
                 train: bool, seed: int, augment: AugmentArg, spec: str) -> None:
        super().__init__(meta, labels, videos, train, seed, augment, spec)
        self.paths = [Path(p) for p in paths]

    def _crop(self, index: int, rng: np.random.Generator) -> np.ndarray:
        return read_image(self.paths[index])


class SyntheticDataset(FaceDataset):
    """Real offline faces (label 0) alternating with self-blends of them (label 1)."""

    def __init__(self, faces: Sequence[tuple], n: int | None, meta: Meta, train: bool, seed: int,
                 augment: AugmentArg, spec: str) -> None:
        self.faces = list(faces)
        f = len(self.faces)
        n = 2 * f if n is None else int(n)
        pairs = (n + 1) // 2
        # Item 2k is face k's real crop, item 2k+1 its forgery. With fewer pairs than faces the
        # pairs are spread evenly over the faces; with more, the faces repeat.
        self.face_of = [((i // 2) * f // pairs) if pairs <= f else (i // 2) % f for i in range(n)]
        super().__init__(meta, [i % 2 for i in range(n)], [self.faces[k][0] for k in self.face_of], train,
                         seed, augment, spec)

    def _crop(self, index: int, rng: np.random.Generator) -> np.ndarray:
        face = self.faces[self.face_of[index]][1]
        if self.train:  # global variants before blending: real and fake crops share them
            face = vary_face(face, rng)
        if self.labels[index] == 0:
            return face.copy()
        fake, _ = self_blend(face, rng)
        return fake


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 BGR (works with any file name; UserError if it cannot be read)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e}); check the file or re-extract the crops") from None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise UserError(f"{path}: cannot be decoded as an image (damaged or not an image); "
                        "delete it or re-extract the crops")
    return img


def video_id_from_path(rel: Path) -> str:
    """The folder rule: ``clip01/000012.png`` → ``clip01``; ``clip07_f0031.png`` → ``clip07``."""
    if len(rel.parts) > 1:
        return rel.parent.as_posix()
    return _FRAME_SUFFIX.sub("", rel.stem) or rel.stem


def _qualify(videos: list[str], labels: list[int]) -> list[str]:
    """Give a video id that occurs under both labels a ``real/``/``fake/`` prefix."""
    seen: dict = {}
    for v, y in zip(videos, labels):
        seen.setdefault(v, set()).add(y)
    mixed = {v for v, ys in seen.items() if len(ys) > 1}
    return [f"{LABELS[y]}/{v}" if v in mixed else v for v, y in zip(videos, labels)]


def _check_readable(paths: Sequence[Path], source: str) -> None:
    bad = [p for p in paths if not cv2.haveImageReader(str(p))]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UserError(f"{bad[0]}{more}: not a readable image (empty, damaged or unknown format), listed by "
                        f"{source}; delete or replace it")


def _scan_folder(root: Path) -> tuple:
    paths, labels, videos = [], [], []
    for y, name in enumerate(LABELS):
        sub = root / name
        if not sub.is_dir():
            continue
        for p in sorted(sub.rglob("*")):
            if p.suffix.lower() in IMAGE_EXTS and p.is_file():
                paths.append(p)
                labels.append(y)
                videos.append(video_id_from_path(p.relative_to(sub)))
    if not (root / "real").is_dir() and not (root / "fake").is_dir():
        raise UserError(f"{root}: has neither a real/ nor a fake/ subfolder; put face crops in "
                        f"{root}/real and {root}/fake, or pass a CSV manifest")
    if not paths:
        raise UserError(f"{root}: real/ and fake/ hold no images ({', '.join(IMAGE_EXTS)}); "
                        "extract crops with python -m training.extract")
    return paths, labels, videos


def parse_label(value: str) -> int | None:
    v = value.strip().lower()
    return {"0": 0, "1": 1, "real": 0, "fake": 1, "0.0": 0, "1.0": 1}.get(v)


def _read_manifest(csv_path: Path) -> tuple:
    base = csv_path.parent
    paths, labels, videos, missing = [], [], [], []
    try:
        handle = open(csv_path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise UserError(f"{csv_path}: cannot be read ({e.strerror or e})") from None
    with handle:
        try:
            reader = csv.DictReader(handle)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            if "path" not in fields or "label" not in fields:
                raise UserError(f"{csv_path}: header {reader.fieldnames}, expected columns path,label,video; "
                                "add that header line")
            reader.fieldnames = fields
            for row in reader:
                line = reader.line_num
                if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                    continue  # blank line
                raw_path = (row.get("path") or "").strip()
                label = parse_label(row.get("label") or "")
                if not raw_path:
                    raise UserError(f"{csv_path}:{line}: empty path; every row needs path,label,video")
                if label is None:
                    raise UserError(f"{csv_path}:{line}: label {row.get('label')!r}, expected 0, 1, real or fake; "
                                    "fix the row")
                p = Path(raw_path)
                p = p if p.is_absolute() else base / p
                if not p.is_file():
                    missing.append((line, raw_path))
                paths.append(p)
                labels.append(label)
                videos.append((row.get("video") or "").strip() or raw_path)
        except csv.Error as e:
            raise UserError(f"{csv_path}:{reader.line_num}: malformed CSV ({e}); fix the row") from None
        except UnicodeDecodeError:
            raise UserError(f"{csv_path}: is not UTF-8 text; save the manifest as UTF-8 CSV") from None
    if missing:
        line, raw = missing[0]
        more = f" ({len(missing) - 1} more rows name missing files)" if len(missing) > 1 else ""
        raise UserError(f"{csv_path}:{line}: {raw} does not exist{more}; fix the path (relative paths are "
                        f"resolved against {base})")
    if not paths:
        raise UserError(f"{csv_path}: has no rows; list crops as path,label,video")
    return paths, labels, videos


def open_dataset(spec: str | Path, meta: Meta, train: bool, split: str | None = None, seed: int = 0,
                 augment: AugmentArg = None, val_fraction: float = 0.2, check_files: bool = True) -> FaceDataset:
    """Open a dataset by spec (folder, CSV manifest, ``synthetic[:n]``); see the module docstring.

    ``augment``: None = the default :class:`Augment` when ``train`` and none otherwise; False =
    none; or any ``f(img, rng) -> img``. ``check_files`` verifies every image's header up front.
    """
    text = str(spec)
    m = re.fullmatch(r"synthetic(?::(\d+))?", text.strip())
    if m:
        n = int(m.group(1)) if m.group(1) else None
        if n is not None and n < 2:
            raise UserError(f"{text}: synthetic:<n> needs n >= 2 (one real and one fake)")
        faces = sample_real_faces(meta.input_size, meta.face_margin, align=meta.face_align)
        keep = split_ids([fid for fid, _ in faces], split, val_fraction)
        return SyntheticDataset([f for f in faces if f[0] in keep], n, meta, train, seed, augment, text)

    path = Path(text).expanduser()
    if path.is_dir():
        paths, labels, videos = _scan_folder(path)
        source = str(path)
    elif path.is_file():
        paths, labels, videos = _read_manifest(path)
        source = str(path)
    else:
        raise UserError(f"{text}: no such folder or file; give a folder with real/ and fake/, a CSV manifest "
                        "(path,label,video) or 'synthetic'")
    videos = _qualify(videos, labels)
    keep = split_ids(videos, split, val_fraction)
    idx = [i for i, v in enumerate(videos) if v in keep]
    if not idx:
        raise UserError(f"{text}: the {split} split is empty (only {len(set(videos))} video ids); "
                        "use more videos or no split")
    paths, labels, videos = [paths[i] for i in idx], [labels[i] for i in idx], [videos[i] for i in idx]
    if check_files:
        _check_readable(paths, source)
    return FilesDataset(paths, labels, videos, meta, train, seed, augment, text)
