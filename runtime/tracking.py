"""Follow faces between detections; one track is one person.

**The rule.** A track is one person, from the frame it starts to the frame it ends:

1. *A detection joins a track only when overlap and appearance agree*: its box overlaps the
   track's predicted box (IoU ≥ 0.3) and its appearance signature (:mod:`runtime.appearance`: a
   grayscale thumbnail and a colour histogram of the face) agrees with the track's running one;
   or, frames apart (a stride, dropped frames, a track lost a few frames), its centre is within the
   distance a face moves in that gap (:data:`MOTION`: 0.1 face side per frame position since the
   track was last seen, up to the wide window's reach) and its appearance agrees; or, for a face
   that moved further still (a jump, a window search's late re-find), its centre is within the area
   a window round searches and its appearance agrees by a stricter margin. Any other detection
   starts a new track; a track no detection joins is missed.
2. *A scene cut ends every track*: a frame whose small layout does not continue the previous
   frame's (:class:`runtime.appearance.CutDetector`) ends all live tracks, and that frame is scanned
   afresh. A track never spans a cut, and whoever is in the next shot gets a new id. The layout
   check is measured one frame apart; frames further apart (a stride, dropped frames) a large face
   moving on shifts and grows more than it allows, so there a changed layout is a cut only when no
   live face continues into the frame (re-found by the detector within rule 1's motion gate,
   looking like itself).
3. *A box is scored only while the detector confirms a face in it, on that frame*. On every
   detection round, each live track is re-found from its predicted box by the detector: MTCNN
   re-fits it with O-Net alone (one 48 px crop, all tracks in one batch; confirmed when O-Net's
   score reaches the face threshold and rule 1 holds); Haar and YuNet search the small window
   around it (confirmed when that search finds a face that rule 1 accepts). Between rounds the
   same re-fit runs on every frame, except for a box that still shows, at a strict margin
   (:data:`runtime.appearance.STILL`: thumbnail correlation ≥ 0.9, colour overlap ≥ 0.97), the
   face the detector itself confirmed in it within the last ``detect_every`` frames: its pixels
   are the face's, so it is confirmed without spending the network (about two frames in three of
   a steady face); a box whose content changed (the face moved off it, turned, left, or another
   person stands there) is re-fitted on that frame. ``--faces none`` (the frame is the face crop)
   is always confirmed; a detector with neither a re-fit nor windows (boxes given per frame)
   confirms on its detection frames only. A new face must also survive a re-fit on the frame it
   was found in (which drops most false boxes a scan finds once on texture), and a box within the
   head of a face twice its size (an ear, a hand) is not a new face. A track that is not confirmed
   on a frame is *lost* for that frame: reported with ``detected`` false, never cropped, scored or
   counted in a verdict.
4. *A jump is not motion*: the velocity that carries a box between confirmations is an average of
   observed moves, and a move faster than a quarter of the face's side per frame (or one accepted
   under the stricter far rule) resets it to zero instead of being extrapolated.

**The cost.** Every ``detect_every`` frames a *detection round* also searches a window around each
track the re-fit lost (2.5× the face, shrunk so the face is ~32 px, for faces 0.8-1.25× the
tracked size; when that finds nothing, a wider and slower one) and counts a miss for a track
still not found; a track missing ``max_missed`` rounds in a row ends. Every ``full_every``-th round
(16: every 80 frames at ``detect_every`` 5, 3.2 s at 25 fps) the whole frame is scanned for new
faces with the detector's coarse setting (Haar: scale steps of 1.2 instead of 1.1); whenever there
is no track, at full precision. A re-fit costs about 0.2-0.3 ms of CPU per face (O-Net, AVX-512
machine, idle), the appearance signature about 0.07 ms and the cut check about 0.06 ms a frame;
the scans are most of the tracker's cost (35 ms of CPU each on a 720p frame: ~0.45 ms a frame at
16). ``refits`` and ``still`` count the two kinds of confirmation.

Frames are counted by their position in the source (``update(frame, position)``), so processing
every Nth frame (``--stride``) changes how many frames are looked at, not how far a face may move
between two detection rounds: with a stride of ``detect_every`` or more, every processed frame is
a detection round. Ended tracks are reported once and forgotten, so state stays bounded on runs
of any length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import cv2
import numpy as np

from runtime.appearance import FAR, NEAR, STILL, CutDetector, Signature, signature
from runtime.detection import Box, Detection

# window searches around a tracked face: (window side in face sides, face side in px after
# shrinking the window (Haar's own window is 20 px), face sizes searched relative to the tracked one)
# CPU per search, Haar on a 720p frame, one OpenCV thread (measured): near 1.3 ms, wide 5.2 ms;
# a full scan 63 ms, a coarse one 35 ms
ROI_NEAR = (2.5, 32, (0.8, 1.25))  # first, and almost always enough
ROI_WIDE = (3.5, 40, (0.7, 1.4))  # only when the first finds nothing (fast motion, zoom)
MAX_SPEED = 0.25  # face sides per frame position: a faster move is a jump, not motion
# face sides per frame position that a face is expected to cover between two sightings (2.5 sides a
# second at 25 fps, a brisk walk across the view): the radius of the motion gate grows by it with
# every frame since the track was last seen, up to the area a window round searches
MOTION = 0.1


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
    anchor: np.ndarray  # float x, y, w, h of the last confirmed box
    last_seen: int  # frame position of that box
    velocity: np.ndarray  # of the box centre, px per frame position
    sig: Signature | None = None  # running appearance signature (None: the box never lay in the frame)
    seen_sig: Signature | None = None  # the appearance of the last box the detector itself confirmed ...
    seen_at: int = -1  # ... and its frame position
    missed: int = 0  # detection rounds in a row without a confirmation
    matched: int = 1  # confirmations so far
    score: float | None = None  # the detector's confidence in the last confirmed box
    landmarks: np.ndarray | None = None  # 5×2 of the last confirmed box, frame pixels

    def box_at(self, n: int) -> np.ndarray:
        box = self.anchor.copy()
        box[:2] += self.velocity * (n - self.last_seen)
        return box

    def landmarks_at(self, n: int) -> np.ndarray | None:
        """The landmarks moved with the box (constant velocity), or None."""
        if self.landmarks is None:
            return None
        return (self.landmarks + self.velocity * (n - self.last_seen)).astype(np.float32)

    def looks_like(self, sig: Signature | None, rule: tuple[float, float] = NEAR) -> bool:
        """Whether a box with appearance ``sig`` may be this track's face (an unknown side agrees)."""
        return self.sig is None or sig is None or self.sig.agrees(sig, rule)


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


def _within_motion(track_box: Sequence[float], box: Sequence[float], frames: int) -> bool:
    """Whether ``box`` is where the face in ``track_box`` may have moved in ``frames`` frame
    positions: centre within ``MOTION`` face sides per frame (at most the wide window's reach), size
    within the wide window's range. With a gap of a few frames (a stride, dropped live frames, a
    face re-found at a detection round) a face moves further than the overlap rule allows."""
    side = max(track_box[2], track_box[3])
    lo, hi = ROI_WIDE[2]
    radius = side * min(MOTION * max(1, frames), ROI_WIDE[0] / 2)
    return _centre_distance(track_box, box) <= radius and lo * side <= max(box[2], box[3]) <= hi * side


def _within_head(box: Sequence[float], face: Sequence[float]) -> bool:
    """Whether ``box`` is a part of the head of a face at least twice its size (an ear, a hand on the
    cheek a detector mistook for a face): its centre within that face's box widened 1.5×."""
    side, big = max(box[2], box[3]), max(face[2], face[3])
    if side * 2 > big:
        return False
    dx = abs(box[0] + box[2] / 2 - face[0] - face[2] / 2)
    dy = abs(box[1] + box[3] / 2 - face[1] - face[3] / 2)
    return dx <= 0.75 * face[2] and dy <= 0.75 * face[3]


@dataclass(frozen=True)
class TrackedFace:
    track: int
    box: Box
    detected: bool  # the detector confirmed this face in this frame (rule 3); False: lost here, not scored
    score: float | None = None  # the detector's confidence (its last confirmation of this track)
    landmarks: np.ndarray | None = None  # 5×2 frame pixels, moved with the box while lost


@dataclass
class _Candidate:
    box: Box
    sig: Signature | None


class FaceTracker:
    """Detector + association by overlap and appearance + scene cuts + per-frame confirmation."""

    def __init__(self, detector: Detector, detect_every: int = 1, max_faces: int = 10,
                 iou_threshold: float = 0.3, max_missed: int = 2, first_id: int = 1, full_every: int = 16,
                 cuts: bool = True) -> None:
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
        self._round: int | None = None  # position // detect_every at the last detection round
        self._cuts = CutDetector() if cuts else None
        self.scene_cuts = 0  # cuts seen since the tracker was made (they ended every live track)
        self._last_n: int | None = None  # position of the frame processed before this one
        self.refits = self.still = 0  # confirmations by the detector, and by an unchanged appearance

    @property
    def live_tracks(self) -> int:
        return len(self._tracks)

    def reset(self) -> list[int]:
        """End every track (a new source item starts); returns the ended ids."""
        ended = [t.id for t in self._tracks]
        self._tracks = []
        self._count = self._rounds = 0
        self._round = self._last_n = None
        if self._cuts is not None:
            self._cuts.reset()
        return ended

    def update(self, frame: np.ndarray, position: int | None = None,
               cadence: int | None = None) -> tuple[list[TrackedFace], list[int]]:
        """Faces in this frame (largest first) and the ids of tracks that ended here.

        ``position``: the frame's number in its source (a file's frame index; it grows by the
        stride; a live source's grows by the frames it dropped), default the count of frames
        processed since the last reset: motion is measured in it. A detection round runs on the
        first frame of each block of ``detect_every`` of ``cadence`` (default ``position``; a live
        source passes the frames it received, so a loaded box that drops frames does not detect
        more often) that is processed, on every frame at least ``detect_every`` positions after the
        one before (as at such a stride: never more rounds per second of the source than unloaded),
        and on the first frame of a new shot.
        """
        n = self._count if position is None else int(position)
        rounds_at = n if cadence is None else int(cadence)
        self._count += 1
        h, w = frame.shape[:2]
        ended: list[int] = []
        # frames apart, a face moving on as faces do changes the layout more than a cut check one
        # frame apart allows (a face and its shoulders shift and grow): there a changed layout is a
        # cut only when no live face continues into this frame (rule 2)
        if self._cuts is not None and self._cuts.is_cut(frame) and not (
                self._last_n is not None and n - self._last_n > 1 and self._continues(frame, n)):
            self.scene_cuts += 1
            ended = [t.id for t in self._tracks]  # rule 2: nobody crosses a cut
            self._tracks, self._round, self._rounds = [], None, 0
        block = rounds_at // self.detect_every
        # frames at least detect_every positions apart (a stride, a live source dropping most of its
        # frames) each get a round, as a file read at that stride does: never more rounds per second
        # of the source than every detect_every-th frame of it would take
        far = self._last_n is not None and n - self._last_n >= self.detect_every
        if self._round is None or block != self._round or far:
            self._round = block
            ended += self._detection_round(frame, n)
        else:
            ended += self._drop_outside(n, w, h)
            self._confirm(frame, n, self._still(frame, n, self._tracks))
        self._last_n = n
        faces = [TrackedFace(t.id, _int_box(t.box_at(n)), t.last_seen == n, t.score, t.landmarks_at(n))
                 for t in self._tracks if t.missed == 0]
        faces.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
        return faces, ended

    def _continues(self, frame: np.ndarray, n: int) -> bool:
        """Whether some live track's face is in this frame where its motion since it was last seen
        allows, looking like it (rule 1's motion gate): the detector re-fits it from its predicted
        box, or finds it in the windows around it. Changes no track."""
        refine = getattr(self.detector, "refine", None)
        batch = getattr(self.detector, "refine_all", None)
        windows = getattr(self.detector, "supports_roi", False)
        if batch is None and refine is None and not windows:
            return False  # boxes given per frame: nothing to look with but the next frame's boxes
        tracks = sorted(self._tracks, key=lambda t: t.anchor[2] * t.anchor[3], reverse=True)
        refits = batch(frame, [t.box_at(n) for t in tracks]) if batch is not None and tracks else None
        for k, t in enumerate(tracks):
            box = t.box_at(n)
            found = [] if refits is None or refits[k] is None else [refits[k]]
            if refits is None and refine is not None:
                found = refine(frame, box)
            if windows and not any(_within_motion(box, b, n - t.last_seen) for b in found):
                found = self._search(frame, box, *ROI_NEAR) or self._search(frame, box, *ROI_WIDE)
            for b in found:
                if (iou(box, b) >= self.iou_threshold or _within_motion(box, b, n - t.last_seen)) \
                        and t.looks_like(signature(frame, b)):
                    return True
        return False

    # --- confirmation: every frame, each track re-found where it is predicted ------------------
    def _still(self, frame: np.ndarray, n: int, tracks: list[Track]) -> list[Track]:
        """Between detection rounds, confirm the tracks whose predicted box still shows the face the
        detector confirmed in one of the last ``detect_every`` frames (rule 3; :data:`STILL`), and
        return the others, for the detector to re-fit."""
        if not (getattr(self.detector, "refine", None) or getattr(self.detector, "supports_roi", False)):
            return tracks  # a detector with no per-frame confirmation: nothing to stand in for
        rest = []
        for t in tracks:
            if (t.seen_sig is not None and t.last_seen == self._last_n and n - t.seen_at < self.detect_every):
                box = t.box_at(n)
                sig = signature(frame, box)
                if sig is not None and t.seen_sig.agrees(sig, STILL):
                    self._match(t, Detection(box, t.score, t.landmarks_at(n)), n, sig, still=True)
                    self.still += 1
                    continue
            rest.append(t)
        return rest

    def _confirm(self, frame: np.ndarray, n: int, tracks: list[Track]) -> list[Track]:
        """Re-find each track from its predicted box (rule 3); returns the tracks not confirmed."""
        refine = getattr(self.detector, "refine", None)
        windows = getattr(self.detector, "supports_roi", False)
        batch = getattr(self.detector, "refine_all", None)  # all tracks' re-fits in one batch (MTCNN)
        refits = batch(frame, [t.box_at(n) for t in tracks]) if batch is not None and tracks else None
        lost = []
        self.refits += len(tracks)
        for k, t in enumerate(tracks):
            box = t.box_at(n)
            if refits is not None:
                found = [] if refits[k] is None else [refits[k]]
            elif refine is not None:
                found = refine(frame, box)
            elif windows:
                found = self._search(frame, box, *ROI_NEAR)
            else:
                found = []
            best = self._best_near(frame, t, box, found)
            if best is None:
                lost.append(t)
            else:
                self._match(t, best.box, n, best.sig)
        return lost

    def _best_near(self, frame: np.ndarray, t: Track, predicted: np.ndarray, boxes: list[Box]) -> _Candidate | None:
        """The box among ``boxes`` that overlaps the prediction most and looks like the track."""
        best, best_iou = None, self.iou_threshold
        for b in boxes:
            overlap = iou(predicted, b)
            if overlap >= best_iou:
                sig = signature(frame, b)
                if t.looks_like(sig):
                    best, best_iou = _Candidate(b, sig), overlap
        return best

    # --- detection rounds ------------------------------------------------------------------------
    def _detection_round(self, frame: np.ndarray, n: int) -> list[int]:
        """Confirm the tracks, search windows around the ones lost, scan for new faces when due;
        associate what was found (rule 1); count misses; start tracks for the rest."""
        lost = self._confirm(frame, n, self._tracks)
        full = not self._tracks or self._rounds % self.full_every == 0
        self._rounds += 1
        found: list[Box] = []
        if lost and getattr(self.detector, "supports_roi", False):
            for t in lost:
                box = t.box_at(n)
                if getattr(self.detector, "refine", None) is not None:
                    hits = self._search(frame, box, *ROI_NEAR) or self._search(frame, box, *ROI_WIDE)
                else:  # the near window was the confirmation
                    hits = self._search(frame, box, *ROI_WIDE)
                found.extend(hits)
        if full:
            # beside tracked faces, a scan for new ones with coarser scale steps (half the cost);
            # with none, at full precision
            coarse = bool(self._tracks) and self.full_every > 1
            found.extend(self.detector.detect(frame, coarse=True) if coarse else self.detector.detect(frame))
        kept: list[Box] = []  # windows of nearby tracks overlap, scans repeat them: one box per face
        heads = [t.anchor for t in self._tracks if t.last_seen == n]
        for b in sorted(found, key=lambda b: b[2] * b[3], reverse=True):
            if all(iou(b, k) < 0.5 for k in kept) and not any(_within_head(b, k) for k in [*heads, *kept]):
                kept.append(b)
        return self._associate(frame, kept, n, lost)

    def _associate(self, frame: np.ndarray, boxes: list[Box], n: int, lost: list[Track]) -> list[int]:
        confirmed = [t for t in self._tracks if t.last_seen == n]
        # a box on a face a track already holds in this frame is that face again, not a new one
        boxes = [b for b in boxes if all(iou(t.anchor, b) < self.iou_threshold for t in confirmed)]
        cands = [_Candidate(b, signature(frame, b)) for b in boxes]
        predicted = {id(t): t.box_at(n) for t in lost}
        used_t: set[int] = set()
        used_b: set[int] = set()
        near = sorted(((iou(predicted[id(t)], c.box), i, j) for i, t in enumerate(lost)
                       for j, c in enumerate(cands)), reverse=True)
        for overlap, i, j in near:
            if overlap < self.iou_threshold:
                break
            if i not in used_t and j not in used_b and lost[i].looks_like(cands[j].sig):
                used_t.add(i)
                used_b.add(j)
                self._match(lost[i], cands[j].box, n, cands[j].sig)
        # frames apart (a stride, dropped frames, a track lost a few frames) a face moves further
        # than the overlap rule allows: a box within the distance its motion covers in that gap,
        # nearest first, that looks like the track is that face, moved (rule 1)
        moved = sorted((_centre_distance(predicted[id(t)], c.box) / max(t.anchor[2], t.anchor[3]), i, j)
                       for i, t in enumerate(lost) if i not in used_t
                       for j, c in enumerate(cands) if j not in used_b
                       and _within_motion(predicted[id(t)], c.box, n - t.last_seen))
        for _, i, j in moved:
            if i not in used_t and j not in used_b and lost[i].looks_like(cands[j].sig):
                used_t.add(i)
                used_b.add(j)
                self._match(lost[i], cands[j].box, n, cands[j].sig)
        # a face that moved further still (a jump, a late re-find) overlaps too little: within the
        # area a window round searches, a box that looks like the track by the stricter margin is
        # still that face (and its move is a jump, not motion)
        far = sorted((_centre_distance(predicted[id(t)], c.box), i, j) for i, t in enumerate(lost) if i not in used_t
                     for j, c in enumerate(cands) if j not in used_b and _within_reach(predicted[id(t)], c.box))
        for _, i, j in far:
            if i not in used_t and j not in used_b and lost[i].sig is not None and cands[j].sig is not None \
                    and lost[i].looks_like(cands[j].sig, FAR):
                used_t.add(i)
                used_b.add(j)
                self._match(lost[i], cands[j].box, n, cands[j].sig, jump=True)
        ended, kept = [], []
        missing = {id(t) for i, t in enumerate(lost) if i not in used_t}
        for t in self._tracks:
            if id(t) in missing:
                t.missed += 1
                if t.missed > self.max_missed:
                    ended.append(t.id)
                    continue
            kept.append(t)
        for c in self._born(frame, [c for j, c in enumerate(cands) if j not in used_b]):
            if len(kept) < self.max_faces:  # largest first: the biggest new faces get the free places
                kept.append(Track(self._next_id, np.asarray(c.box[:4], np.float64), n, np.zeros(2), sig=c.sig,
                                  seen_sig=c.sig, seen_at=n, score=getattr(c.box, "score", None),
                                  landmarks=getattr(c.box, "landmarks", None)))
                self._next_id += 1
        self._tracks = kept
        return ended

    def _born(self, frame: np.ndarray, cands: list[_Candidate]) -> list[_Candidate]:
        """The new faces that a re-fit confirms on the frame they were found in (a CNN detector:
        a false box on texture, found once by a scan, rarely survives its own re-fit), re-fitted."""
        batch = getattr(self.detector, "refine_all", None)
        if batch is None or not cands:
            return cands
        out = []
        for c, refit in zip(cands, batch(frame, [c.box for c in cands])):
            if refit is not None and iou(refit, c.box) >= self.iou_threshold:
                out.append(_Candidate(refit, signature(frame, refit)))
        return out

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

    @staticmethod
    def _match(t: Track, found: Box, n: int, sig: Signature | None, jump: bool = False, still: bool = False) -> None:
        """``found`` is track ``t``'s face at position ``n``: re-anchor, update motion and appearance
        (``still``: confirmed by its unchanged appearance, not by the detector)."""
        box = np.asarray(found[:4], np.float64)
        t.score, t.landmarks = getattr(found, "score", None), getattr(found, "landmarks", None)
        gap = max(1, n - t.last_seen)
        observed = (box[:2] + box[2:] / 2 - t.anchor[:2] - t.anchor[2:] / 2) / gap
        if jump or float(np.hypot(*observed)) > MAX_SPEED * max(box[2], box[3]):
            t.velocity = np.zeros(2)  # rule 4: a jump is not motion
        else:
            t.velocity = observed if t.matched == 1 else 0.5 * t.velocity + 0.5 * observed
        if sig is not None:
            t.sig = sig if t.sig is None else t.sig.blend(sig)
            if not still:
                t.seen_sig, t.seen_at = sig, n
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
