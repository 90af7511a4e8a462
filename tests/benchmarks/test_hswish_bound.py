"""benchmarks.hswish_bound: it finds every hard-swish the INT8 builder wrote, in the graph ONNX Runtime
fuses, and its altered copies remove exactly those passes and still run.

A small untrained v3 edge JRC (32 px, quarter width) quantized for the CPU is the input.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import has_module, run_module

pytestmark = pytest.mark.skipif(not (has_module("torch") and has_module("onnxruntime") and has_module("onnx")),
                                reason="needs torch, onnx and onnxruntime")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import onnx

    from calibration import qdq, ranges
    from tests.helpers.models import calibrated_edge

    w = calibrated_edge(tmp_path_factory.mktemp("hswish"), 32, seed=2)
    model, info = qdq.cpu_model(w["prepped"], ranges.ranges(w["stats"], "minmax", full_range=w["full_range"]),
                                (), vnni=True)
    int8 = w["root"] / "detect.int8-cpu.onnx"
    onnx.save(model, str(int8))
    return {**w, "int8": int8, "hard_swish": info["graph"]["hard_swish"]}


def _ops(model_bytes: bytes) -> Counter:
    import onnx

    return Counter(n.op_type for n in onnx.load_from_string(model_bytes).graph.node)


def test_finds_the_builders_hard_swish_and_removes_only_them(work: dict) -> None:
    import onnxruntime as ort

    from benchmarks.hswish_bound import fused, hard_swishes, without

    model = fused(str(work["int8"]), 1)
    assert work["hard_swish"] > 0
    assert len(hard_swishes(model)) == work["hard_swish"]
    before = Counter(n.op_type for n in model.graph.node)
    assert before["QLinearMul"] > work["hard_swish"]  # the excitation's products are not hard-swish
    one, free = _ops(without(model, drop_gate=False)), _ops(without(model, drop_gate=True))
    assert one["QLinearMul"] == before["QLinearMul"] - work["hard_swish"] and one["QLinearAdd"] == before["QLinearAdd"]
    assert free["QLinearMul"] == one["QLinearMul"]
    assert free["QLinearAdd"] == before["QLinearAdd"] - work["hard_swish"]
    assert sum(free.values()) == sum(before.values()) - 2 * work["hard_swish"]
    x = work["calib"].inputs()[:2]
    for altered in (without(model, drop_gate=False), without(model, drop_gate=True)):
        out = ort.InferenceSession(altered, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        assert out.shape == (2, 1) and np.isfinite(out).all()


def test_cli_reports_every_variant_and_refuses_a_model_without_hard_swish(work: dict, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    p = run_module("benchmarks.hswish_bound", "--fp32", work["src"], "--int8", work["int8"], "--batch", "1,2",
                   "--runs", "3", "--warmup", "1", "--quiet", "--json", out)
    assert p.returncode == 0, p.stderr
    assert "onnxruntime" not in p.stderr.lower()  # ONNX Runtime's notes are silenced
    r = json.loads(out.read_text())
    assert r["hard_swish"] == work["hard_swish"]
    assert [(row["batch"], row["model"]) for row in r["rows"]] == [
        (b, m) for b in (1, 2) for m in ("fp32", "int8", "int8, one-pass hard-swish", "int8, free hard-swish")]
    assert all(row["over_fp32"]["rounds"] == 3 and row["p50_ms"] > 0 for row in r["rows"])
    assert "free hard-swish" in p.stdout and r["machine"]["cpu_flags"] is not None
    for args, says in ((("--int8", work["src"]), "no hard-swish found"),
                       (("--int8", work["root"] / "m.pt"), "not a valid ONNX model"),
                       (("--int8", tmp_path / "none.onnx"), "no such file"),
                       (("--int8", work["int8"], "--json", work["int8"]), "an input"),  # never written over
                       (("--int8", work["int8"], "--json", tmp_path), "is a folder"),
                       (("--int8", work["int8"], "--batch", "100000"), "at most")):
        bad = run_module("benchmarks.hswish_bound", "--fp32", work["src"], *args, "--runs", "2")
        assert bad.returncode != 0 and says in bad.stderr and bad.stderr.strip().count("\n") == 0, bad.stderr
