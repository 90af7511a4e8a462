"""FP16 copy of an ONNX model with fp32 inputs and outputs: ``python -m export.fp16 --onnx detect.onnx``.

TensorRT 11 has no FP16 builder flag: a network is built with the types its ONNX carries
(strongly typed), so FP16 must be in the graph. This converts weights and arithmetic to float16
and keeps the interface float32 (a Cast after each input and before each output), so the
runtime feeds and reads the same arrays as for the fp32 model.

Kept in fp32: the inputs ONNX defines as float32-only (Resize/Upsample ``scales``), and any op
type named in ``keep_fp32`` (wrapped in Casts). Float attributes (alpha, epsilon...) are fp32 by
the ONNX spec and stay so. Written without onnxconverter-common (not a dependency here).

A Q/DQ (INT8) graph converts the same way: its scales become fp16 (integer weights and zero points
stay int8), so what Q/DQ does not quantize runs in fp16, as NVIDIA's ModelOpt does for strongly
typed INT8 builds (``high_precision_dtype`` fp16). fp16 Q/DQ scales need opset 19
(QuantizeLinear-19 / DequantizeLinear-19), to which the graph is raised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from export.onnx_io import import_onnx, inspect_onnx, load_onnx, read_meta, save_onnx, set_meta
from runtime.errors import EXIT_USAGE, Parser, UserError, run_cli

PROG = "export.fp16"
FP16_MAX = 65504.0
# (op type, input index) that the ONNX spec types as float32 regardless of the data type
FP32_ONLY_INPUTS = {("Resize", 2), ("Upsample", 1)}
QDQ_OPSET = 19  # the first opset whose QuantizeLinear / DequantizeLinear take fp16 scales
QDQ_IR = 9  # the IR version of opset 19


def _to_half(tensor: Any) -> Any:
    """A float32 TensorProto as float16 (values clipped to the fp16 range), same name."""
    from onnx import numpy_helper

    arr = numpy_helper.to_array(tensor)
    return numpy_helper.from_array(np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16), tensor.name)


def _rename_inputs(nodes: Iterable[Any], old: str, new: str) -> None:
    for n in nodes:
        for i, name in enumerate(n.input):
            if name == old:
                n.input[i] = new


def convert_model(model: Any, keep_fp32: Iterable[str] = (), fp16_io: bool = False) -> Any:
    """A float16 copy of ``model`` whose float32 graph inputs and outputs stay float32 (``fp16_io``:
    become float16 too, so an engine built from it has HALF bindings)."""
    onnx = import_onnx()
    from onnx import helper

    F32, F16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node):
        _raise_opset(m, QDQ_OPSET, QDQ_IR)
    keep = set(keep_fp32)
    fp32_only = {n.input[i] for n in g.node for (op, i) in FP32_ONLY_INPUTS
                 if n.op_type == op and len(n.input) > i and n.input[i]}
    for k, t in enumerate(g.initializer):
        if t.data_type == F32 and t.name not in fp32_only:
            g.initializer[k].CopyFrom(_to_half(t))
    for n in g.node:
        if n.output and n.output[0] in fp32_only:
            continue
        for a in n.attribute:
            if n.op_type in ("Constant", "ConstantOfShape") and a.name == "value" and a.t.data_type == F32:
                a.t.CopyFrom(_to_half(a.t))
            elif n.op_type == "Cast" and a.name == "to" and a.i == F32:
                a.i = F16
        if n.op_type == "Constant" and any(a.name == "value_float" for a in n.attribute):
            raise UserError("export.fp16: Constant(value_float) is not handled; re-export with export.onnx")
    head, tail = [], []
    if fp16_io:
        inits = {t.name for t in g.initializer}
        for v in [*g.input, *g.output]:
            if v.type.tensor_type.elem_type == F32 and v.name not in inits:
                v.type.tensor_type.elem_type = F16
    for inp in g.input:  # fp32 in, Cast to fp16 straight after
        if inp.type.tensor_type.elem_type == F32 and inp.name not in {t.name for t in g.initializer}:
            half = f"{inp.name}__fp16"
            _rename_inputs(g.node, inp.name, half)
            head.append(helper.make_node("Cast", [inp.name], [half], to=F16, name=f"{inp.name}__cast_in"))
    for out in g.output:  # producer writes <name>__fp16, a Cast gives the fp32 output its name
        if out.type.tensor_type.elem_type == F32:
            half = f"{out.name}__fp16"
            for n in g.node:
                for i, name in enumerate(n.output):
                    if name == out.name:
                        n.output[i] = half
            _rename_inputs(g.node, out.name, half)
            tail.append(helper.make_node("Cast", [half], [out.name], to=F32, name=f"{out.name}__cast_out"))
    nodes = head + list(g.node) + tail
    wrapped = []
    for n in nodes:  # ops kept in fp32: cast their inputs up and their outputs back down
        if n.op_type not in keep:
            wrapped.append(n)
            continue
        for i, name in enumerate(n.input):
            if name and name not in fp32_only:
                up = f"{name}__to32_{n.name or n.op_type}_{i}"
                wrapped.append(helper.make_node("Cast", [name], [up], to=F32))
                n.input[i] = up
        outs = list(n.output)
        for i, name in enumerate(outs):
            n.output[i] = f"{name}__fp32"
        wrapped.append(n)
        wrapped += [helper.make_node("Cast", [f"{o}__fp32"], [o], to=F16) for o in outs]
    del g.node[:]
    g.node.extend(wrapped)
    del g.value_info[:]  # stale fp32 types of intermediates; inferred again below
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    onnx.checker.check_model(m, full_check=True)
    return m


def _raise_opset(model: Any, opset: int, ir_version: int) -> None:
    """Raise the default domain's opset to at least ``opset`` (the ops these graphs use keep their
    meaning from 17 to 19: only types and optional attributes were added)."""
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and o.version < opset:
            o.version = opset
    model.ir_version = max(model.ir_version, ir_version)


def convert_file(src: str | Path, dst: str | Path | None = None, keep_fp32: Iterable[str] = (),
                 fp16_io: bool = False, ready: Callable[[], None] | None = None) -> Path:
    """Convert an ONNX file (metadata carried over with precision 'fp16'); returns the new path.
    ``ready`` is called once ``src`` passed the checks export.engine runs on it, before the conversion."""
    src = Path(src)
    dst = Path(dst) if dst else src.with_name(src.stem + ".fp16.onnx")
    check_output(src, dst)
    model = load_onnx(src)
    inspect_onnx(src, model)  # export.engine's checks: a file that is no image model is one line, not a traceback
    meta = read_meta(model, str(src))
    if ready is not None:
        ready()
    half = convert_model(model, keep_fp32, fp16_io)
    if meta is not None:  # a Q/DQ graph stays an INT8 model (its float part now fp16)
        qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in half.graph.node)
        set_meta(half, meta.with_(precision="int8" if qdq else "fp16"))
    return save_onnx(half, dst)


def check_output(src: Path, dst: Path) -> None:
    """Before converting: ``dst`` is not the input (exit 2) and can be written as a file."""
    from runtime.fileio import same_file
    from training.outputs import output_file

    if same_file(dst, src):
        raise UserError(f"--out {dst}: the same file as --onnx {src}, the input; writing it would destroy the "
                        "model, pass another --out", EXIT_USAGE)
    output_file(dst, "--out")


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog=PROG, description="Write an FP16 copy of an ONNX model with fp32 "
                                 "inputs/outputs (for strongly typed TensorRT builds).")
    ap.add_argument("--onnx", required=True, type=Path, help="fp32 ONNX (e.g. detect.onnx)")
    ap.add_argument("--out", type=Path, help="output (default: <stem>.fp16.onnx beside the input)")
    ap.add_argument("--keep-fp32", action="append", default=[], metavar="OP",
                    help="op type to keep in fp32 (repeatable), e.g. --keep-fp32 GlobalAveragePool")
    ap.add_argument("--fp16-io", action="store_true", help="inputs and outputs in fp16 too (an engine built from "
                    "it has HALF bindings: half the copies; the runtime and Triton feed it fp16)")
    a = ap.parse_args(argv)
    from training.outputs import note_replacing

    dst = a.out or a.onnx.with_name(a.onnx.stem + ".fp16.onnx")
    check_output(a.onnx, dst)
    say_replacing = note_replacing(PROG, dst, " (an earlier result)", say=False)
    out = convert_file(a.onnx, dst, a.keep_fp32, a.fp16_io, ready=say_replacing)  # said once --onnx passed
    print(f"{PROG}: wrote {out}")
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
