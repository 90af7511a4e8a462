"""``python -m benchmarks.liveview --engine MODEL``: what watching the live view costs detection.

It runs ``runtime.detect`` as a user would (the real CLI, ``--web`` on), over ``--cameras`` copies of
a generated one-face clip read as fast as they decode (a throughput test: every core busy, so any
CPU the view takes shows), and measures the processed frames/s (every camera) in windows of
``--window`` seconds, alternately with ``--viewers`` viewers attached and with none, in the same
run. A viewer does what the page does: per camera, it asks for the next frame as soon as the last
has arrived (the server paces them at ``--web-fps``), and once a second it reads
``/api/cameras``, ``/api/tracks`` and ``/api/events``. The viewers run in this process, on the same
cores as the box (a person's browser would be on another machine): the figure is conservative.

The two kinds of window take turns, their order alternating round after round (none, viewers;
viewers, none; ...), so each round's ratio (viewers / none) pairs neighbouring windows; before a
window without viewers the run waits until the view has stopped encoding (it lingers a few
seconds after the last request). Reported: the median ratio and its range over rounds (goal
≥ 0.9), frames/s both ways, and what the viewers received (frames a second per camera).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report
from runtime.errors import Parser, UserError, run_cli

PROG = "benchmarks.liveview"
RATIO_TARGET = 0.9
MAX_CAMERA_FPS = 800  # the fastest a camera is assumed to read; sizes the default --repeat


class Viewer:
    """One person with the page open: a frame loop per camera, the JSON once a second."""

    def __init__(self, base: str, cameras: list[str]) -> None:
        self.base, self.cameras = base, cameras
        self.frames = dict.fromkeys(cameras, 0)  # frames received per camera
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._frames, args=(c,), daemon=True) for c in cameras]
        self._threads.append(threading.Thread(target=self._json, daemon=True))

    def start(self) -> Viewer:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def _get(self, path: str) -> tuple[int, bytes, Any]:
        with urllib.request.urlopen(self.base + path, timeout=15) as r:
            return r.status, r.read(), r.headers

    def _frames(self, camera: str) -> None:
        seq = 0
        while not self._stop.is_set():
            try:
                status, body, headers = self._get(f"/api/cameras/{camera}/frame.jpg?after={seq}")
            except (OSError, urllib.error.URLError) as e:
                self.errors.append(f"{camera}: {e}")
                self._stop.wait(1.0)
                continue
            if status == 200:
                seq = int(headers.get("X-Frame-Seq", seq + 1))
                self.frames[camera] += 1

    def _json(self) -> None:
        cursor = 0
        while not self._stop.wait(1.0):
            try:
                self._get("/api/cameras")
                self._get("/api/tracks")
                cursor = json.loads(self._get(f"/api/events?since={cursor}")[1])["cursor"]
            except (OSError, urllib.error.URLError, ValueError) as e:
                self.errors.append(f"json: {e}")


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, every thread) of process ``pid`` so far; None where /proc has no answer."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _processed(base: str, proc: subprocess.Popen) -> tuple[float, int]:
    """(time, frames processed by every camera); the run must still be going."""
    try:
        with urllib.request.urlopen(base + "/api/cameras", timeout=15) as r:
            cams = json.loads(r.read())["cameras"]
    except (OSError, urllib.error.URLError, ValueError) as e:
        if proc.poll() is not None:
            raise UserError("runtime.detect ended before the rounds did (the clips ran out?); raise --repeat") from None
        raise UserError(f"the live view stopped answering: {e}") from None
    if any(c["status"] != "running" for c in cams):
        raise UserError("a camera ended before the rounds did (the clips ran out); raise --repeat")
    return time.monotonic(), sum(c["frames"] for c in cams)


def _wait_serving(base: str, proc: subprocess.Popen, cameras: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(f"runtime.detect ended before the benchmark started: {proc.stderr.read()[-800:]}")
        try:
            with urllib.request.urlopen(base + "/api/cameras", timeout=5) as r:
                cams = json.loads(r.read())["cameras"]
            if len(cams) == cameras and all(c["frames"] > 0 for c in cams):
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.3)
    raise UserError(f"the live view did not serve every camera within {timeout:.0f} s")


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for the box's --web)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _detect(a: argparse.Namespace, folder: Path, port: int, summary: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "runtime.detect", "--engine", a.engine, "--faces", a.faces,
           "--detect-every", str(a.detect_every), "--threads", str(a.threads), "--live", "no", "--quiet",
           "--web", str(port), "--web-fps", str(a.web_fps), "--web-viewers", str(max(4, a.viewers)),
           "--summary", str(summary)]
    for i in range(a.cameras):
        cmd += ["--source", f"cam{i + 1}={folder}"]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def measure(a: argparse.Namespace, folder: Path, progress: report.Progress) -> dict[str, Any]:
    """One run of the box; windows with and without viewers, alternating; the run's summary."""
    from runtime.web.feeds import LINGER_S

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="jrc-liveview-") as tmp:
        summary_path = Path(tmp) / "summary.json"
        proc = _detect(a, folder, port, summary_path)
        windows: list[dict[str, Any]] = []
        viewers: list[Viewer] = []
        try:
            _wait_serving(base, proc, a.cameras)
            names = [f"cam{i + 1}" for i in range(a.cameras)]
            time.sleep(a.warmup)
            for r in range(a.rounds):
                for kind in (("none", "viewers") if r % 2 == 0 else ("viewers", "none")):
                    progress(f"round {r + 1}/{a.rounds}: {kind}", force=True)
                    if kind == "viewers" and not viewers:
                        viewers = [Viewer(base, names).start() for _ in range(a.viewers)]
                        time.sleep(1.0)  # the feeds are encoding
                    elif kind == "none" and viewers:
                        for v in viewers:
                            v.stop()
                        viewers = []
                        time.sleep(LINGER_S + 1.0)  # the feeds have stopped encoding
                    got0 = {c: sum(v.frames[c] for v in viewers) for c in names}
                    c0 = _cpu_seconds(proc.pid)
                    t0, f0 = _processed(base, proc)
                    time.sleep(a.window)
                    t1, f1 = _processed(base, proc)
                    c1 = _cpu_seconds(proc.pid)
                    got = {c: sum(v.frames[c] for v in viewers) - got0[c] for c in names}
                    cpu = c1 - c0 if c0 is not None and c1 is not None else None
                    windows.append({"round": r + 1, "kind": kind, "seconds": round(t1 - t0, 3), "frames": f1 - f0,
                                    "fps": round((f1 - f0) / (t1 - t0), 2),
                                    "cpu_ms_per_frame": round(1000 * cpu / (f1 - f0), 3) if cpu and f1 > f0 else None,
                                    "viewer_fps_per_camera": round(sum(got.values()) / max(1, a.viewers)
                                                                   / len(names) / (t1 - t0), 2) if viewers else None})
        finally:
            for v in viewers:
                v.stop()
            errors = [e for v in viewers for e in v.errors]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                _, stderr = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, stderr = proc.communicate()
        if errors:
            raise UserError(f"a viewer failed: {errors[0]}")
        if not summary_path.exists():
            raise UserError(f"runtime.detect wrote no summary: {stderr[-800:]}")
        summary = json.loads(summary_path.read_text())
    progress.done()
    return {"windows": windows, "web": summary.get("sinks", {}).get("web"), "status": summary.get("status")}


def summarize(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per round: viewers / none (neighbouring windows); the median and range over rounds. Both for
    frames/s (what the box delivered, on a shared machine also the share of the CPU it was given)
    and for frames per CPU-second of the box's process (its efficiency alone: the encoding is the
    only work the viewers add to it)."""
    rounds = sorted({w["round"] for w in windows})
    pairs = []
    cpu = []
    for r in rounds:
        by = {w["kind"]: w for w in windows if w["round"] == r}
        if "none" in by and "viewers" in by and by["none"]["fps"] > 0:
            pairs.append((by["viewers"]["fps"], by["none"]["fps"], by["viewers"]["viewer_fps_per_camera"]))
            if by["none"]["cpu_ms_per_frame"] and by["viewers"]["cpu_ms_per_frame"]:
                cpu.append((by["viewers"]["cpu_ms_per_frame"], by["none"]["cpu_ms_per_frame"]))
    ratios = [v / n for v, n, _ in pairs]
    efficiency = [n / v for v, n in cpu]  # frames per CPU-second, viewers / none
    return {"rounds": len(pairs),
            "cpu_ms_per_frame_none": round(float(np.median([n for _, n in cpu])), 3) if cpu else None,
            "cpu_ms_per_frame_viewers": round(float(np.median([v for v, _ in cpu])), 3) if cpu else None,
            "cpu_ratio": round(float(np.median(efficiency)), 3) if efficiency else None,
            "cpu_ratio_min": round(min(efficiency), 3) if efficiency else None,
            "cpu_ratio_max": round(max(efficiency), 3) if efficiency else None,
            "none_fps": round(float(np.median([n for _, n, _ in pairs])), 2) if pairs else None,
            "viewers_fps": round(float(np.median([v for v, _, _ in pairs])), 2) if pairs else None,
            "ratio": round(float(np.median(ratios)), 3) if ratios else None,
            "ratio_min": round(min(ratios), 3) if ratios else None,
            "ratio_max": round(max(ratios), 3) if ratios else None,
            "ratios": [round(x, 3) for x in ratios],
            "viewer_fps_per_camera": round(float(np.median([g for _, _, g in pairs])), 2) if pairs else None}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--engine", required=True, metavar="PATH", help=".onnx or TensorRT .engine/.plan")
    p.add_argument("--cameras", type=int, default=2, help="cameras in the box (default 2)")
    p.add_argument("--viewers", type=int, default=2, help="viewers attached in the viewers' windows (default 2)")
    p.add_argument("--web-fps", type=float, default=5.0, metavar="N", help="as runtime.detect (default 5)")
    p.add_argument("--rounds", type=int, default=4, help="rounds of one window each way (default 4)")
    p.add_argument("--window", type=float, default=5.0, metavar="SEC", help="seconds a window measures (default 5)")
    p.add_argument("--warmup", type=float, default=3.0, metavar="SEC", help="seconds before the first window "
                   "(default 3)")
    p.add_argument("--frames", type=int, default=150, help="frames of the generated clip (default 150)")
    p.add_argument("--repeat", type=int, help="each camera reads copies of the clip this many times in a row "
                   f"(default: enough for the run at {MAX_CAMERA_FPS} frames/s a camera; 4 rounds of 5 s, "
                   "150 frames: 283 copies, about 340 MB for 720p)")
    p.add_argument("--size", default="1280x720", metavar="WxH", help="the clip's frame size (default 1280x720)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="inference threads (default 1)")
    p.add_argument("--faces", choices=("mtcnn", "haar", "none"), default="mtcnn", help="face detector (default "
                   "mtcnn)")
    p.add_argument("--detect-every", type=int, default=5, metavar="N", help="as runtime.detect (default 5)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def print_result(res: dict[str, Any]) -> None:
    m, s, t = res["machine"], res["settings"], res["result"]
    print(f"{report.describe_cpu(m)}, {m['usable_cores']} cores, "
          f"load {m.get('loadavg_1m')}; {s['cameras']} cameras of {s['size']}, {s['viewers']} viewers at "
          f"--web-fps {s['web_fps']}, {t['rounds']} rounds of {s['window']} s windows")
    print(report.table(res["windows"], [("round", "round"), ("kind", "viewers"), ("fps", "frames/s"),
                                        ("cpu_ms_per_frame", "box CPU ms/frame"),
                                        ("viewer_fps_per_camera", "frames/s each viewer got per camera")]))
    ok = t["ratio"] is not None and t["ratio"] >= RATIO_TARGET
    print(f"with {s['viewers']} viewers: {t['ratio']}× the frames/s without (rounds: {t['ratio_min']}-"
          f"{t['ratio_max']}; target ≥ {RATIO_TARGET}): {'met' if ok else 'NOT met'}")
    if t["cpu_ratio"] is not None:
        ok = t["cpu_ratio"] >= RATIO_TARGET
        print(f"frames per CPU-second of the box with viewers: {t['cpu_ratio']}× without (rounds: "
              f"{t['cpu_ratio_min']}-{t['cpu_ratio_max']}; {t['cpu_ms_per_frame_viewers']} against "
              f"{t['cpu_ms_per_frame_none']} ms a frame): {'met' if ok else 'NOT met'} on a machine where the CPU "
              "is the limit")


def default_repeat(a: argparse.Namespace) -> int:
    """Copies of the clip a camera needs so that it outlasts the warm-up and every window even at
    ``MAX_CAMERA_FPS`` (a quiet 2-core AMD EPYC read 360 frames/s a camera with two cameras)."""
    seconds = a.warmup + 2 * a.rounds * a.window + 10.0  # the windows, with slack for the start
    return max(1, math.ceil(seconds * MAX_CAMERA_FPS / a.frames))


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.repeat is None:
        a.repeat = default_repeat(a)
    report.check_positive(cameras=a.cameras, viewers=a.viewers, rounds=a.rounds, frames=a.frames, repeat=a.repeat,
                          threads=a.threads, detect_every=a.detect_every)
    if not (a.window > 0 and a.warmup >= 0 and 0 < a.web_fps <= 60):
        raise UserError("--window and --web-fps must be above 0 (--web-fps at most 60), --warmup 0 or more")
    w, h = report.parse_size(a.size)
    report.check_files([a.engine], "--engine")
    report.check_writable(a.json, "--json", [("--engine", a.engine)])
    from benchmarks.demo import make_clip

    with tempfile.TemporaryDirectory(prefix="jrc-liveview-clips-") as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_clip(clip, frames_per_segment=max(1, a.frames // 2), size=(w, h))
        folder = Path(tmp) / "clips"
        folder.mkdir()
        for k in range(a.repeat):  # one camera reads them one after another (copies: links are read once)
            shutil.copyfile(clip, folder / f"{k:04d}.mp4")
        head = report.envelope(PROG, argv, vars(a))
        run = measure(a, folder, report.Progress(not a.quiet))
    res = {**head, **run, "result": summarize(run["windows"]), "target": {"ratio": RATIO_TARGET}}
    report.emit(res, print_result, a.json, None, lambda r, p: None)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run_cli(main, PROG)
