"""``python -m benchmarks.streams --engine MODEL``: N cameras in one process against N processes of one camera.

For each N (``--cameras 1,2,4,8``) it runs the runtime's frame loop (:class:`runtime.loop.FrameLoop`,
``run_cameras``: per-camera decode and faces threads, one batched inference stage) over N copies of
a generated 720p one-face clip, two ways, on the same cores:

- **one process**: one worker process with all N cameras and one model session;
- **N processes**: N worker processes of one camera each (what a box without the camera box runs).

Every worker loads its model and opens its clips first, then waits; all of a run's workers start
together. Measured per run: total processed frames/s (every frame of every camera, over the span
from the start to the last worker's end), per-frame latency p50/p95 (frame read → result written,
every frame of every camera), the mean inference batch (faces per backend call), and the CPU time
per frame (user + system, every thread of every worker): on a machine shared with other work the
frame rate measures the share of the CPU a run got as much as its efficiency, CPU per frame the
efficiency alone. The two ways
take turns, their order alternating round after round (``--rounds``), so each ratio (one process
/ N processes) is paired within a round; medians and the spread over rounds are reported.
Files are read as fast as they decode (a throughput test); ``--pace FPS`` plays each clip as a
live camera at FPS instead (stale frames dropped), for latency at a camera's own rate.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report, stats
from runtime.errors import Parser, UserError, run_cli

PROG = "benchmarks.streams"
RATIO_TARGET = 1.2  # one process at N = 4 on 2 cores: at least this × the N processes' total


# --- the worker (a process of its own) -----------------------------------------------------------
def worker(a: argparse.Namespace) -> int:
    """Load, open, say ``ready``, wait for ``go`` on stdin, run, print one JSON line."""
    from runtime.backends import open_backend
    from runtime.loop import Camera, Faces, FrameLoop, decoder_threads
    from runtime.sources import LiveSource, open_source

    backend = open_backend(a.engine, threads=a.threads)
    threads = decoder_threads(a.threads, a.worker_cameras)
    faces = Faces(a.faces, detect_every=a.detect_every)
    loop = FrameLoop(backend, faces, batch_wait=None if a.batch_wait is None else a.batch_wait / 1000.0)
    cams = []
    for i in range(a.worker_cameras):
        if a.pace:
            src: Any = LiveSource(a.clip, "file", 0, 10.0, 5.0, pace=a.pace)
        else:
            src = open_source(a.clip, live="no", decode_threads=threads)
        cams.append(Camera(f"cam{i + 1}", src))
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    t0, cpu0 = time.time(), _cpu_seconds()
    try:
        loop.run_cameras(cams)
    finally:
        t1, cpu1 = time.time(), _cpu_seconds()
        loop.close()
        backend.close()
    lat = [v * 1000.0 for c in loop.cameras for v in c.latency._v]  # noqa: SLF001 - the samples themselves
    out = {"start": t0, "end": t1, "cpu_s": cpu1 - cpu0, "frames": sum(c.agg.frames for c in loop.cameras),
           "dropped": sum(c.source.stats.dropped for c in loop.cameras), "latency_ms": lat,
           "batches": loop.batcher.batches, "faces": loop.batcher.faces,
           "errors": [str(c.error) for c in loop.cameras if c.error is not None]}
    print(json.dumps(out), flush=True)
    return 0


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return r.ru_utime + r.ru_stime


# --- the parent ----------------------------------------------------------------------------------
def run_once(a: argparse.Namespace, clip: str, processes: int, cameras_each: int) -> dict[str, Any]:
    """Start ``processes`` workers of ``cameras_each`` cameras, start them together, collect."""
    cmd = [sys.executable, "-m", PROG, "--worker", "--engine", a.engine, "--clip", clip,
           "--worker-cameras", str(cameras_each), "--threads", str(a.threads), "--faces", a.faces,
           "--detect-every", str(a.detect_every), "--pace", str(a.pace)]
    if a.batch_wait is not None:
        cmd += ["--batch-wait", str(a.batch_wait)]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    try:
        for p in procs:
            line = p.stdout.readline().strip()
            if line != "ready":
                raise UserError(f"a {PROG} worker failed to start: {p.stderr.read().strip()[-500:]}")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            line = p.stdout.readline()
            p.wait(600)
            if p.returncode != 0 or not line.strip():
                raise UserError(f"a {PROG} worker failed: {p.stderr.read().strip()[-500:]}")
            results.append(json.loads(line))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return combine(results)


def combine(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's figures from its workers: total frames/s over the common span, latency over every frame."""
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    frames = sum(r["frames"] for r in results)
    lat = np.concatenate([np.asarray(r["latency_ms"], np.float64) for r in results]) if results else np.zeros(0)
    batches, faces = sum(r["batches"] for r in results), sum(r["faces"] for r in results)
    errors = [e for r in results for e in r["errors"]]
    if errors:
        raise UserError(f"a camera failed during the benchmark: {errors[0]}")
    cpu = sum(r["cpu_s"] for r in results)
    return {"frames": frames, "seconds": round(span, 3), "fps": round(frames / span, 2) if span > 0 else None,
            "cpu_ms_per_frame": round(1000.0 * cpu / frames, 3) if frames else None,
            "dropped": sum(r.get("dropped", 0) for r in results),
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 2) if lat.size else None,
            "mean_batch": round(faces / batches, 3) if batches else None}


def measure(a: argparse.Namespace, clip: str, progress: report.Progress) -> list[dict[str, Any]]:
    rows = []
    for n in a.cameras:
        runs: dict[str, list[dict[str, Any]]] = {"one": [], "separate": []}
        for r in range(a.rounds):
            order = ["one", "separate"] if r % 2 == 0 else ["separate", "one"]
            for way in order:
                progress(f"N={n}, round {r + 1}/{a.rounds}: {way}", force=True)
                runs[way].append(run_once(a, clip, 1, n) if way == "one" else run_once(a, clip, n, 1))
        rows.append(summarize(n, runs))
    progress.done()
    return rows


def summarize(n: int, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per way, the paired per-round ratios (median and range), and the goal at N = 4."""
    def med(way: str, key: str) -> float | None:
        v = [r[key] for r in runs[way] if r[key] is not None]
        return round(float(np.median(v)), 2) if v else None

    fps = stats.ratio([r["fps"] for r in runs["one"]], [r["fps"] for r in runs["separate"]])
    p95 = stats.ratio([r["latency_p95_ms"] for r in runs["one"]], [r["latency_p95_ms"] for r in runs["separate"]])
    cpu = stats.ratio([r["cpu_ms_per_frame"] for r in runs["separate"]], [r["cpu_ms_per_frame"] for r in runs["one"]])
    each = [o["fps"] / s["fps"] for o, s in zip(runs["one"], runs["separate"]) if o["fps"] and s["fps"]]
    row = {"cameras": n}
    for way in ("one", "separate"):
        for key in ("fps", "cpu_ms_per_frame", "latency_p50_ms", "latency_p95_ms", "mean_batch", "dropped"):
            row[f"{way}_{key}"] = med(way, key)
    row.update({"fps_ratio": round(fps.median, 3), "fps_ratio_min": round(min(each), 3) if each else None,
                "fps_ratio_max": round(max(each), 3) if each else None,
                "p95_ratio": round(p95.median, 3), "cpu_ratio": round(cpu.median, 3), "rounds": len(runs["one"]),
                "runs": runs})
    return row


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--engine", required=True, metavar="PATH", help=".onnx or TensorRT .engine/.plan")
    p.add_argument("--cameras", default="1,2,4,8", help="camera counts N (default 1,2,4,8)")
    p.add_argument("--frames", type=int, default=150, help="frames of the generated clip each camera reads (default 150)")
    p.add_argument("--size", default="1280x720", metavar="WxH", help="the clip's frame size (default 1280x720)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; the two ways alternate in each (default 3)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="inference threads per process (default 1)")
    p.add_argument("--faces", choices=("mtcnn", "haar"), default="mtcnn", help="face detector (default mtcnn)")
    p.add_argument("--detect-every", type=int, default=5, metavar="N", help="as runtime.detect (default 5)")
    p.add_argument("--batch-wait", type=float, metavar="MS", help="as runtime.detect (default: 5 with several "
                   "cameras on a GPU, 0 on a CPU)")
    p.add_argument("--pace", type=float, default=0.0, metavar="FPS", help="play each clip as a live camera at FPS "
                   "(default 0: read files as fast as they decode)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--clip", help=argparse.SUPPRESS)
    p.add_argument("--worker-cameras", type=int, default=1, help=argparse.SUPPRESS)
    return p


def print_rows(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(f"{report.describe_cpu(m)}, {m['usable_cores']} cores, "
          f"load {m.get('loadavg_1m')}; {res['settings']['frames']} frames of {res['settings']['size']} per camera")
    print(report.table(res["rows"], [("cameras", "N"), ("one_fps", "one process fps"),
                                     ("separate_fps", "N processes fps"), ("fps_ratio", "ratio"),
                                     ("fps_ratio_min", "min"), ("fps_ratio_max", "max"),
                                     ("one_latency_p50_ms", "one p50 ms"), ("one_latency_p95_ms", "one p95 ms"),
                                     ("separate_latency_p50_ms", "N p50 ms"), ("separate_latency_p95_ms", "N p95 ms"),
                                     ("one_mean_batch", "one batch"), ("separate_mean_batch", "N batch"),
                                     ("one_cpu_ms_per_frame", "one CPU ms/frame"),
                                     ("separate_cpu_ms_per_frame", "N CPU ms/frame")]))
    goal = next((r for r in res["rows"] if r["cameras"] == 4), None)
    if goal is not None:
        ok = goal["fps_ratio"] >= RATIO_TARGET and goal["p95_ratio"] <= 1.0
        print(f"N = 4: one process {goal['fps_ratio']:.2f}× the 4 processes' frames/s (target ≥ {RATIO_TARGET}), "
              f"latency p95 {goal['p95_ratio']:.2f}× theirs (target ≤ 1): {'met' if ok else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.worker:
        return worker(a)
    a.cameras = report.parse_list(a.cameras, int, "--cameras")
    report.check_positive(frames=a.frames, rounds=a.rounds, threads=a.threads, detect_every=a.detect_every,
                          cameras=min(a.cameras))
    if a.pace < 0 or (a.batch_wait is not None and a.batch_wait < 0):
        raise UserError("--pace and --batch-wait must be 0 or more")
    w, h = report.parse_size(a.size)
    report.check_files([a.engine], "--engine")
    report.check_writable(a.json, "--json", [("--engine", a.engine), ("--clip", a.clip)])
    from benchmarks.demo import make_clip

    with tempfile.TemporaryDirectory(prefix="jrc-streams-") as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_clip(clip, frames_per_segment=max(1, a.frames // 2), size=(w, h))
        settings = {k: v for k, v in vars(a).items() if k not in ("worker", "clip", "worker_cameras")}
        head = report.envelope(PROG, argv, settings)
        rows = measure(a, str(clip), report.Progress(not a.quiet))
    res = {**head, "rows": rows, "target": {"cameras": 4, "fps_ratio": RATIO_TARGET, "p95_ratio": 1.0}}
    report.emit(res, print_rows, a.json, None, lambda r, p: None)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run_cli(main, PROG)
