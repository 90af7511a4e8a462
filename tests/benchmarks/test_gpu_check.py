"""benchmarks.gpu_check without a GPU: its one-line error without TensorRT, its checks end to end on
the per-release fakes (FakeTRT + FakeCuda), and the table / JSON it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from benchmarks import gpu_check
from benchmarks.gpu_check import Result, Setup, check_list, render_table, run_checks, write_json
from runtime.backends import trt_compat
from tests.helpers import TRT_API_DIR, run_module
from tests.helpers.fake_cuda import FakeCuda, orin_device
from tests.helpers.models import tiny_onnx
from tests.helpers.trt_fakes import FakeTRT


def test_without_tensorrt_one_line(tmp_path: Path) -> None:
    block = tmp_path / "block"
    block.mkdir()
    (block / "tensorrt.py").write_text("raise ModuleNotFoundError(\"No module named 'tensorrt'\", name='tensorrt')\n")
    p = run_module("benchmarks.gpu_check", "--out", tmp_path / "out", env={**os.environ, "PYTHONPATH": str(block)},
                   timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1, p.stderr
    assert lines[0].startswith("benchmarks.gpu_check: error: tensorrt is not installed")
    assert not (tmp_path / "out").exists()


def _mean(x: np.ndarray) -> np.ndarray:  # what the fake engine computes
    return x.reshape(x.shape[0], -1).mean(1, keepdims=True)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Setup, FakeTRT, FakeCuda]:
    cuda = FakeCuda()
    fake = FakeTRT(TRT_API_DIR / "tensorrt-10.3.0.json", cuda)
    for name, mod in (("tensorrt", fake.module), ("pycuda", cuda.module), ("pycuda.driver", cuda.driver)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(trt_compat, "probe_cuda_device", lambda index=0, timeout=60.0: orin_device())
    for name in ("polygraphy", "polygraphy.backend.onnxrt", "polygraphy.backend.trt", "polygraphy.comparator"):
        monkeypatch.setitem(sys.modules, name, None)  # Polygraphy would load the real tensorrt's plugins
    cal = types.ModuleType("export.trt_calibrator")

    def make_calibrator(trt, onnx_path, data, meta, cache_path, *a, **k):
        if data is not None:  # calibrating writes the cache; a rebuild from the cache reads it
            Path(cache_path).write_bytes(b"TRT-100-EntropyCalibration2\n")
        assert Path(cache_path).is_file()
        return trt.IInt8EntropyCalibrator2()

    cal.make_calibrator = make_calibrator
    monkeypatch.setitem(sys.modules, "export.trt_calibrator", cal)
    # the driver's current context, as cuCtxGetCurrent reports it (the fake models the driver stack)
    monkeypatch.setattr(gpu_check, "current_cuda_context",
                        lambda: id(cuda.driver_stack()[-1]) if cuda.driver_stack() else 0)
    onnx = tiny_onnx(tmp_path / "detect.onnx")
    s = Setup(onnx, tmp_path / "out", fake.module, orin_device(), _mean, 32, jetson=True, quick=True)
    s.out.mkdir()
    return s, fake, cuda


def test_checks_pass_on_the_fakes(setup) -> None:
    s, fake, cuda = setup
    results = run_checks(check_list(s), progress=False)
    by = {r.name: r for r in results}
    assert [r.status for r in results if r.name != "DeepStream rebuilds a removed engine"] == ["PASS"] * (
        len(results) - 1), render_table(results)
    assert by["DeepStream rebuilds a removed engine"].status == "SKIP"  # no DeepStream here
    assert "DLA core 0" in by["DLA engine + Triton + nvinfer config"].detail
    assert {"build+infer fp32 1:4:8", "build+infer int8 1:4:8", "DLA engine + Triton + nvinfer config",
            "FP16-I/O engine + Triton config", "close() leaves no CUDA context current"} <= set(by)
    assert "n=1,8" in by["build+infer fp16 1:4:8"].detail and "Polygraphy skipped" in by["build+infer fp16 1:4:8"].detail
    assert cuda.leaked == [] and cuda.live_streams() == []
    assert any(p["dla_core"] == 0 for p in fake.built) and any(p["version_compatible"] for p in fake.built)


def test_all_profiles_and_failures_are_lines(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    s, fake, _ = setup
    s.quick, s.jetson = False, False
    names = [n for n, _ in check_list(s)]
    assert [n for n in names if n.startswith("build+infer fp16")] == [
        "build+infer fp16 1:4:8", "build+infer fp16 4:4:4", "build+infer fp16 2:4:8"]
    s.reference = lambda x: _mean(x) + 1.0  # an engine that disagrees with ONNX Runtime
    picked = [c for c in check_list(s) if c[0] in ("build+infer fp32 4:4:4", "DLA engine + Triton + nvinfer config")]
    fail, skip = run_checks(picked, progress=False)
    assert fail.status == "FAIL" and "max |Δlogit|/scale" in fail.detail and "\n" not in fail.detail
    assert skip.status == "SKIP" and "not a Jetson" in skip.detail


def test_leak_check_sees_memory_that_is_not_freed(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    s, _, cuda = setup
    from runtime.backends.tensorrt import TensorRTBackend

    monkeypatch.setattr(TensorRTBackend, "_release", lambda self: None)  # frees nothing
    monkeypatch.setattr(gpu_check, "LEAK_SLACK", 1 << 20)  # the tiny model leaks ~100 kB per open
    (r,) = run_checks([c for c in check_list(s) if c[0].startswith("open/infer")], progress=False)
    assert r.status == "FAIL" and "free device memory fell" in r.detail


def test_table_and_json(tmp_path: Path) -> None:
    results = [Result("a check", "PASS", "fine", 1.0), Result("another", "FAIL", "Bad: x", 0.5),
               Result("dla", "SKIP", "not a Jetson", 0.0)]
    table = render_table(results)
    assert "a check" in table and "FAIL" in table and table.splitlines()[-1] == "1 passed, 1 failed, 1 skipped"
    doc = json.loads(write_json(tmp_path / "r" / "g.json", results, {"tensorrt": "10.3.0"}).read_text())
    assert doc["passed"] is False and doc["environment"]["tensorrt"] == "10.3.0"
    assert [r["status"] for r in doc["results"]] == ["PASS", "FAIL", "SKIP"]
    tol = gpu_check.TOLERANCE
    assert tol["fp32"][0] < tol["fp16"][0] < tol["int8"][0] and tol["fp32"][1] < tol["fp16"][1] < tol["int8"][1]


def test_context_checks_see_a_context_left_current(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """#30.1: the leak loop and the context check FAIL when close() leaves the context current (what
    pycuda's detach() of a primary context does)."""
    s, _, cuda = setup
    from runtime.backends.tensorrt import TensorRTBackend

    real_close = TensorRTBackend.close

    def close_then_detach(self) -> None:
        ctx = self._ctx
        real_close(self)
        if ctx is not None and not ctx.detached:
            ctx.detach()  # the old close(): pushes the context, releases it, pops nothing

    monkeypatch.setattr(TensorRTBackend, "close", close_then_detach)
    monkeypatch.setattr(trt_compat, "primary_context",  # the old open(): a retain of its own each time
                        lambda cuda, index=0: cuda.Device(index).retain_primary_context())
    picked = [c for c in check_list(s) if c[0].startswith(("open/infer", "close() leaves"))]
    results = run_checks(picked, progress=False)
    assert [r.status for r in results] == ["FAIL", "FAIL"], render_table(results)
    assert "still current" in results[0].detail and "current on the main thread" in results[1].detail


def test_tolerances_follow_the_logit_scale_and_the_probability(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """#30.17: fixed absolute tolerances on logits false-FAIL a model with large logits (fp16 moves a
    logit of 100 by ~0.05 and no verdict); errors are judged relative to the logit scale, and on the
    probability, which catches what moves a verdict near the threshold."""
    s, _, _ = setup
    real_batch = gpu_check.batch
    monkeypatch.setattr(gpu_check, "batch", lambda st, n, seed=0: real_batch(st, n, seed) + 100.0)  # logits ~100
    s.reference = lambda x: _mean(x) * (1 + 5e-4)  # fp16-sized relative rounding
    picked = [c for c in check_list(s) if c[0] == "build+infer fp16 1:4:8"]
    (r,) = run_checks(picked, progress=False)
    assert r.status == "PASS", r.detail
    monkeypatch.setattr(gpu_check, "batch", real_batch)  # logits near 0, where an error moves verdicts
    s.reference = lambda x: _mean(x) + 0.2
    (r,) = run_checks(picked, progress=False)
    assert r.status == "FAIL" and "max |Δp| 0.0499" in r.detail
    rel, prob = gpu_check.disagreement(np.array([[100.05]]), np.array([[100.0]]))
    assert rel == pytest.approx(5e-4) and prob < 1e-6


def test_triton_lines_fail_on_the_configs_triton_refuses(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """#30.2/#30.3: the FP16-I/O and DLA lines load the Triton config through the TensorRT backend's
    checks; a config with TYPE_FP32 for HALF tensors, or without the DLA core, FAILs."""
    from export import triton

    s, _, _ = setup
    with monkeypatch.context() as m:  # the config of before: TYPE_FP32 whatever the engine's tensors
        m.setattr(triton, "_plan_types", lambda model, raw: (lambda name: "TYPE_FP32"))
        (r,) = run_checks([c for c in check_list(s) if c[0].startswith("FP16-I/O")], progress=False)
    assert r.status == "FAIL" and "unexpected datatype TYPE_FP16 for inference input 'input'" in r.detail
    real = triton.make_config
    monkeypatch.setattr(triton, "make_config", lambda *a, **k: real(*a[:8]))  # the dla_core dropped
    (r,) = run_checks([c for c in check_list(s) if c[0].startswith("DLA engine")], progress=False)
    assert r.status == "FAIL" and "unable to create TensorRT engine" in r.detail


def _fake_nvinfer(args: list, timeout: float = 0) -> subprocess.CompletedProcess:
    """gst-launch with nvinfer, as far as a rebuild goes: no engine file, so it builds from onnx-file and
    writes <onnx>_b<batch>_gpu<id>_<mode>.engine beside it; INT8 only with a readable int8-calib-file
    ("INT8 calibration file not specified. Trying FP16 mode.")."""
    cfg = Path(next(a for a in args if str(a).startswith("config-file-path=")).split("=", 1)[1])
    prop = gpu_check.nvinfer_properties(cfg)
    assert not (cfg.parent / prop["model-engine-file"]).exists()
    mode = gpu_check.NVINFER_MODES[prop["network-mode"]]
    calib = prop.get("int8-calib-file")
    if mode == "int8" and not (calib and (cfg.parent / calib).is_file()):
        mode = "fp16"
    onnx = (cfg.parent / prop["onnx-file"]).resolve()
    Path(f"{onnx}_b{prop['batch-size']}_gpu{prop['gpu-id']}_{mode}.engine").write_bytes(b"rebuilt")
    return subprocess.CompletedProcess(args, 0, "", "")


def test_deepstream_rebuild_line(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DeepStream line removes the engine and has nvinfer rebuild it from onnx-file: fp16, and int8
    from the calibration cache (a config without int8-calib-file comes back FP16: FAIL)."""
    from export import deepstream

    s, _, _ = setup
    picked = [c for c in check_list(s) if c[0].startswith("DeepStream")]
    monkeypatch.setattr(gpu_check, "deepstream_tools", lambda: None)
    (r,) = run_checks(picked, progress=False)
    assert r.status == "SKIP" and "DeepStream is not installed" in r.detail
    monkeypatch.setattr(gpu_check, "deepstream_tools", lambda: ("gst-launch-1.0", "gst-inspect-1.0"))
    monkeypatch.setattr(gpu_check, "run_pipeline", _fake_nvinfer)
    (r,) = run_checks(picked, progress=False)
    assert r.status == "PASS" and "_gpu0_fp16.engine" in r.detail and "_gpu0_int8.engine" in r.detail, r.detail
    assert not list(s.onnx.parent.glob("*.engine"))  # nothing written beside the user's ONNX
    monkeypatch.setattr(deepstream, "calibration_file", lambda engine, raw: None)  # the config of before
    (r,) = run_checks(picked, progress=False)
    assert r.status == "FAIL" and "did not build" in r.detail and "_int8.engine" in r.detail and "_fp16" in r.detail
