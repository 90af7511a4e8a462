"""What the tracker compares between frames: a face's appearance, and a frame's layout (scene cuts).

A face's **signature** is two small statistics of its box, both from one 36×36 nearest-pixel
sample of its inner 90 % (so its cost does not grow with the face): a 12×12 grayscale thumbnail
(zero mean, unit norm: the face's structure, blind to brightness) and a hue × saturation histogram
(12 × 4 bins) of the central part (skin, hair and lighting colour). Two signatures agree when the
thumbnails correlate and the histograms overlap (Bhattacharyya coefficient); a track keeps a
running signature (an average over its confirmed frames), so a slow change of pose or light is
followed while a different face is not. Measured on a real 720p clip of four people in one room
(their faces 60-90 px; every face found by MTCNN on every frame, linked by overlap): at
correlation ≥ 0.3 and overlap ≥ 0.93 (:data:`NEAR`), 0.2 % of the same face's pairs one frame
apart and 2.2 % five frames apart disagree, and none of 440 pairs of two different people agree
(the largest correlation of two different people was 0.57, the 5th percentile of the same face
five frames apart 0.61: the stricter :data:`FAR` rule for a box that does not overlap the track).

A **scene cut** is a frame whose layout does not continue the one before: the frame sampled to
128×72 (nearest pixels) and averaged down to 32×18 (about 0.06 ms on a 720p frame). When it
differs from the previous frame's by more than 5 % of full scale on average, the two are
correlated (grayscale) at shifts of up to one cell each way (a pan or a large face moving a
thirtieth of the frame a frame still continues the layout); below 0.9 at every shift, it is a cut.
Measured on the same clip (the camera moving) at 1, 5, 10 and 25 frames apart (one processed frame
a second), and on a generated large face sliding fast over a flat background (a tenth of its own
size a frame): 368 pairs of frames, no cut seen (the lowest best-shift correlation among the
frames that differ by more than 5 % was 0.92). The same room re-edited into 8-frame shots of
different places and moments (``benchmarks.people.edited_clip``, 4 seeds, overlapping views
included): 115 of 116 cuts seen. A cut that changes little of the frame (the same background, only
the person changes) is not seen here; rule 1 of :mod:`runtime.tracking` (appearance) keeps the
next person out of the track all the same, and the re-fit (rule 3) stops scoring a box the face
has left.

Both cost a few tens of microseconds a face or a frame (numpy and OpenCV on tiny arrays).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

THUMB = 12  # thumbnail side (px)
SAMPLE = 36  # the face's inner 90 % is sampled at this side first
HIST_BINS = (12, 4)  # hue × saturation
NEAR = (0.3, 0.93)  # (correlation, histogram overlap) a box overlapping the track must reach
FAR = (0.6, 0.96)  # ... and a box within reach that does not overlap it (a fast move, a late re-find)
STILL = (0.9, 0.97)  # a box that still shows the face the detector confirmed a few frames ago
RUNNING = 0.3  # weight of a new confirmed frame in a track's running signature

CUT_SAMPLE, CUT_SIZE = (128, 72), (32, 18)  # nearest-pixel sample, then area-averaged: shift-tolerant
CUT_CORRELATION = 0.9  # below it at every shift (and with CUT_DIFFERENCE) the layout changed: a cut
CUT_SHIFT = 1  # cells of CUT_SIZE each way
CUT_DIFFERENCE = 0.05  # mean absolute difference, share of full scale


@dataclass
class Signature:
    """A face's appearance: unit-norm thumbnail (``THUMB``² floats) and histogram (sums to 1)."""

    thumb: np.ndarray
    hist: np.ndarray

    def similarity(self, other: Signature) -> tuple[float, float]:
        """(thumbnail correlation in [-1, 1], histogram overlap in [0, 1])."""
        corr = float(self.thumb @ other.thumb)
        if not self.thumb.any() and not other.thumb.any():  # two flat patches: alike if their colours are
            corr = 1.0
        return corr, float(np.sqrt(self.hist * other.hist).sum())

    def agrees(self, other: Signature, rule: tuple[float, float] = NEAR) -> bool:
        corr, overlap = self.similarity(other)
        return corr >= rule[0] and overlap >= rule[1]

    def blend(self, other: Signature, weight: float = RUNNING) -> Signature:
        """The running signature after a confirmed frame: ``weight`` of ``other``, renormalised."""
        thumb = (1 - weight) * self.thumb + weight * other.thumb
        norm = float(np.linalg.norm(thumb))
        return Signature(thumb / norm if norm > 0 else thumb, (1 - weight) * self.hist + weight * other.hist)


def _inner(frame: np.ndarray, box, share: float) -> np.ndarray | None:
    """The central ``share`` of ``box`` (x, y, w, h), clipped to the frame; None if nothing is left."""
    x, y, w, h = (float(v) for v in box[:4])
    cx, cy, hw, hh = x + w / 2, y + h / 2, w * share / 2, h * share / 2
    x0, y0 = max(0, int(cx - hw)), max(0, int(cy - hh))
    x1, y1 = min(frame.shape[1], int(np.ceil(cx + hw))), min(frame.shape[0], int(np.ceil(cy + hh)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return frame[y0:y1, x0:x1]


def signature(frame: np.ndarray, box) -> Signature | None:
    """The appearance of the face in ``box`` (frame pixels); None when the box lies outside the frame."""
    core = _inner(frame, box, 0.9)
    if core is None:
        return None
    # one 36×36 nearest-pixel sample of the inner 90 % (cheap whatever the face's size), then small
    # averages of it: the thumbnail from all of it, the colours from its central 70 / 90
    sample = cv2.resize(core, (SAMPLE, SAMPLE), interpolation=cv2.INTER_NEAREST)
    if sample.ndim == 2:
        sample = cv2.cvtColor(sample, cv2.COLOR_GRAY2BGR)
    small = cv2.resize(sample, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32).ravel()
    gray -= gray.mean()
    norm = float(np.linalg.norm(gray))
    thumb = gray / norm if norm > 1e-3 * THUMB else np.zeros_like(gray)  # a flat patch has no structure
    m = round(SAMPLE * (1 - 0.7 / 0.9) / 2)
    hsv = cv2.cvtColor(sample[m: SAMPLE - m, m: SAMPLE - m], cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, list(HIST_BINS), [0, 180, 0, 256]).ravel()
    return Signature(thumb, hist / max(float(hist.sum()), 1.0))


class CutDetector:
    """Feed every processed frame to :meth:`is_cut`; True when it starts a new shot."""

    def __init__(self) -> None:
        self._last: np.ndarray | None = None

    def reset(self) -> None:
        self._last = None

    def is_cut(self, frame: np.ndarray) -> bool:
        small = cv2.resize(cv2.resize(frame, CUT_SAMPLE, interpolation=cv2.INTER_NEAREST), CUT_SIZE,
                           interpolation=cv2.INTER_AREA)
        gray = (small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)).astype(np.float32)
        last, self._last = self._last, gray
        if last is None:
            return False
        diff = float(np.mean(np.abs(gray - last))) / 255.0
        if diff <= CUT_DIFFERENCE:
            return False
        return max(_correlation(gray, last, dx, dy) for dy in range(-CUT_SHIFT, CUT_SHIFT + 1)
                   for dx in range(-CUT_SHIFT, CUT_SHIFT + 1)) < CUT_CORRELATION


def _correlation(a: np.ndarray, b: np.ndarray, dx: int, dy: int) -> float:
    """Correlation of ``a`` with ``b`` shifted by (dx, dy) cells, over their overlap; 0 for a flat one."""
    h, w = a.shape
    a = a[max(0, dy): h + min(0, dy), max(0, dx): w + min(0, dx)]
    b = b[max(0, -dy): h + min(0, -dy), max(0, -dx): w + min(0, -dx)]
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / denom if denom > 0 else 0.0  # a flat frame has no layout to continue
