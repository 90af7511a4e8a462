"""The kernel split: ONNX Runtime's profiler events grouped into int8 / float / Q/DQ / layout."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import has_module


def _node(ts: float, op: str, dur: float, out: str = "float") -> dict:
    return {"cat": "Node", "name": f"n{ts}_kernel_time", "ts": ts, "dur": dur,
            "args": {"op_name": op, "output_type_shape": [{out: [1, 2]}]}}


def test_groups_of_kernels() -> None:
    from calibration.kernels import group_of

    assert group_of("QLinearConv", "[{'uint8': [1]}]") == "int8"
    assert group_of("QGemm", "[{'float': [1]}]") == "int8"
    assert group_of("MatMulInteger", "") == "int8"
    assert group_of("MaxPool", "[{'uint8': [1]}]") == "int8"  # 8-bit data movement
    assert group_of("DequantizeLinear", "[{'float': [1]}]") == "qdq"
    assert group_of("Transpose", "[{'uint8': [1]}]") == "layout"
    assert group_of("ReorderOutput", "[{'float': [1]}]") == "layout"
    assert group_of("Conv", "[{'float': [1]}]") == "float"


def test_split_is_the_median_per_run_after_the_warm_up() -> None:
    from calibration.kernels import format_split, split_events

    events = []
    for r, scale in enumerate((10.0, 1.0, 1.2, 0.8, 5.0, 1.0)):  # run 0: warm-up; run 4: another job ran
        t0 = 1000.0 * r
        events += [_node(t0 + 1, "QLinearConv", 500 * scale, "uint8"), _node(t0 + 2, "Conv", 300 * scale),
                   _node(t0 + 3, "QuantizeLinear", 100 * scale, "uint8"), _node(t0 + 4, "Transpose", 50 * scale)]
        events.append({"cat": "Session", "name": "model_run", "ts": t0, "dur": 900.0})
    split = split_events(events, skip=1)
    assert split.runs == 3  # of the five after the warm-up, the quicker half (with the median)
    assert split.groups == pytest.approx({"int8": 0.5, "float": 0.3, "qdq": 0.1, "layout": 0.05})
    assert split.ops["QLinearConv"] == pytest.approx(0.5) and split.total == pytest.approx(0.95)
    line = format_split(split)
    assert line.startswith("int8 0.500 ms (53%)") and "top: QLinearConv 0.500" in line
    assert split_events([], 0).total == 0


@pytest.mark.skipif(not (has_module("onnx") and has_module("onnxruntime")), reason="needs onnx and onnxruntime")
def test_profile_of_a_quantized_convolution(tmp_path) -> None:
    """A real profile: an int8 convolution's time lands in int8, its input conversion in Q/DQ."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from calibration.kernels import profile

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.integers(-127, 127, (16, 8, 3, 3)).astype(np.int8), "w"),
             numpy_helper.from_array(np.full(16, 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(16, np.int8), "wz"),
             numpy_helper.from_array(np.array(0.05, np.float32), "s"),
             numpy_helper.from_array(np.array(128, np.uint8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["y", "s", "z"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["out"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "q.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    split = profile(path, rng.standard_normal((1, 8, 16, 16)).astype(np.float32), "x", runs=3, threads=1)
    assert 2 <= split.runs <= 3 and split.groups["int8"] > 0 and split.groups["qdq"] > 0  # the quicker half or more
    assert "QLinearConv" in split.ops and "Conv" not in split.ops
    assert not list(tmp_path.glob("*.json"))  # the profile file is not left behind
