"""Explicit (Q/DQ) INT8 quantization with ONNX Runtime's static quantizer, per deployment target.

- ``trt``: what TensorRT's explicit-precision path accepts: signed INT8 activations and weights,
  symmetric (every zero point 0), per-channel weight scales, biases left in float (TensorRT has
  no INT32 bias dequantization). Q/DQ sit on the inputs of the weighted layers and of residual
  Adds, not on their outputs (TensorRT's placement advice: it fuses the next layer's quantize into
  the producer itself), and activations such as Relu stay explicit for TensorRT to fuse.
- ``cpu``: what ONNX Runtime's CPU kernels run best, written by :mod:`calibration.cpu_graph`
  (not by ONNX Runtime's generic quantizer): unsigned (asymmetric) activations, signed symmetric
  per-channel weights, 7-bit weights (``reduce_range``) on CPUs without VNNI, whose 8-bit dot
  products can saturate; activations folded into the quantization, hard-swish in two integer
  passes, depthwise layers widened to a channel count the fast kernel takes
  (:mod:`calibration.channel_pad`), and the layers that gain nothing in int8 on this CPU left in
  float (:mod:`calibration.cpu_plan`).

The model is first run through ``quant_pre_process`` (shape inference and folding, e.g. BN into
Conv) and its nodes given unique names (:func:`calibration.cpu_graph.named`), so node names used by
``keep_float`` refer to that preprocessed graph.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from runtime import cpu
from runtime.errors import UserError
from runtime.meta import Meta, sha256_file

TARGETS = ("trt", "cpu")
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
TRT_OPS = WEIGHTED_OPS + ("Add",)
MIN_ORT = (1, 17)  # TensorQuantOverrides with rmin/rmax


def _tools_without_torch() -> None:
    """Let ``onnxruntime.tools.symbolic_shape_infer`` load without its package's ``__init__``.

    That ``__init__`` imports PyTorch whenever it is installed (for a PyTorch-export helper that
    quantization never uses): 2-3 s of CPU in every quantization run, most of the pass's cost on a
    small model. The package is registered un-executed, so its modules import alone and the pass is
    unchanged (tests/calibration/test_qdq.py compares the output byte for byte). A process that has
    already imported torch or the package is left as it is."""
    if "onnxruntime.tools" in sys.modules or "torch" in sys.modules:
        return
    spec = importlib.util.find_spec("onnxruntime.tools")
    if spec is not None and spec.submodule_search_locations:
        sys.modules["onnxruntime.tools"] = importlib.util.module_from_spec(spec)


def preprocess(src: Path, dst: Path) -> Path:
    """ONNX Runtime's pre-quantization pass: shape inference + graph optimisation (BN folding)."""
    _tools_without_torch()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    import onnx

    from calibration.cpu_graph import named

    onnx.save(named(onnx.load(str(dst))), str(dst))
    return dst


def weighted_nodes(model: Any) -> list[str]:
    """Names of the weighted layers (the ones quantization matters most for), in graph order."""
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in inits]


def first_and_head(model: Any) -> dict[str, list[str]]:
    """``first``: the weighted layers reading the graph input; ``head``: the weighted layers after
    the last convolution (the classifier). Found from the graph, not from name conventions."""
    graph = model.graph
    inputs = {i.name for i in graph.input} - {i.name for i in graph.initializer}
    weighted = set(weighted_nodes(model))
    nodes = [n for n in graph.node if n.name in weighted]  # graph order is topological
    first = [n.name for n in nodes if any(t in inputs for t in n.input)] or [n.name for n in nodes[:1]]
    convs = [i for i, n in enumerate(nodes) if n.op_type in ("Conv", "ConvTranspose")]
    after = nodes[convs[-1] + 1:] if convs else nodes
    head = [n.name for n in after] or [n.name for n in nodes[-1:]]
    return {"first": first, "head": head}


def resolve_keep_float(model: Any, items: Iterable[str], source: str) -> list[str]:
    """``first``/``head`` aliases and explicit node names → node names (unknown names are an error)."""
    names = {n.name for n in model.graph.node}
    alias = first_and_head(model)
    out: list[str] = []
    for item in (s.strip() for s in items):
        if not item:
            continue
        if item in alias:
            out += alias[item]
        elif item in names:
            out.append(item)
        else:
            known = ", ".join(weighted_nodes(model)[:8])
            raise UserError(f"--keep-float {item!r}: no such node in {source} (after quant_pre_process); "
                            f"use first, head, auto or node names such as {known}")
    return list(dict.fromkeys(out))


def config(target: str, vnni: bool | None = None) -> dict[str, Any]:
    """quantize_static keyword arguments for a target (see the module docstring for why).

    Activation ranges come from :mod:`calibration.ranges` as TensorQuantOverrides, so the
    quantizer's own calibration (min-max over one batch) is only a formality.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    if target not in TARGETS:
        raise UserError(f"--target {target!r}: expected one of {', '.join(TARGETS)}")
    extra: dict[str, Any] = {"WeightSymmetric": True}
    common = dict(quant_format=QuantFormat.QDQ, weight_type=QuantType.QInt8, per_channel=True,
                  calibrate_method=CalibrationMethod.MinMax)
    if target == "trt":
        extra.update(ActivationSymmetric=True, QuantizeBias=False, QDQKeepRemovableActivations=True,
                     OpTypesToExcludeOutputQuantization=list(TRT_OPS))
        return dict(common, activation_type=QuantType.QInt8, reduce_range=False,
                    op_types_to_quantize=list(TRT_OPS), extra_options=extra)
    vnni = cpu.has_vnni() if vnni is None else vnni
    return dict(common, activation_type=QuantType.QUInt8, reduce_range=not vnni, extra_options=extra)


class _Reader:
    """CalibrationDataReader over a CalibrationSet (defined lazily: onnxruntime is optional)."""

    @staticmethod
    def make(calib: Any, input_name: str, batch_size: int) -> Any:
        from onnxruntime.quantization import CalibrationDataReader

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.rewind()

            def get_next(self) -> dict[str, Any] | None:
                batch = next(self._it, None)
                return None if batch is None else {input_name: batch}

            def rewind(self) -> None:
                self._it = iter(calib.batches(batch_size))

        return Reader()


def quantize(prepped: Path, out: Path, calib: Any, target: str, tensor_ranges: dict[str, tuple[float, float]],
             keep_float: Sequence[str] = (), vnni: bool | None = None, generic: bool = False) -> dict[str, Any]:
    """Quantize a preprocessed ONNX model to ``out`` with the given activation ranges
    (:func:`calibration.ranges.ranges`); returns what was done (for metadata and the report).
    ``generic``: the cpu target through ONNX Runtime's own quantizer (a reference to compare with)."""
    import logging

    import numpy as np
    import onnx
    import onnxruntime
    from onnxruntime.quantization import quantize_static

    from training.calibration_set import CalibrationSet

    if tuple(int(p) for p in onnxruntime.__version__.split(".")[:2]) < MIN_ORT:
        raise UserError(f"onnxruntime {onnxruntime.__version__} is too old for calibration (its quantizer needs "
                        f"TensorQuantOverrides, {'.'.join(map(str, MIN_ORT))}+); pip install -U onnxruntime")

    model = onnx.load(str(prepped))
    if target == "cpu" and not generic:
        return quantize_cpu(model, out, calib, tensor_ranges, keep_float, vnni)
    kwargs = config(target, vnni)
    kwargs["extra_options"]["TensorQuantOverrides"] = {
        name: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for name, (lo, hi) in tensor_ranges.items()}
    one = CalibrationSet(calib.crops[:1], None, calib.meta, calib.source)
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # ORT's info chatter
    # No chdir: relative paths stay the user's. ORT >= MIN_ORT writes its augmented model into its own
    # tempfile.TemporaryDirectory, never into the working directory.
    try:
        with contextlib.redirect_stdout(sys.stderr):
            quantize_static(str(Path(prepped).resolve()), str(Path(out).resolve()),
                            _Reader.make(one, calib.meta.input_name, 1), nodes_to_exclude=list(keep_float), **kwargs)
    except (ValueError, RuntimeError, KeyError) as e:
        raise UserError(f"{prepped}: ONNX Runtime could not quantize the model ({str(e).splitlines()[0][:200]})"
                        "; check that it is an exported JRC detect graph") from None
    return {"target": target, "keep_float": list(keep_float),
            "activation_type": "int8" if target == "trt" else "uint8", "weight_type": "int8",
            "per_channel": True, "reduce_range": bool(kwargs["reduce_range"]),
            "symmetric_activations": target == "trt", "calibration": calib.cache_key(),
            "quantizer": "onnxruntime.quantize_static",
            "calibration_source": calib.source, "weighted_layers": len(weighted_nodes(model))}


def cpu_model(model: Any, tensor_ranges: dict[str, tuple[float, float]], keep_float: Sequence[str] = (),
              vnni: bool | None = None) -> tuple[Any, dict[str, Any]]:
    """The CPU Q/DQ model of a preprocessed float model (depthwise layers widened first), and a record
    of what was done (int8 and float layers, folded activations, widened layers)."""
    from calibration import channel_pad, cpu_graph

    opset = next((o.version for o in model.opset_import if (o.domain or "") in ("", "ai.onnx")), 0)
    if opset < 13:
        raise UserError(f"the model uses ONNX opset {opset}; per-channel Q/DQ needs opset 13 or newer: "
                        "re-export it with python -m export.onnx (opset 17)")
    vnni = cpu.has_vnni() if vnni is None else vnni
    padded, widened = channel_pad.pad_depthwise(model)
    try:
        qmodel, plan = cpu_graph.build(padded, tensor_ranges, keep_float, reduce_range=not vnni)
    except KeyError as e:
        raise UserError(f"{e.args[0]}: the calibration faces never produced a finite value there; calibrate on "
                        "more faces (--calib-size) or keep that layer in float (--keep-float)") from None
    drop_unused_opsets(qmodel)
    return qmodel, {"reduce_range": not vnni, "graph": plan.to_dict(), "widened_depthwise": widened}


def quantize_cpu(model: Any, out: Path, calib: Any, tensor_ranges: dict[str, tuple[float, float]],
                 keep_float: Sequence[str] = (), vnni: bool | None = None) -> dict[str, Any]:
    """Write the CPU Q/DQ model of ``model`` (preprocessed) to ``out``; what was done, for the report."""
    import onnx

    qmodel, done = cpu_model(model, tensor_ranges, keep_float, vnni)
    onnx.save(qmodel, str(out))
    return {"target": "cpu", "keep_float": list(keep_float), "activation_type": "uint8", "weight_type": "int8",
            "per_channel": True, "reduce_range": done["reduce_range"], "symmetric_activations": False,
            "calibration": calib.cache_key(), "calibration_source": calib.source, "quantizer": "calibration.cpu_graph",
            "weighted_layers": len(weighted_nodes(model)), "int8_layers": done["graph"]["int8_layers"],
            "float_nodes": len(done["graph"]["float_layers"]), "folded": done["graph"]["absorbed"],
            "hard_swish": done["graph"]["hard_swish"], "widened_depthwise": done["widened_depthwise"]}


def drop_unused_opsets(model: Any) -> None:
    """Drop the opset imports of domains no node uses (ONNX Runtime's optimizer adds its own; other
    parsers such as TensorRT's need not see them)."""
    used = {n.domain or "" for n in model.graph.node}
    keep_ops = [o for o in model.opset_import if (o.domain or "") in used | {""}]
    del model.opset_import[:]
    model.opset_import.extend(keep_ops)


def stamp(out: Path, meta: Meta, source: Path, info: dict[str, Any]) -> Meta:
    """Finish an INT8 artifact in place: metadata with precision int8 and the hash of its fp32
    source, the quantization record ``info``, no unused opset imports; checked, then saved atomically."""
    import onnx

    from export.onnx_io import load_onnx, save_onnx, set_meta

    qmeta = meta.with_(precision="int8", source_sha256=sha256_file(source))
    model = load_onnx(out)
    drop_unused_opsets(model)
    set_meta(model, qmeta, quant=info)
    onnx.checker.check_model(model, full_check=True)
    save_onnx(model, out)
    return qmeta
