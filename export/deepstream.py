"""DeepStream nvinfer config for an engine: ``python -m export.deepstream --engine detect.fp16.engine``.

nvinfer computes ``y = net-scale-factor · (x − offsets[c])`` on 0..255 pixels: per-channel
offsets but ONE scale for all channels, while the model was trained with
``(x/255 − mean[c]) / std[c]``. So: offsets = 255·mean, and

- equal std over channels (Xception's 0.5): net-scale-factor = 1/(255·std), exact;
- per-channel std (ImageNet's): the single scale 1/(255·σ) with σ = (min std + max std)/2, which
  keeps the worst channel's scale error smallest (ImageNet: ±1.1%); the config states the error.
  For exact preprocessing, ``--fold-std`` writes an ONNX whose first op multiplies channel c by
  σ/std[c] (and whose metadata says std = σ): build the engine from that ONNX and the single
  scale is exact.

nvinfer resolves relative paths in the config against the config file's folder, so the engine and
ONNX paths are written relative to where the config is written (``--out`` anywhere works). A DLA
engine (sidecar ``dla_core``) gets ``enable-dla=1`` and ``use-dla-core=N``: nvinfer rebuilding from
the ONNX then builds for that DLA core, not the GPU.

The engine runs as a secondary classifier on detected faces (process-mode 2). The model's output
is a logit, not a probability, so the config uses ``network-type=100`` with
``output-tensor-meta=1``: the application reads ``logit`` from the tensor meta and applies
sigmoid and the threshold from the metadata (written in the config as a comment).

When the plan does not load (another JetPack, GPU or TensorRT), nvinfer rebuilds it from
``onnx-file``: the ONNX TensorRT actually parsed (sidecar ``built_from``: on strongly typed releases
the FP16 or fp16 Q/DQ copy, not the fp32 source). nvinfer sets INT8 only with an ``int8-calib-file``
("INT8 calibration file not specified. Trying FP16 mode."), so an engine built with the calibrator
gets its calibration cache there.

Crops: nvinfer crops a secondary model's input from the detector's box as it is, while the model was
trained on the square of (1 + 2·margin)·max(w, h) around it (:func:`runtime.preprocess.crop_face`).
No nvinfer key enlarges object boxes (``input-object-min-width/height`` filter them,
``crop-objects-to-roi-boundary`` clips them, ``maintain-aspect-ratio`` / ``symmetric-padding``
letterbox them), so the application must enlarge each face box to that square before this nvinfer
(a probe on the detector's src pad); with that and bilinear scaling (written here) the crops match
training (``python -m benchmarks.deepstream_crops`` measures both on real faces with the model).
Landmark-aligned models (``face_align: landmarks``) need a warp nvinfer cannot do: refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from runtime.errors import EXIT_USAGE, Parser, UserError, run_cli
from runtime.fileio import write_atomic
from runtime.meta import Meta, read_sidecar

PROG = "export.deepstream"
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}
COLOR_FORMAT = {"RGB": 0, "BGR": 1}


def scale_and_offsets(meta: Meta) -> tuple[float, list[float], float, float]:
    """(net-scale-factor, offsets, σ used, worst per-channel relative scale error)."""
    lo, hi = min(meta.std), max(meta.std)
    sigma = (lo + hi) / 2.0
    error = max(abs(sigma / s - 1.0) for s in meta.std)
    return 1.0 / (255.0 * sigma), [255.0 * m for m in meta.mean], sigma, error


def config_path(target: Path, config: Path) -> str:
    """``target`` as nvinfer should find it from ``config``: relative to the config's folder."""
    rel = os.path.relpath(Path(target).resolve(), Path(config).resolve().parent)
    return Path(rel).as_posix()


def make_config(engine: Path, meta: Meta, batch: int, gpu_id: int = 0, onnx: Path | None = None,
                dla_core: int | None = None, config: Path | None = None, calib_file: Path | None = None,
                int8_mode: str | None = None) -> str:
    """The [property] section nvinfer reads; paths relative to ``config`` (default: beside the engine)."""
    config = config or engine.with_name(engine.stem + ".nvinfer.txt")
    scale, offsets, sigma, error = scale_and_offsets(meta)
    s, m = meta.input_size, meta.face_margin
    # nvinfer orders offsets as the model's channel order (model-color-format)
    lines = [
        f"# JRC {meta.encoder} {meta.graph} graph, {meta.precision}, input {s}x{s} {meta.color};",
        "# output 'logit': probability of fake = sigmoid(logit); "
        f"flag a face when it exceeds {meta.threshold:g} (the model's threshold).",
        f"# normalisation: (x/255 - mean)/std with mean={list(meta.mean)} std={list(meta.std)};",
        (f"# nvinfer has one scale for all channels: std {sigma:.6g} is used, per-channel scale error up to "
         f"{100 * error:.2f}% (export.deepstream --fold-std makes it exact)." if error > 1e-6 else
         "# the std is equal over channels, so nvinfer's single scale is exact."),
        f"# CROPS: the model was trained on the square (1 + 2*{m:g})*max(w, h) around each face box (runtime/",
        f"# preprocess.py square_box); nvinfer crops the box itself, where the face is {1 + 2 * m:g}x larger than",
        "# in training. No key here can enlarge object boxes: enlarge each face box to that square before this",
        "# nvinfer (a probe on the detector's src pad setting rect_params), or the verdicts drift (measure it:",
        "# python -m benchmarks.deepstream_crops --onnx MODEL.onnx). Bilinear scaling on the GPU (below) is",
        "# what matches training's resize.",
    ]
    if meta.precision == "int8" and calib_file is None:
        lines += ["# INT8 from a Q/DQ ONNX: nvinfer enables INT8 only with an int8-calib-file; if it must rebuild",
                  "# this engine from onnx-file it falls back to FP16 flags: rebuild with the sidecar's",
                  "# build_command instead." if int8_mode == "qdq" else
                  "# no calibration cache was found for this engine; nvinfer would rebuild it in FP16."]
    lines += ["[property]", f"gpu-id={gpu_id}", f"model-engine-file={config_path(engine, config)}"]
    if onnx is not None:
        lines.append(f"onnx-file={config_path(onnx, config)}")
    if calib_file is not None:
        lines.append(f"int8-calib-file={config_path(calib_file, config)}")
    if dla_core is not None:
        lines += ["enable-dla=1", f"use-dla-core={int(dla_core)}"]
    lines += [
        f"batch-size={batch}",
        f"network-mode={NETWORK_MODE[meta.precision]}",
        f"net-scale-factor={scale:.10g}",
        "offsets=" + ";".join(f"{o:.6g}" for o in offsets),
        f"model-color-format={COLOR_FORMAT[meta.color]}",
        f"infer-dims=3;{s};{s}",
        f"output-blob-names={';'.join(meta.outputs[:1])}",
        "network-type=100",
        "output-tensor-meta=1",
        "process-mode=2",
        "maintain-aspect-ratio=0",
        "scaling-filter=1",
        "scaling-compute-hw=1",
        "gie-unique-id=2",
        "operate-on-gie-id=1",
        "classifier-async-mode=0",
    ]
    return "\n".join(lines) + "\n"


# nvinfer's scaling-filter values (NvBufSurfTransform_Inter) that the crop replay below knows
SCALING_FILTERS = {0: "nearest", 1: "bilinear"}


def nvinfer_crop(frame: Any, box: Any, size: int, maintain_aspect: bool = False, symmetric: bool = False,
                 scaling_filter: int = 0) -> Any:
    """The crop nvinfer feeds a secondary model for an object ``box`` (x, y, w, h): the box itself,
    clipped to the frame, scaled to ``size``×``size`` with ``scaling-filter`` (0, nvinfer's default:
    nearest; 1: bilinear); with ``maintain-aspect-ratio=1`` scaled by the longer side and padded with
    black, at the top left or, with ``symmetric-padding=1``, centred. uint8 BGR like
    :func:`runtime.preprocess.crop_face`, which is what the model was trained on."""
    import cv2
    import numpy as np

    h, w = frame.shape[:2]
    x, y, bw, bh = (int(round(float(v))) for v in box[:4])
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + bw), min(h, y + bh)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"object box {tuple(box)} lies outside the {w}x{h} frame")
    crop = frame[y0:y1, x0:x1]
    interp = cv2.INTER_NEAREST if scaling_filter == 0 else cv2.INTER_LINEAR
    if not maintain_aspect:
        return cv2.resize(crop, (size, size), interpolation=interp)
    scale = size / max(crop.shape[:2])
    nw, nh = max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))
    out = np.zeros((size, size, 3), np.uint8)
    ox, oy = ((size - nw) // 2, (size - nh) // 2) if symmetric else (0, 0)
    out[oy:oy + nh, ox:ox + nw] = cv2.resize(crop, (nw, nh), interpolation=interp)
    return out


def fold_std(onnx: str | Path, out: str | Path, ready: Callable[[], None] | None = None) -> Path:
    """An ONNX whose per-channel std is folded into the graph, so nvinfer's one scale is exact;
    ``ready`` is called once ``onnx`` passed its checks, before the write."""
    import numpy as np
    from onnx import helper, numpy_helper

    from export.onnx_io import load_onnx, read_meta, save_onnx, set_meta

    src = Path(onnx)
    model = load_onnx(src)
    meta = read_meta(model, str(src))
    if meta is None:
        raise UserError(f"{src}: no jrc metadata; export it with python -m export.onnx")
    _, _, sigma, _ = scale_and_offsets(meta)
    g = model.graph
    name = meta.input_name
    factor = numpy_helper.from_array(
        (sigma / np.asarray(meta.std, dtype=np.float32)).reshape(1, 3, 1, 1).astype(np.float32),
        f"{name}__std_fold")
    scaled = f"{name}__std_folded"
    for n in g.node:
        for i, x in enumerate(n.input):
            if x == name:
                n.input[i] = scaled
    g.initializer.append(factor)
    g.node.insert(0, helper.make_node("Mul", [name, factor.name], [scaled], name="std_fold"))
    set_meta(model, meta.with_(std=(sigma, sigma, sigma)))
    if ready is not None:
        ready()
    return save_onnx(model, out)


def source_onnx(engine: Path, raw: dict) -> Path | None:
    """The ONNX nvinfer should rebuild from: the one TensorRT parsed (``built_from``: the FP16 or Q/DQ
    copy on strongly typed releases), else the source given to export.engine (``onnx``). Recorded as
    given on export.engine's command line (relative to where that ran): tried as is, then beside
    the engine."""
    name = raw.get("built_from") or raw.get("onnx")
    return _beside(engine, name, "the engine's ONNX", "onnx-file")


def calibration_file(engine: Path, raw: dict) -> Path | None:
    """The calibration cache an engine built with the calibrator used (nvinfer's int8-calib-file)."""
    if raw.get("int8_mode") != "calibrator":
        return None
    return _beside(engine, raw.get("calib_cache") or str(engine.with_suffix(".calib")), "its calibration cache",
                   "int8-calib-file")


def _beside(engine: Path, name: Any, what: str, key: str) -> Path | None:
    if not isinstance(name, str) or not name:
        return None
    given = Path(name)
    for candidate in (given, engine.parent / given.name):
        if candidate.is_file():
            return candidate
    print(f"{PROG}: note: {name} ({what}) was not found; {key} assumes it beside the engine")
    return engine.parent / given.name


def export_config(engine: str | Path, out: str | Path | None = None, batch: int | None = None,
                  gpu_id: int = 0) -> Path:
    """Write the nvinfer config beside the engine (or at ``out``)."""
    engine = Path(engine)
    meta, raw = read_sidecar(engine)
    if meta.face_align != "box":
        raise UserError(f"{engine}: the model was trained on faces aligned by their landmarks ({meta.face_align}), "
                        "a warp nvinfer cannot make (it only crops and scales object boxes); serve it with "
                        "runtime.detect, or train a box-crop model (--face-align box) for DeepStream")
    prof = meta.profile or {}
    limit = int(prof.get("max") or 1)
    batch = batch or limit
    if not 1 <= batch <= limit:
        raise UserError(f"--batch {batch}: the engine's profile allows 1..{limit}", EXIT_USAGE)
    if gpu_id < 0:
        raise UserError(f"--gpu-id {gpu_id}: expected a GPU number (0 for the first)", EXIT_USAGE)
    path = Path(out) if out else engine.with_name(engine.stem + ".nvinfer.txt")
    onnx = source_onnx(engine, raw)
    calib = calibration_file(engine, raw)
    say_replacing = check_output(path, [("--engine", engine),
                                        ("--engine's sidecar", engine.with_name(engine.name + ".json")),
                                        ("the engine's ONNX", onnx), ("its calibration cache", calib)])
    dla = raw.get("dla_core")
    text = make_config(engine, meta, batch, gpu_id, onnx, dla if isinstance(dla, int) else None, path, calib,
                       raw.get("int8_mode"))
    say_replacing()  # the engine, its sidecar and the config passed: right before the write
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)
    print(f"{PROG}: wrote {path}")
    return path


def check_output(out: Path, inputs: list[tuple[str, Path | None]]) -> Callable[[], None]:
    """Before writing: ``out`` is none of ``inputs`` (exit 2: it would destroy one) and can be written as
    a file. Returns the function that says an earlier one is replaced, to call once the inputs passed."""
    from runtime.fileio import same_file
    from training.outputs import note_replacing, output_file

    for flag, given in inputs:
        if given is not None and given.exists() and same_file(out, given):
            raise UserError(f"--out {out}: the same file as {flag} {given}, an input; writing it would destroy "
                            "it, choose another --out", EXIT_USAGE)
    output_file(out, "--out")
    return note_replacing(PROG, out, " (an earlier result)", say=False)


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog=PROG, description="Write a DeepStream nvinfer config for an engine "
                                 "built by export.engine, or fold the per-channel std into an ONNX.")
    ap.add_argument("--engine", type=Path, help="detect.<precision>.engine (with its .json sidecar)")
    ap.add_argument("--out", type=Path, help="config file (default: <engine stem>.nvinfer.txt) or, with "
                    "--fold-std, the ONNX to write")
    ap.add_argument("--batch", type=int, help="batch-size (default: the engine's max batch)")
    ap.add_argument("--gpu-id", type=int, default=0)
    ap.add_argument("--fold-std", type=Path, metavar="ONNX", help="write a copy of this ONNX with the "
                    "per-channel std folded in; build the engine from it for exact nvinfer scaling")
    a = ap.parse_args(argv)
    if a.fold_std:
        out = a.out or a.fold_std.with_name(a.fold_std.stem + ".ds.onnx")
        say_replacing = check_output(out, [("--fold-std", a.fold_std)])
        print(f"{PROG}: wrote {fold_std(a.fold_std, out, ready=say_replacing)}")
        return 0
    if not a.engine:
        raise UserError("pass --engine ENGINE (or --fold-std ONNX)", EXIT_USAGE)
    export_config(a.engine, a.out, a.batch, a.gpu_id)
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
