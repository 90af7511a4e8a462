"""The one face detector module, used by training's extraction and by the runtime.

The default is OpenCV 4.x's frontal-face Haar cascade, which ships inside opencv-python and
runs offline on x86_64 and aarch64. Detection runs on a frame downscaled to ``detect_width``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np

from runtime.errors import UserError

Box = Tuple[int, int, int, int]  # x, y, w, h in frame pixels


class HaarFaceDetector:
    """OpenCV's Haar cascade (frontal faces). Boxes come back largest first."""

    def __init__(self, detect_width: int = 640, min_face: int = 24, neighbors: int = 5,
                 cascade: str | None = None) -> None:
        path = cascade or str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise UserError(f"{path}: could not load the Haar cascade; install opencv-python-headless<5 "
                            "(OpenCV 5 dropped the cascades)")
        self.detect_width = detect_width
        self.min_face = min_face
        self.neighbors = neighbors

    def detect(self, frame: np.ndarray) -> List[Box]:
        h, w = frame.shape[:2]
        scale = min(1.0, self.detect_width / float(w)) if self.detect_width else 1.0
        small = frame if scale == 1.0 else cv2.resize(frame, (int(round(w * scale)), int(round(h * scale))),
                                                      interpolation=cv2.INTER_AREA)
        gray = small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        gray = cv2.equalizeHist(gray)
        found = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=self.neighbors,
                                               minSize=(self.min_face, self.min_face))
        boxes = [tuple(int(round(v / scale)) for v in b) for b in (found if len(found) else [])]
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        return boxes  # type: ignore[return-value]


def make_detector(kind: str = "haar", **kwargs) -> HaarFaceDetector:
    """A face detector by name; ``haar`` is the default."""
    if kind == "haar":
        return HaarFaceDetector(**kwargs)
    raise UserError(f"face detector {kind!r} is unknown; use 'haar'")
