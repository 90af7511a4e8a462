"""``python -m benchmarks.soak --engine MODEL``: a long run that checks memory, descriptors and threads stay flat.

Runs ``runtime.detect`` itself (:class:`runtime.detect.Run` and its :class:`runtime.loop.FrameLoop`:
backend, Haar face detector, tracker, threaded pipeline, aggregation, JSONL and summary) over a
generated clip played in a loop for ``--warmup`` + ``--frames`` frames. In the clip faces move,
appear and disappear, so tracks start and end all the time; the clip is re-opened with OpenCV at
every pass, like a camera box that works through file after file. Every ``--interval`` frames it
records the resident set (RSS), the open file descriptors (``/proc/self/fd``), the threads
(``/proc/self/task``) and the size of the per-track state (the tracker's live tracks, the
aggregator's open tracks).

Verdicts, measured from the end of the warm-up to the last sample: RSS grows by at most
``--max-rss-growth`` MB (10 by default: the product's bound for 50,000 frames), descriptors and
threads do not grow at all, and the per-track state stays below a small bound although thousands
of tracks come and go. Exit code 0 when every verdict holds, 1 when one fails.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from benchmarks import report
from runtime.errors import Parser, UserError, run_cli
from runtime.sources import Frame, LiveSource, Source

PROG = "benchmarks.soak"
CYCLE = 100  # frames per pass of the generated clip: two faces, each seen for 50 frames
MAX_TRACK_STATE = 8  # the clip never shows more than two faces; live/open tracks must stay below this


# --- the generated source ------------------------------------------------------------------------
def _head(side: int) -> np.ndarray:
    """Head and shoulders of scikit-image's astronaut (public domain), BGR, side × side."""
    try:
        from skimage import data
    except ImportError:
        from runtime.errors import missing_dependency

        raise missing_dependency("scikit-image", "train") from None
    return cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[20:260, 110:340], (side, side))


def make_clip(path: str | Path, size: tuple[int, int] = (320, 240), frames: int = CYCLE) -> Path:
    """An MJPG clip: face A crosses the upper half in the first half of the clip, face B (mirrored)
    the lower half from 30 % to 80 %; the rest of the time each is absent (the last 20 % show no
    face at all), so every pass starts and ends two tracks, for a while side by side."""
    w, h = size
    a, b = _head(int(h * 0.45)), cv2.flip(_head(int(h * 0.42)), 1)  # Haar misses faces much smaller
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    if not out.isOpened():
        raise UserError(f"{path}: OpenCV cannot write an MJPG .avi here")
    try:
        for i in range(frames):
            f = np.full((h, w, 3), 90, np.uint8)
            f[:, :, 1] = 90 + (i % 20)  # a little change in the background, as a camera has
            for face, start, y, rightward in ((a, 0, h // 40, True), (b, int(frames * 0.3), h // 2, False)):
                k = i - start
                span = frames // 2
                if 0 <= k < span:
                    t = k / span
                    x = int((w - face.shape[1]) * (t if rightward else 1 - t))
                    f[y: y + face.shape[0], x: x + face.shape[1]] = face
            out.write(f)
    finally:
        out.release()
    return Path(path)


class LoopSource(Source):
    """The clip, re-opened and played again until ``frames`` frames were delivered: one endless
    item, like a camera. ``on_frame(n, last)`` is called before frame ``n`` is delivered, with
    ``last`` true for the final one (sampling)."""

    def __init__(self, clip: str, frames: int, on_frame: Callable[..., None] | None = None) -> None:
        super().__init__(clip)
        self.frames = frames
        self.on_frame = on_frame
        self.fps = 25.0
        self.passes = 0

    def __iter__(self) -> Iterator[Frame]:
        n = 0
        while n < self.frames and not self._stop.is_set():
            cap = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG)
            self.passes += 1
            try:
                got = 0
                while n < self.frames and not self._stop.is_set():
                    ok, img = cap.read()
                    if not ok:
                        break
                    got += 1
                    if self.on_frame:
                        self.on_frame(n, last=n == self.frames - 1)
                    yield Frame(img, n, n / self.fps, self.spec, 0)
                    n += 1
            finally:
                cap.release()
            if got == 0:
                raise UserError(f"{self.spec}: the soak clip could not be decoded")


class _LoopCapture:
    """A cv2.VideoCapture look-alike that plays the clip forever, re-opening it at its end: the
    camera that :class:`LiveLoop` hands to the runtime's live-source path."""

    def __init__(self, clip: str) -> None:
        self.clip = clip
        self.cap = cv2.VideoCapture(clip, cv2.CAP_FFMPEG)

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.cap is not None and self.cap.isOpened()

    def get(self, prop: int) -> float:
        return 25.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.cap is None:
            return False, None
        ok, img = self.cap.read()
        if not ok:
            self.cap.release()
            self.cap = cv2.VideoCapture(self.clip, cv2.CAP_FFMPEG)
            ok, img = self.cap.read()
        return ok, img

    def release(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class LiveLoop(LiveSource):
    """The clip as a live camera (``--live``): the runtime's grabber thread keeps only the newest
    frame and counts the rest as dropped; ``frames`` processed frames end the run."""

    def __init__(self, clip: str, frames: int, on_frame: Callable[..., None] | None = None) -> None:
        super().__init__(clip, "camera", max_reconnects=0, open_timeout=10.0, read_timeout=5.0, pace=None,
                         opener=lambda: _LoopCapture(clip))
        self.frames, self.on_frame = frames, on_frame

    def __iter__(self) -> Iterator[Frame]:
        for n, frame in enumerate(super().__iter__()):
            if n >= self.frames:
                return
            if self.on_frame:
                self.on_frame(n, last=n == self.frames - 1)
            yield frame


# --- measuring ----------------------------------------------------------------------------------
def rss_mb() -> float:
    from benchmarks.memory import rss_mb as rss

    return rss()


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))  # every OS thread: OpenCV's and ONNX Runtime's too
    except OSError:
        return threading.active_count()


class Sampler:
    """Takes a sample every ``interval`` frames; reads the run's state without locking (len() only)."""

    def __init__(self, interval: int, progress: report.Progress | None = None, marks: tuple[int, ...] = ()) -> None:
        self.interval = interval
        self.marks = set(marks)  # frames sampled besides every interval-th (the end of the warm-up)
        self.samples: list[dict[str, Any]] = []
        self.run: Any = None  # the runtime.detect.Run, once created
        self.progress = progress
        self.t0 = time.perf_counter()
        self._peak = 0

    def _parts(self) -> tuple[Any, Any]:
        """The run's face tracker and aggregator (None until its frame loop has them)."""
        loop = getattr(self.run, "loop", None)
        return getattr(loop, "tracker", None), getattr(loop, "agg", None)

    def _track_state(self) -> int:
        tracker, agg = self._parts()
        return max(tracker.live_tracks if tracker else 0, len(agg._open) if agg else 0)  # noqa: SLF001

    def __call__(self, n: int, last: bool = False) -> None:
        self._peak = max(self._peak, self._track_state())  # every frame: a peak between samples counts
        if n % self.interval and not last and n not in self.marks:
            return
        self.samples.append(self.sample(n))
        s = self.samples[-1]
        if self.progress:
            self.progress(f"frame {n}: RSS {s['rss_mb']:.1f} MB, fds {s['fds']}, threads {s['threads']}, "
                          f"tracks started {s['tracks_total']}", force=True)

    def _take_peak(self) -> int:
        peak, self._peak = max(self._peak, self._track_state()), 0
        return peak

    def sample(self, n: int) -> dict[str, Any]:
        tracker, agg = self._parts()
        return {"frame": n, "processed": agg.frames if agg else 0,
                "seconds": round(time.perf_counter() - self.t0, 2), "rss_mb": round(rss_mb(), 2),
                "fds": open_fds(), "threads": thread_count(),
                "live_tracks": tracker.live_tracks if tracker else 0,
                "open_tracks": len(agg._open) if agg else 0,  # noqa: SLF001 - the state being checked
                "peak_tracks": self._take_peak(),
                "listed_tracks": len(agg.tracks) if agg else 0, "tracks_total": agg.tracks_total if agg else 0}


def verdicts(samples: list[dict[str, Any]], warmup: int, max_rss_growth: float = 10.0,
             max_track_state: int = MAX_TRACK_STATE) -> dict[str, Any]:
    """Growth from the first sample at or after ``warmup`` to the last one, and pass/fail."""
    after = [s for s in samples if s["frame"] >= warmup]
    if len(after) < 2:
        raise UserError("too few samples after the warm-up; use more --frames or a smaller --interval")
    first, last = after[0], after[-1]
    rss_growth = last["rss_mb"] - first["rss_mb"]
    fd_growth = max(s["fds"] for s in after) - first["fds"]
    thread_growth = max(s["threads"] for s in after) - first["threads"]
    state = max(s["peak_tracks"] for s in after[1:])  # peaks since the previous sample
    tracks = last["tracks_total"] - first["tracks_total"]
    checks = {
        "rss": rss_growth <= max_rss_growth,
        "fds": fd_growth <= 0,
        "threads": thread_growth <= 0,
        "track_state": state <= max_track_state,
        "tracks_came_and_went": tracks >= 2 * (last["frame"] - first["frame"]) // (CYCLE * 2),
    }
    return {"frames_measured": last["frame"] - first["frame"], "warmup_frames": first["frame"],
            "rss_start_mb": first["rss_mb"], "rss_end_mb": last["rss_mb"], "rss_growth_mb": round(rss_growth, 2),
            "rss_max_mb": max(s["rss_mb"] for s in after), "rss_growth_limit_mb": max_rss_growth,
            "fds_start": first["fds"], "fd_growth": fd_growth, "threads_start": first["threads"],
            "thread_growth": thread_growth, "max_track_state": state, "track_state_limit": max_track_state,
            "tracks_started": tracks, "max_listed_tracks": last["listed_tracks"],
            "checks": checks, "ok": all(checks.values())}


# --- running ------------------------------------------------------------------------------------
def soak(engine: str, frames: int, warmup: int, interval: int, size: tuple[int, int] = (320, 240),
         detect_every: int = 5, workdir: str | None = None, extra: list[str] | None = None,
         progress: report.Progress | None = None, max_rss_growth: float = 10.0, live: bool = False) -> dict[str, Any]:
    """Run the loop over ``warmup + frames`` frames (``live``: through the live-source path); returns
    samples, the run's summary and verdicts."""
    import json

    from runtime.detect import Run, build_parser

    with tempfile.TemporaryDirectory(prefix="jrc-soak-") as tmp:
        out = Path(workdir or tmp)
        clip = make_clip(out / "soak_clip.avi", size)
        total = warmup + frames + 1  # the last sample is taken before the last frame: after `frames` more
        sampler = Sampler(interval, progress, marks=(warmup,))
        args = build_parser().parse_args(
            ["--engine", str(engine), "--source", str(clip), "--quiet", "--detect-every", str(detect_every),
             "--jsonl", str(out / "soak.jsonl"), "--summary", str(out / "soak_summary.json"), *(extra or [])])
        kind = LiveLoop if live else LoopSource
        run = Run(args, source_factory=lambda a: kind(str(clip), total, sampler))
        sampler.run = run
        t0 = time.perf_counter()
        code = run.run()
        elapsed = time.perf_counter() - t0
        after_run = sampler.sample(total)  # the run is over: its threads joined, its files closed
        summary = json.loads((out / "soak_summary.json").read_text())
        jsonl_lines = sum(1 for _ in open(out / "soak.jsonl", encoding="utf-8"))
    if code != 0:
        raise UserError(f"the soak run ended with exit code {code} ({summary.get('error')})")
    result = verdicts(sampler.samples, warmup, max_rss_growth)
    result["after_run"] = {k: after_run[k] for k in ("fds", "threads", "rss_mb")}
    return {"samples": sampler.samples, "verdict": result, "elapsed_s": round(elapsed, 1),
            "fps": round(summary["frames"] / elapsed, 1) if elapsed else None, "frames": summary["frames"],
            "jsonl_lines": jsonl_lines, "tracks_total": summary["tracks_total"], "live": live,
            "dropped": summary.get("dropped", 0)}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--engine", required=True, metavar="MODEL", help=".onnx or TensorRT .engine/.plan")
    p.add_argument("--frames", type=int, default=50_000, help="measured frames after the warm-up (default 50000)")
    p.add_argument("--warmup", type=int, default=2_000, help="frames before the first measurement (default 2000)")
    p.add_argument("--interval", type=int, default=1_000, metavar="N", help="sample every N frames (default 1000)")
    p.add_argument("--size", default="320x240", metavar="WxH", help="frame size of the generated clip")
    p.add_argument("--detect-every", type=int, default=5, metavar="N", help="as runtime.detect (default 5)")
    p.add_argument("--faces", choices=("mtcnn", "haar"), default="mtcnn", help="face detector, as runtime.detect "
                   "(default mtcnn)")
    p.add_argument("--max-rss-growth", type=float, default=10.0, metavar="MB",
                   help="allowed RSS growth after the warm-up (default 10)")
    p.add_argument("--live", action="store_true", help="play the clip as a live camera: the runtime's grabber "
                   "thread, stale frames dropped (--frames counts processed frames)")
    p.add_argument("--workdir", metavar="DIR", help="keep the clip, JSONL and summary here (default: a temp dir)")
    p.add_argument("--json", metavar="FILE", help="write samples and verdicts as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    report.check_positive(frames=a.frames, interval=a.interval, detect_every=a.detect_every)
    if a.warmup < 0:
        raise UserError(f"--warmup {a.warmup}: must be 0 or more")
    try:
        w, h = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {a.size!r}: expected WxH, e.g. 320x240") from None
    if not (64 <= w <= 4096 and 64 <= h <= 4096):
        raise UserError(f"--size {a.size}: each side must be 64..4096")
    report.check_files([a.engine], "--engine")
    report.check_writable(a.json, "--json", [("--engine", a.engine)])
    if a.workdir and not Path(a.workdir).is_dir():
        raise UserError(f"--workdir {a.workdir}: no such folder")
    res = soak(a.engine, a.frames, a.warmup, a.interval, (w, h), a.detect_every, a.workdir, ["--faces", a.faces],
               progress=report.Progress(not a.quiet), max_rss_growth=a.max_rss_growth, live=a.live)
    v = res["verdict"]
    print(report.table(res["samples"], [("frame", "frame"), ("rss_mb", "RSS MB"), ("fds", "fds"),
                                        ("threads", "threads"), ("peak_tracks", "live tracks (peak)"),
                                        ("tracks_total", "tracks started")]))
    dropped = f", {res['dropped']} live frames dropped" if a.live else ""
    print(f"\n{res['frames']} frames in {res['elapsed_s']} s ({res['fps']} fps){dropped}, {res['tracks_total']} tracks; "
          f"after the {v['warmup_frames']}-frame warm-up, over {v['frames_measured']} frames:")
    c = v["checks"]
    print(f"  RSS {v['rss_start_mb']:.1f} → {v['rss_end_mb']:.1f} MB: growth {v['rss_growth_mb']:+.2f} MB "
          f"(limit {v['rss_growth_limit_mb']:g}) {'ok' if c['rss'] else 'FAIL'}")
    print(f"  descriptors {v['fds_start']}, growth {v['fd_growth']:+d} {'ok' if c['fds'] else 'FAIL'}; "
          f"threads {v['threads_start']}, growth {v['thread_growth']:+d} {'ok' if c['threads'] else 'FAIL'}")
    print(f"  per-track state: at most {v['max_track_state']} live/open tracks while {v['tracks_started']} "
          f"started and ended {'ok' if c['track_state'] and c['tracks_came_and_went'] else 'FAIL'}")
    print(f"  after the run: {v['after_run']['fds']} descriptors, {v['after_run']['threads']} threads")
    if a.json:
        report.write_json(a.json, {**report.envelope(PROG, argv, vars(a)), **res})
    print("soak: " + ("all checks passed" if v["ok"] else "FAILED: " + ", ".join(k for k, ok in c.items() if not ok)))
    return 0 if v["ok"] else 1


if __name__ == "__main__":
    run_cli(main, PROG)
