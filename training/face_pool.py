"""Real faces in their frames: the bundled pool, or a user's own photos, crops and videos.

Self-blends are made from real faces alone (Shiohara & Yamasaki's point: no fakes needed), and
they are best made on the face in its frame, before any crop: the blend's mask follows the face's
landmarks, then the frame takes the camera's trip (:mod:`training.camera`) and is cropped as the
runtime crops it. A :class:`FrameFace` is that unit: a region of a frame around one face, the
face's box and five landmarks found by the runtime's detector, and the person it shows.

Two sources:

* :func:`pool_faces`: the bundled real-face pool (``training/assets/face_pool``, built by
  ``python -m training.face_pool_build``; about 240 people, licences in its ``PROVENANCE.csv``),
  split once by person into train / val / test (recorded in its ``faces.csv``).
* :func:`folder_faces`: any folder of real images (photos, frames or face crops) or videos, such
  as a site's own camera footage. Faces are found by the runtime's default detector (the largest
  of each image, or of each of ``frames`` evenly spaced video frames); a person is the first
  sub-folder below the root, else the file (a video is one person). The detections are cached
  (``training.sample_faces.cache_dir``) under a key of the detector's files and each file's path,
  size and modification time.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from runtime.errors import UserError
from runtime.fileio import write_atomic
from runtime.media import IMAGE_EXTS, VIDEO_EXTS, read_image
from training.video_frames import sample_frames

POOL = Path(__file__).resolve().parent / "assets" / "face_pool"
CONTEXT = 2.6  # region side in face sides (what the pool stores: crops with wide margins fit inside)
MAX_FACE_PX = 224  # larger faces are scaled down to this on loading (memory; training crops are smaller)
VIDEO_FRAMES = 16  # frames sampled per video of a folder


@dataclass(frozen=True)
class FrameFace:
    id: str
    person: str
    image: np.ndarray  # uint8 BGR region of the frame around the face (read-only)
    box: tuple[float, float, float, float]  # x, y, w, h in the region's pixels
    landmarks: np.ndarray  # 5×2 float64: eyes, nose tip, mouth corners (region pixels)
    split: str = ""  # train, val or test where the source records it


def _floats(text: str, n: int) -> list[float]:
    vals = [float(v) for v in text.split()]
    if len(vals) != n:
        raise ValueError(f"expected {n} numbers, got {len(vals)}")
    return vals


@lru_cache(maxsize=2)
def _pool(root: str) -> tuple[FrameFace, ...]:
    folder = Path(root)
    table = folder / "faces.csv"
    if not table.is_file():
        raise UserError(f"{folder}: no faces.csv; rebuild the pool with python -m training.face_pool_build")
    out = []
    with open(table, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            img = read_image(str(folder / row["file"]))
            try:
                if img is None:
                    raise ValueError(f"{row['file']} cannot be decoded")
                box = tuple(_floats(row["box"], 4))
                marks = np.asarray(_floats(row["landmarks"], 10), np.float64).reshape(5, 2)
            except (KeyError, ValueError) as e:
                raise UserError(f"{table}:{line}: {e}; rebuild the pool with python -m training.face_pool_build") from None
            img.flags.writeable = False
            out.append(FrameFace(row["id"], row["person"], img, box, marks, row["split"]))  # type: ignore[arg-type]
    return tuple(out)


def pool_faces(split: str | None = None, root: Path = POOL) -> list[FrameFace]:
    """The bundled pool's faces (``split``: train, val, test or None for all), in a fixed order."""
    if split is not None and split not in ("train", "val", "test"):
        raise UserError(f"split {split!r} is unknown; use train, val or test")
    return [f for f in _pool(str(root)) if split is None or f.split == split]


# --- a user's folder ------------------------------------------------------------------------
def _person(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS)


def _cache_key(root: Path, files: Sequence[Path], frames: int) -> str:
    from runtime.faces import DEFAULT_DETECTOR
    from runtime.faces_cnn import BUNDLED

    h = hashlib.sha256(f"jrc-folder-faces 1 {DEFAULT_DETECTOR} {frames} {cv2.__version__}".encode())
    for f in sorted(BUNDLED.iterdir()):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()} {st.st_size} {st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def region_of(box: Sequence[float], shape: tuple[int, int], context: float) -> tuple[int, int, int]:
    """A square (x0, y0, side) about the face, ``context`` face sides wide, moved (and if need be
    shrunk) to lie inside the image."""
    h, w = shape
    x, y, bw, bh = (float(v) for v in box)
    side = min(int(round(max(bw, bh) * context)), w, h)
    cx, cy = x + bw / 2.0, y + bh / 2.0
    x0 = int(round(min(max(cx - side / 2.0, 0), w - side)))
    y0 = int(round(min(max(cy - side / 2.0, 0), h - side)))
    return x0, y0, side


def _region(frame: np.ndarray, det) -> tuple[np.ndarray, tuple[float, float, float, float], np.ndarray]:
    """The square region (:data:`CONTEXT` face sides, inside the frame) around a detection, scaled
    so the face is at most :data:`MAX_FACE_PX`; box and landmarks moved into it."""
    x0, y0, side = region_of(det, frame.shape[:2], CONTEXT)
    face = float(max(det[2], det[3]))
    scale = min(1.0, MAX_FACE_PX / face)
    region = frame[y0:y0 + side, x0:x0 + side]
    if scale < 1.0:
        n = max(1, int(round(side * scale)))
        region = cv2.resize(region, (n, n), interpolation=cv2.INTER_AREA)
        scale = n / float(side)
    box = ((det[0] - x0) * scale, (det[1] - y0) * scale, det[2] * scale, det[3] * scale)
    marks = (np.asarray(det.landmarks, np.float64) - [x0, y0]) * scale
    return np.ascontiguousarray(region), box, marks


def _detect_all(root: Path, files: Sequence[Path], frames: int, progress: bool) -> list[dict]:
    """Every face found: {file, frame, box, score, landmarks} (the largest per image or frame)."""
    from runtime.faces import make_detector
    detector = make_detector()
    found: list[dict] = []
    bar = progress_bar(len(files), progress, "finding faces")
    for p in files:
        bar.update(1)
        if p.suffix.lower() in VIDEO_EXTS:
            try:
                pairs = list(sample_frames(p, frames))
            except UserError:
                continue  # not a readable video: skipped, as training.extract skips it
        else:
            img = read_image(str(p))
            pairs = [] if img is None else [(0, img)]
        for index, frame in pairs:
            dets = [d for d in detector.detect(frame) if d.landmarks is not None]
            if dets:
                d = dets[0]
                found.append({"file": str(p.relative_to(root)) if p != root else p.name, "frame": index,
                              "box": [int(v) for v in d], "score": d.score,
                              "landmarks": np.asarray(d.landmarks, np.float64).round(2).tolist()})
    bar.close()
    return found


def folder_faces(path: str | Path, frames: int = VIDEO_FRAMES, progress: bool = True) -> list[FrameFace]:
    """The real faces of a folder (or one file) of images and videos, with their people."""
    from runtime.detection import Detection
    from training.sample_faces import cache_dir

    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"{root}: not found; pass a folder of real face photos, crops or videos")
    files = _files(root)
    if not files:
        raise UserError(f"{root}: holds no images ({', '.join(IMAGE_EXTS)}) or videos ({', '.join(VIDEO_EXTS)})")
    base = root if root.is_dir() else root.parent
    folder = cache_dir()
    cache = folder / f"folder-faces-{_cache_key(root, files, frames)}.json" if folder is not None else None
    found = None
    if cache is not None and cache.is_file():
        try:
            found = json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found = None
    if found is None:
        found = _detect_all(base, files, frames, progress)
        if cache is not None:
            _write_json(cache, found)
    if not found:
        raise UserError(f"{root}: the face detector found no face in its {len(files)} files; "
                        "pass photos or videos in which faces are visible")
    by_file: dict[str, list[dict]] = {}
    for f in found:
        by_file.setdefault(f["file"], []).append(f)
    out: list[FrameFace] = []
    for name, dets in by_file.items():
        p = base / name
        rel = Path(name)
        if p.suffix.lower() in VIDEO_EXTS:
            want = {d["frame"]: d for d in dets}
            images = [(i, fr) for i, fr in sample_frames(p, frames) if i in want]
        else:
            img = read_image(str(p))
            images = [] if img is None else [(0, img)]
            want = {0: dets[0]}
        for index, frame in images:
            d = want[index]
            det = Detection(d["box"], d["score"], np.asarray(d["landmarks"], np.float32))
            region, box, marks = _region(frame, det)
            region.flags.writeable = False
            fid = f"{rel.as_posix()}#{index}" if p.suffix.lower() in VIDEO_EXTS else rel.as_posix()
            out.append(FrameFace(fid, _person(rel), region, box, marks))
    return out


def _write_json(path: Path, data: object) -> None:
    """Atomically; a cache that cannot be written is no error (the next run detects again)."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(data))


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar on stderr (a stand-in without tqdm or when ``enabled`` is false)."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="file", leave=False)
