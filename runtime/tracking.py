"""Follow faces between detections so the detector need not run on every frame.

Every ``detect_every`` frames the detector runs and its boxes are associated to the live
tracks by IoU (greedy, best overlap first); in between, each track moves by its estimated
velocity (constant-velocity update: cheap and good enough for a few frames). Frames are counted
by their position in the source (``update(frame, position)``), so processing every Nth frame
(``--stride``) changes how many frames are looked at, not how far a face may move between two
detections: with a stride of ``detect_every`` or more, every processed frame is a detection. A track that
misses ``max_missed`` detection rounds in a row ends; ended tracks are reported once and
forgotten, so state stays bounded on runs of any length.

Detection rounds mostly look only around the live tracks. A CNN detector with a ``refine``
method (MTCNN) re-fits each tracked face from its predicted box (one 48 px crop through its last
network) and falls back to the window search below; a box found around a track is that track's,
however far the face moved. Otherwise (Haar) a round searches a window around each track (2.5×
the face, shrunk so the face is ~32 px, for faces 0.8-1.25× the tracked size; when that finds
nothing, a wider and slower one): about 1/50 of the CPU of a full-frame scan. Every ``full_every``-th round (16: every
80 frames at ``detect_every`` 5, 3.2 s at 25 fps), the whole frame is scanned so new faces are
picked up, with the detector's coarse setting (Haar: scale steps of 1.2 instead of 1.1);
whenever there is no track, it is scanned at full precision. Those scans are most of the
tracker's cost (35 ms of CPU each on a 720p frame: ~0.45 ms a frame at 16, 0.9 at 8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import cv2
import numpy as np

from runtime.faces import Box, Detection

# window searches around a tracked face: (window side in face sides, face side in px after
# shrinking the window (Haar's own window is 20 px), face sizes searched relative to the tracked one)
# CPU per search, Haar on a 720p frame, one OpenCV thread (measured): near 1.3 ms, wide 5.2 ms;
# a full scan 63 ms, a coarse one 35 ms
ROI_NEAR = (2.5, 32, (0.8, 1.25))  # first, and almost always enough
ROI_WIDE = (3.5, 40, (0.7, 1.4))  # only when the first finds nothing (fast motion, zoom)


def shrink(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """Downscale to w×h: area-average by the largest whole factor (OpenCV's fast path), then
    bilinear for the rest (< 2×). Close to one INTER_AREA resize at a third of its cost."""
    k = min(image.shape[1] // w, image.shape[0] // h)
    if k >= 2:
        hh, ww = image.shape[0] // k * k, image.shape[1] // k * k
        image = cv2.resize(image[:hh, :ww], (ww // k, hh // k), interpolation=cv2.INTER_AREA)
    if image.shape[1] == w and image.shape[0] == h:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


class Detector(Protocol):
    def detect(self, frame: np.ndarray, sizes: tuple[int, int] | None = None, coarse: bool = False) -> list[Box]: ...


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = min(ax1, bx1) - max(a[0], b[0])
    ih = min(ay1, by1) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


@dataclass
class Track:
    id: int
    anchor: np.ndarray  # float x, y, w, h of the last matched detection
    last_seen: int  # frame position of that detection
    velocity: np.ndarray  # of the box centre, px per frame position
    missed: int = 0  # detection rounds in a row without a match
    matched: int = 1  # detections matched so far
    score: float | None = None  # the detector's confidence in the last matched detection
    landmarks: np.ndarray | None = None  # 5×2 of the last matched detection, frame pixels

    def box_at(self, n: int) -> np.ndarray:
        box = self.anchor.copy()
        box[:2] += self.velocity * (n - self.last_seen)
        return box

    def landmarks_at(self, n: int) -> np.ndarray | None:
        """The landmarks moved with the box (constant velocity), or None."""
        if self.landmarks is None:
            return None
        return (self.landmarks + self.velocity * (n - self.last_seen)).astype(np.float32)


def _int_box(box: np.ndarray) -> Box:
    x, y, w, h = (int(round(v)) for v in box)
    return x, y, max(1, w), max(1, h)


def _centre_distance(a: Sequence[float], b: Sequence[float]) -> float:
    return math.hypot(a[0] + a[2] / 2 - b[0] - b[2] / 2, a[1] + a[3] / 2 - b[1] - b[3] / 2)


def _within_reach(track_box: Sequence[float], box: Sequence[float]) -> bool:
    """Whether ``box`` is where a window round around ``track_box`` looks: centre inside the wide
    window, size within its range."""
    side = max(track_box[2], track_box[3])
    lo, hi = ROI_WIDE[2]
    return (_centre_distance(track_box, box) <= side * ROI_WIDE[0] / 2
            and lo * side <= max(box[2], box[3]) <= hi * side)


@dataclass(frozen=True)
class TrackedFace:
    track: int
    box: Box
    detected: bool  # True on a detection frame, False when the box was predicted
    score: float | None = None  # the detector's confidence (its last detection of this track)
    landmarks: np.ndarray | None = None  # 5×2 frame pixels, moved with the box between detections


class FaceTracker:
    """Detector + IoU association + constant-velocity motion between detections."""

    def __init__(self, detector: Detector, detect_every: int = 1, max_faces: int = 10,
                 iou_threshold: float = 0.3, max_missed: int = 2, first_id: int = 1, full_every: int = 16) -> None:
        self.detector = detector
        self.full_every = max(1, int(full_every)) if getattr(detector, "supports_roi", False) else 1
        self._rounds = 0
        self.detect_every = max(1, int(detect_every))
        self.max_faces = max_faces
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self._next_id = first_id
        self._tracks: list[Track] = []
        self._count = 0  # frames processed since the last reset
        self._round: int | None = None  # position // detect_every at the last detection

    @property
    def live_tracks(self) -> int:
        return len(self._tracks)

    def reset(self) -> list[int]:
        """End every track (a new source item starts); returns the ended ids."""
        ended = [t.id for t in self._tracks]
        self._tracks = []
        self._count = self._rounds = 0
        self._round = None
        return ended

    def update(self, frame: np.ndarray, position: int | None = None) -> tuple[list[TrackedFace], list[int]]:
        """Faces in this frame (largest first) and the ids of tracks that ended here.

        ``position``: the frame's number in its source (a file's frame index; it grows by the
        stride), default the count of frames processed since the last reset. The detector runs on
        the first frame of each block of ``detect_every`` positions that is processed.
        """
        n = self._count if position is None else int(position)
        self._count += 1
        h, w = frame.shape[:2]
        block = n // self.detect_every
        detected = self._round is None or block != self._round
        if detected:
            self._round = block
            boxes, coarse, owners = self._detect(frame, n)
            ended = self._associate(boxes[: self.max_faces], n, penalize=not coarse, owners=owners)
        else:
            ended = self._drop_outside(n, w, h)
        faces = [TrackedFace(t.id, _int_box(t.box_at(n)), t.last_seen == n, t.score, t.landmarks_at(n))
                 for t in self._tracks if t.missed == 0]
        faces.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
        return faces, ended

    def _detect(self, frame: np.ndarray, n: int) -> tuple[list[Box], bool, dict[int, int]]:
        """Full-frame detection, or detection in windows around the live tracks; whether it was a
        coarse scan for new faces (which may miss a tracked face: that is no miss); and, for window
        rounds, which track each box was found around (box index → track index)."""
        full = not self._tracks or self._rounds % self.full_every == 0
        self._rounds += 1
        if full and self._tracks and self.full_every > 1:
            # a scan for new faces beside tracked ones: coarser scale steps (half the cost); the
            # boxes are refined by the window rounds that follow
            return self.detector.detect(frame, coarse=True), True, {}
        if full:
            return self.detector.detect(frame), False, {}
        found: list[tuple[Box, int]] = []
        refine = getattr(self.detector, "refine", None)  # a CNN re-fits a tracked box directly
        for i, t in enumerate(self._tracks):
            box = t.box_at(n)
            hits = ((refine(frame, box) if refine else []) or self._search(frame, box, *ROI_NEAR)
                    or self._search(frame, box, *ROI_WIDE))
            found.extend((b, i) for b in hits)
        kept: list[Box] = []  # windows of nearby tracks overlap: one box per face
        owners: dict[int, int] = {}
        for b, i in sorted(found, key=lambda bi: bi[0][2] * bi[0][3], reverse=True):
            if all(iou(b, k) < 0.5 for k in kept):
                owners[len(kept)] = i  # found around track i: its face, however far it moved
                kept.append(b)
        return kept, False, owners

    def _search(self, frame: np.ndarray, box: np.ndarray, sides: float, face_px: int,
                sizes: tuple[float, float]) -> list[Box]:
        """Detect in a window ``sides`` face sides wide around ``box``, shrunk so the face is
        ``face_px`` pixels, for faces ``sizes`` (relative) of the tracked one; frame coordinates."""
        h, w = frame.shape[:2]
        x, y, bw, bh = box
        side = max(bw, bh)
        half = side * sides / 2
        cx, cy = x + bw / 2, y + bh / 2
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(w, int(cx + half)), min(h, int(cy + half))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return []
        face_px = max(face_px, getattr(self.detector, "roi_face_px", 0))  # a CNN may want more pixels
        scale = min(1.0, face_px / side)
        roi = frame[y0:y1, x0:x1]
        if getattr(self.detector, "gray_ok", False) and roi.ndim == 3:
            roi = cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY)
        if scale < 1.0:
            roi = shrink(roi, max(1, int((x1 - x0) * scale)), max(1, int((y1 - y0) * scale)))
        expect = side * scale  # the face's side in the (scaled) window
        lo, hi = int(expect * sizes[0]), int(math.ceil(expect * sizes[1]))
        return [Detection(b, getattr(b, "score", None), getattr(b, "landmarks", None)).moved(x0, y0, 1 / scale)
                for b in self.detector.detect(roi, sizes=(lo, hi))]

    def _associate(self, boxes: list[Box], n: int, penalize: bool = True,
                   owners: dict[int, int] | None = None) -> list[int]:
        predicted = [t.box_at(n) for t in self._tracks]
        pairs = sorted(((iou(p, b), i, j) for i, p in enumerate(predicted) for j, b in enumerate(boxes)),
                       reverse=True)
        used_t: set[int] = set()
        used_b: set[int] = set()
        for j, i in (owners or {}).items():  # a box found by searching around a track is that track's
            if j < len(boxes) and i not in used_t:
                used_t.add(i)
                used_b.add(j)
                self._match(self._tracks[i], boxes[j], n)
        for score, i, j in pairs:
            if score < self.iou_threshold:
                break
            if i not in used_t and j not in used_b:
                used_t.add(i)
                used_b.add(j)
                self._match(self._tracks[i], boxes[j], n)
        # a face that moved further than predicted (the first rounds of a track, when its velocity
        # is not known yet; long gaps between detections) overlaps too little: a box left over
        # within the area a window round searches, at the track's size, is still that face
        near = sorted((_centre_distance(p, b), i, j) for i, p in enumerate(predicted) if i not in used_t
                      for j, b in enumerate(boxes) if j not in used_b and _within_reach(p, b))
        for _, i, j in near:
            if i not in used_t and j not in used_b:
                used_t.add(i)
                used_b.add(j)
                self._match(self._tracks[i], boxes[j], n)
        ended, kept = [], []
        for i, t in enumerate(self._tracks):
            if i not in used_t and penalize:
                t.missed += 1
                if t.missed > self.max_missed:
                    ended.append(t.id)
                    continue
            kept.append(t)
        for j, b in enumerate(boxes):  # largest first: the biggest new faces get the free places
            if j not in used_b and len(kept) < self.max_faces:
                kept.append(Track(self._next_id, np.asarray(b[:4], np.float64), n, np.zeros(2),
                                  score=getattr(b, "score", None), landmarks=getattr(b, "landmarks", None)))
                self._next_id += 1
        self._tracks = kept
        return ended

    @staticmethod
    def _match(t: Track, found: Box, n: int) -> None:
        box = np.asarray(found[:4], np.float64)
        t.score, t.landmarks = getattr(found, "score", None), getattr(found, "landmarks", None)
        gap = max(1, n - t.last_seen)
        observed = (box[:2] + box[2:] / 2 - t.anchor[:2] - t.anchor[2:] / 2) / gap
        t.velocity = observed if t.matched == 1 else 0.5 * t.velocity + 0.5 * observed
        t.anchor, t.last_seen, t.missed = box, n, 0
        t.matched += 1

    def _drop_outside(self, n: int, w: int, h: int) -> list[int]:
        """End tracks whose predicted box has left the frame."""
        ended, kept = [], []
        for t in self._tracks:
            x, y, bw, bh = t.box_at(n)
            if x + bw <= 0 or y + bh <= 0 or x >= w or y >= h:
                ended.append(t.id)
            else:
                kept.append(t)
        self._tracks = kept
        return ended
