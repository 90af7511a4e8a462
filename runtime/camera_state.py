"""What a live view (or anything else on another thread) may read about each camera while the box runs.

The frame loop updates one :class:`CameraState` per camera on its own thread, a few assignments a
frame under a lock; readers (a web page's handler, a status command) call :meth:`CameraState.snapshot`
and :meth:`CameraState.frame_jpeg` from theirs (the encoding is the reader's cost, never the
loop's). Everything kept is bounded: the latest frame (only when the loop was asked to keep it),
the frame rate over the last seconds, each live track's p(fake) over the last minute (one point per
:data:`TIMELINE_STEP_S`, the step's highest), the last ended tracks, and the last events with their
snapshot JPEG (when the events were asked to encode one). Every event message stored gets a
number (``seq``) that only grows, so a reader asks for what changed since the last it saw
(:meth:`BoxState.events`).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from typing import Any

import cv2
import numpy as np

from runtime.annotate import annotate

TIMELINE_S = 60.0  # a track's timeline: its p(fake) over the last minute of its camera's frames
TIMELINE_STEP_S = 0.2  # one point per step, the step's highest p(fake) (a spike is never lost)
TRACK_POINTS = int(TIMELINE_S / TIMELINE_STEP_S) + 1  # (source time, p(fake)) points kept per live track
ENDED_TRACKS = 50  # ended tracks kept with their timelines
RECENT_EVENTS = 50
FPS_WINDOW_S = 5.0
LATENCY_SAMPLES = 10_000


class Latency:
    """Per-frame latency (frame read → result written), over the most recent frames."""

    def __init__(self, size: int = LATENCY_SAMPLES) -> None:
        self._v: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._v.append(seconds)

    def summary(self) -> dict[str, float | None]:
        if not self._v:
            return {"p50": None, "p95": None, "frames": 0}
        a = np.asarray(self._v) * 1000.0
        return {"p50": round(float(np.percentile(a, 50)), 2), "p95": round(float(np.percentile(a, 95)), 2),
                "frames": len(a)}


def _p(x: float) -> float | None:
    return round(float(x), 4) if math.isfinite(x) else None


class CameraState:
    """One camera's live state; every method is safe from any thread."""

    def __init__(self, name: str, source: str) -> None:
        self.name, self.source = name, source
        self._lock = threading.Lock()
        self._frames = self._faces = self._dropped = 0
        self._up = False
        self._times: deque[float] = deque()
        self._last: Any = None  # the latest Result, with its image when frames are kept
        self._threshold = 0.5
        self._tracks: dict[int, dict[str, Any]] = {}
        self._ended: deque[dict[str, Any]] = deque(maxlen=ENDED_TRACKS)
        self._events: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self._snapshots: dict[str, bytes] = {}  # event id → its snapshot JPEG (events still kept only)
        self._status: str = "running"
        self._error: str | None = None

    # --- written by the frame loop --------------------------------------------------------
    def update(self, r: Any, ended: list[dict[str, Any]], dropped: int, threshold: float,
               keep_frame: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            self._frames += 1
            self._faces += len(r.faces)
            self._dropped = dropped
            self._up = True
            self._threshold = threshold
            self._times.append(now)
            while self._times and now - self._times[0] > FPS_WINDOW_S:
                self._times.popleft()
            self._last = r if keep_frame else None
            for f in r.faces:
                t = self._tracks.get(f.track)
                if t is None:
                    t = self._tracks[f.track] = {"track": f.track, "first_time": r.frame.time,
                                                 "points": deque(maxlen=TRACK_POINTS)}
                t["last_time"], t["box"], t["prob"] = r.frame.time, [int(v) for v in f.box], _p(f.prob)
                _add_point(t["points"], r.frame.time, _p(f.prob))
            for e in ended:
                t = self._tracks.pop(e["track"], None)
                if t is not None:
                    self._ended.append({**self._line(t), "verdict": e.get("verdict"), "prob": e.get("prob")})

    def event(self, message: dict[str, Any]) -> None:
        """An event message (open / update / close): the event's latest state, numbered; its snapshot
        JPEG kept when the message carries one (``_snapshot``)."""
        with self._lock:
            ev = {**message["event"], "seq": next(_EVENT_SEQ)}
            if message.get("_snapshot"):
                self._snapshots[ev["id"]] = message["_snapshot"]
            for i, old in enumerate(self._events):
                if old["id"] == ev["id"]:
                    del self._events[i]
                    break
            else:
                if len(self._events) == self._events.maxlen:
                    self._snapshots.pop(self._events[0]["id"], None)
            self._events.append(ev)

    def event_changed(self, event_id: str) -> None:
        """The event's state is unchanged but what goes with it is (its clip is now whole): a new
        number, so readers that ask for changes see it again."""
        with self._lock:
            for i, old in enumerate(self._events):
                if old["id"] == event_id:
                    del self._events[i]
                    self._events.append({**old, "seq": next(_EVENT_SEQ)})
                    return

    def set_up(self, up: bool) -> None:
        with self._lock:
            self._up = up

    def set_status(self, status: str, error: str | None = None) -> None:
        """How the camera ended (``ok``, ``source_lost``, ``error``), from the loop."""
        with self._lock:
            self._status, self._error = status, error
            self._up = False

    def up_now(self, source: Any, done: bool) -> bool:
        """Whether the camera delivers frames: its source says so (live sources know when they are
        connected), and it has not ended."""
        up = not done and bool(getattr(source, "up", True))
        self.set_up(up)
        return up

    # --- read by anyone ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Counters, rate, live tracks with their recent scores, the last ended tracks and events."""
        with self._lock:
            d = self._counters()
            d.update({"tracks": [self._line(t) for t in self._tracks.values()],
                      "ended_tracks": list(self._ended), "events": list(self._events)})
            return d

    def counters(self) -> dict[str, Any]:
        """What a camera's tile shows: up, status, frames, faces, dropped, fps, the threshold, and
        the seconds since its last frame (None before the first)."""
        with self._lock:
            return self._counters()

    def _counters(self) -> dict[str, Any]:
        span = self._times[-1] - self._times[0] if len(self._times) > 1 else 0.0
        age = round(time.monotonic() - self._times[-1], 3) if self._times else None
        if age is not None and age > FPS_WINDOW_S:
            fps = 0.0  # nothing for a while: the rate of the last seconds is none
        else:
            fps = round((len(self._times) - 1) / span, 2) if span > 0 else None
        return {"camera": self.name, "source": self.source, "up": self._up, "status": self._status,
                "error": self._error, "frames": self._frames, "faces": self._faces, "dropped": self._dropped,
                "fps": fps, "threshold": self._threshold, "last_frame_age_s": age}

    def tracks(self) -> list[dict[str, Any]]:
        """The live tracks, each with its timeline (the last minute) and latest p(fake)."""
        with self._lock:
            return [self._line(t) for t in self._tracks.values()]

    def events(self) -> list[dict[str, Any]]:
        """The recent events' latest states, oldest change first (each with its ``seq``)."""
        with self._lock:
            return list(self._events)

    def event_snapshot(self, event_id: str) -> bytes | None:
        with self._lock:
            return self._snapshots.get(event_id)

    @property
    def frames(self) -> int:
        """Frames processed so far (a reader compares it to know whether a new frame came)."""
        return self._frames

    def frame_jpeg(self, quality: int = 80, max_width: int | None = None) -> bytes | None:
        """The latest frame with its boxes drawn, as JPEG, at most ``max_width`` pixels wide (None
        when frames are not kept, or none came yet). Encoded on the caller's thread."""
        with self._lock:
            r, threshold = self._last, self._threshold
        if r is None or r.frame.image is None:
            return None
        img = annotate(r, threshold)
        h, w = img.shape[:2]
        if max_width and w > max_width:
            img = cv2.resize(img, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        return buf.tobytes() if ok else None

    @staticmethod
    def _line(t: dict[str, Any]) -> dict[str, Any]:
        return {"track": t["track"], "first_time": round(t["first_time"], 3),
                "last_time": round(t.get("last_time", t["first_time"]), 3), "box": t.get("box"),
                "prob": t.get("prob"), "points": [list(p) for p in t["points"]]}


def _add_point(points: deque[list[Any]], t: float, prob: float | None) -> None:
    """A frame's score into a track's timeline: a new point each :data:`TIMELINE_STEP_S` of source
    time, else the step's highest score; points older than :data:`TIMELINE_S` go."""
    if points and t - points[-1][0] < TIMELINE_STEP_S and t >= points[-1][0]:
        last = points[-1]
        if prob is not None and (last[1] is None or prob > last[1]):
            last[1] = prob
    else:
        points.append([round(t, 3), prob])
    while points and points[-1][0] - points[0][0] > TIMELINE_S:
        points.popleft()


_EVENT_SEQ = itertools.count(1)  # event states stored, in every camera of the process


class BoxState:
    """Every camera's :class:`CameraState`, by name, in the order given."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cameras: dict[str, CameraState] = {}

    def add(self, state: CameraState) -> None:
        with self._lock:
            self._cameras[state.name] = state

    def names(self) -> list[str]:
        with self._lock:
            return list(self._cameras)

    def camera(self, name: str) -> CameraState | None:
        with self._lock:
            return self._cameras.get(name)

    def cameras(self) -> list[CameraState]:
        with self._lock:
            return list(self._cameras.values())

    def snapshot(self) -> dict[str, Any]:
        return {"cameras": [c.snapshot() for c in self.cameras()]}

    def events(self, since: int = 0, limit: int = RECENT_EVENTS) -> list[dict[str, Any]]:
        """The events whose state changed after ``seq`` ``since`` (every camera's), newest change first."""
        out = [e for c in self.cameras() for e in c.events() if e["seq"] > since]
        out.sort(key=lambda e: e["seq"], reverse=True)
        return out[:limit]

    def find_event(self, event_id: str) -> tuple[CameraState, dict[str, Any]] | None:
        """The camera and latest state of a recent event, by its id (None when it is not kept)."""
        for c in self.cameras():
            for e in c.events():
                if e["id"] == event_id:
                    return c, e
        return None
