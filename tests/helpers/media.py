"""Generated media for tests: the astronaut's head (a real face, scikit-image) and small videos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def head(side: int) -> np.ndarray:
    """The astronaut's head and shoulders (public domain, scikit-image), BGR, side × side."""
    from skimage import data

    return cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[20:260, 110:340], (side, side))


def face_video(path: Path, frames: int = 20, size=(320, 240), brighten_from: int | None = None,
               blank_from: int | None = None) -> Path:
    """A face moving right across a grey frame; optionally brightened or absent from some frame on."""
    w, h = size
    face = head(h * 2 // 3)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
    for i in range(frames):
        f = np.full((h, w, 3), 90, np.uint8)
        if blank_from is None or i < blank_from:
            x = int(w * 0.05 + (w * 0.9 - face.shape[1]) * i / frames)
            patch = face if brighten_from is None or i < brighten_from else cv2.add(face, 70)
            f[h // 6: h // 6 + face.shape[0], x: x + face.shape[1]] = patch
        out.write(f)
    out.release()
    return path


def segment_video(path: Path, frames: int, bright: tuple[int, int] | None = None, size=(320, 240),
                  fps: float = 25.0) -> Path:
    """The astronaut's head sliding to and fro over a dim background; the frames in ``bright``
    ([first, end)) lifted by 150 grey levels, which the brightness-meter model of
    ``tests.helpers.models.make_onnx`` scores fake (whole frame: p ≈ 0.2 → 0.95)."""
    w, h = size
    face = head(h * 2 // 3)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        f = np.full((h, w, 3), 40, np.uint8)
        phase = (i % 100) / 50.0
        x = int((w - face.shape[1]) * (phase if phase <= 1 else 2 - phase))
        f[h // 6: h // 6 + face.shape[0], x: x + face.shape[1]] = face
        if bright is not None and bright[0] <= i < bright[1]:
            f = cv2.add(f, np.full_like(f, 150))
        out.write(f)
    out.release()
    return path


def gray_video(path: Path, values: list[int], size=(64, 48)) -> Path:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
    for v in values:
        out.write(np.full((size[1], size[0], 3), v, np.uint8))
    out.release()
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]
