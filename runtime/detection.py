"""A detected face, as every face detector gives it and the tracker follows it, and the frame
scaled down for detection (:mod:`runtime.faces` makes the detectors)."""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

Box = Tuple[int, int, int, int]  # x, y, w, h in frame pixels (detection, tracking and crops share it)


class Detection(tuple):
    """A face box ``(x, y, w, h)`` in frame pixels that unpacks and compares as that tuple, with
    the detector's confidence ``score`` (None for Haar, which has none) and ``landmarks`` (5×2
    float32: eyes, nose tip, mouth corners, frame pixels; None when the detector gives none)."""

    score: float | None
    landmarks: np.ndarray | None

    def __new__(cls, box: Box | tuple[float, ...], score: float | None = None,
                landmarks: np.ndarray | None = None) -> Detection:
        self = super().__new__(cls, tuple(int(round(v)) for v in box[:4]))
        self.score, self.landmarks = score, landmarks
        return self

    def moved(self, dx: float, dy: float, scale: float = 1.0) -> Detection:
        """This detection scaled by ``scale`` then shifted by (dx, dy) (a window back into its frame)."""
        box = (dx + self[0] * scale, dy + self[1] * scale, self[2] * scale, self[3] * scale)
        marks = None if self.landmarks is None else (self.landmarks * scale + np.float32([dx, dy])).astype(np.float32)
        return Detection(box, self.score, marks)


def downscale(frame: np.ndarray, detect_width: int) -> tuple[np.ndarray, float]:
    """``frame`` scaled (never up) to ``detect_width`` pixels wide (0: as it is), and the scale."""
    h, w = frame.shape[:2]
    scale = min(1.0, detect_width / float(w)) if detect_width else 1.0
    if scale == 1.0:
        return frame, 1.0
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), scale
