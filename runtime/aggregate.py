"""Verdicts: per face per frame → per track and per source.

A face's probability is sigmoid(logit). A frame's probability is that of its most suspicious
face. A track's verdict is the mean of its faces' probabilities over the frames it was seen in;
a source's verdict is the mean of its frame probabilities (frames with a face only). Each is
``fake`` when the mean is at or above the threshold, ``real`` below it, ``no_face`` when there
was no face, and ``unscored`` when there were faces but the model gave none of them a finite logit.
A face with a non-finite logit (NaN or infinity: a broken model or input) is reported with no
probability, counted (``nonfinite_logits`` in the summary), warned about once on stderr, and left
out of the means; it never turns a frame into "no face". State is bounded: tracks are finalised
when they end, and the lists kept for the summary are capped (the totals stay exact).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

from runtime.pipeline import Result

MAX_LISTED = 10_000  # tracks / sources listed in the summary; more are counted, not listed


def verdict(prob: float | None, threshold: float, faces: int = 0) -> str:
    """``fake`` / ``real`` for a mean probability; without one, ``unscored`` when there were faces."""
    if prob is None or math.isnan(prob):
        return "unscored" if faces else "no_face"
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
    seen: int = 0  # frames with this face, scored or not


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

    def __init__(self, threshold: float, max_listed: int = MAX_LISTED, warn: Any = None) -> None:
        """``warn`` receives the one-time warning about non-finite logits (default: stderr)."""
        self.threshold = float(threshold)
        self.nonfinite_logits = 0
        self._warn = warn or (lambda text: print(f"jrc-detect: warning: {text}", file=sys.stderr, flush=True))
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
        scored = self._scored(r)
        ids = {id(f) for f in scored}
        if scored:
            frame_p = max(f.prob for f in scored)
            src.probs.add(frame_p)
            self.overall.add(frame_p)
        for f in r.faces:
            t = self._open.get(f.track)
            if t is None:
                t = self._open[f.track] = _Track(f.track, r.frame.source, r.frame.index, r.frame.index, _Mean())
                src.tracks += 1
                self.tracks_total += 1
            t.last_frame = r.frame.index
            t.seen += 1
            if id(f) in ids:
                t.probs.add(f.prob)
        return done

    def _scored(self, r: Result) -> list[Any]:
        """The faces of a frame with a finite logit; the others get prob NaN (reported as null) and are counted."""
        scored = []
        for f in r.faces:
            if math.isfinite(f.prob) and not math.isinf(f.logit):  # ±inf logits give probabilities 1/0
                scored.append(f)
                continue
            if not self.nonfinite_logits:
                self._warn(f"{r.frame.source} frame {r.frame.index}: the model gave a face the logit {f.logit}; "
                           "faces without a finite logit are reported without a probability and counted "
                           "(summary: nonfinite_logits), the model or its input is broken")
            self.nonfinite_logits += 1
            f.prob = float("nan")
        return scored

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
             "frames": t.seen, "prob": _r(t.probs.mean), "max_prob": _r(t.probs.peak),
             "verdict": verdict(t.probs.mean, self.threshold, t.seen)}
        if len(self.tracks) < self.max_listed:
            self.tracks.append(d)
        return d

    def source_summary(self, s: _Source) -> dict[str, Any]:
        return {"source": s.source, "frames": s.frames, "frames_with_face": s.frames - s.frames_without_face,
                "frames_without_face": s.frames_without_face, "faces": s.faces, "tracks": s.tracks,
                "prob": _r(s.probs.mean), "max_prob": _r(s.probs.peak),
                "verdict": verdict(s.probs.mean, self.threshold, s.faces)}

    def summary(self) -> dict[str, Any]:
        """The totals for the summary file (call after :meth:`finish`)."""
        return {"frames": self.frames, "frames_with_face": self.frames - self.frames_without_face,
                "frames_without_face": self.frames_without_face, "faces": self.faces,
                "threshold": self.threshold, "prob": _r(self.overall.mean),
                "verdict": verdict(self.overall.mean, self.threshold, self.faces),
                "nonfinite_logits": self.nonfinite_logits,
                "sources": self.sources, "sources_total": self.sources_total,
                "tracks": self.tracks, "tracks_total": self.tracks_total}


def merged_summary(aggs: list[Aggregator], cameras: list[str]) -> dict[str, Any]:
    """The totals of several cameras' aggregators (the camera box's overall verdict), keyed as
    :meth:`Aggregator.summary`: a frame probability of every camera counts once in the mean; the
    listed sources and tracks carry their camera (the lists stay capped, the totals exact)."""
    overall = _Mean()
    for a in aggs:
        overall.n += a.overall.n
        overall.total += a.overall.total
        if not math.isnan(a.overall.peak):
            overall.peak = a.overall.peak if math.isnan(overall.peak) else max(overall.peak, a.overall.peak)
    faces = sum(a.faces for a in aggs)
    frames = sum(a.frames for a in aggs)
    without = sum(a.frames_without_face for a in aggs)
    threshold = aggs[0].threshold if aggs else 0.5
    limit = aggs[0].max_listed if aggs else MAX_LISTED
    sources = [{"camera": c, **s} for a, c in zip(aggs, cameras) for s in a.sources][:limit]
    tracks = [{"camera": c, **t} for a, c in zip(aggs, cameras) for t in a.tracks][:limit]
    return {"frames": frames, "frames_with_face": frames - without, "frames_without_face": without, "faces": faces,
            "threshold": threshold, "prob": _r(overall.mean), "verdict": verdict(overall.mean, threshold, faces),
            "nonfinite_logits": sum(a.nonfinite_logits for a in aggs),
            "sources": sources, "sources_total": sum(a.sources_total for a in aggs),
            "tracks": tracks, "tracks_total": sum(a.tracks_total for a in aggs)}
