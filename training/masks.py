"""Hard blending masks made irregular, then soft: the boundary of a forgery's blend.

A mask drawn from a shape (an ellipse about a crop's centre, a hull of the face's outline) is
deformed by a smooth random displacement field and eroded or dilated, so the boundary falls at a
random place relative to the face, then blurred into a soft weight. Shared by the self-blend
(:mod:`training.synthetic`), the landmark masks (:mod:`training.face_shape`) and the other forgery
families (:mod:`training.forgeries`).
"""

from __future__ import annotations

import cv2
import numpy as np


def odd_size(n: float) -> int:
    """The odd kernel size (at least 1) nearest above ``n``."""
    k = max(1, int(round(n)))
    return k if k % 2 else k + 1


def deform_mask(mask: np.ndarray, rng: np.random.Generator, scale: float | None = None) -> np.ndarray:
    """A hard mask elastically deformed (a smooth random displacement field) and eroded or dilated,
    so the boundary falls at a random place relative to the face; ``scale`` is the face's size in
    pixels (default: the mask's shorter side, a face crop's)."""
    h, w = mask.shape
    scale = float(min(h, w) if scale is None else scale)
    g = 5
    amp = rng.uniform(0.02, 0.06) * scale
    dx = cv2.resize(rng.uniform(-1, 1, (g, g)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(rng.uniform(-1, 1, (g, g)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    mask = cv2.remap(mask, xx + amp * dx, yy + amp * dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0.0)
    k = odd_size(rng.uniform(0.0, 0.06) * scale)
    if k > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        mask = cv2.erode(mask, kernel) if rng.random() < 0.5 else cv2.dilate(mask, kernel)
    return (mask > 0.5).astype(np.float32)


def soften(mask: np.ndarray, rng: np.random.Generator, scale: float | None = None) -> np.ndarray:
    """Blur a hard mask (finite Gaussian kernel: exact zeros stay far from the region); ``scale``
    is the face's size in pixels (default: the mask's shorter side, a face crop's)."""
    h, w = mask.shape
    k = odd_size(rng.uniform(0.05, 0.16) * (min(h, w) if scale is None else scale))
    soft = cv2.GaussianBlur(mask, (k, k), 0)
    peak = float(soft.max())
    return soft / peak if peak > 0 else soft
