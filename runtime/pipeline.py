"""One camera's stages: decode → faces (+ preprocess), overlapped in threads, into the shared inference.

Each stage runs in its own thread and hands work on through a small bounded queue, so memory
stays flat however long the run, and a slow stage slows the ones before it instead of piling up
frames. A live source drops frames at its grabber instead (:mod:`runtime.sources`): its faces stage
takes the newest frame from the grabber itself, with no decode thread between them, and its lane
holds two frames, so nothing stale waits in the chain. The faces stage hands its frames to this
camera's lane of the one inference stage (:class:`runtime.batcher.Batcher`), which batches faces
across cameras and hands results back in each camera's frame order; :class:`runtime.loop.FrameLoop`
sets the chain up and owns the outputs.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

import cv2
import numpy as np

from runtime.backends.base import Backend
from runtime.detection import Box
from runtime.errors import UserError
from runtime.preprocess import face_crop, to_input
from runtime.sources import Frame, Source
from runtime.tracking import FaceTracker

STAGES = ("decode", "faces", "preprocess", "infer", "output")  # timed per frame (summary, benchmarks)
_END = object()  # end of stream, travels through the queues
_ABORT = object()  # returned by a get() when the run is being torn down


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Probability of fake from a logit (numerically safe for large |x|)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def share_cores(inference_threads: int, cores: int | None = None) -> int:
    """Split the CPU between the stages; returns the threads for decoding video files.

    OpenCV gets one thread (the stages already run in parallel, each in its own thread);
    inference keeps its ``inference_threads`` (0 when it runs on a GPU), face detection one core,
    and the decoder what is left, at least one. Measured on 2 cores, edge model at 224 px with
    one inference thread, 720p clip: FFmpeg's default (a thread per core) cost 0.3 ms more CPU a
    frame and 13 % of the end-to-end frame rate (403 vs 461 frames/s).
    """
    cv2.setNumThreads(1)
    cores = usable_cores() if cores is None else cores
    return max(1, cores - max(0, inference_threads) - 1)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class Face:
    track: int
    box: Box
    detected: bool  # a fresh detection (True) or a box carried by the tracker (False)
    logit: float = float("nan")
    prob: float = float("nan")
    recon_error: float | None = None  # mean squared error of the reconstruction (normalised input space)
    error_map: np.ndarray | None = None  # S×S float32, only kept when frames are kept
    face_score: float | None = None  # the face detector's confidence (None: Haar, --faces none)
    landmarks: np.ndarray | None = None  # 5×2 frame pixels (None when the detector gives none)
    scored: bool = True  # False: the tracker carried the box but no face was confirmed in it (not scored)
    recent: dict[str, Any] | None = None  # its track's verdict over the last --window seconds (runtime.aggregate)


@dataclass
class Result:
    frame: Frame
    faces: list[Face]
    ended: list[int]  # ids of tracks that ended at this frame (finalise them now)
    x: np.ndarray | None = field(default=None, repr=False)  # network input, until inference
    camera: str = ""  # the camera it came from (set by the inference stage, from the camera's lane)
    recent: dict[str, Any] | None = None  # the source's verdict over the last --window seconds (runtime.aggregate)


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over the run (reported as ms per frame)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds

    def per_frame_ms(self, frames: int) -> dict[str, float]:
        return {k: round(1000.0 * v / frames, 3) if frames else 0.0 for k, v in self.seconds.items()}


LIVE_LANE = 2  # one frame in inference, one ready: a live camera's frames never queue behind more


def lane_depth(max_batch: int, keep_images: bool, queue_frames: int = 4, live: bool = False) -> int:
    """Frames a camera's lane into the inference stage holds: enough to fill a batch with one face
    each, and, when frames are not kept (the network inputs alone: ~0.6 MB a face at 224 px), a
    buffer deep enough that inference keeps busy through a slow detection round (a full-frame scan
    for new faces, ~20-40 ms).

    A live camera's lane holds :data:`LIVE_LANE` frames whatever the rest: a frame waiting there
    only grows old, while its source keeps the newest one and drops the others. Measured on 2 cores,
    20 live 720p30 cameras in one process: a 24-frame lane each held 1.3 s of frames (latency p50
    1,303 ms) where the box could not keep up."""
    if live:
        return LIVE_LANE
    depth = queue_frames if keep_images else 6 * queue_frames
    return max(depth, min(max_batch, 16))


class Lane(Protocol):
    """Where a camera's faces stage puts its frames (:class:`runtime.batcher.Lane`): ``put`` as
    ``queue.Queue``'s (blocks while full, ``queue.Full`` after ``timeout``), ``close`` from any thread."""

    def put(self, item: Any, timeout: float | None = None) -> None: ...

    def close(self) -> None: ...


class Pipeline:
    """One camera's decode and faces threads (:meth:`start`), feeding ``lane``; :meth:`stop` joins
    them. An error in a stage ends this camera only: it is kept in :attr:`error` and the lane is
    closed, and the frame loop decides what it means for the run."""

    def __init__(self, source: Source, tracker: FaceTracker, backend: Backend, lane: Lane, *,
                 reconstruct: bool = False, keep_images: bool = False, queue_frames: int = 4) -> None:
        if reconstruct:
            backend.require_recon()
        self.source = source
        self.tracker = tracker
        self.backend = backend
        self.meta = backend.meta
        # margin around detected faces; zero for --faces none, whose inputs are crops already
        self.margin = getattr(tracker.detector, "crop_margin", self.meta.face_margin)
        # a model trained on aligned crops gets aligned crops, or none (inputs that are crops already)
        self.align = self.meta.face_align if not hasattr(tracker.detector, "crop_margin") else "box"
        if self.align == "landmarks" and not getattr(tracker.detector, "has_landmarks", False):
            raise UserError(f"{backend.path}: the model was trained on face crops aligned by landmarks "
                            "(metadata face_align: landmarks); this face detector gives none, use --faces mtcnn")
        self.reconstruct = reconstruct
        self.keep_images = keep_images
        self.times = StageTimes()
        self.decoded = 0
        self._q2 = lane  # this camera's lane into the shared inference stage (runtime.batcher)
        self._abort = threading.Event()
        self.error: BaseException | None = None
        self._running = 0
        self._lock = threading.Lock()
        # a live source has a grabber thread of its own that keeps the newest frame: the faces stage
        # takes frames from it directly (a decode thread between them would only hold a stale one)
        stages = (("faces", self._faces),) if source.live else (("decode", self._decode), ("faces", self._faces))
        # the decode thread's frames for the faces stage (files only)
        self._q1: queue.Queue[Any] | None = None if source.live else queue.Queue(queue_frames)
        self._frames = self._live_frames() if source.live else self._queued_frames()
        self._threads = [threading.Thread(target=self._guard, args=(fn,), name=f"jrc-{name}", daemon=True)
                         for name, fn in stages]

    def start(self) -> None:
        self._running = len(self._threads)
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Tear down: stop reading, unblock every stage, join the threads (idempotent)."""
        self._abort.set()
        self.source.close()
        for t in self._threads:
            if t.is_alive() and t is not threading.current_thread():
                t.join(10.0)
        if not any(t.is_alive() for t in self._threads):
            self._q2.close()

    # --- plumbing -----------------------------------------------------------------------
    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except BaseException as e:  # kept for the frame loop, which decides what it means for the run
            if self.error is None:
                self.error = e
            self._abort.set()
        finally:
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last:  # every stage is done: nothing more comes down this camera's lane
                self._q2.close()

    def _put(self, q: queue.Queue[Any], item: Any) -> bool:
        while not self._abort.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue[Any]) -> Any:
        """The next item; _ABORT once the run is torn down and nothing is left to take."""
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self._abort.is_set():
                    return _ABORT

    # --- stages -------------------------------------------------------------------------
    def _read(self) -> Iterator[Frame]:
        """The source's frames, each timed ("decode") and stamped when taken."""
        frames = iter(self.source)
        while not self._abort.is_set():
            t0 = time.perf_counter()
            frame = next(frames, None)
            self.times.add("decode", time.perf_counter() - t0)
            if frame is None:
                return
            frame.read_at = time.perf_counter()
            self.decoded += 1
            yield frame

    def _decode(self) -> None:
        q = self._q1
        assert q is not None, "a live source has no decode thread"
        for frame in self._read():
            if not self._put(q, frame):
                return
        if not self._abort.is_set():
            self._put(q, _END)

    def _queued_frames(self) -> Iterator[Any]:
        """A file's frames, from the decode thread's queue; then _END, or _ABORT once torn down."""
        q = self._q1
        assert q is not None, "a live source has no decode queue"
        while True:
            item = self._get(q)
            yield item
            if item is _ABORT or item is _END:
                return

    def _live_frames(self) -> Iterator[Any]:
        """A live source's newest frames, taken by the faces stage itself; then _END or _ABORT."""
        yield from self._read()
        yield _ABORT if self._abort.is_set() else _END

    def _faces(self) -> None:
        meta, item, received = self.meta, -1, 0
        for frame in self._frames:
            if frame is _ABORT:
                return
            if frame is _END:
                self._put(self._q2, _END)
                return
            t0 = time.perf_counter()
            ended = self.tracker.reset() if frame.item != item else []
            item = frame.item
            # motion is in the source's frames (a file's index grows by the stride, a live source's
            # by the frames it dropped: a face moves on meanwhile); a live source's detection
            # cadence counts the frames it was given (a loaded box that drops frames does not detect more)
            received += 1
            tracked, gone = self.tracker.update(frame.image, frame.index,
                                                cadence=received if self.source.live else None)
            t1 = time.perf_counter()
            # only a face the detector confirmed in this frame is cropped and scored (runtime.tracking)
            faces = [Face(f.track, f.box, f.detected, face_score=f.score, landmarks=f.landmarks, scored=f.detected)
                     for f in tracked]
            x = None
            if any(f.scored for f in faces):
                crops = np.stack([face_crop(frame.image, f.box, f.landmarks, self.margin, meta.input_size, self.align)
                                  for f in faces if f.scored])
                x = to_input(crops, meta)
            if not self.keep_images:
                frame.image = None
            self.times.add("faces", t1 - t0)
            self.times.add("preprocess", time.perf_counter() - t1)
            if not self._put(self._q2, Result(frame, faces, ended + gone, x)):
                return
