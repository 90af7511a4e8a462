"""What a live view (or anything else on another thread) may read about each camera while the box runs.

The frame loop updates one :class:`CameraState` per camera on its own thread, a few assignments a
frame under a lock; readers (a web page's handler, a status command) call :meth:`CameraState.snapshot`
and :meth:`CameraState.frame_jpeg` from theirs. Everything kept is bounded: the latest frame (only
when the loop was asked to keep it), the frame rate over the last seconds, each live track's recent
scores, the last ended tracks and the last events.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

import numpy as np

TRACK_POINTS = 300  # recent (time, p(fake)) points kept per live track
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
                t["last_time"], t["box"] = r.frame.time, [int(v) for v in f.box]
                t["points"].append((round(r.frame.time, 3), _p(f.prob)))
            for e in ended:
                t = self._tracks.pop(e["track"], None)
                if t is not None:
                    self._ended.append({**self._line(t), "verdict": e.get("verdict"), "prob": e.get("prob")})

    def event(self, message: dict[str, Any]) -> None:
        with self._lock:
            ev = message["event"]
            for i, old in enumerate(self._events):
                if old["id"] == ev["id"]:
                    self._events[i] = dict(ev)
                    return
            self._events.append(dict(ev))

    def set_up(self, up: bool) -> None:
        with self._lock:
            self._up = up

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
            span = self._times[-1] - self._times[0] if len(self._times) > 1 else 0.0
            return {"camera": self.name, "source": self.source, "up": self._up, "frames": self._frames,
                    "faces": self._faces, "dropped": self._dropped,
                    "fps": round((len(self._times) - 1) / span, 2) if span > 0 else None,
                    "tracks": [self._line(t) for t in self._tracks.values()],
                    "ended_tracks": list(self._ended), "events": list(self._events)}

    def frame_jpeg(self, quality: int = 80) -> bytes | None:
        """The latest frame with its boxes drawn, as JPEG (None when frames are not kept, or none came yet)."""
        with self._lock:
            r, threshold = self._last, self._threshold
        if r is None or r.frame.image is None:
            return None
        import cv2

        from runtime.sinks import annotate

        ok, buf = cv2.imencode(".jpg", annotate(r, threshold), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        return buf.tobytes() if ok else None

    @staticmethod
    def _line(t: dict[str, Any]) -> dict[str, Any]:
        return {"track": t["track"], "first_time": round(t["first_time"], 3),
                "last_time": round(t.get("last_time", t["first_time"]), 3), "box": t.get("box"),
                "points": list(t["points"])}


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

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            cams = list(self._cameras.values())
        return {"cameras": [c.snapshot() for c in cams]}
