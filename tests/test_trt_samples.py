"""Small real artifacts for the export and TensorRT tests (helpers + their self-tests).

- :func:`tiny_onnx`: a small real ONNX model (Conv → ReLU → GAP → Gemm [+ recon]) with jrc metadata.
- :func:`write_crashing_tensorrt`: an importable stand-in ``tensorrt`` that records and kills the
  process if its Builder/Runtime/OnnxParser is reached (what must never happen without a GPU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def tiny_onnx(path: Path, size: int = 32, batch: int | None = None, graph: str = "detect",
              qdq: bool = False, meta: Any = None) -> Path:
    """A small real ONNX (input N×3×size×size → logit N×1 [, recon]) with jrc metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from export._onnx_io import set_meta
    from runtime.meta import Meta

    rng = np.random.default_rng(0)
    n = batch if batch else "batch"
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.2, "w1"),
             numpy_helper.from_array(np.full(4, 0.1, np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal((1, 4)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.zeros(1, np.float32), "b2")]
    nodes, first = [], "input"
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        first = "dq"
    nodes += [helper.make_node("Conv", [first, "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["r"]),
              helper.make_node("GlobalAveragePool", ["r"], ["p"]),
              helper.make_node("Flatten", ["p"], ["f"]),
              helper.make_node("Gemm", ["f", "w2", "b2"], ["logit"], transB=1)]
    outputs = [helper.make_tensor_value_info("logit", TensorProto.FLOAT, [n, 1])]
    if graph == "full":
        inits.append(numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1) * 0.5, "w3"))
        nodes.append(helper.make_node("Conv", ["input", "w3"], ["recon"]))
        outputs.append(helper.make_tensor_value_info("recon", TensorProto.FLOAT, [n, 3, size, size]))
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                         [n, 3, size, size])], outputs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = meta or Meta(input_size=size, graph=graph, outputs=("logit", "recon") if graph == "full" else ("logit",))
    set_meta(model, meta)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


CRASHING_TRT = '''"""A stand-in tensorrt whose builder and runtime must never be reached (no GPU here)."""
import os
__version__ = "10.3.0"
MARKER = {marker!r}

def _reached(*args, **kwargs):
    with open(MARKER, "a") as f:
        f.write("reached\\n")
    os._exit(99)  # what a real deserialize without a device may do: take the process down

Builder = Runtime = OnnxParser = _reached

class _Anything:
    def __getattr__(self, name):
        return _Anything()
    def __int__(self):
        return 0

def __getattr__(name):
    return _Anything()
'''


def write_crashing_tensorrt(folder: Path, marker: Path) -> Path:
    """An importable fake ``tensorrt`` (put ``folder`` on PYTHONPATH) that records and dies if its
    Builder, Runtime or OnnxParser is ever called."""
    pkg = folder / "tensorrt"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(CRASHING_TRT.format(marker=str(marker)))
    return folder


def has_cuda_driver() -> bool:
    import ctypes.util

    return ctypes.util.find_library("cuda") is not None or Path("/usr/lib/x86_64-linux-gnu/libcuda.so.1").exists()


def test_tiny_onnx_runs(tmp_path: Path) -> None:
    import onnxruntime as ort

    path = tiny_onnx(tmp_path / "f.onnx", graph="full", qdq=True)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    logit, recon = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert logit.shape == (2, 1) and np.allclose(recon, x / 2)
