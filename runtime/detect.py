"""``python -m runtime.detect --engine MODEL --source SRC``: detect deepfaked faces, live or in files.

Several ``--source`` (or ``--cameras FILE.toml``) run a camera box in one process: one model
session, events and their sinks, metrics (:mod:`runtime.box`).

Exit codes: 0 done (also when no face was found: that is reported), 1 bad input or model (one
line says which and why), 2 bad command line, 3 the source failed mid-run (results so far are
written; a box: any camera failed), 130 interrupted (SIGINT/SIGTERM; results so far are written).
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from runtime import __version__
from runtime.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOURCE,
    EXIT_USAGE,
    EXIT_USER,
    Parser,
    UserError,
    run_cli,
)
from runtime.redact import shown

PROG = "jrc-detect"
ONNX_ONLY = ("provider", "threads", "input_size", "mean", "std", "color")
PATH_OPTIONS = ("engine", "jsonl", "summary", "save", "events", "event_media", "cameras", "face_model", "mqtt_auth",
                "web_token_file")
MAX_THREADS_PER_CORE = 4  # --threads above this many per usable core only make ONNX Runtime's threads wait


def build_parser() -> argparse.ArgumentParser:
    from runtime.cameras import reconnects

    p = Parser(
        prog=PROG, description="Detect deepfaked faces in a camera stream, video, image, folder or glob "
        "with a JRC model (.onnx via ONNX Runtime, .engine/.plan via TensorRT).",
        epilog="Exit codes: 0 done (also when no face was found), 1 bad input/model, 2 bad command line, "
        "3 source failed mid-run, 130 interrupted. Results written before an error stay on disk.")
    p.add_argument("--engine", required=True, metavar="PATH", help="model: .onnx, or TensorRT .engine/.plan "
                   "with its .json sidecar")
    p.add_argument("--source", action="append", metavar="[NAME=]SRC", help="camera index (0), video file, image, "
                   "folder, glob ('clips/*.mp4'), URL (rtsp://, http://) or GStreamer pipeline (contains '!'); "
                   "repeat it for several cameras in one process, each named by NAME= (default cam1, cam2, ...)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    m = p.add_argument_group("model")
    m.add_argument("--provider", choices=("cpu", "cuda", "tensorrt"), help="ONNX Runtime execution provider "
                   "(.onnx only; default cpu)")
    m.add_argument("--threads", type=int, metavar="N", help="ONNX Runtime intra-op threads (default: the cores "
                   "this process may use minus two, at least one: decoding and face detection run beside it)")
    m.add_argument("--max-batch", type=int, metavar="N", help="faces per inference batch for a dynamic-batch "
                   "ONNX (default 8; engines use their profile's max)")
    m.add_argument("--threshold", type=float, metavar="P", help="probability of fake at or above which a "
                   "verdict is 'fake' (default: the model's metadata)")
    m.add_argument("--window", type=float, metavar="SEC", help="also a recent verdict per track and per source "
                   "over the last SEC seconds (JSONL 'recent', summary); default 10 for live sources, none for "
                   "files; 0 turns it off")
    m.add_argument("--reconstruct", action="store_true", help="also run the decoder (full graph only): "
                   "reconstruction error per face in JSONL, error maps in --save")
    m.add_argument("--input-size", type=int, metavar="S", help="for an ONNX without jrc-edge metadata: "
                   "input side in pixels")
    m.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"), help="... its normalisation mean (0-1)")
    m.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"), help="... and std (0-1)")
    m.add_argument("--color", choices=("RGB", "BGR"), help="... and channel order (default RGB)")
    s = p.add_argument_group("source")
    s.add_argument("--stride", type=int, default=1, metavar="N", help="files: process every Nth frame (default 1)")
    s.add_argument("--live", choices=("auto", "yes", "no"), default="auto", help="drop stale frames instead of "
                   "queueing them; auto = for cameras, URLs and pipelines ('yes' plays a file like a camera)")
    s.add_argument("--max-frames", type=int, metavar="N", help="stop after N processed frames")
    s.add_argument("--max-reconnects", type=reconnects, default=5, metavar="N", help="live: reopen a failed stream "
                   "up to N times ('forever': a box that waits for its cameras), with backoff, before giving up "
                   "(default 5)")
    s.add_argument("--timeout", type=float, default=10.0, metavar="SEC", help="live: wait at most SEC to open "
                   "a stream or read a frame (default 10)")
    f = p.add_argument_group("faces")
    f.add_argument("--faces", choices=("mtcnn", "haar", "yunet", "none"), help="face detector: mtcnn (default; "
                   "a CNN run by the same backends as the model, bundled), haar (OpenCV's cascade, no model file), "
                   "yunet (needs --face-model) or 'none' when the inputs are already face crops")
    f.add_argument("--face-model", metavar="PATH", help="mtcnn: a folder with pnet/rnet/onet .onnx (or .engine) "
                   "from python -m export.faces (default: the bundled one); yunet: a YuNet .onnx (a file implies "
                   "--faces yunet)")
    f.add_argument("--face-threshold", type=float, metavar="P", help="mtcnn: faces detected with a confidence "
                   "below P are never scored (default 0.9)")
    f.add_argument("--detect-every", type=int, default=5, metavar="N", help="run the detector every Nth "
                   "frame and track faces in between (default 5; 1 = every frame)")
    f.add_argument("--detect-width", type=int, default=640, metavar="PX", help="detect on frames downscaled to "
                   "this width (default 640; 0: at full size)")
    f.add_argument("--min-face", type=int, default=24, metavar="PX", help="smallest face, in downscaled pixels")
    f.add_argument("--max-faces", type=int, default=10, metavar="N", help="largest N faces per frame (default 10)")
    f.add_argument("--scan-every", type=int, default=16, metavar="N", help="while faces are tracked, scan the "
                   "whole frame for new ones every Nth detection (default 16: every 80 frames at --detect-every "
                   "5); lower finds new faces sooner for more CPU")
    o = p.add_argument_group("outputs")
    o.add_argument("--jsonl", metavar="FILE", help="one JSON object per processed frame, flushed as written")
    o.add_argument("--summary", metavar="FILE", help="JSON summary at the end (also on errors and interrupts)")
    o.add_argument("--save", metavar="PATH", help="annotated output, boxes coloured by score: a video (.mp4 or "
                   ".avi), an image (.png, .jpg) for a one-image source, or a folder (DIR/) for one annotated image "
                   "per input image (and an .mp4 per input video); missing folders are created")
    o.add_argument("--show", action="store_true", help="show the annotated frames in a window (q quits)")
    o.add_argument("--quiet", action="store_true", help="no running status line")
    from runtime.box import add_arguments

    add_arguments(p)
    return p


def _check_args(a: argparse.Namespace) -> None:
    """Values argparse cannot check: every error here is a bad command line (exit code 2)."""
    from runtime.box import check_args

    if not a.source and not a.cameras:
        raise UserError("no input: give --source SRC (repeat it for several cameras) or --cameras FILE.toml",
                        EXIT_USAGE)
    check_args(a)
    is_onnx = Path(a.engine).suffix.lower() == ".onnx"
    if not is_onnx:
        given = ["--" + k.replace("_", "-") for k in ONNX_ONLY if getattr(a, k) is not None]
        if given:
            raise UserError(f"{a.engine}: {', '.join(given)} apply to .onnx models only; drop them", EXIT_USAGE)
    for name, low in (("stride", 1), ("detect_every", 1), ("max_faces", 1), ("max_batch", 1),
                      ("max_frames", 1), ("threads", 0), ("max_reconnects", 0), ("detect_width", 0),
                      ("input_size", 16), ("min_face", 1), ("scan_every", 1)):
        v = getattr(a, name)
        if v is not None and v < low:
            raise UserError(f"--{name.replace('_', '-')} {v}: must be at least {low}", EXIT_USAGE)
    from runtime.pipeline import usable_cores

    most = MAX_THREADS_PER_CORE * usable_cores()
    if a.threads is not None and a.threads > most:  # a unit file tuned on a bigger box still starts here
        print(f"{PROG}: warning: --threads {a.threads} is more than {MAX_THREADS_PER_CORE}x the {usable_cores()} "
              f"cores this process may use (the threads would only wait for each other); using {most}",
              file=sys.stderr)
        a.threads = most
    if a.live == "yes" and a.stride > 1:
        raise UserError(f"--stride {a.stride} with --live yes: a live source drops stale frames instead of "
                        "skipping every Nth; drop one of them", EXIT_USAGE)
    if a.threshold is not None and not 0.0 <= a.threshold <= 1.0:
        raise UserError(f"--threshold {a.threshold}: must be a probability between 0 and 1", EXIT_USAGE)
    if a.window is not None and not (math.isfinite(a.window) and a.window >= 0):
        raise UserError(f"--window {a.window}: must be a number of seconds, 0 or more (0: no recent verdict)",
                        EXIT_USAGE)
    if not (math.isfinite(a.timeout) and a.timeout > 0):
        raise UserError(f"--timeout {a.timeout}: must be a positive number of seconds", EXIT_USAGE)
    for name in ("mean", "std"):
        v = getattr(a, name)
        if v is not None and not all(math.isfinite(x) and (name == "mean" or x > 0) for x in v):
            raise UserError(f"--{name} {' '.join(map(str, v))}: must be finite{' and positive' * (name == 'std')}",
                            EXIT_USAGE)
    if a.face_model and a.faces in ("none", "haar"):
        raise UserError(f"--face-model with --faces {a.faces}: pick one", EXIT_USAGE)
    if a.face_threshold is not None and not 0.0 <= a.face_threshold <= 1.0:
        raise UserError(f"--face-threshold {a.face_threshold}: must be a probability between 0 and 1", EXIT_USAGE)


def _check_empty_paths(a: argparse.Namespace) -> None:
    """``--jsonl ''`` and the like (exit code 2): an empty path would be dropped as if not given, or
    taken as the current folder."""
    for name in PATH_OPTIONS:
        v = getattr(a, name, None)
        if v is not None and not str(v).strip():
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} {v!r}: an empty path; give a path or drop {flag}", EXIT_USAGE)
    if a.source and any(not str(s).strip() for s in a.source):
        raise UserError("--source '': an empty source; give a camera index, file, folder, glob, URL or pipeline",
                        EXIT_USAGE)


def _check_outputs(a: argparse.Namespace, sources: list[str]) -> None:
    """Before anything opens: each output can be written, and none is an input or another output
    (writing it would destroy what is read, or what another output wrote)."""
    from runtime.fileio import is_special, same_file
    from runtime.meta import sidecar_path
    from runtime.save import save_kind
    from runtime.sinks import check_writable
    from runtime.source_specs import reads

    outputs = [(flag, path) for flag, path in (("--jsonl", a.jsonl), ("--summary", a.summary), ("--save", a.save),
                                               ("--events", a.events)) if path]
    if a.save and len(sources) == 1:  # first: what --save writes must fit the source before any folder is made for it
        from runtime.save import check_save

        check_save(a.save, sources[0])
    if a.event_media:  # a folder of event files: made now, and writable, or the run does not start
        check_writable(a.event_media, "--event-media", folder=True)
    for flag, path in outputs:
        check_writable(path, flag, folder=flag == "--save" and save_kind(path) == "folder")
        if flag in ("--jsonl", "--events") and (a.rotate_size or a.rotate_every) and is_special(path):
            raise UserError(f"{flag} {path}: a device or FIFO cannot be rotated (rotation renames files); pass a "
                            "file name or drop --rotate-size/--rotate-every", EXIT_USAGE)
    inputs = [("--engine", a.engine), ("--face-model", a.face_model)]
    if Path(a.engine).suffix.lower() != ".onnx":
        inputs.append(("the engine's sidecar", str(sidecar_path(a.engine))))
    for i, (flag, path) in enumerate(outputs):
        for other, opath in outputs[:i]:
            if same_file(path, opath) and not is_special(path):  # /dev/null twice is fine
                raise UserError(f"{flag} {path}: the same file as {other} {opath}; one would overwrite the "
                                "other, give each output its own file", EXIT_USAGE)
        for other, ipath in inputs:
            if ipath and same_file(path, ipath):
                raise UserError(f"{flag} {path}: the same file as {other} {ipath}, an input; writing it would "
                                "destroy it, choose another path", EXIT_USAGE)
        for source in sources:
            if reads(source, path):
                raise UserError(f"{flag} {path}: an input of --source {source} (the same file, or one the source "
                                "would read); writing it would destroy or feed back an input, choose a path outside "
                                "the source", EXIT_USAGE)


def _faces(a: argparse.Namespace) -> Any:
    from runtime.faces import detector_options
    from runtime.loop import Faces

    kind, options = detector_options(a)  # MTCNN runs where the model runs
    return Faces(kind, detect_every=a.detect_every, max_faces=a.max_faces, scan_every=a.scan_every,
                 options=options)


def _outputs(a: argparse.Namespace) -> Any:
    from runtime.box import rotation
    from runtime.loop import Outputs

    return Outputs(jsonl=a.jsonl, save=a.save, show=a.show, status=not a.quiet, jsonl_frames=a.jsonl_frames,
                   rotate=rotation(a), view=bool(a.web))


def _backend_options(a: argparse.Namespace) -> dict[str, Any]:
    if Path(a.engine).suffix.lower() != ".onnx":
        return {}
    opts = {"provider": a.provider or "cpu", "threads": a.threads or default_threads(), "max_batch": a.max_batch,
            "input_size": a.input_size, "mean": a.mean, "std": a.std, "color": a.color,
            "reconstruct": a.reconstruct}
    return {k: v for k, v in opts.items() if v is not None}


def _inference_cpu_threads(a: argparse.Namespace) -> int:
    """CPU threads the classifier keeps busy: ONNX Runtime's on the CPU provider, none on a GPU."""
    opts = _backend_options(a)
    return int(opts["threads"]) if opts.get("provider") == "cpu" else 0


def default_threads() -> int:
    """Inference threads when not given: leave two of the usable cores to decoding and face detection.

    The stages already run in parallel; letting ONNX Runtime (and OpenCV) take every core as
    well oversubscribes small CPUs (measured: 2 cores, 720p, 30-43 fps → 51-73 fps).
    """
    from runtime.pipeline import usable_cores

    return max(1, usable_cores() - 2)


class StopSignals:
    """SIGINT and SIGTERM stop the run cleanly (as KeyboardInterrupt in the main thread), but never
    halfway through one frame's outputs: a signal that arrives while a frame is being written is
    acted on once that frame is complete in every output (JSONL, video, summary counts agree).
    The stop is raised once: signals after it (a second Ctrl-C, SIGTERM then SIGINT) and while the
    results are finalised are ignored, so the threads are joined and the outputs closed whatever
    arrives. ``exiting``: the process ends after the run (the CLI), so :meth:`restore` leaves
    the signals ignored instead of re-arming a handler that a late signal would trip."""

    def __init__(self, exiting: bool = False) -> None:
        self.in_frame = self.pending = self.finishing = self.stopping = False
        self.exiting = exiting
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        """Take SIGINT and SIGTERM, except one already ignored (a background job's SIGINT, ``nohup``):
        that one stays ignored, as the shell asked."""
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)
                         if signal.getsignal(s) is not signal.SIG_IGN}

    def restore(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, signal.SIG_IGN if self.exiting else old)
        self._old = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.finishing or self.stopping:
            return
        if self.in_frame:
            self.pending = True
            return
        self.stopping = True
        raise KeyboardInterrupt

    def begin_frame(self) -> None:
        self.in_frame = True

    def end_frame(self) -> None:
        self.in_frame = False
        if self.pending and not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """The CLI (also the ``jrc-detect`` console script): returns the exit code, never a traceback
    for bad input. Called without ``argv`` (the program itself), stop signals stay ignored after
    the run: the process is exiting and its results are written."""
    args = build_parser().parse_args(argv)
    try:
        return Run(args, exiting=argv is None).run()
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.exit_code


class Run:
    """One invocation: set up, loop, and always finish with a summary."""

    def __init__(self, args: argparse.Namespace, source_factory: Callable[[argparse.Namespace], Any] | None = None,
                 exiting: bool = False) -> None:
        """``source_factory(args)`` replaces :func:`runtime.sources.open_source` (soak runs, tests);
        ``exiting``: see :class:`StopSignals`."""
        self.args = args
        self.source_factory = source_factory
        self.signals = StopSignals(exiting)
        self.outputs_checked = False  # the output paths passed their checks (the summary may be written)
        self.backend: Any = None
        self.detector: Any = None
        self.backend_info: dict[str, Any] = {}
        self.source: Any = None
        self.loop: Any = None  # the runtime.loop.FrameLoop, once the model is open
        self.started = time.time()
        self.t0 = time.perf_counter()
        from runtime.box import is_box

        self.box = is_box(args)  # several cameras (or a named one, or a cameras file): the camera box
        self.spec: str | None = None if self.box or not args.source else args.source[0]  # the one source
        self.cameras: list[Any] = []  # runtime.cameras.CameraSpec, a box's
        self.sinks: list[Any] = []  # event sinks
        self.metrics: Any = None
        self.web: Any = None  # the live view (runtime.web.server.WebView)

    def run(self) -> int:
        self.signals.install()
        status, code, error = "ok", EXIT_OK, None
        try:
            self._loop()
        except UserError as e:
            status = "source_lost" if e.exit_code == EXIT_SOURCE else "error"
            code, error = e.exit_code or EXIT_USER, str(e)
            raise
        except KeyboardInterrupt:
            self.signals.finishing = True
            status, code = "interrupted", EXIT_INTERRUPTED
        except Exception as e:  # a bug: recorded in the summary, then shown with its traceback
            status, code, error = "error", EXIT_USER, f"internal error: {type(e).__name__}: {e}"
            raise
        finally:
            self.signals.finishing = True
            try:
                self._finish(status, code, error)
            finally:
                self.signals.restore()
        if code == EXIT_INTERRUPTED:
            print(f"{PROG}: interrupted; results so far are written", file=sys.stderr)
        return code

    def _loop(self) -> None:
        from runtime.box import event_options, failed_cameras_error, open_sinks, open_web
        from runtime.cameras import camera_specs
        from runtime.loop import FrameLoop

        a = self.args
        _check_empty_paths(a)
        if self.box:
            self.cameras = camera_specs(a.source, a.cameras)
            if len(self.cameras) > 1 and (a.save or a.show):
                raise UserError("--save and --show take one camera's frames; with several cameras leave them out",
                                EXIT_USAGE)
        _check_outputs(a, [c.source for c in self.cameras] if self.box else list(a.source or []))
        self.outputs_checked = True  # first: a summary is written only to a path that passed
        _check_args(a)
        self._open_model()
        self.sinks, self.metrics = open_sinks(a)
        self.web = open_web(a)
        wait = a.batch_wait / 1000.0 if a.batch_wait is not None else None
        self.loop = FrameLoop(self.backend, _faces(a), _outputs(a), threshold=a.threshold,
                              reconstruct=a.reconstruct, max_frames=a.max_frames, guard=self.signals,
                              batch_wait=wait, events=event_options(a), event_sinks=self.sinks,
                              on_batch=[self.metrics.on_batch] if self.metrics is not None else [],
                              window=a.window)
        self.detector = self.loop.tracker.detector
        if self.metrics is not None:
            self.metrics.attach(self.loop, self.sinks)
        if self.web is not None:
            from runtime.web.server import serve_address

            self.web.attach(self.loop.state, self.metrics)
            print(f"{PROG}: live view at {serve_address(self.web)}", file=sys.stderr, flush=True)
        if not self.box:
            self._open_source()
            self.loop.run(self.source)
            self._check_decoded()
            return
        from runtime.box import open_cameras
        from runtime.loop import decoder_threads

        threads = decoder_threads(_inference_cpu_threads(a), len(self.cameras))
        cams = open_cameras(self.cameras, a, threads)
        self.loop.run_cameras(cams)
        err = failed_cameras_error(self.loop)
        if err is not None:
            raise err

    def _open_model(self) -> None:
        from runtime.backends import open_backend

        self.backend = open_backend(self.args.engine, **_backend_options(self.args))
        self.backend_info = self.backend.describe()

    def _open_source(self) -> None:
        from runtime.loop import decoder_threads
        from runtime.sources import open_source

        a = self.args
        threads = decoder_threads(_inference_cpu_threads(a))
        if self.source_factory is not None:
            self.source = self.source_factory(a)
        else:
            self.source = open_source(self.spec, stride=a.stride, live=a.live, max_reconnects=a.max_reconnects,
                                      open_timeout=a.timeout, read_timeout=a.timeout, decode_threads=threads)
        if a.stride > 1 and self.source.live:
            raise UserError(f"{self.spec}: --stride applies to files; live sources drop stale frames instead")

    def _check_decoded(self) -> None:
        skipped = self.source.stats.skipped
        if self.loop.agg.frames == 0 and skipped:
            raise UserError(f"{self.spec}: none of its {len(skipped)} files could be decoded")

    def _summary_writable(self) -> bool:
        """The ``--summary`` path's own checks, for a run interrupted before they ran: an early Ctrl-C
        still leaves its summary, but never over an input or through a bad path."""
        from runtime.fileio import same_file
        from runtime.sinks import check_writable
        from runtime.source_specs import reads

        a = self.args
        path = a.summary
        try:
            check_writable(path, "--summary")
        except UserError:
            return False
        others = [a.engine, a.face_model, a.jsonl, a.save, a.events, a.cameras]
        return not (any(reads(src, path) for src in (a.source or []))
                    or any(o and same_file(path, o) for o in others))

    def _finish(self, status: str, code: int, error: str | None) -> None:
        """Close everything and write the summary. A summary that cannot be written is the run's
        error when it had none; after another error or an interrupt it is a warning (the first
        cause stays the one reported)."""
        from runtime.sinks import print_verdicts, write_summary

        tail = self.loop.close() if self.loop is not None else []
        if self.loop is None:  # the sinks opened, the loop did not: close them here
            for sink in self.sinks:
                sink.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.web is not None:
            self.web.close()
        if self.source is not None:
            self.source.close()  # idempotent: the run may have stopped before the loop took the source
        if self.backend is not None:
            self.backend.close()
        if self.detector is not None and hasattr(self.detector, "close"):
            self.detector.close()
        elapsed = time.perf_counter() - self.t0
        summary = self._summary(status, code, error, elapsed, tail)
        self._report_sinks(summary)
        if self.box:
            from runtime.box import print_cameras

            print_cameras(summary)
        elif summary.get("frames"):
            print_verdicts(summary)
        if self.args.summary and not self.outputs_checked and status == "interrupted":
            self.outputs_checked = self._summary_writable()  # interrupted before the outputs' checks
        if self.args.summary and self.outputs_checked:
            try:
                write_summary(self.args.summary, summary)
            except UserError as e:
                if status != "ok":
                    print(f"{PROG}: warning: {e}", file=sys.stderr)
                else:
                    raise

    def _report_sinks(self, summary: dict[str, Any]) -> None:
        """What the event sinks could not deliver, on stderr (it is in the summary too)."""
        for name, r in summary.get("sinks", {}).items():
            if r.get("undelivered"):
                print(f"{PROG}: warning: {name}: {r['undelivered']} event message(s) not delivered (failed "
                      f"{r['failed']}, dropped {r['dropped']}, left at the end {r['left']}; last error: "
                      f"{r['last_error']})", file=sys.stderr)

    def _summary(self, status: str, code: int, error: str | None, elapsed: float,
                 tail: list[dict[str, Any]]) -> dict[str, Any]:
        a = self.args
        d: dict[str, Any] = {
            "schema": 1, "status": status, "exit_code": code, "error": error, "engine": a.engine,
            "source": shown(self.spec) if not self.box else [shown(c.source) for c in self.cameras], "started": datetime.fromtimestamp(self.started, timezone.utc).isoformat(),
            "elapsed_s": round(elapsed, 3), "version": __version__,
            "options": {k: getattr(a, k) for k in ("faces", "face_model", "face_threshold", "detect_every",
                                                  "stride", "live",
                                                  "threshold", "window", "reconstruct", "max_frames")}}
        if self.backend is not None:
            m = self.backend.meta
            d["backend"] = self.backend_info
            rule = m.training.get("threshold_rule")  # how the threshold was chosen (calibration.threshold)
            d["model"] = {"encoder": m.encoder, "input_size": m.input_size, "graph": m.graph,
                          "precision": m.precision, "threshold": m.threshold,
                          "threshold_rule": rule if isinstance(rule, dict) else None}
        if self.detector is not None and hasattr(self.detector, "describe"):
            d["face_detector"] = self.detector.describe()
        if self.source is not None:
            st = self.source.stats
            d.update({"live": self.source.live, "dropped": st.dropped, "damaged": st.damaged,
                      "missing": st.missing, "reconnects": st.reconnects, "skipped": st.skipped,
                      "not_media": st.not_media})
        if self.box and self.loop is not None and self.loop.cameras:
            self._box_summary(d)
        elif self.loop is not None and self.loop.pipeline is not None:  # frames started flowing
            agg, pipeline = self.loop.agg, self.loop.pipeline
            d["decoded"] = pipeline.decoded
            d.update(agg.summary())
            if self.source.live and self.source.stats.dropped:  # a live source is one item: its verdict says it
                for s in d["sources"]:
                    s["dropped"] = self.source.stats.dropped
            loop = time.perf_counter() - self.loop.started if self.loop.started is not None else 0.0
            d["fps"] = round(agg.frames / loop, 3) if loop > 0 and agg.frames else None
            d["timing_ms_per_frame"] = pipeline.times.per_frame_ms(agg.frames)
            d["latency_ms"] = self.loop.cameras[0].latency.summary()
        self._sinks_summary(d)
        return d

    def _box_summary(self, d: dict[str, Any]) -> None:
        """A box: a section per camera, and the totals over every camera."""
        from runtime.aggregate import merged_summary
        from runtime.loop import camera_summary

        now = time.perf_counter()
        cams = self.loop.cameras
        d["cameras"] = [camera_summary(c, now) for c in cams]
        for c in d["cameras"]:  # a camera still going when the run ended was stopped by it, not running
            if c["status"] == "running":
                c["status"] = "interrupted" if d["status"] == "interrupted" else "stopped"
        d["cameras_failed"] = [c.name for c in cams if c.error is not None]
        for key in ("decoded", "dropped", "damaged", "missing", "reconnects"):
            d[key] = sum(c[key] for c in d["cameras"])
        d.update(merged_summary([c.agg for c in cams], [c.name for c in cams]))
        loop = now - self.loop.started if self.loop.started is not None else 0.0  # None: failed while starting
        d["fps"] = round(d["frames"] / loop, 3) if loop > 0 and d["frames"] else None
        batcher = self.loop.batcher
        d["inference"] = {"batches": batcher.batches, "faces": batcher.faces,
                          "mean_batch": round(batcher.mean_batch, 3) if batcher.mean_batch else None,
                          "max_batch": batcher.max_batch, "batch_wait_ms": round(batcher.wait_s * 1000, 3)}

    def _sinks_summary(self, d: dict[str, Any]) -> None:
        loop = self.loop
        video = getattr(loop, "video", None)
        if video is not None and hasattr(video, "report"):
            d["save"] = video.report()  # the codec --save used (browsers play H.264 and VP8, not MPEG-4 part 2)
        if loop is not None and loop.events is not None:
            d["events"] = {"opened": dict(loop.events.opened), "total": sum(loop.events.opened.values())}
            if loop.events.media is not None:
                d["events"]["media"] = loop.events.media.report()
        reports = {s.name: s.report() for s in self.sinks}
        if self.metrics is not None:
            reports["metrics"] = self.metrics.report()
        if self.web is not None:
            reports["web"] = self.web.report()
        if reports:
            d["sinks"] = reports


if __name__ == "__main__":
    run_cli(main, PROG)
