"""The frame loop: decode → faces (+ preprocess) → inference, overlapped in threads.

Each stage runs in its own thread and hands work on through a small bounded queue, so memory
stays flat however long the run, and a slow stage slows the ones before it instead of piling up
frames (live sources drop frames at the grabber instead, see :mod:`runtime.sources`). Results
come back in frame order on the caller's thread, which owns the outputs (and any GUI window).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import cv2
import numpy as np

from runtime.backends.base import Backend
from runtime.errors import UserError
from runtime.faces import Box
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
    recent: dict[str, Any] | None = None  # the source's verdict over the last --window seconds (runtime.aggregate)


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over the run (reported as ms per frame)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds

    def per_frame_ms(self, frames: int) -> dict[str, float]:
        return {k: round(1000.0 * v / frames, 3) if frames else 0.0 for k, v in self.seconds.items()}


class Pipeline:
    """Iterate over :class:`Result` objects; stops and joins its threads when the loop ends."""

    def __init__(self, source: Source, tracker: FaceTracker, backend: Backend, *, reconstruct: bool = False,
                 keep_images: bool = False, queue_frames: int = 4) -> None:
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
        self._q1: queue.Queue[Any] = queue.Queue(queue_frames)
        # enough frames to fill a batch with one face each, and, when frames are not kept (the
        # network inputs alone: ~0.6 MB a face at 224 px), a buffer deep enough that inference keeps
        # busy through a slow detection round (a full-frame scan for new faces, ~20-40 ms)
        depth = queue_frames if keep_images else 6 * queue_frames
        self._q2: queue.Queue[Any] = queue.Queue(max(depth, min(backend.max_batch, 16)))
        # a whole batch of results, so inference never waits on the caller to hand them on
        self._q3: queue.Queue[Any] = queue.Queue(max(queue_frames, min(backend.max_batch, 16)))
        self._abort = threading.Event()
        self._error: BaseException | None = None
        self._threads = [threading.Thread(target=self._guard, args=(fn,), name=f"jrc-{name}", daemon=True)
                         for name, fn in (("decode", self._decode), ("faces", self._faces),
                                          ("infer", self._infer))]

    # --- the caller's side --------------------------------------------------------------
    def __iter__(self) -> Iterator[Result]:
        for t in self._threads:
            t.start()
        try:
            while True:
                item = self._get(self._q3)
                if item is _END or item is _ABORT:
                    break
                yield item
            if self._error is not None:
                raise self._error
        finally:
            self.stop()

    def stop(self) -> None:
        """Tear down: stop reading, unblock every stage, join the threads (idempotent)."""
        self._abort.set()
        self.source.close()
        for t in self._threads:
            if t.is_alive() and t is not threading.current_thread():
                t.join(10.0)

    # --- plumbing -----------------------------------------------------------------------
    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except BaseException as e:  # handed to the caller's thread, which re-raises it
            if self._error is None:
                self._error = e
            self._abort.set()

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
    def _decode(self) -> None:
        frames = iter(self.source)
        while not self._abort.is_set():
            t0 = time.perf_counter()
            frame = next(frames, None)
            self.times.add("decode", time.perf_counter() - t0)
            if frame is None:
                break
            self.decoded += 1
            if not self._put(self._q1, frame):
                return
        self._put(self._q1, _END)

    def _faces(self) -> None:
        meta, item = self.meta, -1
        while True:
            frame = self._get(self._q1)
            if frame is _ABORT:
                return
            if frame is _END:
                self._put(self._q2, _END)
                return
            t0 = time.perf_counter()
            ended = self.tracker.reset() if frame.item != item else []
            item = frame.item
            # a file's frame index (it grows by the stride): detection cadence and motion are in
            # the source's frames; a live source's index jumps by the frames it dropped, so
            # there the tracker counts the frames it is given (a loaded box does not detect more)
            tracked, gone = self.tracker.update(frame.image, None if self.source.live else frame.index)
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

    def _infer(self) -> None:
        limit = self.backend.max_batch
        while True:
            first = self._get(self._q2)
            if first is _ABORT:
                return
            batch, n = [first], 0 if first is _END else len(first.faces)
            while batch[-1] is not _END and n < limit:  # take what is ready, never wait to fill
                try:
                    nxt = self._q2.get_nowait()
                except queue.Empty:
                    break
                batch.append(nxt)
                n += 0 if nxt is _END else len(nxt.faces)
            results = [r for r in batch if r is not _END]
            t0 = time.perf_counter()
            self._score(results)
            self.times.add("infer", time.perf_counter() - t0)
            for r in batch:
                if not self._put(self._q3, r):
                    return
            if batch[-1] is _END:
                return

    def _score(self, results: list[Result]) -> None:
        xs = [r.x for r in results if r.x is not None]
        if not xs:
            return
        x = np.concatenate(xs) if len(xs) > 1 else xs[0]
        logits, errors = [], []
        for i in range(0, len(x), self.backend.max_batch):
            chunk = x[i: i + self.backend.max_batch]
            out = self.backend.infer(chunk, reconstruct=self.reconstruct)
            logits.append(out["logit"][:, 0])
            if self.reconstruct:
                errors.append(np.mean((chunk - out["recon"]) ** 2, axis=1))  # N×S×S
        logit = np.concatenate(logits)
        prob = sigmoid(logit)
        err = np.concatenate(errors) if errors else None
        k = 0
        for r in results:
            for f in (f for f in r.faces if f.scored):
                f.logit, f.prob = float(logit[k]), float(prob[k])
                if err is not None:
                    f.recon_error = float(err[k].mean())
                    f.error_map = err[k].astype(np.float32) if self.keep_images else None
                k += 1
            r.x = None
