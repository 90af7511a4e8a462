"""Deepfake-training augmentations on uint8 BGR crops, in numpy/OpenCV.

Flip, JPEG re-compression, Gaussian blur and colour jitter: the degradations videos go through
between a forgery tool and a detector, so a model trained with them does not rely on pristine
high-frequency traces. Each op is a small callable ``op(img, rng) -> img``; :class:`Augment`
chains them, each applied with its own probability. Randomness comes from the generator passed
in (datasets derive one per item and epoch) or from the Augment's own seeded generator, so a
run is reproducible either way.
"""

from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np

Op = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def hflip(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img[:, ::-1])


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG at ``quality`` (1..100)."""
    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:  # OpenCV always has a JPEG encoder; keep the image if it ever fails
        return img
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), float(sigma)) if sigma > 0 else img


def color_jitter(img: np.ndarray, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 hue: float = 0.0) -> np.ndarray:
    """Brightness and contrast as factors around 1 (0 = no change), saturation likewise, hue as a
    fraction of the colour circle (−0.5..0.5)."""
    x = img.astype(np.float32) * (1.0 + brightness)
    if contrast:
        mean = float(cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).mean())
        x = (x - mean) * (1.0 + contrast) + mean
    out = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if saturation or hue:
        hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV).astype(np.float32)
        hsv[..., 0] = np.mod(hsv[..., 0] + hue * 180.0, 180.0)
        hsv[..., 1] = np.clip(hsv[..., 1] * (1.0 + saturation), 0, 255)
        out = cv2.cvtColor(np.rint(hsv).astype(np.uint8), cv2.COLOR_HSV2BGR)
    return out


class RandomFlip:
    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return hflip(img) if rng.random() < self.p else img


class RandomJpeg:
    def __init__(self, p: float = 0.5, quality: tuple[int, int] = (40, 95)) -> None:
        self.p, self.quality = p, quality

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return img
        return jpeg(img, int(rng.integers(self.quality[0], self.quality[1] + 1)))


class RandomBlur:
    def __init__(self, p: float = 0.25, sigma: tuple[float, float] = (0.3, 1.5)) -> None:
        self.p, self.sigma = p, sigma

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return img
        return gaussian_blur(img, rng.uniform(*self.sigma))


class ColorJitter:
    """Each of brightness/contrast/saturation is drawn in ±value, hue in ±hue."""

    def __init__(self, p: float = 0.5, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue: float = 0.03) -> None:
        self.p = p
        self.ranges = (brightness, contrast, saturation, hue)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return img
        b, c, s, h = (float(rng.uniform(-r, r)) if r else 0.0 for r in self.ranges)
        return color_jitter(img, b, c, s, h)


def default_ops(p: float = 0.5) -> list[Op]:
    """Flip, colour jitter, blur, then JPEG last (compression is what a video does last)."""
    return [RandomFlip(0.5), ColorJitter(p), RandomBlur(p / 2), RandomJpeg(p)]


class Augment:
    """A chain of random ops. ``Augment(p=0.5, seed=0)`` is the default training chain;
    ``Augment(ops=[...])`` composes your own. Call as ``aug(img)`` (own generator, seeded) or
    ``aug(img, rng)`` (caller's generator: what datasets do, for per-item reproducibility)."""

    def __init__(self, p: float = 0.5, ops: Sequence[Op] | None = None, seed: int | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"augmentation probability {p}, expected 0..1")
        self.ops = list(ops) if ops is not None else default_ops(p)
        self.rng = np.random.default_rng(seed)

    def __call__(self, img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image of dtype {img.dtype} and shape {img.shape}, expected uint8 H×W×3")
        g = self.rng if rng is None else rng
        for op in self.ops:
            img = op(img, g)
        return np.ascontiguousarray(img)

    def __repr__(self) -> str:
        return f"Augment({[type(op).__name__ for op in self.ops]})"
