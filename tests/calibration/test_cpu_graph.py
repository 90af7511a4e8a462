"""The CPU INT8 graph: what ONNX Runtime makes of it, exact depthwise widening, the measured plan.

A small untrained edge JRC (32 px, quarter width: depthwise layers of 24, 32 and 40 channels, so
some need widening) is exported, preprocessed and calibrated once per module.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import has_module

pytestmark = pytest.mark.skipif(not (has_module("torch") and has_module("onnxruntime") and has_module("onnx")),
                                reason="needs torch, onnx and onnxruntime")

SIZE = 32


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from calibration import ranges
    from tests.helpers.models import calibrated_edge

    w = calibrated_edge(tmp_path_factory.mktemp("cpu-graph"), SIZE, seed=1)
    return {**w, "ranges": ranges.ranges(w["stats"], "minmax", full_range=w["full_range"])}


def _session(model, optimized: Path | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    if optimized is not None:  # the graph after ONNX Runtime's QDQ fusion (level 2: no hardware-specific layout)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _logits(model, x):
    return _session(model).run(None, {"input": x})[0][:, 0]


def _depthwise_groups(model) -> list[int]:
    from onnx import helper

    out = []
    for n in model.graph.node:
        group = {a.name: helper.get_attribute_value(a) for a in n.attribute}.get("group", 1)
        if n.op_type == "Conv" and group > 1:
            out.append(group)
    return out


def test_widening_depthwise_layers_changes_no_output(work: dict) -> None:
    from calibration.channel_pad import pad_depthwise

    before = _depthwise_groups(work["prepped"])
    assert any(g % 16 for g in before)  # the quarter-width net has layers to widen
    padded, done = pad_depthwise(work["prepped"])
    after = _depthwise_groups(padded)
    assert done and all(g % 16 == 0 for g in after), after
    assert {d["channels"] for d in done} == {g for g in before if g % 16}
    x = work["calib"].inputs()
    np.testing.assert_allclose(_logits(padded, x), _logits(work["prepped"], x), rtol=0, atol=1e-5)


def test_onnxruntime_runs_whole_int8_blocks(work: dict, tmp_path: Path) -> None:
    """After ONNX Runtime's QDQ fusion every quantized convolution is a QLinearConv, the ReLUs and
    hard-sigmoid gates are gone into the quantization, and Q/DQ conversions are left only where the
    graph enters and leaves int8 (ONNX Runtime's generic quantizer leaves one around every tail)."""
    import onnx

    from calibration import qdq

    model, info = qdq.cpu_model(work["prepped"], work["ranges"], (), vnni=True)
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
    source = Counter(n.op_type for n in work["prepped"].graph.node)
    _session(model, tmp_path / "fused.onnx")
    fused = Counter(n.op_type for n in onnx.load(str(tmp_path / "fused.onnx")).graph.node)
    assert fused["QLinearConv"] == source["Conv"] and fused["Conv"] == 0
    assert fused["HardSigmoid"] == 0 and fused["Relu"] == 0 and fused["QGemm"] == source["Gemm"]
    assert fused["QuantizeLinear"] + fused["DequantizeLinear"] <= 3, fused  # the input, the logit's head
    assert info["graph"]["hard_swish"] == source["HardSigmoid"] - info["graph"]["absorbed"]["HardSigmoid"]
    generic = work["root"] / "generic.onnx"
    qdq.quantize(work["prep"], generic, work["calib"], "cpu", work["ranges"], (), True, generic=True)
    _session(onnx.load(str(generic)), tmp_path / "generic-fused.onnx")
    before = Counter(n.op_type for n in onnx.load(str(tmp_path / "generic-fused.onnx")).graph.node)
    assert before["QuantizeLinear"] + before["DequantizeLinear"] > 10 * max(1, fused["QuantizeLinear"]
                                                                              + fused["DequantizeLinear"])


def test_int8_logits_follow_fp32_and_float_layers_stay_float(work: dict) -> None:
    from onnx import numpy_helper

    from calibration import cpu_plan, qdq

    x = work["calib"].inputs()
    ref = _logits(work["prepped"], x)
    model, _ = qdq.cpu_model(work["prepped"], work["ranges"], (), vnni=True)
    got = _logits(model, x)
    assert np.isfinite(got).all() and not np.array_equal(got, ref)
    assert np.abs(got - ref).max() < 0.25 * (np.abs(ref).max() + 1)
    cut = cpu_plan.cut_points(work["prepped"])[4][1]
    keep = cpu_plan.keep_for(work["prepped"], cut)
    mixed, info = qdq.cpu_model(work["prepped"], work["ranges"], keep, vnni=True)
    inits = {i.name: numpy_helper.to_array(i) for i in mixed.graph.initializer}
    for node in mixed.graph.node:
        if node.name in keep and node.op_type == "Conv":
            assert inits[node.input[1]].dtype == np.float32, node.name  # float weights, no DQ
    assert info["graph"]["int8_layers"] < len(qdq.weighted_nodes(work["prepped"]))
    assert np.abs(_logits(mixed, x) - ref).max() <= np.abs(got - ref).max() + 1e-6


def test_hard_sigmoid_by_saturation() -> None:
    """The gate quantization: Q with scale 1/(255·alpha), zero point 255·beta, read back at 1/255,
    is hardsigmoid to within one step."""
    from calibration.cpu_graph import HARD_SIGMOID_SCALE, QParams

    x = np.linspace(-6, 6, 2001)
    q = QParams.hard_sigmoid(1 / 6, 0.5)
    stored = np.clip(np.round(x / q.scale) + q.zero_point, 0, 255)
    gate = stored * HARD_SIGMOID_SCALE
    assert np.abs(gate - np.clip(x / 6 + 0.5, 0, 1)).max() <= 1.0 / 255 + 1e-9
    assert QParams.from_range(0.0, 6.0).zero_point == 0  # a ReLU output: saturation is the ReLU
    p = QParams.from_range(-1.0, 3.0)
    assert math.isclose(p.scale, 4 / 255) and p.zero_point == 64


def test_cut_points_separate_the_graph(work: dict) -> None:
    from calibration import cpu_plan

    model = work["prepped"]
    cuts = cpu_plan.cut_points(model)
    assert cuts[0] == (-1, "input") and len(cuts) > 5
    produced_by = {o: i for i, n in enumerate(model.graph.node) for o in n.output}
    consts = {i.name for i in model.graph.initializer}
    for i, tensor in cuts[1:]:
        for node in model.graph.node[i + 1:]:  # nothing after the cut reads what came before it but the cut
            for t in node.input:
                if t and t not in consts and produced_by.get(t, -1) <= i:
                    assert t == tensor, (tensor, node.name, t)
    cands = cpu_plan.candidates(model, n=4, always_float=cpu_plan.head_layers(model))
    assert 1 < len(cands) <= 4 and cands[0].cut == "input"
    assert [c.macs_float for c in cands] == sorted(c.macs_float for c in cands) and cands[-1].macs_float < 1.0


def test_plan_choice_is_the_fastest_within_the_bound() -> None:
    from calibration.cpu_plan import Candidate, pick

    def cand(cut, share, speed, dprob, d_auc=0.0):
        return Candidate(cut, [], share, {"1": speed, "8": speed}, dprob, dprob / 4, 0.0, d_auc)

    fast_bad, fast_ok, tie_ok, slow_ok = (cand("a", 0.0, 1.6, 0.05), cand("b", 0.2, 1.4, 0.01),
                                          cand("c", 0.4, 1.38, 0.005), cand("d", 0.8, 1.1, 0.001))
    assert pick([fast_bad, fast_ok, tie_ok, slow_ok], 0.025, 0.01) is tie_ok  # within 3 %: the more float one
    assert pick([fast_bad, fast_ok, slow_ok], 0.025, 0.01) is fast_ok
    reorders = cand("f", 0.1, 1.5, 0.001, d_auc=0.02)  # close in probability, but ranks fakes lower
    assert pick([reorders, slow_ok], 0.025, 0.01) is slow_ok
    assert pick([fast_bad, cand("e", 0.5, 1.2, 0.04)], 0.025, 0.01).cut == "e"  # none within: the most accurate


def test_agreement_counts_reversed_pairs() -> None:
    from calibration.cpu_plan import agreement

    ref = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    assert agreement(ref, ref + 0.3)[2] == 0.0  # a shift reorders nothing
    worst, mean, swaps = agreement(ref, np.array([-2.0, -1.0, 1.0, 0.0, 2.0]))
    assert swaps == pytest.approx(1 / 10)  # one of the ten pairs
    assert worst == pytest.approx(1 / (1 + math.exp(-1)) - 0.5) and mean == pytest.approx(2 * worst / 5)


def test_plan_measurement_end_to_end(work: dict) -> None:
    from calibration import cpu_plan, qdq

    model = work["prepped"]
    cands = cpu_plan.candidates(model, n=3, always_float=cpu_plan.head_layers(model))

    def build(c):
        return qdq.cpu_model(model, work["ranges"], c.float_nodes, True)[0].SerializeToString()

    x = work["calib"].inputs()[:8]
    best, data = cpu_plan.choose(cands, build, model.SerializeToString(), x, "input", SIZE, batches=(1, 2), rounds=2,
                                 max_dprob=1.0, max_auc_drop=1.0, check=(x, np.array([0, 1] * 4)))
    assert best in cands and data
    for c in cands:
        assert set(c.speedup) == {"1", "2"} and all(v > 0 for v in c.speedup.values())
        assert 0 <= c.max_dprob < 1 and c.mean_dprob <= c.max_dprob and 0 <= c.swaps <= 1 and abs(c.d_auc) <= 1
    assert "←" in cpu_plan.format_candidates(cands, best)


def test_minimal_style_runs_as_integer_kernels_only(tmp_path: Path) -> None:
    """The edge encoder's minimal style is what the CPU graph is best at: after ONNX Runtime's QDQ
    fusion every convolution is a QLinearConv with its ReLU absorbed, the residual adds are
    QLinearAdd, and nothing is left for hard-swish passes (QLinearMul) or depthwise widening."""
    import onnx

    from calibration import qdq, ranges
    from calibration.channel_pad import pad_depthwise
    from tests.helpers.models import calibrated_edge

    w = calibrated_edge(tmp_path / "minimal", SIZE, seed=1, style="minimal")
    rng = ranges.ranges(w["stats"], "minmax", full_range=w["full_range"])
    assert pad_depthwise(w["prepped"])[1] == []
    model, info = qdq.cpu_model(w["prepped"], rng, (), vnni=True)
    source = Counter(n.op_type for n in w["prepped"].graph.node)
    _session(model, tmp_path / "fused.onnx")
    fused = Counter(n.op_type for n in onnx.load(str(tmp_path / "fused.onnx")).graph.node)
    assert fused["QLinearConv"] == source["Conv"] and fused["QLinearAdd"] == source["Add"]
    assert fused["QLinearMul"] == fused["Relu"] == fused["Conv"] == 0, fused
    assert fused["QuantizeLinear"] + fused["DequantizeLinear"] <= 3, fused
    assert info["graph"]["hard_swish"] == 0 and info["graph"]["absorbed"] == {"Relu": source["Relu"]}
    x = w["calib"].inputs()
    ref, got = _logits(w["prepped"], x), _logits(model, x)
    assert np.abs(got - ref).max() < 0.25 * (np.abs(ref).max() + 1)
