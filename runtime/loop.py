"""The frame loop, set up in one place: source → faces (tracker) → pipeline → aggregator → outputs.

``runtime.detect`` runs it for the CLI, and ``benchmarks.pipeline`` and ``benchmarks.soak`` run
the same :class:`FrameLoop`, so what is measured is what ships. The benchmark's variants are
options of it: ``Faces(detect_every=N)`` tracks between detections, ``Faces(detect_every=1)``
detects on every frame, ``Faces(given=boxes)`` replays boxes found beforehand (the detector's cost
taken out).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from runtime import sinks  # by module: tests and tools may swap a sink's function
from runtime.aggregate import LIVE_WINDOW_S, Aggregator
from runtime.backends.base import Backend
from runtime.capture import quiet_video_logs
from runtime.faces import DEFAULT_DETECTOR, Box, GivenFaces, make_detector
from runtime.pipeline import Pipeline, Result, share_cores
from runtime.save import open_save
from runtime.sources import Source
from runtime.tracking import FaceTracker


@dataclass(frozen=True)
class Faces:
    """How faces are found and followed (``runtime.detect``'s "faces" options)."""

    kind: str = DEFAULT_DETECTOR  # mtcnn, haar, yunet or none (the inputs are face crops already)
    model: str | None = None  # mtcnn: a folder of its networks; yunet: its ONNX
    detect_every: int = 5  # detect every Nth frame, track in between (1: no tracking)
    detect_width: int = 640
    min_face: int = 24
    max_faces: int = 10
    scan_every: int = 16  # while faces are tracked, scan the whole frame every Nth detection
    given: Sequence[Sequence[Box]] | None = None  # boxes per frame found beforehand: no detector runs
    options: dict[str, Any] | None = None  # the detector's own options (runtime.faces.detector_options)

    def tracker(self) -> FaceTracker:
        if self.given is not None:
            detector: Any = GivenFaces(self.given)
            every = 1
        else:
            kw: dict[str, Any] = {} if self.kind == "none" else {"detect_width": self.detect_width,
                                                                 "min_face": self.min_face}
            if self.model:
                kw["model"] = self.model
            kw.update(self.options or {})
            detector, every = make_detector(self.kind, **kw), self.detect_every
        return FaceTracker(detector, detect_every=every, max_faces=self.max_faces, full_every=self.scan_every)


@dataclass(frozen=True)
class Outputs:
    """Where each frame's result goes, besides the aggregator."""

    jsonl: str | None = None  # one JSON object per frame
    save: str | None = None  # annotated video, image, or folder of images (runtime.save)
    show: bool = False  # a window (q quits)
    status: bool = False  # the running status line on stderr


class FrameGuard(Protocol):
    """Brackets the writing of each frame's outputs (``runtime.detect.StopSignals`` defers a stop
    signal until the frame is complete in every output)."""

    def begin_frame(self) -> None: ...

    def end_frame(self) -> None: ...


class _NoGuard:
    def begin_frame(self) -> None:
        pass

    def end_frame(self) -> None:
        pass


def decoder_threads(inference_threads: int) -> int:
    """Ready OpenCV for the loop (its logs quiet, one thread per stage) and split the CPU between
    the stages (:func:`runtime.pipeline.share_cores`); returns the threads for decoding video files."""
    quiet_video_logs()
    return share_cores(inference_threads)


class FrameLoop:
    """One run over one source. ``source``, ``pipeline`` and ``agg`` are public once :meth:`run`
    has started (summaries and samplers read them); :meth:`close` always finishes the run."""

    def __init__(self, backend: Backend, faces: Faces | None = None, outputs: Outputs | None = None, *,
                 threshold: float | None = None, reconstruct: bool = False, max_frames: int | None = None,
                 guard: FrameGuard | None = None, window: float | None = None) -> None:
        """``window``: seconds of the recent verdicts (runtime.aggregate); None: ``LIVE_WINDOW_S``
        for a live source, none for files; 0: none."""
        if reconstruct:
            backend.require_recon()
        self.backend = backend
        self.threshold = backend.meta.threshold if threshold is None else threshold
        self.window = window
        self.reconstruct = reconstruct
        self.max_frames = max_frames
        self.guard: FrameGuard = guard or _NoGuard()
        self.outputs = outputs or Outputs()
        self.tracker = (faces or Faces()).tracker()
        # the window opens before the source does: a missing GUI is reported first
        self.show = sinks.ShowSink() if self.outputs.show else None
        self.source: Source | None = None
        self.pipeline: Pipeline | None = None
        self.agg: Aggregator | None = None
        self.jsonl: sinks.JsonlSink | None = None
        self.video: Any = None  # the --save sink (runtime.save.open_save)
        self.console = sinks.Console(enabled=False)
        self.open_sinks: list[Any] = [self.show] if self.show else []
        self.started: float | None = None  # perf_counter() when frames started flowing
        self.first_result: float | None = None  # ... and when the first result came back
        self.faces_first = 0  # faces in that first result
        self.last_prob: float | None = None

    def run(self, source: Source) -> None:
        """Process ``source`` to its end, ``max_frames``, or until the window is closed."""
        self._start(source)
        assert self.pipeline is not None and self.agg is not None
        for r in self.pipeline:
            self.guard.begin_frame()  # a stop signal takes effect once this frame is fully written
            t = time.perf_counter()
            if self.first_result is None:
                self.first_result, self.faces_first = t, len(r.faces)
            if not self._output(r):
                break
            self.pipeline.times.add("output", time.perf_counter() - t)
            self.guard.end_frame()
            if self.max_frames and self.agg.frames >= self.max_frames:
                break
        self.guard.end_frame()  # a signal during the last frame (window closed, max_frames) still counts
        self.pipeline.stop()
        self.console.update(self.agg.frames, self.last_prob, source.stats.dropped, force=True)

    def close(self) -> list[dict[str, Any]]:
        """Stop reading, end every open track, close the outputs (also after an error); returns the
        tracks that ended here."""
        if self.pipeline is not None:
            self.pipeline.stop()
        if self.source is not None:
            self.source.close()
        tail = self.agg.finish() if self.agg is not None else []
        for s in self.open_sinks:
            s.close()
        return tail

    def _start(self, source: Source) -> None:
        out = self.outputs
        self.source = source
        window = self.window if self.window is not None else (LIVE_WINDOW_S if source.live else None)
        self.agg = Aggregator(self.threshold, window=window)
        self.jsonl = sinks.JsonlSink(out.jsonl) if out.jsonl else None
        self.video = open_save(out.save, source.spec, getattr(source, "fps", None)) if out.save else None
        self.console = sinks.Console(enabled=out.status)
        self.open_sinks = [s for s in (self.jsonl, self.video, self.show, self.console) if s is not None]
        self.pipeline = Pipeline(source, self.tracker, self.backend, reconstruct=self.reconstruct,
                                 keep_images=bool(self.video or self.show), queue_frames=4)
        self.started = time.perf_counter()

    def _output(self, r: Result) -> bool:
        """One frame's result into the aggregator and every output; False when the user quit."""
        assert self.agg is not None and self.source is not None
        dropped = self.source.stats.dropped
        ended = self.agg.add(r)
        if self.jsonl:
            self.jsonl.write(sinks.frame_record(r, ended, self.threshold, dropped))
        if self.video or self.show:
            img = sinks.annotate(r, self.threshold)
            if self.video:
                self.video.write(img, r.frame)
            if self.show and not self.show.show(img):
                return False
        self.last_prob = max((f.prob for f in r.faces if f.prob == f.prob), default=None)  # NaN: not scored
        self.console.update(self.agg.frames, self.last_prob, dropped)
        return True
