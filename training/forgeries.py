"""Forgery families for training and for the leave-one-family-out protocol, beyond self-blending.

Each family is a seeded generator ``forge(family, face, rng, donor=None) -> (fake, mask)``:
``fake`` is uint8 BGR of the face's shape, ``mask`` float32 H×W in [0, 1] is the per-pixel weight
of forged content, and where ``mask == 0`` the fake equals the face exactly. Everything random is
drawn from the ``numpy.random.Generator`` passed in, so one (face, donor, seed) gives one forgery.

Families (what a detector trained without one of them has never seen):

* ``sbi``: self-blend (Shiohara & Yamasaki, CVPR 2022; :func:`training.synthetic.self_blend`):
  a colour-, frequency- and geometry-perturbed copy of the face through a soft face mask.
* ``i2g``: a blend of two identities in the manner of Face X-ray (Li et al., CVPR 2020) and I2G
  (Zhao et al., ICCV 2021): a donor face, colour-matched to the target inside the mask and
  slightly misaligned, pasted through a soft mask, or through a hard-edged one (a third of the
  time) as crude swaps do. Needs a donor of another identity.
* ``region``: a blend confined to the eyes or the mouth (an ellipse there, softened), with a
  perturbed copy of the face or, when a donor is given, half the time the donor's region.
* ``warp``: a local geometric edit (smooth radial or shifting displacement bumps, as face
  reshaping and expression edits leave); the mask is the displacement's support.
* ``resample``: the face region rescaled down or up and back with a random interpolation and a
  sub-pixel shift, pasted through a soft mask: resampling traces only, no colour or shape change.
"""

from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np

from training.synthetic import (
    BLEND_RATIOS,
    face_mask,
    is_gray,
    perturb_colour,
    perturb_frequency,
    perturb_geometry,
    self_blend,
    soften,
)

FAMILIES = ("sbi", "i2g", "region", "warp", "resample")
NEEDS_DONOR = frozenset({"i2g"})
HARD_PASTE_P = 1.0 / 3.0  # share of i2g forgeries pasted through a hard (unblurred) mask
_INTERP = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA)


def parse_families(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"sbi,i2g"`` / ``["sbi", "i2g"]`` / ``"all"`` as a tuple of known family names, in
    :data:`FAMILIES` order, without duplicates; ValueError naming the unknown ones."""
    if text is None:
        return ("sbi",)
    parts = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    if "all" in parts:  # 'all,sbi' is still all of them
        return FAMILIES
    unknown = sorted(set(parts) - set(FAMILIES))
    if unknown or not parts:
        raise ValueError(f"forgery families {', '.join(unknown) or '(none)'}: unknown; "
                         f"use one or more of {', '.join(FAMILIES)} (comma-separated) or 'all'")
    return tuple(f for f in FAMILIES if f in parts)


def _blend(face: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m3 = mask[..., None]
    fake = m3 * source.astype(np.float32) + (1.0 - m3) * face.astype(np.float32)
    return np.clip(np.rint(fake), 0, 255).astype(np.uint8)


def _check(face: np.ndarray, what: str = "face") -> np.ndarray:
    face = np.ascontiguousarray(face)
    if face.dtype != np.uint8 or face.ndim != 3 or face.shape[2] != 3:
        raise ValueError(f"{what} of dtype {face.dtype} and shape {face.shape}, expected uint8 H×W×3")
    return face


def match_colour(source: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``source`` with each channel's mean and spread moved to ``target``'s inside ``region`` (0/1)
    (a Reinhard-style transfer in BGR, as swap pipelines colour-correct the pasted face)."""
    sel = region > 0.5
    if not sel.any():
        return source.copy()
    s, t = source.astype(np.float32), target.astype(np.float32)
    out = np.empty_like(s)
    for c in range(3):
        sm, ss = s[..., c][sel].mean(), s[..., c][sel].std() + 1e-3
        tm, ts = t[..., c][sel].mean(), t[..., c][sel].std() + 1e-3
        out[..., c] = (s[..., c] - sm) * (ts / ss) + tm
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def identity_blend(face: np.ndarray, donor: np.ndarray, rng: np.random.Generator,
                   hard_p: float = HARD_PASTE_P) -> tuple[np.ndarray, np.ndarray]:
    """Face X-ray / I2G-style forgery: ``donor`` (another identity) pasted onto ``face``."""
    face, donor = _check(face), _check(donor, "donor")
    h, w = face.shape[:2]
    if donor.shape[:2] != (h, w):
        donor = cv2.resize(donor, (w, h), interpolation=cv2.INTER_AREA)
    if is_gray(face) and not is_gray(donor):  # no colour inside a grey face: no forgery has that cue
        donor = cv2.cvtColor(cv2.cvtColor(donor, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    hard = face_mask(h, w, rng)
    source = match_colour(perturb_geometry(donor, rng), face, hard)
    if is_gray(face):
        source = cv2.cvtColor(cv2.cvtColor(source, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < hard_p:
        mask = hard
    else:
        mask = soften(hard, rng) * float(rng.choice(np.asarray(BLEND_RATIOS, np.float32)))
    mask = mask.astype(np.float32)
    return _blend(face, source, mask), mask


REGIONS = {  # centre (x, y) and half-axes (x, y) as fractions of the crop, for a runtime-centred face
    "eyes": ((0.5, 0.42), (0.26, 0.09)),
    "mouth": ((0.5, 0.72), (0.16, 0.08)),
}


def region_mask(h: int, w: int, region: str, rng: np.random.Generator) -> np.ndarray:
    """A soft float32 mask over the eyes or the mouth (jittered ellipse, blurred), peak 1."""
    (cx, cy), (ax, ay) = REGIONS[region]
    cx, cy = w * (cx + rng.uniform(-0.03, 0.03)), h * (cy + rng.uniform(-0.03, 0.03))
    ax, ay = w * ax * rng.uniform(0.85, 1.2), h * ay * rng.uniform(0.85, 1.3)
    hard = np.zeros((h, w), np.float32)
    cv2.ellipse(hard, (int(round(cx)), int(round(cy))), (max(1, int(round(ax))), max(1, int(round(ay)))),
                float(rng.uniform(-8, 8)), 0, 360, 1.0, -1)
    k = max(3, int(round(rng.uniform(0.03, 0.08) * min(h, w))) | 1)
    soft = cv2.GaussianBlur(hard, (k, k), 0)
    peak = float(soft.max())
    return (soft / peak if peak > 0 else soft).astype(np.float32)


def region_blend(face: np.ndarray, rng: np.random.Generator,
                 donor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A blend confined to the eyes or the mouth (expression and attribute edits)."""
    face = _check(face)
    h, w = face.shape[:2]
    region = ("eyes", "mouth")[int(rng.integers(2))]
    mask = region_mask(h, w, region, rng) * float(rng.choice(np.asarray((0.7, 1.0, 1.0), np.float32)))
    if donor is not None and rng.random() < 0.5:
        donor = _check(donor, "donor")
        if donor.shape[:2] != (h, w):
            donor = cv2.resize(donor, (w, h), interpolation=cv2.INTER_AREA)
        source = match_colour(donor, face, (mask > 0.2).astype(np.float32))
        if is_gray(face):
            source = cv2.cvtColor(cv2.cvtColor(source, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    else:
        source = perturb_geometry(perturb_frequency(perturb_colour(face, rng), rng), rng)
    mask = mask.astype(np.float32)
    return _blend(face, source, mask), mask


def local_warp(face: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One to three smooth displacement bumps inside the face (bulge, pinch or shift); the mask is
    the normalised bump weight, cut to 0 where the displacement is below 1/20 of a pixel."""
    face = _check(face)
    h, w = face.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx = np.zeros((h, w), np.float32)
    dy = np.zeros((h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = w * rng.uniform(0.32, 0.68), h * rng.uniform(0.32, 0.78)
        sigma = min(h, w) * rng.uniform(0.07, 0.16)
        bump = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2.0 * sigma ** 2)).astype(np.float32)
        amp = min(h, w) * rng.uniform(0.03, 0.07)
        kind = int(rng.integers(3))
        if kind < 2:  # radial: bulge (sample nearer the centre) or pinch
            sign = -1.0 if kind == 0 else 1.0
            r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) + 1e-3
            dx += sign * amp * bump * (xx - cx) / (r + sigma)
            dy += sign * amp * bump * (yy - cy) / (r + sigma)
        else:  # shift: a feature moved
            ang = rng.uniform(0, 2 * np.pi)
            dx += amp * bump * np.cos(ang)
            dy += amp * bump * np.sin(ang)
        weight = np.maximum(weight, bump)
    warped = cv2.remap(face, xx + dx, yy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    moved = np.sqrt(dx ** 2 + dy ** 2) >= 0.05
    mask = np.where(moved, weight / max(float(weight.max()), 1e-6), 0.0).astype(np.float32)
    fake = np.where(moved[..., None], warped, face)
    return np.ascontiguousarray(fake, dtype=np.uint8), mask


def resample_trace(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``img`` rescaled by a random factor and back, random interpolations and a sub-pixel shift."""
    h, w = img.shape[:2]
    f = rng.uniform(0.4, 0.75) if rng.random() < 0.6 else rng.uniform(1.4, 2.5)
    down = _INTERP[int(rng.integers(len(_INTERP)))]
    up = _INTERP[int(rng.integers(3))]  # nearest, linear or cubic back to size
    mid = cv2.resize(img, (max(2, int(round(w * f))), max(2, int(round(h * f)))), interpolation=down)
    back = cv2.resize(mid, (w, h), interpolation=up)
    sx, sy = rng.uniform(-0.5, 0.5, size=2)
    m = np.array([[1.0, 0.0, sx], [0.0, 1.0, sy]], np.float32)
    return cv2.warpAffine(back, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def resample_blend(face: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The face region replaced by a resampled copy of itself through a soft face mask."""
    face = _check(face)
    h, w = face.shape[:2]
    mask = (soften(face_mask(h, w, rng), rng) * float(rng.choice(np.asarray((0.75, 1.0, 1.0), np.float32))))
    mask = mask.astype(np.float32)
    return _blend(face, resample_trace(face, rng), mask), mask


_GENERATORS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "sbi": lambda face, rng, donor: self_blend(face, rng),
    "i2g": lambda face, rng, donor: identity_blend(face, donor, rng),
    "region": lambda face, rng, donor: region_blend(face, rng, donor),
    "warp": lambda face, rng, donor: local_warp(face, rng),
    "resample": lambda face, rng, donor: resample_blend(face, rng),
}


def forge(family: str, face: np.ndarray, rng: np.random.Generator,
          donor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A forgery of ``face`` of ``family`` (:data:`FAMILIES`): (fake uint8 BGR, mask float32 [0, 1]).

    ``donor``: a face of another identity, required by ``i2g``, used by ``region`` when given.
    """
    if family not in _GENERATORS:
        raise ValueError(f"forgery family {family!r}: unknown; use one of {', '.join(FAMILIES)}")
    if family in NEEDS_DONOR and donor is None:
        raise ValueError(f"forgery family {family!r} blends two identities: pass a donor face")
    return _GENERATORS[family](face, rng, donor)
