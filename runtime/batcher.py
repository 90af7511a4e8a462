"""The one inference stage: faces from every camera, batched into one backend session.

Each camera's faces stage (:class:`runtime.pipeline.Pipeline`) puts its frames, with their network
inputs, into its own bounded :class:`Lane`. The batcher takes frames from the lanes round-robin, one
frame per lane per sweep, so a busy camera (many faces, or a file read as fast as it decodes) gets
one turn in each sweep and never starves the others; it stops at the model's maximum batch. When a
batch is not full it may wait up to ``wait_s`` for more (DeepStream's ``batched-push-timeout``): it
stops waiting early once every camera still running has given a frame to this batch, since the next
frame of each is a frame interval away. With one camera it never waits (``wait_s`` 0: take what is
ready), as the single-source loop always did. Results go out on one queue in each camera's frame
order, followed by a :class:`CameraEnded` mark when a camera's lane is closed and empty, and
``None`` once every lane is.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from runtime.backends.base import Backend
from runtime.pipeline import _END, Result, StageTimes, sigmoid

ITEMS_PER_FACE_SLOT = 4  # frames without faces ride along: at most this many frames per batch slot


@dataclass(frozen=True)
class CameraEnded:
    """Out-queue mark: every result of ``camera`` has been handed out."""

    camera: str


class Lane:
    """One camera's bounded queue into the batcher; ``put`` and ``close`` as ``queue.Queue``'s
    producer side (``runtime.pipeline.Lane``). Putting the end mark closes it."""

    def __init__(self, batcher: Batcher, name: str, maxsize: int, times: StageTimes | None = None) -> None:
        self.name = name
        self.maxsize = max(1, int(maxsize))
        self.times = times if times is not None else StageTimes()
        self._b = batcher
        self._items: deque[Any] = deque()
        self.closed = False  # no more items will come (the end mark is queued)
        self.ended = False  # the end mark has been taken: the camera is done

    def put(self, item: Any, timeout: float | None = None) -> None:
        if item is _END:
            self.close()
            return
        cond = self._b._cond
        with cond:
            if not cond.wait_for(lambda: len(self._items) < self.maxsize or self._b.aborted, timeout):
                raise queue.Full
            self._items.append(item)
            cond.notify_all()

    def close(self) -> None:
        with self._b._cond:
            if not self.closed:
                self.closed = True
                self._items.append(_END)
                self._b._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)


class Batcher:
    """Run with :meth:`start`; read :attr:`out` until it yields ``None``; :meth:`stop` tears down.
    ``on_batch(faces, seconds)`` is called after each inference (metrics)."""

    def __init__(self, backend: Backend, *, reconstruct: bool = False, keep_images: bool = False,
                 wait_s: float = 0.0, out_size: int = 16) -> None:
        self.backend = backend
        self.reconstruct = reconstruct
        self.keep_images = keep_images
        self.wait_s = max(0.0, float(wait_s))
        self.max_batch = backend.max_batch
        self.lanes: list[Lane] = []
        self.out: queue.Queue[Any] = queue.Queue(max(1, out_size))
        self.on_batch: list[Callable[[int, float], None]] = []
        self.batches = 0  # inference calls made (batches with at least one face)
        self.faces = 0  # faces scored
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._abort = threading.Event()
        self._rr = 0  # the lane a sweep starts at: rotates, so no lane always goes first
        self._thread = threading.Thread(target=self._guard, name="jrc-infer", daemon=True)

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    @property
    def mean_batch(self) -> float | None:
        return self.faces / self.batches if self.batches else None

    def lane(self, name: str, maxsize: int, times: StageTimes | None = None) -> Lane:
        lane = Lane(self, name, maxsize, times)
        self.lanes.append(lane)
        return lane

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Unblock everything and join the inference thread (idempotent)."""
        self._abort.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10.0)

    # --- the stage ----------------------------------------------------------------------
    def _guard(self) -> None:
        try:
            self._run()
        except BaseException as e:  # the frame loop re-raises it on its own thread
            self.error = e
            self._abort.set()
        finally:
            self._put(None)

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            results = [(lane, r) for lane, r in batch if r is not _END]
            t0 = time.perf_counter()
            faces = self._score([r for _, r in results])
            seconds = time.perf_counter() - t0
            self._charge(results, faces, seconds)
            for lane, r in batch:
                if r is _END:
                    if not self._put(CameraEnded(lane.name)):
                        return
                    continue
                r.camera = lane.name
                if not self._put(r):
                    return

    def _collect(self) -> list[tuple[Lane, Any]] | None:
        """The next batch: frames taken round-robin across lanes (None when every lane has ended
        or the run is torn down)."""
        with self._cond:
            while not any(len(lane) for lane in self.lanes):
                if self._abort.is_set() or all(lane.ended for lane in self.lanes):
                    return None
                self._cond.wait(0.1)
            batch: list[tuple[Lane, Any]] = []
            given: set[int] = set()
            faces = self._sweep(batch, given, 0)
            deadline = time.perf_counter() + self.wait_s
            while 0 < faces < self.max_batch and self.wait_s > 0 and not self._abort.is_set():
                running = {id(lane) for lane in self.lanes if not lane.closed}
                if running <= given:  # every running camera has a frame in this batch
                    break
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
                faces = self._sweep(batch, given, faces)
            self._cond.notify_all()  # room in the lanes
            return batch

    def _sweep(self, batch: list[tuple[Lane, Any]], given: set[int], faces: int) -> int:
        """Take one frame per lane per pass, from the rotating start, until the batch is full or
        the lanes are empty; returns the faces in the batch."""
        n = len(self.lanes)
        if not n:
            return faces
        start, self._rr = self._rr % n, self._rr + 1
        order = self.lanes[start:] + self.lanes[:start]
        cap = ITEMS_PER_FACE_SLOT * max(1, self.max_batch)
        while faces < self.max_batch and len(batch) < cap:
            took = False
            for lane in order:
                if not len(lane) or faces >= self.max_batch:
                    continue
                item = lane._items.popleft()
                took = True
                given.add(id(lane))
                batch.append((lane, item))
                if item is _END:
                    lane.ended = True
                else:
                    faces += scored_faces(item)
            if not took:
                break
        return faces

    def _charge(self, results: list[tuple[Lane, Result]], faces: int, seconds: float) -> None:
        """Inference time per camera, in proportion to its faces in the batch (its frames, when none had one)."""
        if not results:
            return
        weights = [scored_faces(r) for _, r in results] if faces else [1] * len(results)
        total = sum(weights)
        for (lane, _), w in zip(results, weights):
            lane.times.add("infer", seconds * w / total)
        if faces:
            self.batches += 1
            self.faces += faces
            for fn in self.on_batch:
                fn(faces, seconds)

    def _put(self, item: Any) -> bool:
        while not self._abort.is_set() or item is None:
            try:
                self.out.put(item, timeout=0.1)
                return True
            except queue.Full:
                if item is None and self._abort.is_set():
                    return False
        return False

    def _score(self, results: list[Result]) -> int:
        """Score every face of ``results`` in place; returns how many there were."""
        xs = [r.x for r in results if r.x is not None]
        if not xs:
            return 0
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
            for f in (f for f in r.faces if f.scored):  # the faces the detector confirmed (runtime.tracking)
                f.logit, f.prob = float(logit[k]), float(prob[k])
                if err is not None:
                    f.recon_error = float(err[k].mean())
                    f.error_map = err[k].astype(np.float32) if self.keep_images else None
                k += 1
            r.x = None
        return len(x)


def scored_faces(r: Result) -> int:
    """The faces of a frame that are scored: those the detector confirmed (the others have no crop)."""
    return sum(1 for f in r.faces if f.scored)
