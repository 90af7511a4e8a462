"""Reading and writing ONNX files: safe loading, the project's metadata, atomic saves.

The one place that reads and writes the ``metadata_props`` entries of an ONNX artifact:
``jrc_meta`` (:data:`runtime.meta.ONNX_KEY`, the :class:`runtime.meta.Meta` every artifact
carries) and ``jrc_quant`` (:data:`QUANT_KEY`, how ``calibration.quantize`` made an INT8 model).
Used by ``export.onnx``, ``export.fp16``, ``export.engine``, ``export.triton``,
``export.deepstream``, ``calibration`` and ``benchmarks``. Every way in (:func:`load_onnx`,
:func:`file_meta`, :func:`inspect_onnx`) first runs :func:`runtime.onnx_proto.check_external_data`
(the same check the runtime uses: external data inside the model's folder, declared sizes that add
up), so nothing reaches onnx, ONNX Runtime or TensorRT before it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import UserError, missing_dependency
from runtime.fileio import replacing
from runtime.meta import ONNX_KEY, Meta
from runtime.onnx_proto import check_external_data

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
QUANT_KEY = "jrc_quant"  # metadata_props key: how calibration.quantize made the artifact (JSON)


def import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise missing_dependency("onnx", "train") from None
    return onnx


def load_onnx(path: str | Path) -> Any:
    """onnx.ModelProto of a file, after refusing external data outside the model's folder."""
    onnx = import_onnx()
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: ONNX model not found; export one with python -m export.onnx")
    check_external_data(p)
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(p))
    except (DecodeError, OSError, ValueError, RuntimeError, AssertionError) as e:
        raise UserError(f"{p}: not a readable ONNX model ({_first_line(e)}); "
                        "re-export it with python -m export.onnx") from None


def _first_line(e: BaseException) -> str:
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return lines[0][:160] if lines else type(e).__name__


def read_meta(model: Any, source: str) -> Meta | None:
    """The project metadata from ``metadata_props``, or None when the model carries none."""
    for prop in model.metadata_props:
        if prop.key == ONNX_KEY:
            return Meta.from_json(prop.value, source=source)
    return None


def require_meta(model: Any, source: str) -> Meta:
    """The project metadata from ``metadata_props``; a UserError saying how to get it when absent."""
    meta = read_meta(model, source)
    if meta is None:
        raise UserError(f"{source}: no '{ONNX_KEY}' metadata in the ONNX file; export it with "
                        "python -m export.onnx --ckpt CKPT --out DIR")
    return meta


def file_meta(path: str | Path) -> Meta:
    """The project metadata of an ONNX file, read without loading its weights."""
    onnx = import_onnx()
    from google.protobuf.message import DecodeError

    if not Path(path).is_file():
        raise UserError(f"{path}: no such ONNX file; export one with python -m export.onnx --ckpt CKPT --out DIR")
    check_external_data(path)  # the same refusals as load_onnx, although no weights are read here
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as e:
        raise UserError(f"{path}: not a readable ONNX model ({_first_line(e)}); re-export it") from None
    return require_meta(model, str(path))


def read_quant(model: Any) -> dict[str, Any] | None:
    """What ``calibration.quantize`` recorded about an INT8 model (target, ranges, ...), or None."""
    for prop in model.metadata_props:
        if prop.key == QUANT_KEY:
            try:
                value = json.loads(prop.value)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def set_meta(model: Any, meta: Meta, quant: dict[str, Any] | None = None) -> None:
    """Replace the project metadata in ``metadata_props`` (and the quantization record, when given)."""
    replaced = (ONNX_KEY, QUANT_KEY) if quant else (ONNX_KEY,)
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in replaced]
    new = [(ONNX_KEY, meta.to_json())] + ([(QUANT_KEY, json.dumps(quant, sort_keys=True))] if quant else [])
    del model.metadata_props[:]
    for k, v in keep + new:
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def save_onnx(model: Any, path: str | Path) -> Path:
    """Write a single-file model atomically (temporary file, then rename)."""
    onnx = import_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, suffix=".onnx") as tmp:
        onnx.save_model(model, str(tmp))
    return path


def _dims(value_info: Any) -> list[int | None]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]


@dataclass
class OnnxInfo:
    """What the engine, Triton and DeepStream exporters need to know about an ONNX file."""

    path: Path
    meta: Meta | None
    input_name: str
    input_shape: list[int | None]  # None for a dynamic axis
    input_type: int  # onnx.TensorProto data type
    outputs: dict[str, list[int | None]] = field(default_factory=dict)
    output_types: dict[str, int] = field(default_factory=dict)
    has_qdq: bool = False
    is_fp16: bool = False
    external_data: bool = False
    quant_target: str | None = None  # 'trt' or 'cpu' for calibration.quantize outputs

    @property
    def static_batch(self) -> int | None:
        return self.input_shape[0] if self.input_shape else None


def inspect_onnx(path: str | Path, model: Any = None) -> OnnxInfo:
    """Inputs, outputs, metadata and precision hints (Q/DQ nodes, FP16 weights) of an ONNX file."""
    onnx = import_onnx()
    p = Path(path)
    model = model if model is not None else load_onnx(p)
    external = bool(check_external_data(p))
    g = model.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise UserError(f"{p}: the model has {len(inputs)} inputs {[i.name for i in inputs]}, expected one "
                        "image batch; export it with python -m export.onnx")
    inp = inputs[0]
    half = onnx.TensorProto.FLOAT16
    is_fp16 = any(t.data_type == half for t in g.initializer) or any(
        n.op_type == "Cast" and any(a.name == "to" and a.i == half for a in n.attribute) for n in g.node)
    quant_target = (read_quant(model) or {}).get("target")
    return OnnxInfo(
        path=p, meta=read_meta(model, str(p)), quant_target=quant_target, input_name=inp.name, input_shape=_dims(inp),
        input_type=inp.type.tensor_type.elem_type,
        outputs={o.name: _dims(o) for o in g.output},
        output_types={o.name: o.type.tensor_type.elem_type for o in g.output},
        has_qdq=any(n.op_type in QDQ_OPS for n in g.node), is_fp16=is_fp16, external_data=external)
