"""Clips of real people with exact ground truth: who is where in every frame, and where shots cut.

The faces are licence-clear photos installed with the ``train`` extra (nothing is downloaded):

- ``astronaut``: scikit-image's ``data.astronaut()``, Eileen Collins (NASA; no known copyright
  restrictions, released into the public domain);
- ``cameraman``: scikit-image's ``data.camera()`` (CC0, photographer Lav Varshney);
- ``hopper``: matplotlib's ``mpl-data/sample_data/grace_hopper.jpg``, Grace Hopper (a US Navy
  photograph, public domain).

Each person's head (the face box found in the photo by the bundled MTCNN, widened 1.8×) is pasted
on a face-free background (scikit-image's ``brick``, ``gravel`` or ``grass``, darkened), so each
frame's face box is known to the pixel. :func:`cut_clip` cuts between shots of different people
standing at the same place (and a shot with nobody), the case where overlap alone would carry a
track from one person to the next (with one background for all shots, only the person changes); :func:`pair_clip` moves two people side by side. :func:`edited_clip` turns any continuous
video into an edited one: shots taken from different places and moments of it, with known cuts
(no ground-truth boxes: a benchmark finds them with a reference detector).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from runtime.detection import Box
from runtime.errors import UserError, missing_dependency

# the face box in each photo (x, y, w, h): the bundled MTCNN's, face_score ≥ 0.9995 in each
FACE_BOX = {"astronaut": (176, 56, 91, 118), "cameraman": (199, 119, 54, 77), "hopper": (173, 112, 179, 217)}
PEOPLE = tuple(FACE_BOX)
HEAD = 1.8  # the pasted head: the face box widened this much around its centre


@dataclass
class Clip:
    """Frames (BGR), the faces in each (person, box) when known, and the frames that start a shot."""

    name: str
    frames: list[np.ndarray]
    truth: list[list[tuple[str, Box]]] | None  # None: not known (a reference detector finds the faces)
    cuts: list[int] = field(default_factory=list)  # indices of frames that start a new shot (not 0)
    fps: float = 25.0

    def shot(self, i: int) -> int:
        """Which shot frame ``i`` belongs to (0 for the first)."""
        return sum(1 for c in self.cuts if c <= i)

    def write(self, path: str | Path) -> Path:
        h, w = self.frames[0].shape[:2]
        out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
        try:
            for f in self.frames:
                out.write(f)
        finally:
            out.release()
        return Path(path)


def photo(name: str) -> np.ndarray:
    """The photo of ``name`` (one of :data:`PEOPLE`) as uint8 BGR."""
    try:
        from skimage import data
    except ImportError:
        raise missing_dependency("scikit-image", "train") from None
    if name == "astronaut":
        return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    if name == "cameraman":
        return cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR)
    if name == "hopper":
        try:
            import matplotlib.cbook as cbook
        except ImportError:
            raise missing_dependency("matplotlib", "train") from None
        img = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
        if img is None:
            raise UserError("matplotlib's sample_data/grace_hopper.jpg could not be read; reinstall matplotlib")
        return img
    raise ValueError(f"unknown person {name!r}; one of {', '.join(PEOPLE)}")


BACKGROUNDS = ("brick", "gravel", "grass")  # scikit-image's face-free textures


def background(size: tuple[int, int], kind: str = "brick") -> np.ndarray:
    """A face-free real texture (one of :data:`BACKGROUNDS`, darkened) of ``size`` (w, h), BGR."""
    from skimage import data

    w, h = size
    texture = cv2.resize(getattr(data, kind)(), (w, h), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor((texture * 0.55 + 20).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def _heads(face_side: int) -> dict[str, tuple[np.ndarray, Box]]:
    """Each person's head scaled so the face box side is ``face_side``, and the face box in it."""
    out = {}
    for name in PEOPLE:
        img = photo(name)
        x, y, w, h = FACE_BOX[name]
        cx, cy, half = x + w / 2, y + h / 2, HEAD * max(w, h) / 2
        x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
        x1, y1 = int(min(img.shape[1], cx + half)), int(min(img.shape[0], cy + half))
        s = face_side / max(w, h)
        head = cv2.resize(img[y0:y1, x0:x1], (max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s))),
                          interpolation=cv2.INTER_AREA)
        out[name] = head, (round((x - x0) * s), round((y - y0) * s), round(w * s), round(h * s))
    return out


def _paste(frame: np.ndarray, head: tuple[np.ndarray, Box], centre: tuple[float, float]) -> Box:
    """Paste a head so its face box is centred at ``centre``; returns the face box in the frame."""
    img, (fx, fy, fw, fh) = head
    x = int(round(centre[0] - fx - fw / 2))
    y = int(round(centre[1] - fy - fh / 2))
    ih, iw = img.shape[:2]
    x = min(max(x, 0), frame.shape[1] - iw)
    y = min(max(y, 0), frame.shape[0] - ih)
    frame[y: y + ih, x: x + iw] = img
    return x + fx, y + fy, fw, fh


def cut_clip(shot: int = 22, size: tuple[int, int] = (480, 360), face: int = 90,
             shots: tuple[str | None, ...] = ("astronaut", "hopper", None, "cameraman", "astronaut"),
             same_background: bool = False) -> Clip:
    """Shots of one person each (None: nobody) at the same place, ``shot`` frames each, cut from one
    to the next, each shot before another background (``same_background``: one for all, so only
    the person changes at a cut). The person sways a few pixels a frame, so a tracker follows real
    motion."""
    heads = _heads(face)
    frames, truth, cuts = [], [], []
    for k, who in enumerate(shots):
        if k:
            cuts.append(len(frames))
        bg = background(size, BACKGROUNDS[0 if same_background else k % len(BACKGROUNDS)])
        for t in range(shot):
            f = bg.copy()
            faces = []
            if who is not None:
                centre = (size[0] / 2 + 12 * math.sin(t / 4.0), size[1] * 0.45 + 4 * math.cos(t / 5.0))
                faces.append((who, _paste(f, heads[who], centre)))
            frames.append(f)
            truth.append(faces)
    return Clip("cuts, one background" if same_background else "cuts", frames, truth, cuts)


def pair_clip(frames: int = 60, size: tuple[int, int] = (480, 360), face: int = 80,
              people: tuple[str, str] = ("astronaut", "hopper")) -> Clip:
    """Two people side by side for ``frames`` frames, drifting towards and away from each other."""
    heads = _heads(face)
    bg = background(size)
    out, truth = [], []
    for t in range(frames):
        f = bg.copy()
        gap = size[0] * (0.22 + 0.05 * math.sin(t / 6.0))
        cy = size[1] * 0.45
        faces = [(people[0], _paste(f, heads[people[0]], (size[0] / 2 - gap, cy))),
                 (people[1], _paste(f, heads[people[1]], (size[0] / 2 + gap, cy + 6 * math.sin(t / 3.0))))]
        out.append(f)
        truth.append(faces)
    return Clip("pair", out, truth)


def read_clip(video: str | Path, cuts: list[int] | None = None) -> Clip:
    """A video as a clip: every frame, the given cuts, faces not known (``truth`` None)."""
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    cap.release()
    if not frames:
        raise UserError(f"{video}: no frame could be decoded; pass a video")
    return Clip(Path(video).stem, frames, None, sorted(set(cuts or [])), fps)


def edited_clip(video: str | Path, shot: int = 30, seed: int = 0, zoom: float = 0.6) -> Clip:
    """An edited clip from a continuous video: shots of ``shot`` frames, each a window of ``zoom``
    of the frame's side at a random place and a random moment, scaled back to the frame size; a
    cut between every two. Faces are not known (``truth`` None)."""
    whole = read_clip(video)
    source, fps = whole.frames, whole.fps
    if len(source) < shot:
        raise UserError(f"{video}: {len(source)} frames decoded, fewer than one shot of {shot}; pass a longer clip")
    rng = np.random.default_rng(seed)
    h, w = source[0].shape[:2]
    cw, ch = int(w * zoom), int(h * zoom)
    frames, cuts = [], []
    for k in range(len(source) // shot):
        start = int(rng.integers(0, len(source) - shot + 1))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        if k:
            cuts.append(len(frames))
        frames += [cv2.resize(f[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
                   for f in source[start:start + shot]]
    return Clip(f"{Path(video).stem} edited", frames, None, cuts, fps)
