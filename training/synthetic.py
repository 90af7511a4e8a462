"""Self-blended forgeries from real faces alone, in the manner of Shiohara & Yamasaki's
self-blended images (SBI, CVPR 2022), written for this project.

A face crop is blended with a colour- and geometry-perturbed copy of itself through a soft mask
around the face. The result carries the traces face swaps leave (a blending boundary, colour and
sharpness mismatch, slight misalignment) without any identity change, so a detector trained on
them learns those traces instead of the identities of one forgery method's training set.

Without landmarks the mask is a jittered ellipse around the crop centre (the runtime centres
the face in its crop), made convex, elastically deformed and blurred. Everything random comes
from the ``numpy.random.Generator`` the caller passes, so a forgery is reproducible.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from training.face_shape import landmark_mask
from training.masks import deform_mask, soften

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # as in SBI: mostly full blends, some partial


def is_gray(img: np.ndarray) -> bool:
    """True when every pixel of a BGR image has equal channels."""
    return bool((img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all())


def face_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A hard (0/1) float32 face mask: convex hull of a jittered ellipse, elastically deformed.

    The ellipse sits near the crop centre and covers roughly the face box a crop with the
    default margin holds (about 60 % of the width, 75 % of the height).
    """
    cx = w * (0.5 + rng.uniform(-0.04, 0.04))
    cy = h * (0.5 + rng.uniform(-0.03, 0.06))  # faces sit a little low in their boxes
    ax = w * rng.uniform(0.24, 0.34)
    ay = h * rng.uniform(0.30, 0.42)
    n = 16
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False) + rng.uniform(0, 2.0 * np.pi / n)
    r = rng.uniform(0.85, 1.12, size=n)
    pts = np.stack([cx + ax * r * np.cos(t), cy + ay * r * np.sin(t)], axis=1)
    hull = cv2.convexHull(np.round(pts).astype(np.int32))
    mask = np.zeros((h, w), np.float32)
    cv2.fillConvexPoly(mask, hull, 1.0)
    return deform_mask(mask, rng)


def perturb_colour(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness (never zero), a slight tint, contrast, and half the time hue/saturation.

    A grayscale image stays grayscale (no tint, hue or saturation change): colour appearing
    in a grey face would be a cue that no real forgery carries.
    """
    x = img.astype(np.float32)
    gray = is_gray(img)
    brightness = rng.uniform(4.0, 20.0) * rng.choice([-1.0, 1.0])  # at least 4 grey levels
    tint = rng.uniform(-8.0, 8.0, size=3)
    contrast = rng.uniform(0.85, 1.15)
    x = (x - 128.0) * contrast + 128.0 + brightness + (0.0 if gray else tint)
    out = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if rng.random() < 0.5 and not gray:
        hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + int(rng.integers(-8, 9))) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.8, 1.3), 0, 255)
        out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
    return out


def perturb_frequency(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Half the time: soften (down-up resize) or sharpen, the resolution mismatch of swaps."""
    u = rng.random()
    if u < 0.25:
        h, w = img.shape[:2]
        f = rng.uniform(0.35, 0.7)
        small = cv2.resize(img, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if u < 0.5:
        blur = cv2.GaussianBlur(img, (0, 0), 1.0)
        amount = rng.uniform(0.3, 1.0)
        return cv2.addWeighted(img, 1.0 + amount, blur, -amount, 0)
    return img


def perturb_geometry(img: np.ndarray, rng: np.random.Generator, centre: tuple[float, float] | None = None,
                     size: float | None = None) -> np.ndarray:
    """A small random scale and shift about the centre (the misalignment of a pasted face);
    ``centre`` and ``size`` (a face crop's side, default the image's) place it in a larger frame."""
    h, w = img.shape[:2]
    cx, cy = (w / 2, h / 2) if centre is None else centre
    s = rng.uniform(0.94, 1.06)
    tx, ty = rng.uniform(-0.03, 0.03, size=2) * (np.array([w, h]) if size is None else size)
    m = np.array([[s, 0.0, (1 - s) * cx + tx], [0.0, s, (1 - s) * cy + ty]], np.float32)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def self_blend(face_bgr: np.ndarray, rng: np.random.Generator,
               blend_ratios: Sequence[float] = BLEND_RATIOS, landmarks: np.ndarray | None = None,
               box: Sequence[float] | None = None, either: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A self-blended forgery of one face image: (fake uint8 BGR, mask float32 H×W in [0, 1]).

    ``fake = mask · source + (1 − mask) · target``: one of the two is the face as it is, the other
    a perturbed copy, so the mask is the per-pixel weight of the changed content; where it is 0 the
    fake equals one of them exactly. Its peak is the blend ratio drawn from ``blend_ratios``.

    Without ``landmarks`` the image is a face crop and the mask an ellipse about its centre, the
    copy is always the source. With the face's five ``landmarks`` and its ``box`` (x, y, w, h) the
    image may be a whole frame: the mask is a hull of the face's outline
    (:func:`training.face_shape.landmark_mask`) and, as in SBI, the perturbed copy is the source
    or the target at random (``either``; else always the source, so nothing outside the mask changes).
    """
    face = np.ascontiguousarray(face_bgr)
    if face.dtype != np.uint8 or face.ndim != 3 or face.shape[2] != 3:
        raise ValueError(f"face of dtype {face.dtype} and shape {face.shape}, expected uint8 H×W×3")
    h, w = face.shape[:2]
    if landmarks is None:
        source = perturb_colour(face, rng)
        source = perturb_frequency(source, rng)
        source = perturb_geometry(source, rng)
        mask = soften(face_mask(h, w, rng), rng)
        target = face
    else:
        if box is None:
            raise ValueError("self_blend with landmarks needs the face box too")
        side = 1.3 * max(float(box[2]), float(box[3]))  # a face crop's side at the default margin
        centre = (float(box[0]) + float(box[2]) / 2, float(box[1]) + float(box[3]) / 2)
        changed = perturb_frequency(perturb_colour(face, rng), rng)
        source, target = (changed, face) if not either or rng.random() < 0.5 else (face, changed)
        source = perturb_geometry(source, rng, centre, side)
        mask = soften(landmark_mask((h, w), landmarks, rng), rng, side)
    mask = (mask * float(rng.choice(np.asarray(blend_ratios, np.float32)))).astype(np.float32)
    m3 = mask[..., None]
    fake = m3 * source.astype(np.float32) + (1.0 - m3) * target.astype(np.float32)
    return np.clip(np.rint(fake), 0, 255).astype(np.uint8), mask
