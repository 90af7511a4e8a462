"""A face's outline from its five landmarks, and the blending masks self-blends draw from it.

The runtime's detector (MTCNN) gives five points: eyes, nose tip, mouth corners. Self-blended
images (Shiohara & Yamasaki, CVPR 2022) need the face's shape: the blend's boundary should run
where a face swap's does, along the jaw and over the brows or forehead, not along a box. A
mean face shape supplies it: the jaw, hairline and eyebrow points of the hand-placed templates
of the real-face pool's training people (the London and Canada sets, CC BY 4.0; fitted by
``python -m training.face_pool_build``, stored in ``face_shape.json``), expressed in a frame
normalised by each face's own five landmarks. For a new face the affine map from the mean five
points to its five points carries the mean outline onto it (an affine map follows a turned or
tilted head better than a similarity does).

Masks (:func:`landmark_mask`) are convex hulls of parts of that outline, in the manner of SBI's
hull types (whole face with brows, with forehead, the lower face, the inner face), then
elastically deformed, eroded or dilated, and blurred by :mod:`training.masks`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from runtime.preprocess import ALIGN_TEMPLATE
from training.masks import deform_mask

SHAPE_FILE = Path(__file__).resolve().parent / "assets" / "face_pool" / "face_shape.json"
JAW = slice(0, 15)  # TEMPLATE_OUTLINE's jaw (ear, chin, ear); the rest is the hairline
HULLS = ("face", "forehead", "lower", "inner")
HULL_WEIGHTS = (0.45, 0.2, 0.2, 0.15)


def _similarity_to_template(marks: np.ndarray) -> np.ndarray:
    """2×3 least-squares similarity taking five landmarks onto :data:`ALIGN_TEMPLATE` (unit square)."""
    m, _ = cv2.estimateAffinePartial2D(np.asarray(marks, np.float32).reshape(5, 2), ALIGN_TEMPLATE,
                                       method=cv2.LMEDS)
    if m is None:
        raise ValueError("degenerate landmarks")
    return m.astype(np.float64)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    return pts @ m[:, :2].T + m[:, 2]


def fit_shape(faces: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """The mean shape from (five landmarks, outline points, brow points) per face, image pixels:
    each face is moved into the landmarks' normalised frame, then averaged."""
    if not faces:
        raise ValueError("no faces with templates to fit the face shape on")
    five, outline, brows = [], [], []
    for marks, out, br in faces:
        m = _similarity_to_template(marks)
        five.append(_apply(m, marks))
        outline.append(_apply(m, out))
        brows.append(_apply(m, br))
    five_a, out_a, br_a = np.stack(five), np.stack(outline), np.stack(brows)
    return {"format": 1, "faces": len(faces),
            "five": np.round(five_a.mean(0), 5).tolist(), "outline": np.round(out_a.mean(0), 5).tolist(),
            "brows": np.round(br_a.mean(0), 5).tolist(),
            "outline_sd": np.round(out_a.std(0).mean(), 5).item()}


@lru_cache(maxsize=4)
def mean_shape(path: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(five 5×2, outline K×2, brows B×2) of the mean face, in the landmarks' normalised frame."""
    f = Path(path) if path else SHAPE_FILE
    d = json.loads(f.read_text(encoding="utf-8"))
    return (np.asarray(d["five"], np.float64), np.asarray(d["outline"], np.float64),
            np.asarray(d["brows"], np.float64))


def face_points(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(outline K×2, brows B×2) in the landmarks' own pixels, from five landmarks."""
    five, outline, brows = mean_shape()
    src = np.hstack([five, np.ones((5, 1))])
    dst = np.asarray(landmarks, np.float64).reshape(5, 2)
    coef, *_ = np.linalg.lstsq(src, dst, rcond=None)  # 3×2: the affine map, least squares
    return np.hstack([outline, np.ones((len(outline), 1))]) @ coef, np.hstack([brows, np.ones((len(brows), 1))]) @ coef


def hull_points(landmarks: np.ndarray, kind: str) -> np.ndarray:
    """The points whose convex hull is the mask of ``kind`` (:data:`HULLS`)."""
    outline, brows = face_points(landmarks)
    five = np.asarray(landmarks, np.float64).reshape(5, 2)
    jaw = outline[JAW]
    if kind == "face":  # jaw and brows: the 68-point face hull swaps blend through
        return np.vstack([jaw, brows])
    if kind == "forehead":  # up to the hairline
        return outline
    eyes_y = five[:2, 1].mean()
    if kind == "lower":  # below the eyes: cheeks, nose, mouth and chin
        return np.vstack([jaw[(jaw[:, 1] >= eyes_y)], five[2:]])
    if kind == "inner":  # eyes, nose and mouth with the brows: the inner face
        chin = jaw[len(jaw) // 2]
        mouth = five[3:].mean(0)
        return np.vstack([brows, five, mouth + 0.6 * (chin - mouth)])
    raise ValueError(f"hull kind {kind!r}; use one of {', '.join(HULLS)}")


def landmark_mask(shape: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator,
                  kind: str | None = None) -> np.ndarray:
    """A hard (0/1) float32 mask of the face drawn from its landmarks: a convex hull of a random
    kind (or ``kind``), elastically deformed and eroded or dilated by a random amount."""
    h, w = shape
    if kind is None:
        kind = HULLS[int(rng.choice(len(HULLS), p=np.asarray(HULL_WEIGHTS)))]
    pts = hull_points(landmarks, kind)
    mask = np.zeros((h, w), np.float32)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pts).astype(np.int32)), 1.0)
    eye_dist = float(np.linalg.norm(np.subtract(landmarks[1], landmarks[0])))
    return deform_mask(mask, rng, scale=max(8.0, 2.5 * eye_dist))
