"""Verdicts: per face per frame → per track and per source.

A face's probability is sigmoid(logit). A frame's probability is that of its most suspicious
face. A track's verdict is the mean of its faces' probabilities over the frames it was seen in;
a source's verdict is the mean of its frame probabilities (frames with a face only). Each is
``fake`` when the mean is at or above the threshold, ``real`` below it, and ``no_face`` when
there was nothing to score. State is bounded: tracks are finalised when they end, and the lists
kept for the summary are capped (the totals stay exact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from runtime.pipeline import Result

MAX_LISTED = 10_000  # tracks / sources listed in the summary; more are counted, not listed


def verdict(prob: float | None, threshold: float) -> str:
    if prob is None or math.isnan(prob):
        return "no_face"
    return "fake" if prob >= threshold else "real"


def _r(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 6)


@dataclass
class _Mean:
    n: int = 0
    total: float = 0.0
    peak: float = float("nan")

    def add(self, p: float) -> None:
        self.n += 1
        self.total += p
        self.peak = p if math.isnan(self.peak) else max(self.peak, p)

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


@dataclass
class _Track:
    id: int
    source: str
    first_frame: int
    last_frame: int
    probs: _Mean


@dataclass
class _Source:
    source: str
    frames: int = 0
    frames_without_face: int = 0
    faces: int = 0
    tracks: int = 0
    probs: _Mean = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.probs = _Mean()


class Aggregator:
    """Feed results in frame order with :meth:`add`; :meth:`finish` closes everything."""

    def __init__(self, threshold: float, max_listed: int = MAX_LISTED) -> None:
        self.threshold = float(threshold)
        self.max_listed = max_listed
        self.frames = 0
        self.frames_without_face = 0
        self.faces = 0
        self.overall = _Mean()
        self.tracks_total = 0
        self.sources_total = 0
        self.tracks: list[dict[str, Any]] = []
        self.sources: list[dict[str, Any]] = []
        self._open: dict[int, _Track] = {}
        self._item: int | None = None
        self._src: _Source | None = None

    def add(self, r: Result) -> list[dict[str, Any]]:
        """Count one frame; returns the summaries of tracks that ended at it."""
        done = [self._end_track(t) for t in r.ended if t in self._open]
        if r.frame.item != self._item:
            done += self._end_source()
            self._item, self._src = r.frame.item, _Source(r.frame.source)
        src = self._src
        assert src is not None
        self.frames += 1
        src.frames += 1
        if not r.faces:
            self.frames_without_face += 1
            src.frames_without_face += 1
            return done
        self.faces += len(r.faces)
        src.faces += len(r.faces)
        frame_p = max(f.prob for f in r.faces)
        src.probs.add(frame_p)
        self.overall.add(frame_p)
        for f in r.faces:
            t = self._open.get(f.track)
            if t is None:
                t = self._open[f.track] = _Track(f.track, r.frame.source, r.frame.index, r.frame.index, _Mean())
                src.tracks += 1
                self.tracks_total += 1
            t.last_frame = r.frame.index
            t.probs.add(f.prob)
        return done

    def finish(self) -> list[dict[str, Any]]:
        """End every open track and the current source (end of run); returns the ended tracks."""
        return self._end_source()

    def _end_source(self) -> list[dict[str, Any]]:
        done = [self._end_track(t) for t in list(self._open)]
        if self._src is not None:
            self.sources_total += 1
            if len(self.sources) < self.max_listed:
                self.sources.append(self.source_summary(self._src))
            self._src = None
        return done

    def _end_track(self, track_id: int) -> dict[str, Any]:
        t = self._open.pop(track_id)
        d = {"track": t.id, "source": t.source, "first_frame": t.first_frame, "last_frame": t.last_frame,
             "frames": t.probs.n, "prob": _r(t.probs.mean), "max_prob": _r(t.probs.peak),
             "verdict": verdict(t.probs.mean, self.threshold)}
        if len(self.tracks) < self.max_listed:
            self.tracks.append(d)
        return d

    def source_summary(self, s: _Source) -> dict[str, Any]:
        return {"source": s.source, "frames": s.frames, "frames_with_face": s.frames - s.frames_without_face,
                "frames_without_face": s.frames_without_face, "faces": s.faces, "tracks": s.tracks,
                "prob": _r(s.probs.mean), "max_prob": _r(s.probs.peak),
                "verdict": verdict(s.probs.mean, self.threshold)}

    def summary(self) -> dict[str, Any]:
        """The totals for the summary file (call after :meth:`finish`)."""
        return {"frames": self.frames, "frames_with_face": self.frames - self.frames_without_face,
                "frames_without_face": self.frames_without_face, "faces": self.faces,
                "threshold": self.threshold, "prob": _r(self.overall.mean),
                "verdict": verdict(self.overall.mean, self.threshold),
                "sources": self.sources, "sources_total": self.sources_total,
                "tracks": self.tracks, "tracks_total": self.tracks_total}
