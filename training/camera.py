"""What a camera and a video codec do to a face, for real and fake training faces alike.

Studio photos are not video frames. In the field the runtime crops faces of 50-200 pixels out
of compressed video, often in poor light, and resizes them to the network's input; crops cut by
other tools are framed differently. A model trained only on clean, large faces learns traces
that do not survive that trip, and a model trained on degraded fakes but clean reals learns the
degradation. So every training face, real or fake, takes the same random trip, after any
blending and before the crop (:func:`camera_view`):

1. scaled so the face box is ``face_px`` pixels (log-uniform, default 50-200) with a random
   interpolation, as a camera and a video scaler sample it;
2. dim light (darker, lower contrast, then sensor noise that grows as the light falls) and blur
   (defocus or motion), each some of the time;
3. compressed: H.264 through libx264 (PyAV, when installed: an intra frame, or a predicted one
   after a slightly moved copy of itself) or JPEG, at a random quality;
4. cropped by the runtime's own crop from a jittered box: the centre moved, the size changed and
   the margin varied (:func:`jitter_box`), so crops framed by other tools are not a new world.

Each step has a probability and a range in :class:`CameraConfig`; ``benchmarks.augment_effect``
measures what each does to a trained model. Everything random is drawn from the generator passed
in, so one (image, seed) gives one view.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Sequence

import cv2
import numpy as np

from runtime.preprocess import face_crop

_INTERP_DOWN = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST)
_INTERP_DOWN_P = (0.5, 0.3, 0.15, 0.05)


@dataclass(frozen=True)
class CameraConfig:
    """The trip a face takes; a probability of 0 turns a step off."""

    face_px: tuple[float, float] = (50.0, 200.0)  # face box side after scaling (log-uniform)
    p_dim: float = 0.25
    p_noise: float = 0.35
    p_blur: float = 0.25
    p_compress: float = 0.85
    p_h264: float = 0.6  # of the compressed ones, when PyAV is installed (else JPEG)
    crf: tuple[int, int] = (20, 40)  # libx264 constant rate factor (higher: worse)
    jpeg: tuple[int, int] = (35, 90)
    p_jitter: float = 1.0  # framing jitter of the crop's box
    p_wide: float = 0.3  # of those, a margin from a wide range (other tools' crops)

    def at(self, strength: float) -> CameraConfig:
        """This trip at ``strength`` (0: none, 1: as configured), for a curriculum: each step's
        probability scaled, the smallest face and the lowest quality moved toward the mildest."""
        s = min(max(float(strength), 0.0), 1.0)
        if s >= 1.0:
            return self
        lo, hi = self.face_px
        return replace(self, face_px=(hi * (lo / hi) ** s if hi > 0 else lo, hi), p_dim=self.p_dim * s,
                       p_noise=self.p_noise * s, p_blur=self.p_blur * s, p_compress=self.p_compress * s,
                       crf=(self.crf[0], int(round(self.crf[0] + s * (self.crf[1] - self.crf[0])))),
                       jpeg=(int(round(self.jpeg[1] - s * (self.jpeg[1] - self.jpeg[0]))), self.jpeg[1]),
                       p_wide=self.p_wide * s)

    def without(self, *steps: str) -> CameraConfig:
        """This config with steps turned off: scale, dim, noise, blur, compress, h264, jitter."""
        off = {"dim": {"p_dim": 0.0}, "noise": {"p_noise": 0.0}, "blur": {"p_blur": 0.0},
               "compress": {"p_compress": 0.0}, "h264": {"p_h264": 0.0}, "jitter": {"p_jitter": 0.0},
               "scale": {"face_px": (0.0, 0.0)}}
        changes: dict = {}
        for s in steps:
            if s not in off:
                raise ValueError(f"camera step {s!r}; use one of {', '.join(off)}")
            changes.update(off[s])
        return replace(self, **changes)


CAMERA_STEPS = ("scale", "dim", "noise", "blur", "compress", "h264", "jitter")
DEFAULT = CameraConfig()
OFF = DEFAULT.without(*CAMERA_STEPS)


def camera_view(image: np.ndarray, box: Sequence[float], landmarks: np.ndarray | None, rng: np.random.Generator,
                size: int, margin: float, cfg: CameraConfig = DEFAULT, align: str = "box") -> np.ndarray:
    """The runtime's crop (``size`` px, ``margin``) of the face at ``box`` in ``image`` after the
    camera's trip (:class:`CameraConfig`); uint8 BGR size×size×3."""
    img, box_a, marks = image, np.asarray(box[:4], np.float64), landmarks
    side = float(max(box_a[2], box_a[3]))
    if cfg.face_px[1] > 0 and side > 0:
        lo, hi = np.log(cfg.face_px[0]), np.log(cfg.face_px[1])
        target = float(np.exp(rng.uniform(lo, hi)))
        img, f = _rescale(img, target / side, rng)
        box_a = box_a * f
        marks = None if marks is None else np.asarray(marks, np.float64) * f
    if rng.random() < cfg.p_dim:
        img = dim(img, rng)
    if rng.random() < cfg.p_noise:
        img = sensor_noise(img, rng)
    if rng.random() < cfg.p_blur:
        img = blur(img, rng)
    if rng.random() < cfg.p_compress:
        img = compress(img, rng, cfg)
    if rng.random() < cfg.p_jitter:
        box_a, m = jitter_box(box_a, margin, rng, cfg.p_wide)
    else:
        m = margin
    return face_crop(img, tuple(box_a), None if marks is None else marks.astype(np.float32), m, size, align)


def _rescale(img: np.ndarray, f: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """``img`` scaled by about ``f`` (at least 16 px a side); returns the image and the exact factor."""
    h, w = img.shape[:2]
    nw, nh = max(16, int(round(w * f))), max(16, int(round(h * f)))
    interp = _INTERP_DOWN[int(rng.choice(len(_INTERP_DOWN), p=_INTERP_DOWN_P))] if f < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, (nw, nh), interpolation=interp), nw / float(w)


def dim(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Less light: darker (gain 0.25-0.7) with a camera's tone curve bent either way (gamma 0.8-1.25)."""
    x = img.astype(np.float32) / 255.0
    x = np.power(x * rng.uniform(0.25, 0.7), rng.uniform(0.8, 1.25))
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def sensor_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shot noise that grows with the signal plus read noise (σ 1-8 grey levels), some of it
    correlated between channels as a Bayer sensor's demosaicking leaves it."""
    x = img.astype(np.float32)
    read = rng.uniform(1.0, 8.0)
    shot = np.sqrt(np.maximum(x, 0.0) * rng.uniform(0.0, 0.3))
    luma = rng.normal(0.0, 1.0, img.shape[:2])[..., None].astype(np.float32)
    chroma = rng.normal(0.0, 1.0, img.shape).astype(np.float32)
    mix = rng.uniform(0.3, 0.9)
    n = (mix * luma + (1 - mix) * chroma) * (read + shot)
    return np.clip(np.rint(x + n), 0, 255).astype(np.uint8)


def blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Defocus (Gaussian, σ 0.4-1.6 px) or a short motion streak (3-7 px, any direction)."""
    if rng.random() < 0.6:
        return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.6))
    k = int(rng.integers(3, 8))
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0 / k
    rot = cv2.getRotationMatrix2D(((k - 1) / 2.0, (k - 1) / 2.0), rng.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    kernel /= max(float(kernel.sum()), 1e-6)
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def compress(img: np.ndarray, rng: np.random.Generator, cfg: CameraConfig = DEFAULT) -> np.ndarray:
    """H.264 (when PyAV is installed, ``p_h264`` of the time) or JPEG at a random quality."""
    if rng.random() < cfg.p_h264 and has_h264():
        return h264(img, int(rng.integers(cfg.crf[0], cfg.crf[1] + 1)), predicted=rng.random() < 0.5,
                    shift=tuple(rng.uniform(-1.5, 1.5, 2)))
    q = int(rng.integers(cfg.jpeg[0], cfg.jpeg[1] + 1))
    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), q])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else img


_H264: bool | None = None


def has_h264() -> bool:
    """Whether PyAV with an H.264 encoder (libx264) is installed."""
    global _H264
    if _H264 is None:
        try:
            import av

            av.codec.Codec("libx264", "w")
            _H264 = True
        except Exception:  # not installed, or built without libx264: JPEG stands in
            _H264 = False
    return _H264


def h264(img: np.ndarray, crf: int, predicted: bool = False, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """``img`` through libx264 at ``crf``: an intra frame, or (``predicted``) a P frame coded after a
    copy of itself moved by ``shift`` pixels, as a moving face is coded between key frames."""
    import av

    h, w = img.shape[:2]
    ph, pw = h + (h % 2), w + (w % 2)  # 4:2:0 needs even sides
    frame_img = cv2.copyMakeBorder(img, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE) if (ph, pw) != (h, w) else img
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = pw, ph, "yuv420p"
    codec.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency", "bframes": "0",
                     "keyint": "30" if predicted else "1"}
    codec.time_base = Fraction(1, 25)
    frames = [frame_img]
    if predicted:
        m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
        frames.insert(0, cv2.warpAffine(frame_img, m, (pw, ph), borderMode=cv2.BORDER_REFLECT_101))
    packets = []
    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(f, format="bgr24")
        vf.pts = i
        packets += codec.encode(vf)
    packets += codec.encode(None)
    dec = av.CodecContext.create("h264", "r")
    out = None
    for p in packets:
        for fr in dec.decode(p):
            out = fr.to_ndarray(format="bgr24")
    for fr in dec.decode(None):
        out = fr.to_ndarray(format="bgr24")
    if out is None:
        return img
    return np.ascontiguousarray(out[:h, :w])


def jitter_box(box: np.ndarray, margin: float, rng: np.random.Generator,
               p_wide: float = 0.3) -> tuple[np.ndarray, float]:
    """A face box as another detector or tool might give it: centre moved by up to 6 % of the
    face, size ×0.9-1.15; the margin near the model's (±0.05), or ``p_wide`` of the time from
    0-0.6 (tight crops to loose ones)."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h)
    dx, dy = rng.uniform(-0.06, 0.06, 2) * side
    s = rng.uniform(0.9, 1.15)
    cx, cy = x + w / 2 + dx, y + h / 2 + dy
    nw, nh = w * s, h * s
    m = rng.uniform(0.0, 0.6) if rng.random() < p_wide else max(0.0, margin + rng.uniform(-0.05, 0.05))
    return np.array([cx - nw / 2, cy - nh / 2, nw, nh]), float(m)
