"""``python -m benchmarks.pipeline --engine A --source SRC``: end-to-end frames/s and the stage split.

Runs the runtime's own frame loop (:class:`runtime.loop.FrameLoop`, the one ``runtime.detect``
runs: Haar detector, tracker, threaded pipeline, backend, aggregation and JSONL output) on a file,
with tracking (``--detect-every N``) and without (detection on every frame), and measures:

- frames/s end to end, and ms per frame spent in each stage (decode / faces / preprocess / infer /
  output). Stages run in threads that overlap, so their sum can exceed the wall time per frame.
  Frames/s is the steady rate, from the first result to the last; the time to the first result
  (opening, the first full-frame scan, filling the queues) is reported beside it;
- the classifier alone on the same artifact (batch 1 and the backend's max batch, faces/s, each
  in its own block of calls: alternating batch sizes call by call slows ONNX Runtime at batch 1 by
  ~13 %), and the pipeline's throughput as a fraction of it (target: ≥ 0.8× with tracking, so the
  frame loop costs little beyond the classifier);
- the same loop with the detector's cost taken out (boxes found beforehand, replayed): the most
  any tracking could give on this machine, since decoding and the classifier share its cores;
- with ``--reference CKPT``: a research-style loop over the same frames (decode, the same face
  detector on every frame, crop, the PyTorch model in eager mode with the full graph, one frame at
  a time, no threads of its own, OpenCV and PyTorch at their defaults; at most 100 frames) and the
  end-to-end speed-up over it (target ≥ 5×).

The runtime's configurations share the CPU as ``runtime.detect`` does
(:func:`runtime.loop.decoder_threads`): OpenCV one thread per stage, the decoder the cores left,
and, unless ``--threads`` says otherwise, ONNX Runtime ``runtime.detect``'s own default
(:func:`runtime.detect.default_threads`: one thread on two cores). Measured on 2 cores (AVX-512
VNNI), 720p, 1,200 frames: giving ONNX Runtime both cores, the old default here, oversubscribes
them and cost the fp32 224 px edge model a quarter of its frames/s (481 vs 643, runs minutes apart).

Configurations take turns, round after round (``--repeats``), so ratios are per round; the
median is reported. Without ``--source`` a 720p one-face clip is generated (the demo's generator,
:func:`benchmarks.demo.make_clip`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report, stats
from runtime.detect import default_threads as runtime_threads
from runtime.errors import Parser, UserError, run_cli
from runtime.pipeline import STAGES

PROG = "benchmarks.pipeline"
FRACTION_TARGET, SPEEDUP_TARGET = 0.8, 5.0


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--engine", required=True, metavar="PATH", help=".onnx or TensorRT .engine/.plan")
    p.add_argument("--source", metavar="FILE", help="video (or image folder); default: a generated 720p clip")
    p.add_argument("--frames", type=int, default=300, help="frames per run (and of the generated clip; default 300)")
    p.add_argument("--detect-every", type=int, default=5, metavar="N",
                   help="tracking configuration: detect every Nth frame (default 5); compared with 1")
    p.add_argument("--reference", metavar="CKPT", help="add the research-style loop with this checkpoint")
    p.add_argument("--compare", action="append", default=[], metavar="PATH",
                   help="another model (.onnx, engine) whose tracking configuration runs in the same rounds, "
                        "with its frames/s over --engine's (repeatable; e.g. a new model beside the one it replaces)")
    p.add_argument("--repeats", type=int, default=3, help="rounds; configurations alternate within each (default 3)")
    p.add_argument("--runs", type=int, default=50, help="classifier-only timed calls per round (default 50)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="ONNX Runtime intra-op threads of the runtime's loop (default: runtime.detect's own, "
                        "the usable cores less two, at least one) and PyTorch's in the research loop "
                        "(default: all cores, as a plain script has it)")
    p.add_argument("--provider", choices=("cpu", "cuda", "tensorrt"), default="cpu",
                   help="ONNX Runtime execution provider for .onnx artifacts (default cpu)")
    p.add_argument("--detect-width", type=int, default=640, help="face detection width in px (default 640)")
    p.add_argument("--min-face", type=int, default=24, help="smallest face, in detection pixels (default 24)")
    p.add_argument("--faces", choices=("mtcnn", "haar"), default="mtcnn", help="face detector (default mtcnn)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--png", metavar="FILE", help="write a chart of the per-stage split")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


# --- the runtime's frame loop -------------------------------------------------------------------
RESEARCH_FRAMES = 100  # the research-style loop is slow and steady: fewer frames suffice


def detect_all(source: str, frames: int, detect_width: int, min_face: int, faces: str = "mtcnn") -> list[list[Any]]:
    """The face detector's boxes on each of the first ``frames`` frames (untimed, for the replay)."""
    from runtime.faces import make_detector
    from runtime.sources import open_source

    detector = make_detector(faces, detect_width=detect_width, min_face=min_face)
    src = open_source(source, stride=1, live="no")
    try:
        return [detector.detect(f.image) for f, _ in zip(src, range(frames))]
    finally:
        src.close()


def run_pipeline(source: str, backend: Any, detect_every: int, frames: int, detect_width: int,
                 out_dir: str, min_face: int = 24, replay: list[list[Any]] | None = None,
                 decode_threads: int = 0, faces: str = "mtcnn") -> dict[str, Any]:
    """One pass of the runtime's frame loop (:class:`runtime.loop.FrameLoop`, JSONL output) over
    ``frames`` frames with the ``faces`` detector; fps and ms per frame per stage. With ``replay``
    (boxes per frame), the detector's cost is taken out."""
    from runtime.loop import Faces, FrameLoop, Outputs
    from runtime.sources import open_source

    if replay is not None:
        detect_every = 1
    setup = Faces(faces, detect_every=detect_every, detect_width=detect_width, min_face=min_face, given=replay)
    jsonl = str(Path(out_dir) / f"every{detect_every}.jsonl")
    src = open_source(source, stride=1, live="no", decode_threads=decode_threads)
    loop = FrameLoop(backend, setup, Outputs(jsonl=jsonl), max_frames=frames)
    try:
        loop.run(src)
    finally:
        loop.close()
    end = time.perf_counter()
    assert loop.agg is not None and loop.pipeline is not None and loop.started is not None
    n = loop.agg.frames
    first = loop.first_result - loop.started if loop.first_result is not None else None
    what = "tracking" if detect_every > 1 else "no tracking"
    name = "runtime, faces given (detector cost removed)" if replay is not None else \
        f"runtime, {faces} every {detect_every} ({what})"
    return _row(name, n, loop.agg.faces, end - loop.started, loop.pipeline.times.per_frame_ms(n), first,
                loop.faces_first)


def _row(config: str, frames: int, faces: int, elapsed: float, stage_ms: dict[str, float],
         first: float | None, faces_first: int) -> dict[str, Any]:
    """Rates from the first result to the last (steady state; the first result's wait is
    ``first_result_ms``), and over the whole run (``fps_incl_start``)."""
    steady = elapsed - first if first is not None and frames > 1 else 0.0
    fps = (frames - 1) / steady if steady > 0 else None
    return {"config": config, "frames": frames, "faces": faces, "seconds": round(elapsed, 4),
            "fps": round(fps, 3) if fps else None,
            "faces_per_s": round((faces - faces_first) / steady, 3) if steady > 0 else None,
            "fps_incl_start": round(frames / elapsed, 3) if elapsed > 0 else None,
            "first_result_ms": round(1000.0 * first, 1) if first is not None else None,
            "wall_ms_per_frame": round(1000.0 / fps, 3) if fps else None, "stage_ms": stage_ms}


# --- the research-style reference -------------------------------------------------------------
def run_research(source: str, model: Any, meta: Any, frames: int, detect_width: int,
                 min_face: int = 24, faces: str = "mtcnn") -> dict[str, Any]:
    """Decode → detect on every frame → crop → PyTorch eager, full graph → record; one thread, batch 1."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(-1)  # OpenCV's default (all cores), as a plain script has it
    try:
        return _research(source, model, meta, frames, detect_width, min_face, faces)
    finally:
        cv2.setNumThreads(threads)


def _research(source: str, model: Any, meta: Any, frames: int, detect_width: int, min_face: int,
              faces: str = "mtcnn") -> dict[str, Any]:
    import json

    import cv2
    import torch

    from runtime.faces import make_detector
    from runtime.preprocess import crop_face, to_input

    detector = make_detector(faces, detect_width=detect_width, min_face=min_face)
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise UserError(f"--source {source}: OpenCV cannot open it as a video for the research-style loop")
    t = dict.fromkeys(STAGES, 0.0)
    n = faces = faces_first = 0
    records = []
    t0 = time.perf_counter()
    first = None
    try:
        while n < frames:
            a = time.perf_counter()
            ok, frame = cap.read()
            b = time.perf_counter()
            t["decode"] += b - a
            if not ok:
                break
            boxes = detector.detect(frame)
            c = time.perf_counter()
            t["faces"] += c - b
            probs: list[float] = []
            for box in boxes:
                d = time.perf_counter()
                x = torch.from_numpy(to_input(crop_face(frame, box, meta.face_margin, meta.input_size), meta))
                e = time.perf_counter()
                with torch.no_grad():
                    logit, _recon = model.forward_full(x)
                probs.append(float(torch.sigmoid(logit)[0, 0]))
                t["preprocess"] += e - d
                t["infer"] += time.perf_counter() - e
            f = time.perf_counter()
            records.append(json.dumps({"frame": n, "boxes": [list(map(int, bx)) for bx in boxes], "probs": probs}))
            t["output"] += time.perf_counter() - f
            n += 1
            faces += len(boxes)
            if first is None:
                first, faces_first = time.perf_counter() - t0, len(boxes)
    finally:
        cap.release()
    elapsed = time.perf_counter() - t0
    ms = {k: round(1000.0 * v / n, 3) if n else 0.0 for k, v in t.items()}
    return _row("research-style (detect every frame, pytorch eager full)", n, faces, elapsed, ms, first, faces_first)


# --- orchestration ----------------------------------------------------------------------------
def run(a: argparse.Namespace, source: str, workdir: str) -> dict[str, Any]:
    from benchmarks.runners import load_reference, make_input
    from runtime.backends import open_backend
    from runtime.loop import decoder_threads

    onnx = a.engine.lower().endswith(".onnx")
    opts = {"provider": a.provider, "threads": a.threads} if onnx else {}
    backend = open_backend(a.engine, **opts)
    others = [(p, open_backend(p, **({"provider": a.provider, "threads": a.threads} if p.lower().endswith(".onnx")
                                     else {}))) for p in a.compare]
    dt = decoder_threads(a.threads if onnx and a.provider == "cpu" else 0)
    progress = report.Progress(not a.quiet)
    ref = load_reference(a.reference, a.research_threads) if a.reference else None
    try:
        top = backend.max_batch
        calls = {"b1": backend.infer, "bmax": backend.infer}
        xs = {"b1": make_input(backend.meta, 1), "bmax": make_input(backend.meta, top)}
        tasks = {k: (lambda fn=calls[k], x=xs[k]: fn(x)) for k in calls}
        w, mf, fd = a.detect_width, a.min_face, a.faces
        run_pipeline(source, backend, a.detect_every, 10, w, workdir, mf, decode_threads=dt, faces=fd)  # warm-up
        boxes = detect_all(source, a.frames, w, mf, fd)
        configs: dict[str, Any] = {
            "tracking": lambda: run_pipeline(source, backend, a.detect_every, a.frames, w, workdir, mf,
                                             decode_threads=dt, faces=fd),
            "no_tracking": lambda: run_pipeline(source, backend, 1, a.frames, w, workdir, mf, decode_threads=dt,
                                                faces=fd),
            "faces_given": lambda: run_pipeline(source, backend, 1, a.frames, w, workdir, mf, replay=boxes,
                                                decode_threads=dt)}
        for path, other in others:
            run_pipeline(source, other, a.detect_every, 10, w, workdir, mf, decode_threads=dt, faces=fd)  # warm-up
            configs[f"compare:{path}"] = (lambda b=other, p=path: {
                **run_pipeline(source, b, a.detect_every, a.frames, w, workdir, mf, decode_threads=dt, faces=fd),
                "config": f"runtime, {fd} every {a.detect_every} (tracking), {Path(p).name}"})
        if ref is not None:
            run_research(source, ref[0], ref[1], 3, w, mf, fd)  # warm-up
            n_ref = min(a.frames, RESEARCH_FRAMES)
            configs["research"] = lambda: run_research(source, ref[0], ref[1], n_ref, w, mf, fd)
        rounds: list[dict[str, Any]] = []
        for i, order in enumerate(stats.schedule(list(configs) + ["classifier"], a.repeats, "rotate")):
            got: dict[str, Any] = {}
            for name in order:
                progress(f"round {i + 1}/{a.repeats}: {name}", force=True)
                if name == "classifier":
                    times = stats.run_interleaved(tasks, a.runs, warmup=3, order="blocked", seed=i)
                    got[name] = {"b1_faces_per_s": stats.throughput(1, float(np.median(times["b1"]))),
                                 "bmax_faces_per_s": stats.throughput(top, float(np.median(times["bmax"]))),
                                 "max_batch": top}
                else:
                    got[name] = configs[name]()
            rounds.append(got)
        progress.done()
        return summarize(rounds, backend.describe())
    finally:
        backend.close()
        for _, other in others:
            other.close()


def summarize(rounds: list[dict[str, Any]], backend: dict[str, Any]) -> dict[str, Any]:
    """Median over rounds per configuration, and per-round ratios."""
    def med(values: list[float]) -> float:
        return float(np.median(values))

    configs = [k for k in rounds[0] if k != "classifier"]
    rows = []
    for k in configs:
        runs = [r[k] for r in rounds]
        fps = med([x["fps"] for x in runs])
        row = {**runs[0], "key": k, "fps": round(fps, 3),
               "seconds": round(med([x["seconds"] for x in runs]), 4),
               "faces_per_s": round(med([x["faces_per_s"] for x in runs]), 3),
               "fps_incl_start": round(med([x["fps_incl_start"] for x in runs]), 3),
               "first_result_ms": round(med([x["first_result_ms"] for x in runs]), 1),
               "wall_ms_per_frame": round(1000.0 / fps, 3),  # of the median frame rate
               "stage_ms": {s: round(med([x["stage_ms"][s] for x in runs]), 3) for s in STAGES},
               "fps_per_round": [x["fps"] for x in runs]}
        rows.append(row)
    cls = [r["classifier"] for r in rounds]
    classifier = {"b1_faces_per_s": round(med([c["b1_faces_per_s"] for c in cls]), 3),
                  "bmax_faces_per_s": round(med([c["bmax_faces_per_s"] for c in cls]), 3),
                  "max_batch": cls[0]["max_batch"]}
    ratios = []
    for k in ("tracking", "no_tracking", "faces_given"):
        for b in ("b1", "bmax"):
            rt = stats.ratio([r[k]["faces_per_s"] for r in rounds], [r["classifier"][f"{b}_faces_per_s"] for r in rounds])
            ratios.append({"kind": "fraction_of_classifier", "config": k, "classifier_batch": b, **rt.to_dict()})
    rt = stats.ratio([r["tracking"]["fps"] for r in rounds], [r["no_tracking"]["fps"] for r in rounds])
    ratios.append({"kind": "tracking_speedup", "config": "tracking", **rt.to_dict()})
    for k in configs:
        if k.startswith("compare:"):  # another model, same rounds: its frames/s over --engine's
            rt = stats.ratio([r[k]["fps"] for r in rounds], [r["tracking"]["fps"] for r in rounds])
            ratios.append({"kind": "model_ratio", "config": k, **rt.to_dict()})
    if "research" in configs:
        for k in ("tracking", "no_tracking"):
            rt = stats.ratio([r[k]["fps"] for r in rounds], [r["research"]["fps"] for r in rounds])
            ratios.append({"kind": "speedup_over_research", "config": k, **rt.to_dict()})
    return {"backend": backend, "results": rows, "classifier": classifier, "ratios": ratios}


# --- output ----------------------------------------------------------------------------------
def print_report(result: dict[str, Any]) -> None:
    s, m, c = result["settings"], result["machine"], result["classifier"]
    print(f"machine: {report.describe_cpu(m)}, {m['usable_cores']} usable cores, threads={s['threads']}; source {s['source']}; "
          f"median of {s['repeats']} rounds")
    rows = [{**r, **{f"s_{k}": v for k, v in r["stage_ms"].items()}} for r in result["results"]]
    cols = [("config", "configuration"), ("frames", "frames"), ("faces", "faces"), ("fps", "frames/s"),
            ("wall_ms_per_frame", "wall ms/f"), ("first_result_ms", "1st ms")]
    cols += [(f"s_{k}", k) for k in STAGES]
    print(report.table(rows, cols))
    print("(frames/s: steady rate, first result to last; 1st ms: wait for the first result; stage columns: "
          "ms per frame of work in each stage, which overlap in threads)")
    print(f"classifier only ({result['backend'].get('backend')}): {c['b1_faces_per_s']:.1f} faces/s at batch 1, "
          f"{c['bmax_faces_per_s']:.1f} at batch {c['max_batch']}")
    for x in result["ratios"]:
        rt = stats.Ratio(x["median"], x["low"], x["high"], x["rounds"])
        if x["kind"] == "fraction_of_classifier":
            b = "batch 1" if x["classifier_batch"] == "b1" else f"batch {c['max_batch']}"
            tgt = f"  (target ≥ {FRACTION_TARGET})" if x["config"] == "tracking" and x["classifier_batch"] == "b1" else ""
            print(f"  pipeline / classifier-only at {b:<9} [{x['config']}]: {rt.times()}{tgt}")
        elif x["kind"] == "tracking_speedup":
            print(f"  tracking on / off (frames/s): {rt.times()}")
        elif x["kind"] == "model_ratio":
            other = Path(x["config"].split(":", 1)[1]).name
            print(f"  {other} / {Path(s['engine']).name} frames/s [tracking]: {rt.times()}")
        else:
            print(f"  end-to-end speed-up over research-style [{x['config']}]: {rt.times()}  (target ≥ {SPEEDUP_TARGET}×)")
    for n in result.get("notes", []):
        print(f"note: {n}")


def plot(result: dict[str, Any], path: str) -> None:
    rows = result["results"]

    def draw(fig: Any) -> None:
        ax = fig.subplots()
        bottom = np.zeros(len(rows))
        for s in STAGES:
            vals = np.array([r["stage_ms"][s] for r in rows])
            ax.barh(range(len(rows)), vals, left=bottom, label=s)
            bottom += vals
        ax.scatter([r["wall_ms_per_frame"] for r in rows], range(len(rows)), color="k", marker="|", s=400,
                   label="wall time per frame", zorder=3)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([f"{r['config']}\n{r['fps']:.1f} frames/s" for r in rows], fontsize=8)
        ax.set_xlabel("ms per frame")
        ax.legend(fontsize=8)
        ax.set_title(f"per-stage split — {result['machine']['cpu']} ({result['machine']['usable_cores']} cores)",
                     fontsize=9)

    report.save_png(path, draw, (10, 1.5 + 1.2 * len(rows)))


def generate_clip(path: Path, frames: int, size: tuple[int, int] = (1280, 720)) -> str:
    """The demo's clip (the astronaut's head drifting and zooming over a background, one face in
    every frame; its second half carries the self-blended forgery) with at least ``frames`` frames."""
    from benchmarks.demo import make_clip

    make_clip(path, frames_per_segment=(frames + 1) // 2, size=size)
    report.note(f"{PROG}: generated a {size[0]}x{size[1]} one-face clip of {2 * ((frames + 1) // 2)} frames")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    report.check_positive(frames=a.frames, detect_every=a.detect_every, repeats=a.repeats, runs=a.runs,
                          threads=a.threads, detect_width=a.detect_width, min_face=a.min_face)
    report.check_paths([a.engine], a.reference, a.json, a.png, [("--source", a.source)])
    report.check_files(a.compare, "--compare")
    if a.source and not Path(a.source).exists():
        raise UserError(f"--source {a.source}: no such file or folder")
    a.research_threads = a.threads or report.default_threads()
    a.threads = a.threads or runtime_threads()  # measure what runtime.detect runs, not an oversubscribed loop
    with tempfile.TemporaryDirectory(prefix="jrc-bench-") as work:
        source = a.source or generate_clip(Path(work) / "clip720p.mp4", a.frames)
        settings = {"source": a.source or "generated 720p one-face clip (benchmarks.demo.make_clip)",
                    "frames": a.frames,
                    "detect_every": a.detect_every, "repeats": a.repeats, "threads": a.threads,
                    "provider": a.provider, "detect_width": a.detect_width, "min_face": a.min_face,
                    "reference": a.reference, "engine": a.engine, "compare": a.compare}
        head = report.envelope(PROG, argv, settings)
        result = {**head, **run(a, source, work)}
    busy = report.busy_note(head["machine"], a.threads)
    result["notes"] = [busy] if busy else []
    result["machine"] = {**report.machine(), "loadavg_1m_start": result["machine"].get("loadavg_1m")}
    report.emit(result, print_report, a.json, a.png, plot)
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
