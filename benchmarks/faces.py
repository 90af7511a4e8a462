"""``python -m benchmarks.faces``: the CNN face detector (MTCNN) side by side with Haar, in one run.

- quality on real images available offline: recall on LFW's 100 faces (``lfw_subset()``, 25 px,
  upscaled ×4 as training does), and on the two scikit-image photos with a face (astronaut,
  camera); false detections on LFW's 100 non-faces and on scikit-image's face-free photos, each at
  its own size and scaled to 1280 px wide;
- what each does to the bundled model's verdicts on sample media (whole runs of runtime.detect);
- CPU cost per 720p frame (one thread, as the runtime runs the detector): a full detection, the
  coarse scan for new faces, and the window search of a tracked frame, alternating, medians and
  the ratio MTCNN / Haar;
- end to end frames/s with tracking on a 720p one-face clip (the edge model at 224 px), both
  detectors alternating round by round in the same run, and the ratio (target ≥ 0.85).

No generated content except the clip's motion: every face and background is a real photo.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.errors import Parser, UserError, run_cli

PROG = "benchmarks.faces"
DETECTORS = ("mtcnn", "haar")
FACE_FREE = ("coffee", "chelsea", "rocket", "brick", "grass", "gravel", "moon", "horse", "page", "text", "clock",
             "coins", "immunohistochemistry", "retina", "cell", "hubble_deep_field")
WITH_FACE = ("astronaut", "camera")
FPS_TARGET = 0.85


def photo(name: str) -> np.ndarray:
    """A scikit-image photo as uint8 BGR."""
    from skimage import data

    img = np.asarray(getattr(data, name)())
    if img.dtype != np.uint8:
        img = (np.clip(img / max(float(img.max()), 1e-9), 0, 1) * 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    return cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


def to_width(img: np.ndarray, w: int) -> np.ndarray:
    h = int(round(img.shape[0] * w / img.shape[1]))
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_CUBIC)


def make(kind: str, **kw: Any) -> Any:
    from runtime.faces import make_detector

    return make_detector(kind, **kw)


# --- quality ----------------------------------------------------------------------------------
def quality(face_threshold: float, lfw: int = 100) -> dict[str, Any]:
    from runtime.tracking import iou
    from training.sample_faces import LFW_PAD, LFW_UPSCALE, lfw_frame, lfw_images

    out: dict[str, Any] = {}
    whole = (LFW_PAD, LFW_PAD, 25 * LFW_UPSCALE, 25 * LFW_UPSCALE)
    for kind in DETECTORS:
        det = make(kind, min_face=20, **({"face_threshold": face_threshold} if kind == "mtcnn" else {}))
        hits = extra = 0
        for img in lfw_images(faces=True)[:lfw]:
            boxes = det.detect(lfw_frame(img))
            hits += any(iou(b, whole) >= 0.3 for b in boxes)
            extra += sum(iou(b, whole) < 0.3 for b in boxes)
        false_lfw = sum(len(det.detect(lfw_frame(img))) for img in lfw_images(faces=False)[:lfw])
        det = make(kind, **({"face_threshold": face_threshold} if kind == "mtcnn" else {}))
        free: dict[str, list[int]] = {}
        for name in FACE_FREE:
            img = photo(name)
            free[name] = [len(det.detect(img)), len(det.detect(to_width(img, 1280)))]
        faces = {name: [len(det.detect(photo(name))), len(det.detect(to_width(photo(name), 1280)))]
                 for name in WITH_FACE}
        n_free = 2 * len(FACE_FREE)
        out[kind] = {"lfw_images": lfw, "lfw_recall": hits / lfw, "lfw_extra_boxes_on_faces": extra,
                     "lfw_nonface_false_per_image": false_lfw / lfw,
                     "photos_false_per_image": round(sum(map(sum, free.values())) / n_free, 3),
                     "photos_false": {k: v for k, v in free.items() if any(v)},
                     "photos_with_face_boxes": faces}
    return out


# --- CPU cost ---------------------------------------------------------------------------------
def frame_720p() -> np.ndarray:
    """A 720p frame of real pixels: the astronaut's head (~250 px) on the coffee photo."""
    from benchmarks.demo import _astronaut_head

    bg = cv2.resize(photo("coffee"), (1280, 720), interpolation=cv2.INTER_CUBIC)
    head = _astronaut_head()
    head = cv2.resize(head, (int(head.shape[1] * 400 / head.shape[0]), 400), interpolation=cv2.INTER_AREA)
    bg[160:160 + head.shape[0], 440:440 + head.shape[1]] = head
    return bg


def cost(rounds: int = 7, calls: int = 5) -> dict[str, Any]:
    from runtime.tracking import ROI_NEAR, FaceTracker

    cv2.setNumThreads(1)
    frame = frame_720p()
    tasks: dict[str, Any] = {}
    for kind in DETECTORS:
        det = make(kind)
        tr = FaceTracker(det)
        box = np.asarray(det.detect(frame)[0][:4], np.float64)
        tasks[f"{kind}_full"] = lambda d=det: d.detect(frame)
        tasks[f"{kind}_coarse"] = lambda d=det: d.detect(frame, coarse=True)
        # a tracked frame's detection, as FaceTracker does it: a CNN re-fits the predicted box
        # (O-Net alone), Haar searches a small window around it
        tasks[f"{kind}_tracked"] = lambda t=tr, b=box, d=det: (d.refine(frame, b) if hasattr(d, "refine")
                                                               else t._search(frame, b, *ROI_NEAR))
        tasks[f"{kind}_found"] = len(tasks[f"{kind}_tracked"]())
    found = {k: tasks.pop(k) for k in [k for k in tasks if k.endswith("_found")]}
    times: dict[str, list[float]] = {k: [] for k in tasks}
    for fn in tasks.values():
        fn()
    for _ in range(rounds):
        for name, fn in tasks.items():
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - t) / calls * 1000)
    ms = {k: round(float(np.median(v)), 2) for k, v in times.items()}
    ratio = {w: round(ms[f"mtcnn_{w}"] / ms[f"haar_{w}"], 2) for w in ("full", "coarse", "tracked")}
    return {"ms": ms, "ratio_mtcnn_over_haar": ratio, "tracked_search_found": found}


def face_and_false_box() -> np.ndarray:
    """Two real photos, 640 px wide, one above the other: the astronaut, and the microscope image
    in which Haar boxes a "face" (a photo with one face where Haar adds a false box)."""
    return np.concatenate([to_width(photo("astronaut"), 640), to_width(photo("cell"), 640)], axis=0)


# --- verdicts ---------------------------------------------------------------------------------
def verdicts(folder: Path) -> dict[str, Any]:
    from runtime.detect import main as detect

    media = {name: folder / f"{name}.png" for name in ("astronaut", "camera", "cell", "coins")}
    for name, path in media.items():
        cv2.imwrite(str(path), photo(name))
    media["astronaut/cell"] = folder / "astronaut_cell.png"
    cv2.imwrite(str(media["astronaut/cell"]), face_and_false_box())
    engine = Path(__file__).resolve().parents[1] / "runtime" / "assets" / "jrc_edge_detect.onnx"
    out: dict[str, Any] = {}
    for name, path in media.items():
        for kind in DETECTORS:
            stem = name.replace("/", "_")
            summary = folder / f"{stem}.{kind}.json"
            jsonl = folder / f"{stem}.{kind}.jsonl"
            detect(["--engine", str(engine), "--source", str(path), "--faces", kind, "--quiet",
                    "--summary", str(summary), "--jsonl", str(jsonl)])
            s = json.loads(summary.read_text())
            rec = json.loads(jsonl.read_text().splitlines()[0])
            out.setdefault(name, {})[kind] = {
                "verdict": s["verdict"], "prob": s["prob"],
                "faces": [{"box": f["box"], "face_score": f["face_score"], "prob": f["prob"]} for f in rec["faces"]]}
    return out


# --- end to end -------------------------------------------------------------------------------
def end_to_end(folder: Path, frames: int, rounds: int, threads: int) -> dict[str, Any]:
    from benchmarks.demo import make_clip
    from benchmarks.fixtures import make_speed_artifacts
    from benchmarks.pipeline import run_pipeline
    from runtime.backends import open_backend
    from runtime.pipeline import share_cores

    clip = folder / "clip720.mp4"
    make_clip(clip, frames_per_segment=(frames + 1) // 2)
    model = make_speed_artifacts(folder / "edge224", 224)["detect"]
    backend = open_backend(str(model), provider="cpu", threads=threads)
    dt = share_cores(threads)
    fps: dict[str, list[float]] = {k: [] for k in DETECTORS}
    ms: dict[str, list[float]] = {k: [] for k in DETECTORS}
    try:
        for kind in DETECTORS:
            run_pipeline(str(clip), backend, 5, 10, 640, str(folder), decode_threads=dt, faces=kind)
        for i in range(rounds):
            for kind in (DETECTORS if i % 2 == 0 else DETECTORS[::-1]):
                row = run_pipeline(str(clip), backend, 5, frames, 640, str(folder), decode_threads=dt, faces=kind)
                fps[kind].append(row["fps"])
                ms[kind].append(row["stage_ms"]["faces"])
    finally:
        backend.close()
    ratios = [m / h for m, h in zip(fps["mtcnn"], fps["haar"])]
    return {"fps": {k: round(float(np.median(v)), 1) for k, v in fps.items()},
            "faces_ms_per_frame": {k: round(float(np.median(v)), 2) for k, v in ms.items()},
            "ratio_mtcnn_over_haar": round(float(np.median(ratios)), 3), "ratios": [round(r, 3) for r in ratios],
            "target": FPS_TARGET, "met": bool(np.median(ratios) >= FPS_TARGET), "threads": threads}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description="MTCNN vs Haar: quality, CPU cost, "
                                "verdicts and end-to-end frames/s, in one run.")
    p.add_argument("--only", nargs="+", choices=("quality", "cost", "verdicts", "e2e"),
                   default=["quality", "cost", "verdicts", "e2e"], help="parts to run (default: all four)")
    p.add_argument("--face-threshold", type=float, default=0.9, help="MTCNN's face threshold (default 0.9)")
    p.add_argument("--frames", type=int, default=200, help="end to end: frames per run (default 200)")
    p.add_argument("--rounds", type=int, default=4, help="end to end: rounds, detectors alternating (default 4)")
    p.add_argument("--threads", type=int, default=1, help="end to end: ONNX Runtime threads (default 1)")
    p.add_argument("--lfw", type=int, default=100, metavar="N",
                   help="quality: the first N of LFW's 100 faces and 100 non-faces (default all 100)")
    p.add_argument("--cost-rounds", type=int, default=7,
                   help="CPU cost: rounds of 5 calls per detector task, the median reported (default 7)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    from benchmarks.report import check_positive, machine

    a = build_parser().parse_args(argv)
    check_positive(frames=a.frames, rounds=a.rounds, cost_rounds=a.cost_rounds, threads=a.threads, lfw=a.lfw)
    from benchmarks.report import check_writable

    check_writable(a.json, "--json")
    if a.lfw > 100:
        raise UserError(f"--lfw {a.lfw}: LFW's subset has 100 faces and 100 non-faces; pass 1-100")
    result: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="jrc-faces-") as tmp:
        steps = {"quality": lambda: quality(a.face_threshold, a.lfw), "cost": lambda: cost(a.cost_rounds),
                 "verdicts": lambda: verdicts(Path(tmp)),
                 "e2e": lambda: end_to_end(Path(tmp), a.frames, a.rounds, a.threads)}
        for name in a.only:
            result[name] = steps[name]()
            print(f"{PROG}: {name}: {json.dumps(result[name])}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
