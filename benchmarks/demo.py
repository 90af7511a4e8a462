"""``python -m benchmarks.demo``: the demo. Generates a clip with a real and a manipulated segment,
runs ``runtime.detect`` on it with the bundled model, and prints the score of each segment.

The clip is made at run time from public-domain faces (scikit-image's ``astronaut()``, a NASA
photograph). The manipulated segment is the same footage with the face replaced by the project's
own self-blended forgery (:func:`training.synthetic.self_blend`, numpy/OpenCV only, no torch).
This module lives outside ``runtime/`` because it uses ``training.synthetic``; the runtime
itself never imports training code.

With ``--out DIR`` the clip stays as ``DIR/clip.mp4`` (a source for ``runtime.detect``); with
``--videos`` also ``DIR/videos/real/*.mp4`` and ``DIR/videos/fake/*.mp4``: sample footage for
``python -m training.extract --videos DIR/videos`` and the training pipeline after it.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.errors import Parser, UserError, missing_dependency, run_cli

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "runtime" / "assets" / "jrc_edge_detect.onnx"
PROG = "python -m benchmarks.demo"
VIDEOS = 4  # per label; with these names the 20 % a training run holds out has a real and a fake clip


def _astronaut_head() -> np.ndarray:
    """Head and shoulders of scikit-image's astronaut (public domain), uint8 BGR."""
    try:
        from skimage import data
    except ImportError:
        raise missing_dependency("scikit-image", "train") from None
    return np.ascontiguousarray(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[10:300, 95:355])


def manipulate(head: np.ndarray, seed: int = 0) -> np.ndarray:
    """The head with its face replaced by a self-blended forgery, made as training makes them: at
    the frame's own resolution, through a mask drawn from the face's landmarks (the runtime's
    default detector finds them), the blend ratio drawn from training's ratios, the face alone
    changed (nothing outside the mask). ``seed`` 0 for the demo clip: one forgery, not a measurement."""
    from runtime.faces import make_detector
    from training.synthetic import self_blend

    boxes = make_detector().detect(head)  # the runtime's default detector
    if not boxes or boxes[0].landmarks is None:
        raise UserError("demo: the face detector found no face in the demo image; check the OpenCV install")
    box = boxes[0]
    fake, _ = self_blend(head, np.random.default_rng(seed), landmarks=box.landmarks, box=tuple(box), either=False)
    return fake


def make_clip(path: Path, frames_per_segment: int = 50,
              size: tuple[int, int] = (1280, 720), fps: float = 25.0, seed: int = 0) -> list[dict[str, Any]]:
    """Write the demo clip; returns its segments [{name, first, last}] (frame indices, inclusive)."""
    real = _astronaut_head()
    fake = manipulate(real, seed)
    _render(path, [real] * frames_per_segment + [fake] * frames_per_segment, size, fps)
    return [{"name": "real", "first": 0, "last": frames_per_segment - 1},
            {"name": "manipulated", "first": frames_per_segment, "last": 2 * frames_per_segment - 1}]


def make_videos(folder: Path, frames: int = 50,
                size: tuple[int, int] = (1280, 720), fps: float = 25.0) -> list[Path]:
    """Write sample training videos: ``folder/real/astronaut_<k>.mp4`` and, of the same footage with
    the face manipulated, ``folder/fake/astronaut_<k>.mp4`` (k = 1..VIDEOS; labels from the folders,
    as ``training.extract`` reads them). Returns the paths written."""
    head = _astronaut_head()
    written = []
    for k in range(1, VIDEOS + 1):
        real = np.ascontiguousarray(head[:, ::-1]) if k % 2 == 0 else head  # mirrored footage
        fake = manipulate(real, seed=k)  # another forgery each time
        for label, face in (("real", real), ("fake", fake)):
            path = folder / label / f"astronaut_{k}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            _render(path, [face] * frames, size, fps, variant=k)
            written.append(path)
    return written


def _render(path: Path, heads: list[np.ndarray], size: tuple[int, int], fps: float, variant: int = 0) -> None:
    """One frame per entry of ``heads``: the head panning and zooming slowly over a gradient.
    ``variant`` moves the background colours and the motion's phase and direction (0: the demo clip)."""
    w, h = size
    scale = 0.62 * h / heads[0].shape[0]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramps = [70 + 50 * xx / w, 80 + 30 * yy / h, 95 + 40 * (1 - xx / w)]
    shift = variant % 3
    background = np.stack(ramps[shift:] + ramps[:shift], axis=2).astype(np.uint8)
    phase = 2 * math.pi * 0.37 * variant
    pan = -0.25 if variant % 2 else 0.25
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise UserError(f"{path}: OpenCV cannot write an mp4 here; check the folder")
    try:
        for i, head in enumerate(heads):
            t = i / fps
            s = scale * (1.0 + 0.06 * math.sin(2 * math.pi * t / 5.0 + phase))  # slow zoom
            img = cv2.resize(head, (int(head.shape[1] * s), int(head.shape[0] * s)), interpolation=cv2.INTER_AREA)
            ih, iw = img.shape[:2]
            cx = w / 2 + pan * w * math.sin(2 * math.pi * t / 8.0 + phase)  # slow pan
            x = int(np.clip(cx - iw / 2, 0, w - iw))
            y = int((h - ih) / 2 + 0.04 * h * math.sin(2 * math.pi * t / 3.0 + phase))
            frame = background.copy()
            frame[y: y + ih, x: x + iw] = img
            writer.write(frame)
    finally:
        writer.release()


def segment_scores(jsonl: Path, segments: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """Mean frame probability per segment from the detector's JSON Lines."""
    recs = [json.loads(line) for line in jsonl.read_text().splitlines()]
    out = []
    for seg in segments:
        probs = [r["prob"] for r in recs if seg["first"] <= r["frame"] <= seg["last"] and r["prob"] is not None]
        mean = sum(probs) / len(probs) if probs else None
        frames = sum(seg["first"] <= r["frame"] <= seg["last"] for r in recs)
        verdict = "no face" if mean is None else ("FAKE" if mean >= threshold else "real")
        out.append({**seg, "frames": frames, "with_face": len(probs), "prob": mean, "verdict": verdict})
    return out


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog=PROG, description="Generate the demo clip (a real and a manipulated "
                                "segment) and run runtime.detect on it, printing the score of each segment.")
    p.add_argument("--engine", default=str(BUNDLED), help="model to run (default: the bundled "
                   "runtime/assets/jrc_edge_detect.onnx)")
    p.add_argument("--out", help="folder for the clip, JSONL, summary and annotated video (default: a temporary "
                   "folder, removed at the end)")
    p.add_argument("--frames", type=int, default=50, help="frames per segment (default 50, at 25 fps)")
    p.add_argument("--size", default="1280x720", help="clip size WxH (default 1280x720)")
    p.add_argument("--save", action="store_true", help="also write the annotated video (with --out)")
    p.add_argument("--videos", action="store_true", help=f"also write sample training videos (with --out): "
                   f"OUT/videos/real/astronaut_1..{VIDEOS}.mp4 and, the same footage with the face manipulated, "
                   f"OUT/videos/fake/astronaut_1..{VIDEOS}.mp4, --frames frames each; "
                   "for python -m training.extract --videos OUT/videos")
    a, extra = p.parse_known_args(argv)  # anything else goes to runtime.detect (e.g. --provider cuda)
    engine = Path(a.engine)
    if not engine.is_file():
        raise UserError(f"{engine}: the demo model is missing; build the bundled model with the recipe in "
                        "the README (python -m training.train ... then python -m export.onnx), or pass --engine PATH")
    try:
        w, h = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {a.size}: expected WxH, e.g. 1280x720") from None
    if a.frames < 1:
        raise UserError(f"--frames {a.frames}: must be at least 1")
    if a.videos and not a.out:
        raise UserError("--videos: needs --out DIR (the videos are kept there); e.g. --out samples --videos")
    from runtime.backends import open_backend
    from runtime.detect import main as detect

    with open_backend(engine) as b:
        meta = b.meta
    with tempfile.TemporaryDirectory(prefix="jrc-demo-") as tmp:
        out = Path(a.out) if a.out else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        clip, jsonl, summary = out / "clip.mp4", out / "demo.jsonl", out / "demo_summary.json"
        segments = make_clip(clip, a.frames, (w, h))
        if a.videos:
            videos = make_videos(out / "videos", a.frames, (w, h))
            print(f"sample videos: {len(videos) // 2} real in {out / 'videos' / 'real'}, the same footage with the "
                  f"face manipulated in {out / 'videos' / 'fake'} ({w}x{h}, {a.frames} frames each); crops for "
                  f"training: python -m training.extract --videos {out / 'videos'} --out crops")
        args = ["--engine", str(engine), "--source", str(clip), "--jsonl", str(jsonl), "--summary", str(summary),
                *(["--save", str(out / "demo_annotated.mp4")] if a.save and a.out else []), *extra]
        print(f"demo clip: {w}x{h}, {a.frames} real + {a.frames} manipulated frames "
              "(face: scikit-image astronaut, public domain; forgery: training.synthetic.self_blend)")
        print("running: python -m runtime.detect " + " ".join(args), flush=True)
        rc = detect(args)
        if rc != 0 or not jsonl.exists():
            return rc or 1
        threshold = json.loads(summary.read_text())["threshold"]
        print(f"\n{'segment':<12} {'frames':>6} {'with face':>9} {'mean p(fake)':>12}  verdict (threshold {threshold:.2f})")
        scores = segment_scores(jsonl, segments, threshold)
        for s in scores:
            prob = "-" if s["prob"] is None else f"{s['prob']:.3f}"
            print(f"{s['name']:<12} {s['frames']:>6} {s['with_face']:>9} {prob:>12}  {s['verdict']}")
        probs = {s["name"]: s["prob"] for s in scores}
        if None not in probs.values():
            print(f"score gap (manipulated − real): {probs['manipulated'] - probs['real']:+.3f} mean p(fake)")
        from training.report import threshold_rule_line

        rule = threshold_rule_line(meta.training.get("threshold_rule"), threshold)
        if rule:
            print(rule)
        if a.out:
            print(f"\nfiles in {out}/: clip.mp4 (the clip), demo.jsonl, demo_summary.json"
                  + (", demo_annotated.mp4" if a.save else "") + (", videos/" if a.videos else ""))
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
