"""Tiny models for tests: ONNX graphs with known outputs, and checkpoints with realistic statistics.

- :func:`make_onnx`: logit = 4 × the mean of the normalised input, so with mean = std = 0.5 a uniform
  crop of grey level v scores logit 4·(2v/255 − 1): white → p ≈ 0.982, black → p ≈ 0.018
  (:func:`expected_prob`); the full graph adds recon = input / 2.
- :func:`tiny_onnx`: a small real network (Conv → ReLU → GAP → Gemm [+ recon], optional Q/DQ) for the
  export and TensorRT tests.
- :func:`make_checkpoint`: a JRC checkpoint with random BN statistics and logits of a few units.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from runtime.meta import ONNX_KEY, Meta

SIZE = 32


def tiny_meta(full: bool = False, size: int = SIZE, **changes) -> Meta:
    m = Meta(encoder="edge", input_size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), threshold=0.5,
             face_margin=0.0, graph="detect", outputs=("logit",))
    m = m.for_graph("full") if full else m
    return m.with_(**changes) if changes else m


def make_onnx(path: Path, *, full: bool = False, meta: Meta | None | bool = True, size: int = SIZE,
              batch: int | str = "N", poison_recon: bool = False, meta_text: str | None = None) -> Path:
    """A tiny model: logit = 4·mean(input); recon = input/2 (or a node that fails when run)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])
    outs = [helper.make_tensor_value_info("logit", TensorProto.FLOAT, [batch, 1])]
    inits = [numpy_helper.from_array(np.array([4.0], np.float32), "k"),
             numpy_helper.from_array(np.array([-1, 1], np.int64), "shape"),
             numpy_helper.from_array(np.array([0.5], np.float32), "half"),
             numpy_helper.from_array(np.array([-1, 7, 11, 13], np.int64), "bad_shape")]
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Reshape", ["m", "shape"], ["m2"]),
             helper.make_node("Mul", ["m2", "k"], ["logit"])]
    if full:
        outs.append(helper.make_tensor_value_info("recon", TensorProto.FLOAT, None))
        if poison_recon:  # 3·32·32·N elements never fit 7·11·13 blocks: fails if ever run
            nodes.append(helper.make_node("Reshape", ["input", "bad_shape"], ["recon"]))
        else:
            nodes.append(helper.make_node("Mul", ["input", "half"], ["recon"]))
    graph = helper.make_graph(nodes, "tiny", [x], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if meta_text is not None:
        helper.set_model_props(model, {ONNX_KEY: meta_text})
    elif meta:
        m = meta if isinstance(meta, Meta) else tiny_meta(full, size)
        helper.set_model_props(model, {ONNX_KEY: m.to_json()})
    onnx.save(model, str(path))
    return Path(path)


def expected_prob(gray: float) -> float:
    return 1.0 / (1.0 + math.exp(-4.0 * (2.0 * gray / 255.0 - 1.0)))


def batch_of(*grays: float, size: int = SIZE) -> np.ndarray:
    return np.stack([np.full((3, size, size), 2.0 * g / 255.0 - 1.0, np.float32) for g in grays])


def tiny_onnx(path: Path, size: int = 32, batch: int | None = None, graph: str = "detect",
              qdq: bool = False, meta: Any = None, io_type: str = "float32") -> Path:
    """A small real ONNX (input N×3×size×size → logit N×1 [, recon]) with jrc metadata.

    ``io_type``: "float32"; "float16" (the whole graph and its inputs/outputs in fp16, as an ONNX
    converted with fp16 I/O); or "uint8" (a uint8 input cast to float: a plan of it has a non-float
    input binding)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from export.onnx_io import set_meta
    from runtime.meta import Meta

    rng = np.random.default_rng(0)
    n = batch if batch else "batch"
    ft = np.float16 if io_type == "float16" else np.float32
    elem = TensorProto.FLOAT16 if io_type == "float16" else TensorProto.FLOAT
    inits = [numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.2).astype(ft), "w1"),
             numpy_helper.from_array(np.full(4, 0.1, ft), "b1"),
             numpy_helper.from_array(rng.standard_normal((1, 4)).astype(ft), "w2"),
             numpy_helper.from_array(np.zeros(1, ft), "b2")]
    nodes, first = [], "input"
    if io_type == "uint8":
        nodes.append(helper.make_node("Cast", ["input"], ["input_f"], to=TensorProto.FLOAT))
        first = "input_f"
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.05, ft), "s"),
                  numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("QuantizeLinear", [first, "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        first = "dq"
    nodes += [helper.make_node("Conv", [first, "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["r"]),
              helper.make_node("GlobalAveragePool", ["r"], ["p"]),
              helper.make_node("Flatten", ["p"], ["f"]),
              helper.make_node("Gemm", ["f", "w2", "b2"], ["logit"], transB=1)]
    outputs = [helper.make_tensor_value_info("logit", elem, [n, 1])]
    if graph == "full":
        inits.append(numpy_helper.from_array(np.eye(3, dtype=ft).reshape(3, 3, 1, 1) * 0.5, "w3"))
        nodes.append(helper.make_node("Conv", ["input_f" if io_type == "uint8" else "input", "w3"], ["recon"]))
        outputs.append(helper.make_tensor_value_info("recon", elem, [n, 3, size, size]))
    in_elem = TensorProto.UINT8 if io_type == "uint8" else elem
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", in_elem, [n, 3, size, size])],
                          outputs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19 if qdq and io_type == "float16" else 17)])
    model.ir_version = 9 if qdq and io_type == "float16" else 8
    meta = meta or Meta(input_size=size, graph=graph, outputs=("logit", "recon") if graph == "full" else ("logit",),
                        precision="fp16" if io_type == "float16" else "fp32")
    set_meta(model, meta)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def make_checkpoint(path: Path, encoder: str, seed: int = 0, style: str | None = None) -> Path:
    """A checkpoint with non-trivial statistics: random BN stats and a head giving logits of a few units,
    so a 1e-4 parity bound is tested on realistic magnitudes rather than on near-zero outputs
    (``style``: the edge encoder's, None for the default)."""
    import torch

    from training.checkpoint import save_checkpoint
    from training.model import build_model, default_meta

    torch.manual_seed(seed)
    meta = default_meta(encoder, style=style)
    model = build_model(meta)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        model.head.fc2.weight.mul_(2.0)
    save_checkpoint(path, model.eval(), meta, epoch=1)
    return path


def make_external_onnx(folder: Path, edit: Any = None) -> Path:
    """:func:`make_onnx` as ``folder/ext.onnx`` with every tensor in ``folder/weights.bin``, then
    ``edit(tensor)`` applied to each initializer's protobuf (to point its external data elsewhere,
    declare hostile offsets, ...)."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    path = make_onnx(folder / "ext.onnx")
    model = onnx.load(str(path))
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        if edit is not None:
            edit(t)
    path.write_bytes(model.SerializeToString())
    return path


def calibrated_edge(root: Path, size: int = 32, seed: int = 0, style: str = "v3") -> dict[str, Any]:
    """A small untrained edge JRC (quarter width, ``style`` v3 or minimal) exported by export.onnx into
    ``root``, preprocessed for quantization, and its activation statistics over 24 random calibration
    crops: what the INT8 tests share (``ranges.ranges(work["stats"], method, …)`` gives the ranges of
    any method)."""
    import onnx
    import torch

    from calibration import qdq, ranges
    from export.onnx import export_checkpoint
    from export.onnx_io import file_meta
    from training.calibration_set import CalibrationSet
    from training.checkpoint import save_checkpoint
    from training.model import JRC, default_meta

    torch.manual_seed(seed)
    base = default_meta("edge", size)
    meta = base.with_(model={**base.model, "width": 0.25, "encoder_channels": 32, "latent_channels": 16,
                             "hidden": 16, "style": style})
    ckpt = save_checkpoint(root / "m.pt", JRC("edge", size, **meta.model).eval(), meta)
    export_checkpoint(ckpt, root)
    src = root / "detect.onnx"
    meta = file_meta(src)
    rng = np.random.default_rng(0)
    calib = CalibrationSet(rng.integers(0, 256, (24, size, size, 3), dtype=np.uint8), None, meta, "random")
    prep = qdq.preprocess(src, root / "prep.onnx")
    prepped = onnx.load(str(prep))
    stats = ranges.collect(prep, calib, batch_size=8)
    return {"root": root, "src": src, "meta": meta, "calib": calib, "prep": prep, "prepped": prepped,
            "stats": stats, "full_range": ranges.full_range_tensors(prepped)}
