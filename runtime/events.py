"""Events: a track that looks manipulated for long enough, told once when it opens, updated, and closed.

Per camera and track, on the frame loop's thread. An event **opens** when a track has ``frames``
(K) scored frames in a row at or above the threshold; it **closes** when the track ends, when K
scored frames in a row fall below ``threshold - hysteresis``, when its camera ends, or at the end
of the run. One noisy frame therefore neither opens nor closes an event, and a score hovering at
the threshold does not flap. While open, an **update** goes out at most every ``update_s`` seconds
(when new frames were scored). Frames whose face has no finite score count neither way.

An event carries its id, camera, track, start and end (wall-clock ISO 8601 and the source's frame
and time), peak and mean p(fake) over its scored frames (from the first of the K frames that
opened it), the frames scored, and, where a media folder is given (:mod:`runtime.event_media`),
a JPEG snapshot of the frame at the peak with the box drawn, the face crop, and optionally a short
clip around the event. Messages are ``{"schema", "type": open|update|close, "event": {...}}``;
keys starting with ``_`` (the snapshot's JPEG bytes, for MQTT) are for sinks, never written as
JSON (:func:`public`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

EVENT_SCHEMA = 1


@dataclass(frozen=True)
class EventOptions:
    frames: int = 5  # K: scored frames in a row to open (at/above the threshold) or close (below it - hysteresis)
    hysteresis: float = 0.05
    threshold: float | None = None  # default: the run's
    update_s: float = 5.0
    media: str | None = None  # folder for snapshots, face crops and clips
    clip_s: float = 0.0  # seconds of video before the event and after it; 0: no clips
    clip_max_s: float = 60.0
    budget_mb: float = 1024.0  # the media folder's size; the oldest files go first
    snapshots_for_sinks: bool = False  # keep the snapshot's JPEG bytes on messages (MQTT's snapshot topic)


def public(message: dict[str, Any]) -> dict[str, Any]:
    """The message as JSON sinks write it (no ``_`` keys)."""
    return {k: v for k, v in message.items() if not k.startswith("_")}


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


class _Scores:
    """The scored frames of a would-be or open event: count, sum, peak and the peak's frame."""

    def __init__(self, r: Any) -> None:
        self.start_frame, self.start_s, self.start_wall = r.frame.index, r.frame.time, time.time()
        self.source = r.frame.source
        self.n, self.total, self.peak = 0, 0.0, -1.0
        self.peak_frame = self.last_frame = r.frame.index
        self.last_s = r.frame.time
        self.peak_box: list[int] | None = None
        self.peak_image: np.ndarray | None = None
        self.peak_face: Any = None
        self.peak_changed = False

    def add(self, r: Any, f: Any) -> None:
        self.n += 1
        self.total += f.prob
        self.last_frame, self.last_s = r.frame.index, r.frame.time
        if f.prob > self.peak:
            self.peak, self.peak_frame = f.prob, r.frame.index
            self.peak_box = [int(v) for v in f.box]
            self.peak_image, self.peak_face = r.frame.image, f
            self.peak_changed = True


class _Event:
    def __init__(self, camera: str, track: int, scores: _Scores, threshold: float) -> None:
        self.camera, self.track, self.s, self.threshold = camera, track, scores, threshold
        stamp = datetime.fromtimestamp(scores.start_wall, timezone.utc).strftime("%Y%m%dT%H%M%S%f")[:-3]
        self.id = f"{camera}-{stamp}-{track}"
        self.end_wall: float | None = None
        self.end_reason: str | None = None
        self.last_update = time.monotonic()
        self.sent_n = 0
        self.snapshot: str | None = None
        self.crop: str | None = None
        self.clip: str | None = None
        self.jpeg: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        s = self.s
        return {"id": self.id, "camera": self.camera, "track": self.track, "source": s.source,
                "active": self.end_wall is None, "start": _iso(s.start_wall), "end": _iso(self.end_wall),
                "start_frame": s.start_frame, "end_frame": s.last_frame if self.end_wall is not None else None,
                "start_time": round(s.start_s, 3), "last_frame": s.last_frame, "last_time": round(s.last_s, 3),
                "frames": s.n, "peak_prob": _r(s.peak), "mean_prob": _r(s.total / s.n if s.n else None),
                "peak_frame": s.peak_frame, "peak_box": s.peak_box, "threshold": self.threshold,
                "end_reason": self.end_reason, "snapshot": self.snapshot, "crop": self.crop, "clip": self.clip}


class _Track:
    def __init__(self) -> None:
        self.above = 0  # scored frames in a row at/above the threshold (while no event is open)
        self.below = 0  # scored frames in a row below threshold - hysteresis (while one is open)
        self.pending: _Scores | None = None
        self.event: _Event | None = None


class Events:
    """Feed every result with :meth:`add`; each call returns the messages to publish."""

    def __init__(self, options: EventOptions, threshold: float, fps: dict[str, float | None] | None = None) -> None:
        self.o = options
        self.threshold = float(options.threshold if options.threshold is not None else threshold)
        self.k = max(1, int(options.frames))
        self._tracks: dict[str, dict[int, _Track]] = {}
        self.opened: dict[str, int] = {}  # events opened per camera
        self.media = None
        if options.media or options.snapshots_for_sinks:
            from runtime.event_media import EventMedia

            self.media = EventMedia(options.media, clip_s=options.clip_s, clip_max_s=options.clip_max_s,
                                    budget_bytes=int(options.budget_mb * 1024 * 1024), fps=fps or {})

    def open_tracks(self, camera: str) -> set[int]:
        return {t for t, st in self._tracks.get(camera, {}).items() if st.event is not None}

    def add(self, camera: str, r: Any, ended: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        tracks = self._tracks.setdefault(camera, {})
        if self.media is not None:
            self.media.feed(camera, r)
        for e in ended:
            st = tracks.pop(e["track"], None)
            if st is not None and st.event is not None:
                out.append(self._close(st.event, "track_ended"))
        for f in r.faces:
            if not math.isfinite(f.prob):
                continue
            st = tracks.setdefault(f.track, _Track())
            if st.event is None:
                if f.prob >= self.threshold:
                    if st.pending is None:
                        st.pending = _Scores(r)
                    st.above += 1
                    st.pending.add(r, f)
                    if st.above >= self.k:
                        st.event = _Event(camera, f.track, st.pending, self.threshold)
                        st.pending, st.above, st.below = None, 0, 0
                        self.opened[camera] = self.opened.get(camera, 0) + 1
                        if self.media is not None:
                            self.media.start_clip(st.event)
                        out.append(self._message("open", st.event))
                else:
                    st.pending, st.above = None, 0
                continue
            ev = st.event
            ev.s.add(r, f)
            st.below = st.below + 1 if f.prob < self.threshold - self.o.hysteresis else 0
            if st.below >= self.k:
                out.append(self._close(ev, "below_threshold"))
                st.event, st.below = None, 0
            elif time.monotonic() - ev.last_update >= self.o.update_s and ev.s.n > ev.sent_n:
                out.append(self._message("update", ev))
        return out

    def end_camera(self, camera: str) -> list[dict[str, Any]]:
        """The camera ended: close its open events."""
        return self._close_all(camera, "camera_ended")

    def finish(self, reason: str = "shutdown") -> list[dict[str, Any]]:
        """The run ends: close every open event."""
        return [m for camera in list(self._tracks) for m in self._close_all(camera, reason)]

    def _close_all(self, camera: str, reason: str) -> list[dict[str, Any]]:
        tracks = self._tracks.pop(camera, {})
        return [self._close(st.event, reason) for st in tracks.values() if st.event is not None]

    def close(self) -> None:
        """Finish the clips being written (the frame loop's outputs are closing)."""
        if self.media is not None:
            self.media.close()

    def _close(self, ev: _Event, reason: str) -> dict[str, Any]:
        ev.end_wall, ev.end_reason = time.time(), reason
        if self.media is not None:
            self.media.end_clip(ev)
        return self._message("close", ev)

    def _message(self, kind: str, ev: _Event) -> dict[str, Any]:
        if self.media is not None and ev.s.peak_changed:
            self.media.snapshot(ev)
            ev.s.peak_changed = False
        ev.last_update, ev.sent_n = time.monotonic(), ev.s.n
        if ev.end_wall is not None:
            ev.s.peak_image = None  # the frame is no longer needed
        m: dict[str, Any] = {"schema": EVENT_SCHEMA, "type": kind, "event": ev.to_dict()}
        if self.o.snapshots_for_sinks and ev.jpeg is not None:
            m["_snapshot"] = ev.jpeg
        return m
