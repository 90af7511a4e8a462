"""The frame loop, set up in one place: sources → faces (tracker) → one inference → aggregators → outputs.

One source (:meth:`FrameLoop.run`) or several cameras (:meth:`FrameLoop.run_cameras`, the camera
box) run through the same loop: each camera has its own decode and faces threads, tracker and
aggregator; their faces share one batched inference stage (:mod:`runtime.batcher`); results come
back on the caller's thread, which owns the outputs: JSONL, video, window, the events
(:mod:`runtime.events`) and their sinks, and the live state a view or the metrics read
(:mod:`runtime.camera_state`). ``runtime.detect`` runs it for the CLI, and ``benchmarks.pipeline``,
``benchmarks.soak`` and ``benchmarks.streams`` run the same :class:`FrameLoop`, so what is measured
is what ships. The benchmark's variants are
options of it: ``Faces(detect_every=N)`` tracks between detections, ``Faces(detect_every=1)``
detects on every frame, ``Faces(given=boxes)`` replays boxes found beforehand (the detector's cost
taken out).
"""

from __future__ import annotations

import queue
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from runtime import annotate, sinks  # by module: tests and tools may swap a sink's function
from runtime.aggregate import LIVE_WINDOW_S, Aggregator
from runtime.backends.base import Backend
from runtime.batcher import Batcher, CameraEnded
from runtime.camera_state import BoxState, CameraState, Latency
from runtime.capture import quiet_video_logs
from runtime.detection import Box
from runtime.errors import UserError
from runtime.faces import DEFAULT_DETECTOR, GivenFaces, make_detector
from runtime.pipeline import Pipeline, Result, StageTimes, lane_depth, share_cores
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
    jsonl_frames: str = "all"  # all, faces (frames with a face) or events (frames of a track in an open event)
    rotate: sinks.Rotation | None = None  # JSONL files (frames and events) rotated by size or age
    view: bool = False  # keep each camera's latest frame for a live view (CameraState.frame_jpeg)


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


def decoder_threads(inference_threads: int, cameras: int = 1) -> int:
    """Ready OpenCV for the loop (its logs quiet, one thread per stage) and split the CPU between
    the stages (:func:`runtime.pipeline.share_cores`); returns the threads for decoding each
    camera's video files (the decoders' share split between the cameras)."""
    quiet_video_logs()
    return max(1, share_cores(inference_threads) // max(1, cameras))


GPU_BATCH_WAIT_S = 0.005


def default_batch_wait(backend: Backend, cameras: int) -> float:
    """How long an unfilled batch waits for other cameras' faces: 5 ms with several cameras on a GPU
    (a batch of eight costs about what one does there), none on a CPU (measured on 2 cores, 4 paced
    720p cameras: waiting 5 ms raised the latency p95 from 28 to 42 ms and saved no CPU) or with
    one camera (its next frame is a frame interval away)."""
    return GPU_BATCH_WAIT_S if cameras > 1 and getattr(backend, "on_gpu", False) else 0.0


@dataclass
class Camera:
    """A camera of the box: its name (JSONL ``camera``, topics, metrics), its source, and its own
    face settings (None: the loop's)."""

    name: str
    source: Source
    faces: Faces | None = None


class CameraRun:
    """A camera during a run: its source, tracker, stages and aggregator, and how it ended."""

    def __init__(self, cam: Camera, tracker: FaceTracker, own_tracker: bool, threshold: float,
                 window: float | None = None) -> None:
        self.name = cam.name
        self.source = cam.source
        self.tracker = tracker
        self.own_tracker = own_tracker  # the loop made its detector and closes it
        self.agg = Aggregator(threshold, window=window)
        self.times = StageTimes()
        self.pipeline: Pipeline | None = None
        self.latency = Latency()
        self.state = CameraState(cam.name, cam.source.spec)
        self.error: BaseException | None = None
        self.done = False  # nothing more of it is written (ended, failed, stopped)
        self.stopped = False  # stopped by the loop (--max-frames, the run's end) rather than by its source
        self.told_up: bool | None = None  # "up" as last handed to the sinks
        self.started: float | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            from runtime.sources import SourceLost

            return "source_lost" if isinstance(self.error, SourceLost) else "error"
        return "ok" if self.done else "running"


class FrameLoop:
    """One run over one source or several cameras. ``source``, ``pipeline`` and ``agg`` (the one
    camera's, single-source runs) and ``cameras`` are public once a run has started (summaries,
    samplers, metrics and views read them); :meth:`close` always finishes the run."""

    def __init__(self, backend: Backend, faces: Faces | None = None, outputs: Outputs | None = None, *,
                 threshold: float | None = None, reconstruct: bool = False, max_frames: int | None = None,
                 guard: FrameGuard | None = None, batch_wait: float | None = None, events: Any = None,
                 event_sinks: Sequence[Any] = (), on_batch: Sequence[Callable[[int, float], None]] = (),
                 window: float | None = None) -> None:
        """``batch_wait``: seconds the inference stage may wait to fill a batch (default:
        :func:`default_batch_wait`); ``events``: a :class:`runtime.events.EventOptions` (None:
        no events); ``event_sinks``: where event messages and camera states go (each with
        ``publish(message)``, ``camera_state(name, state)``, ``close()``, ``report()``); ``on_batch``:
        called with (faces, seconds) after each inference batch (metrics); ``window``: seconds of the
        recent verdicts (runtime.aggregate); None: ``LIVE_WINDOW_S`` for a live source, none for
        files; 0: none."""
        if reconstruct:
            backend.require_recon()
        self.backend = backend
        self.threshold = backend.meta.threshold if threshold is None else threshold
        self.window = window
        self.reconstruct = reconstruct
        self.max_frames = max_frames
        self.guard: FrameGuard = guard or _NoGuard()
        self.outputs = outputs or Outputs()
        self.faces = faces or Faces()
        self.tracker = self.faces.tracker()  # the first camera's (the only one of a single-source run)
        self.batch_wait = batch_wait
        self.event_options = events
        self.event_sinks = list(event_sinks)
        self.on_batch = list(on_batch)
        # the window opens before the source does: a missing GUI is reported first
        self.show = sinks.ShowSink() if self.outputs.show else None
        self.source: Source | None = None
        self.pipeline: Pipeline | None = None
        self.agg: Aggregator | None = None
        self.cameras: list[CameraRun] = []
        self.state = BoxState()  # what a live view reads (thread-safe)
        self.batcher: Batcher | None = None
        self.events: Any = None
        self.jsonl: sinks.JsonlSink | None = None
        self.video: Any = None  # the --save sink (runtime.save.open_save)
        self.console = sinks.Console(enabled=False)
        self.open_sinks: list[Any] = [self.show] if self.show else []
        self.started: float | None = None  # perf_counter() when frames started flowing
        self.first_result: float | None = None  # ... and when the first result came back
        self.faces_first = 0  # faces in that first result
        self.last_prob: float | None = None
        self.isolate = False
        self._by_name: dict[str, CameraRun] = {}
        self._closed = False
        self._last_tick = 0.0

    def run(self, source: Source, name: str = "cam1") -> None:
        """Process ``source`` to its end, ``max_frames``, or until the window is closed; an error
        of the source is raised once its results are written."""
        self._run([Camera(name, source)], isolate=False)

    def run_cameras(self, cameras: Sequence[Camera]) -> None:
        """Process every camera until each has ended or failed (``max_frames`` each), or the window
        is closed. A camera's failure ends that camera only: it is kept in its ``error`` (and
        warned about on stderr) while the others go on; errors that are not the input's (bugs)
        end the run."""
        self._run(list(cameras), isolate=True)

    # --- running ------------------------------------------------------------------------
    def _run(self, cameras: list[Camera], isolate: bool) -> None:
        self.isolate = isolate
        self._start(cameras)
        assert self.batcher is not None
        quit_ = False
        while not quit_:
            item = self._next()
            if item is None:
                break
            if isinstance(item, CameraEnded):
                self.guard.begin_frame()  # its events close whole, like a frame's outputs
                self._camera_ended(self._by_name[item.camera])
                self.guard.end_frame()
            else:
                cam = self._by_name[item.camera]
                if cam.done:
                    continue
                self.guard.begin_frame()  # a stop signal takes effect once this frame is fully written
                t = time.perf_counter()
                if self.first_result is None:
                    self.first_result, self.faces_first = t, len(item.faces)
                quit_ = not self._output(cam, item)
                cam.times.add("output", time.perf_counter() - t)
                if quit_:
                    break
                if self.max_frames and cam.agg.frames >= self.max_frames:
                    self._stop_camera(cam)
                self.guard.end_frame()
            if all(c.done for c in self.cameras):
                break
        self.guard.end_frame()  # a signal during the last frame (window closed, max_frames) still counts
        self._stop_stages()
        if self.batcher.error is not None:
            raise self.batcher.error
        for cam in self.cameras:
            if cam.error is not None and (not isolate or not isinstance(cam.error, UserError)):
                raise cam.error
        self.console.update(self._frames(), self.last_prob, self._dropped(), force=True)

    def _next(self) -> Any:
        assert self.batcher is not None
        while True:
            self._tick()
            try:
                return self.batcher.out.get(timeout=0.1)
            except queue.Empty:
                if self.batcher.aborted and self.batcher.out.empty():
                    return None

    def _tick(self) -> None:
        """About once a second: a camera that went down or came back (no frame says so) is told to
        the sinks that keep a state."""
        now = time.monotonic()
        if now - self._last_tick < 1.0:
            return
        self._last_tick = now
        for cam in self.cameras:
            if cam.state.up_now(cam.source, cam.done) != cam.told_up:
                self._state_changed(cam)

    def close(self) -> list[dict[str, Any]]:
        """Stop reading, end every open track and event, close the outputs (also after an error);
        returns the tracks that ended here."""
        self._stop_stages()
        tail: list[dict[str, Any]] = []
        for cam in self.cameras:
            cam.source.close()
            tail += cam.agg.finish()
            if cam.own_tracker and hasattr(cam.tracker.detector, "close"):
                cam.tracker.detector.close()
        if self.source is not None:
            self.source.close()
        if self.events is not None and not self._closed:
            self._publish(self.events.finish("shutdown"))
        self._closed = True
        for s in self.open_sinks:
            s.close()
        return tail

    def _start(self, cameras: list[Camera]) -> None:
        out = self.outputs
        names = [c.name for c in cameras]
        if len(set(names)) != len(names):
            raise UserError(f"camera names must be unique; given: {', '.join(names)}")
        if len(cameras) > 1 and (out.save or out.show):
            raise UserError("--save and --show take one camera's frames; with several cameras leave them out")
        first = cameras[0]
        self.source = first.source
        keep = bool(out.save or out.show or out.view or self.event_options is not None)
        wait = self.batch_wait if self.batch_wait is not None else default_batch_wait(self.backend, len(cameras))
        self.batcher = Batcher(self.backend, reconstruct=self.reconstruct, keep_images=keep, wait_s=wait,
                               out_size=max(4, min(self.backend.max_batch, 16)) * len(cameras))
        self.batcher.on_batch.extend(self.on_batch)
        for i, cam in enumerate(cameras):
            own = i > 0 or cam.faces is not None
            tracker = (cam.faces or self.faces).tracker() if own else self.tracker
            window = self.window if self.window is not None else (LIVE_WINDOW_S if cam.source.live else None)
            run = CameraRun(cam, tracker, own, self.threshold, window)
            live = cam.source.live
            lane = self.batcher.lane(cam.name, lane_depth(self.backend.max_batch, keep, live=live), run.times)
            run.pipeline = Pipeline(cam.source, tracker, self.backend, lane, reconstruct=self.reconstruct,
                                    keep_images=keep, queue_frames=4)
            run.pipeline.times = run.times
            self.cameras.append(run)
            self.state.add(run.state)
        self._by_name = {c.name: c for c in self.cameras}
        if len(self.cameras) == 1:
            self.pipeline, self.agg = self.cameras[0].pipeline, self.cameras[0].agg
        rotate = out.rotate
        self.jsonl = sinks.JsonlSink(out.jsonl, rotate=rotate) if out.jsonl else None
        self.video = open_save(out.save, first.source.spec, getattr(first.source, "fps", None)) if out.save else None
        self.console = sinks.Console(enabled=out.status)
        if self.event_options is not None:
            from runtime.events import Events

            self.events = Events(self.event_options, self.threshold,
                                 fps={c.name: getattr(c.source, "fps", None) for c in cameras})
        self.open_sinks = [s for s in (self.jsonl, self.video, self.show, self.console) if s is not None]
        self.open_sinks += [s for s in self.event_sinks if s not in self.open_sinks]
        if self.events is not None:
            self.open_sinks.append(self.events)
        self.started = time.perf_counter()
        self.batcher.start()
        for cam in self.cameras:
            cam.started = self.started
            cam.pipeline.start()
            self._state_changed(cam)

    def _stop_stages(self) -> None:
        for cam in self.cameras:
            if cam.pipeline is not None:
                cam.pipeline.stop()
        if self.batcher is not None:
            self.batcher.stop()

    def _stop_camera(self, cam: CameraRun) -> None:
        """The loop is done with ``cam`` (``max_frames``): stop its stages, end its events."""
        cam.stopped = True
        if cam.pipeline is not None:
            cam.pipeline.stop()
        self._camera_ended(cam)

    def _camera_ended(self, cam: CameraRun) -> None:
        if cam.done:
            return
        cam.done = True
        if cam.pipeline is not None and cam.pipeline.error is not None and not cam.stopped:
            cam.error = cam.pipeline.error
            if self.isolate and isinstance(cam.error, UserError):
                print(f"jrc-detect: warning: camera {cam.name}: {cam.error}", file=sys.stderr, flush=True)
        if self.events is not None:
            self._publish(self.events.end_camera(cam.name))
        cam.state.set_status(cam.status, str(cam.error) if cam.error is not None else None)  # and down
        self._state_changed(cam)

    # --- outputs ------------------------------------------------------------------------
    def _output(self, cam: CameraRun, r: Result) -> bool:
        """One frame's result into its camera's aggregator and every output; False when the user quit."""
        dropped = cam.source.stats.dropped
        ended = cam.agg.add(r)
        messages = self.events.add(cam.name, r, ended) if self.events is not None else []
        if self.jsonl and self._keep_row(cam, r):
            self.jsonl.write(sinks.frame_record(r, ended, self.threshold, dropped))
        self._publish(messages)
        if self.video or self.show:
            img = annotate.annotate(r, self.threshold)
            if self.video:
                self.video.write(img, r.frame)
            if self.show and not self.show.show(img):
                return False
        if r.frame.read_at:
            cam.latency.add(time.perf_counter() - r.frame.read_at)
        cam.state.update(r, ended, dropped, self.threshold, keep_frame=self.outputs.view)
        if messages or cam.agg.frames == 1:
            self._state_changed(cam)
        self.last_prob = max((f.prob for f in r.faces if f.prob == f.prob), default=None)  # NaN: not scored
        self.console.update(self._frames(), self.last_prob, self._dropped())
        return True

    def _keep_row(self, cam: CameraRun, r: Result) -> bool:
        mode = self.outputs.jsonl_frames
        if mode == "faces":
            return bool(r.faces)
        if mode == "events":
            open_ = self.events.open_tracks(cam.name) if self.events is not None else set()
            return any(f.track in open_ for f in r.faces)
        return True

    def _publish(self, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            for cam in self.cameras:
                if cam.name == m["event"]["camera"]:
                    cam.state.event(m)
            for s in self.event_sinks:
                s.publish(m)

    def _state_changed(self, cam: CameraRun) -> None:
        """Hand a camera's state to the sinks that keep one (MQTT's retained state topic)."""
        if not any(hasattr(s, "camera_state") for s in self.event_sinks):
            return
        up = cam.told_up = cam.state.up_now(cam.source, cam.done)
        state = {"camera": cam.name, "up": up, "status": cam.status, "frames": cam.agg.frames,
                 "events_open": len(self.events.open_tracks(cam.name)) if self.events is not None else 0}
        for s in self.event_sinks:
            if hasattr(s, "camera_state"):
                s.camera_state(cam.name, state)

    def _frames(self) -> int:
        return sum(c.agg.frames for c in self.cameras)

    def _dropped(self) -> int:
        return sum(c.source.stats.dropped for c in self.cameras)


def camera_summary(cam: CameraRun, now: float | None = None) -> dict[str, Any]:
    """A camera's section of the run's summary: how it ended, its source counters, its verdicts,
    rate, latency and per-stage times."""
    st = cam.source.stats
    d: dict[str, Any] = {"camera": cam.name, "source": cam.source.spec, "status": cam.status,
                         "error": str(cam.error) if cam.error is not None else None,
                         "live": cam.source.live, "decoded": cam.pipeline.decoded if cam.pipeline else 0,
                         "dropped": st.dropped, "damaged": st.damaged, "missing": st.missing,
                         "reconnects": st.reconnects, "skipped": st.skipped, "not_media": st.not_media}
    d.update(cam.agg.summary())
    elapsed = (now or time.perf_counter()) - cam.started if cam.started is not None else 0.0
    d["fps"] = round(cam.agg.frames / elapsed, 3) if elapsed > 0 and cam.agg.frames else None
    d["latency_ms"] = cam.latency.summary()
    d["timing_ms_per_frame"] = cam.times.per_frame_ms(cam.agg.frames)
    return d
