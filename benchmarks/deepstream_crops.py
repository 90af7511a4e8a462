"""``python -m benchmarks.deepstream_crops``: how far the crops DeepStream's nvinfer gives a secondary
classifier are from the crops the model was trained on, measured on real faces with the model itself.

The model was trained on :func:`runtime.preprocess.crop_face`: a square of (1 + 2·margin)·max(w, h)
around the face box, border replicated outside the frame. nvinfer crops the detector's box as it is
(no margin: its config has no key that enlarges object boxes; ``input-object-min-width/height``
filter, ``crop-objects-to-roi-boundary`` clips, ``maintain-aspect-ratio`` / ``symmetric-padding``
letterbox) and scales it to the network size (:func:`export.deepstream.nvinfer_crop`). Each variant
below runs the same faces through the same model (ONNX Runtime on the CPU) and is compared with the
training crop: pixels (mean |Δ| on 0..255) and the model's probability of fake (median, 95th
percentile and largest |Δp|, decisions flipped at the model's threshold).

Faces: scikit-image's astronaut and LFW's 100 faces (upscaled ×4, as ``training.sample_faces``
does), each with the runtime's own face detector; no generated content.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from runtime.errors import Parser, UserError, run_cli

PROG = "benchmarks.deepstream_crops"
DEFAULT_ONNX = Path(__file__).resolve().parent.parent / "runtime" / "assets" / "jrc_edge_detect.onnx"


def variants(margin: float) -> dict[str, Callable[[np.ndarray, Any, int], np.ndarray]]:
    """name -> crop(frame, box, size): nvinfer's settings, and the fix that has to happen upstream."""
    from export.deepstream import nvinfer_crop
    from runtime.preprocess import square_box

    def enlarged(frame: np.ndarray, box: Any, size: int) -> np.ndarray:
        x0, y0, x1, y1 = square_box(box, margin)
        return nvinfer_crop(frame, (x0, y0, x1 - x0, y1 - y0), size, scaling_filter=1)

    return {
        "nvinfer defaults (box stretched, nearest)": lambda f, b, s: nvinfer_crop(f, b, s),
        "box stretched, scaling-filter=1": lambda f, b, s: nvinfer_crop(f, b, s, scaling_filter=1),
        "box, maintain-aspect-ratio=1 symmetric-padding=1": lambda f, b, s: nvinfer_crop(f, b, s, True, True, 1),
        "detector box enlarged to the training square first": enlarged,
    }


def real_faces(lfw: int) -> list[tuple[str, np.ndarray, Any]]:
    """(id, frame, the runtime detector's first box) for the astronaut and ``lfw`` LFW faces."""
    from benchmarks.faces import photo
    from runtime.faces import make_detector
    from training.sample_faces import lfw_frame, lfw_images

    out = []
    frames = [("astronaut", photo("astronaut"), {})]
    frames += [(f"lfw-{i:03d}", lfw_frame(img), {"min_face": 20}) for i, img in enumerate(lfw_images()[:lfw])]
    detectors: dict[Any, Any] = {}
    for fid, frame, opts in frames:
        key = tuple(sorted(opts.items()))
        det = detectors.setdefault(key, make_detector(**opts))
        boxes = det.detect(frame)
        if boxes:
            out.append((fid, frame, boxes[0]))
    return out


def measure(onnx: Path, lfw: int = 100) -> dict[str, Any]:
    from runtime.backends import open_backend
    from runtime.preprocess import crop_face, to_input

    with open_backend(str(onnx)) as model:
        meta = model.meta
        if meta.face_align != "box":
            raise UserError(f"{onnx}: trained on landmark-aligned crops, which nvinfer cannot make at all; "
                            "export.deepstream refuses such models")
        faces = real_faces(lfw)
        if not faces:
            raise UserError("the face detector found no face in the sample images")
        s, m = meta.input_size, meta.face_margin

        def probs(crops: list[np.ndarray]) -> np.ndarray:
            out = []
            for i in range(0, len(crops), model.max_batch):
                logit = model.infer(to_input(np.stack(crops[i:i + model.max_batch]), meta))["logit"][:, 0]
                out.append(1.0 / (1.0 + np.exp(-logit.astype(np.float64))))
            return np.concatenate(out)

        train = [crop_face(f, b, m, s) for _, f, b in faces]
        p_train = probs(train)
        rows = []
        for name, crop in variants(m).items():
            crops = [crop(f, b, s) for _, f, b in faces]
            dp = np.abs(probs(crops) - p_train)
            flips = int(np.sum((probs(crops) >= meta.threshold) != (p_train >= meta.threshold)))
            pixels = float(np.mean([np.abs(c.astype(np.int16) - t).mean() for c, t in zip(crops, train)]))
            rows.append({"variant": name, "pixel_mad": round(pixels, 2), "dp_median": float(np.median(dp)),
                         "dp_p95": float(np.percentile(dp, 95)), "dp_max": float(dp.max()), "flips": flips})
    return {"onnx": str(onnx), "faces": len(faces), "margin": m, "input_size": s, "threshold": meta.threshold,
            "face_scale_in_nvinfer_crop": round(1.0 + 2.0 * m, 3), "p_train_mean": float(p_train.mean()),
            "rows": rows}


def render(result: dict[str, Any]) -> str:
    from benchmarks.report import table

    head = (f"{result['faces']} real faces, margin {result['margin']:g} (nvinfer's crop shows the face "
            f"{result['face_scale_in_nvinfer_crop']:g}× larger than training did), {result['input_size']} px, "
            f"threshold {result['threshold']:g}")
    cols = [("variant", "crop given to the model"), ("pixel_mad", "mean |Δpixel|"), ("dp_median", "median |Δp|"),
            ("dp_p95", "p95 |Δp|"), ("dp_max", "max |Δp|"), ("flips", "flips")]
    return head + "\n" + table(result["rows"], cols, digits=3)


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog=PROG, description="Measure how far nvinfer's secondary-classifier crops "
                                 "are from the training crops, with the model itself, on real faces.")
    ap.add_argument("--onnx", type=Path, default=DEFAULT_ONNX, help="detect ONNX (default: the bundled model)")
    ap.add_argument("--lfw", type=int, default=100, help="LFW faces to use besides the astronaut (0..100)")
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args(argv)
    from benchmarks.report import check_writable

    check_writable(a.json, "--json", [("--onnx", str(a.onnx))])
    if not 0 <= a.lfw <= 100:
        raise UserError(f"--lfw {a.lfw}: expected 0..100")
    if not a.onnx.is_file():
        raise UserError(f"{a.onnx}: not found; pass a detect ONNX from python -m export.onnx")
    result = measure(a.onnx, a.lfw)
    print(render(result))
    if a.json:
        from benchmarks.report import envelope, write_json

        write_json(a.json, {**envelope(PROG, argv, {"onnx": str(a.onnx), "lfw": a.lfw}), **result})
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
