"""``python -m runtime.detect --engine MODEL --source SRC``: detect deepfaked faces, live or in files.

Exit codes: 0 done (also when no face was found: that is reported), 1 bad input or model (one
line says which and why), 2 bad command line, 3 the source failed mid-run (results so far are
written), 130 interrupted (SIGINT/SIGTERM; results so far are written).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from runtime import __version__
from runtime.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOURCE, EXIT_USER, UserError, run_cli

PROG = "jrc-detect"
ONNX_ONLY = ("provider", "threads", "input_size", "mean", "std", "color")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Detect deepfaked faces in a camera stream, video, image, folder or glob "
        "with a JRC model (.onnx via ONNX Runtime, .engine/.plan via TensorRT).",
        epilog="Exit codes: 0 done (also when no face was found), 1 bad input/model, 2 bad command line, "
        "3 source failed mid-run, 130 interrupted. Results written before an error stay on disk.")
    p.add_argument("--engine", required=True, metavar="PATH", help="model: .onnx, or TensorRT .engine/.plan "
                   "with its .json sidecar")
    p.add_argument("--source", required=True, metavar="SRC", help="camera index (0), video file, image, "
                   "folder, glob ('clips/*.mp4'), URL (rtsp://, http://) or GStreamer pipeline (contains '!')")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    m = p.add_argument_group("model")
    m.add_argument("--provider", choices=("cpu", "cuda", "tensorrt"), help="ONNX Runtime execution provider "
                   "(.onnx only; default cpu)")
    m.add_argument("--threads", type=int, metavar="N", help="ONNX Runtime intra-op threads (default: the cores "
                   "minus two, at least one: decoding and face detection run beside it)")
    m.add_argument("--max-batch", type=int, metavar="N", help="faces per inference batch for a dynamic-batch "
                   "ONNX (default 8; engines use their profile's max)")
    m.add_argument("--threshold", type=float, metavar="P", help="probability of fake at or above which a "
                   "verdict is 'fake' (default: the model's metadata)")
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
    s.add_argument("--max-reconnects", type=int, default=5, metavar="N", help="live: reopen a failed stream up "
                   "to N times, with backoff, before giving up (default 5)")
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
                   "this width (default 640)")
    f.add_argument("--min-face", type=int, default=24, metavar="PX", help="smallest face, in downscaled pixels")
    f.add_argument("--max-faces", type=int, default=10, metavar="N", help="largest N faces per frame (default 10)")
    f.add_argument("--scan-every", type=int, default=16, metavar="N", help="while faces are tracked, scan the "
                   "whole frame for new ones every Nth detection (default 16: every 80 frames at --detect-every "
                   "5); lower finds new faces sooner for more CPU")
    o = p.add_argument_group("outputs")
    o.add_argument("--jsonl", metavar="FILE", help="one JSON object per processed frame, flushed as written")
    o.add_argument("--summary", metavar="FILE", help="JSON summary at the end (also on errors and interrupts)")
    o.add_argument("--save", metavar="FILE", help="annotated video (.mp4 or .avi): boxes coloured by score")
    o.add_argument("--show", action="store_true", help="show the annotated frames in a window (q quits)")
    o.add_argument("--quiet", action="store_true", help="no running status line")
    return p


def _check_args(a: argparse.Namespace) -> None:
    is_onnx = Path(a.engine).suffix.lower() == ".onnx"
    if not is_onnx:
        given = ["--" + k.replace("_", "-") for k in ONNX_ONLY if getattr(a, k) is not None]
        if given:
            raise UserError(f"{a.engine}: {', '.join(given)} apply to .onnx models only; drop them")
    for name, low in (("stride", 1), ("detect_every", 1), ("max_faces", 1), ("max_batch", 1),
                      ("max_frames", 1), ("threads", 0), ("max_reconnects", 0), ("detect_width", 0),
                      ("input_size", 16), ("min_face", 1), ("scan_every", 1)):
        v = getattr(a, name)
        if v is not None and v < low:
            raise UserError(f"--{name.replace('_', '-')} {v}: must be at least {low}")
    if a.threshold is not None and not 0.0 <= a.threshold <= 1.0:
        raise UserError(f"--threshold {a.threshold}: must be a probability between 0 and 1")
    if a.timeout <= 0:
        raise UserError(f"--timeout {a.timeout}: must be positive")
    if a.face_model and a.faces in ("none", "haar"):
        raise UserError(f"--face-model with --faces {a.faces}: pick one")
    if a.face_threshold is not None and not 0.0 <= a.face_threshold <= 1.0:
        raise UserError(f"--face-threshold {a.face_threshold}: must be a probability between 0 and 1")


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
    """Inference threads when not given: leave two cores to decoding and face detection.

    The stages already run in parallel; letting ONNX Runtime (and OpenCV) take every core as
    well oversubscribes small CPUs (measured: 2 cores, 720p, 30-43 fps → 51-73 fps).
    """
    return max(1, (os.cpu_count() or 1) - 2)


class StopSignals:
    """SIGINT and SIGTERM stop the run cleanly (as KeyboardInterrupt in the main thread), but never
    halfway through one frame's outputs: a signal that arrives while a frame is being written is
    acted on once that frame is complete in every output (JSONL, video, summary counts agree).
    While the results are being finalised, further signals are ignored."""

    def __init__(self) -> None:
        self.in_frame = self.pending = self.finishing = False
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.finishing:
            return
        if self.in_frame:
            self.pending = True
            return
        raise KeyboardInterrupt

    def begin_frame(self) -> None:
        self.in_frame = True

    def end_frame(self) -> None:
        self.in_frame = False
        if self.pending:
            raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """The CLI (also the ``jrc-detect`` console script): returns the exit code, never a traceback
    for bad input."""
    args = build_parser().parse_args(argv)
    try:
        return Run(args).run()
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.exit_code


class Run:
    """One invocation: set up, loop, and always finish with a summary."""

    def __init__(self, args: argparse.Namespace, source_factory: Callable[[argparse.Namespace], Any] | None = None,
                 ) -> None:
        """``source_factory(args)`` replaces :func:`runtime.sources.open_source` (soak runs, tests)."""
        self.args = args
        self.source_factory = source_factory
        self.signals = StopSignals()
        self.backend: Any = None
        self.detector: Any = None
        self.backend_info: dict[str, Any] = {}
        self.source: Any = None
        self.pipeline: Any = None
        self.agg: Any = None
        self.sinks: list[Any] = []
        self.started = time.time()
        self.t0 = self.t_loop = time.perf_counter()

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
            print(f"{PROG}: interrupted; results so far are written", file=sys.stderr)
        except Exception as e:  # a bug: recorded in the summary, then shown with its traceback
            status, code, error = "error", EXIT_USER, f"internal error: {type(e).__name__}: {e}"
            raise
        finally:
            self.signals.finishing = True
            try:
                self._finish(status, code, error)
            finally:
                self.signals.restore()
        return code

    def _loop(self) -> None:
        from runtime.aggregate import Aggregator
        from runtime.backends import open_backend
        from runtime.faces import detector_options, make_detector
        from runtime.pipeline import Pipeline, share_cores
        from runtime.sinks import (
            Console,
            JsonlSink,
            ShowSink,
            VideoSink,
            annotate,
            check_writable,
            frame_record,
        )
        from runtime.sources import open_source, quiet_video_logs
        from runtime.tracking import FaceTracker

        a = self.args
        _check_args(a)
        for flag, path in (("--jsonl", a.jsonl), ("--summary", a.summary), ("--save", a.save)):
            if path:
                check_writable(path, flag)
        self.backend = open_backend(a.engine, **_backend_options(a))
        self.backend_info = self.backend.describe()
        meta = self.backend.meta
        if a.reconstruct:
            self.backend.require_recon()
        threshold = meta.threshold if a.threshold is None else a.threshold
        kind, det_kw = detector_options(a)
        self.detector = make_detector(kind, **det_kw)
        tracker = FaceTracker(self.detector, detect_every=a.detect_every, max_faces=a.max_faces,
                              full_every=a.scan_every)
        show = ShowSink() if a.show else None
        quiet_video_logs()
        decode_threads = share_cores(_inference_cpu_threads(a))
        if self.source_factory is not None:
            self.source = self.source_factory(a)
        else:
            self.source = open_source(a.source, stride=a.stride, live=a.live, max_reconnects=a.max_reconnects,
                                      open_timeout=a.timeout, read_timeout=a.timeout,
                                      decode_threads=decode_threads)
        if a.stride > 1 and self.source.live:
            raise UserError(f"{a.source}: --stride applies to files; live sources drop stale frames instead")
        self.agg = Aggregator(threshold)
        jsonl = JsonlSink(a.jsonl) if a.jsonl else None
        video = VideoSink(a.save, self.source.fps) if a.save else None
        console = Console(enabled=not a.quiet)
        self.sinks = [s for s in (jsonl, video, show, console) if s is not None]
        self.pipeline = Pipeline(self.source, tracker, self.backend, reconstruct=a.reconstruct,
                                 keep_images=bool(video or show), queue_frames=4)
        stats, last_p = self.source.stats, None
        self.t_loop = time.perf_counter()
        for r in self.pipeline:
            self.signals.begin_frame()  # a stop signal takes effect once this frame is fully written
            t = time.perf_counter()
            ended = self.agg.add(r)
            if jsonl:
                jsonl.write(frame_record(r, ended, threshold, stats.dropped))
            if video or show:
                img = annotate(r, threshold)
                if video:
                    video.write(img)
                if show and not show.show(img):
                    break
            last_p = max((f.prob for f in r.faces), default=None)
            console.update(self.agg.frames, last_p, stats.dropped)
            self.pipeline.times.add("output", time.perf_counter() - t)
            self.signals.end_frame()
            if a.max_frames and self.agg.frames >= a.max_frames:
                break
        self.signals.end_frame()  # a signal during the last frame (--show quit, --max-frames) still counts
        self.pipeline.stop()
        console.update(self.agg.frames, last_p, stats.dropped, force=True)
        if self.agg.frames == 0 and stats.skipped:
            raise UserError(f"{a.source}: none of its {len(stats.skipped)} files could be decoded")

    def _finish(self, status: str, code: int, error: str | None) -> None:
        from runtime.sinks import write_summary

        for obj in (self.pipeline, self.source):
            if obj is not None:
                (obj.stop if hasattr(obj, "stop") else obj.close)()
        tail = self.agg.finish() if self.agg is not None else []
        for s in self.sinks:
            s.close()
        if self.backend is not None:
            self.backend.close()
        if self.detector is not None and hasattr(self.detector, "close"):
            self.detector.close()
        elapsed = time.perf_counter() - self.t0
        summary = self._summary(status, code, error, elapsed, tail)
        if self.args.summary:
            write_summary(self.args.summary, summary)
        if self.agg is not None and self.agg.frames:
            _print_verdicts(summary)

    def _summary(self, status: str, code: int, error: str | None, elapsed: float,
                 tail: list[dict[str, Any]]) -> dict[str, Any]:
        a = self.args
        d: dict[str, Any] = {
            "schema": 1, "status": status, "exit_code": code, "error": error, "engine": a.engine,
            "source": a.source, "started": datetime.fromtimestamp(self.started, timezone.utc).isoformat(),
            "elapsed_s": round(elapsed, 3), "version": __version__,
            "options": {k: getattr(a, k) for k in ("faces", "face_model", "face_threshold", "detect_every",
                                                  "stride", "live",
                                                  "threshold", "reconstruct", "max_frames")}}
        if self.backend is not None:
            m = self.backend.meta
            d["backend"] = self.backend_info
        if self.detector is not None and hasattr(self.detector, "describe"):
            d["face_detector"] = self.detector.describe()
            d["model"] = {"encoder": m.encoder, "input_size": m.input_size, "graph": m.graph,
                          "precision": m.precision, "threshold": m.threshold}
        if self.source is not None:
            st = self.source.stats
            d.update({"live": self.source.live, "dropped": st.dropped, "damaged": st.damaged,
                      "missing": st.missing, "reconnects": st.reconnects, "skipped": st.skipped})
        if self.pipeline is not None:
            d["decoded"] = self.pipeline.decoded
        if self.agg is not None:
            d.update(self.agg.summary())
            loop = time.perf_counter() - self.t_loop
            d["fps"] = round(self.agg.frames / loop, 3) if loop > 0 and self.agg.frames else None
            if self.pipeline is not None:
                d["timing_ms_per_frame"] = self.pipeline.times.per_frame_ms(self.agg.frames)
        return d


def _print_verdicts(summary: dict[str, Any], limit: int = 20) -> None:
    """One line per source on stdout (the first ``limit``), then the overall line for several."""
    sources = summary.get("sources", [])
    for s in sources[:limit]:
        print(_verdict_line(s["source"], s, summary["threshold"]))
    if summary.get("sources_total", 0) > limit:
        print(f"... {summary['sources_total'] - limit} more sources (see --summary / --jsonl)")
    if summary.get("sources_total", 0) > 1:
        print(_verdict_line("overall", summary, summary["threshold"]))


def _verdict_line(name: str, s: dict[str, Any], threshold: float) -> str:
    if s["verdict"] == "no_face":
        return f"{name}: no face found in {s['frames']} frame(s)"
    tracks = s.get("tracks")
    ntracks = tracks if isinstance(tracks, int) else s.get("tracks_total")
    return (f"{name}: {s['verdict'].upper()}  p(fake) {s['prob']:.3f} (threshold {threshold:.2f}) over "
            f"{s['frames_with_face']} frame(s) with a face, {s['frames_without_face']} without, "
            f"{ntracks} track(s)")


if __name__ == "__main__":
    run_cli(main, PROG)
