"""TensorRT on a real GPU (``gpu`` marker: skipped without TensorRT, pycuda and a CUDA device).

Engines built by export.engine (fp32, fp16, int8) are compared with ONNX Runtime through
Polygraphy's Comparator; the TensorRT backend is compared with ONNX Runtime directly. The
comparison helper itself is exercised without a GPU (ORT fp32 vs ORT fp16) so these tests do not
first fail on a machine that has one because of a helper bug.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import export.onnx as export_onnx
from export.engine import onnx_to_engine
from export.trt_build import EngineOptions
from runtime.meta import read_sidecar
from tests.helpers import run_module
from tests.helpers.models import make_checkpoint, tiny_onnx

SIZE = 224


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("gpu")
    export_onnx.export_checkpoint(make_checkpoint(d / "e.pt", "edge"), d, ("detect", "full"))
    return d


def compare(runners: list, atol: float, rtol: float, batch: int = 4, size: int = SIZE) -> bool:
    """Polygraphy: run every runner on the same random batches and compare all outputs pairwise."""
    from polygraphy import comparator as pc
    from polygraphy.common import TensorMetadata

    meta = TensorMetadata().add("input", np.float32, (batch, 3, size, size))
    loader = pc.DataLoader(seed=0, iterations=2, input_metadata=meta, val_range=(-2.0, 2.0))
    results = pc.Comparator.run(runners, data_loader=loader)
    simple = getattr(pc, "SimpleCompareFunc", None)  # Polygraphy 0.50+; CompareFunc.simple before
    func = simple(atol=atol, rtol=rtol) if simple else pc.CompareFunc.simple(atol=atol, rtol=rtol)
    return bool(pc.Comparator.compare_accuracy(results, compare_func=func))


def _ort(path: Path):
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    return OnnxrtRunner(SessionFromOnnx(str(path), providers=["CPUExecutionProvider"]))


def _trt(engine: Path):
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    return TrtRunner(EngineFromBytes(engine.read_bytes()))


def test_comparison_helper_without_gpu(tmp_path: Path) -> None:
    from export.fp16 import convert_file

    src = tiny_onnx(tmp_path / "d.onnx")
    half = convert_file(src, tmp_path / "d16.onnx")
    assert compare([_ort(src), _ort(half)], atol=5e-2, rtol=5e-2, size=32)
    assert not compare([_ort(src), _ort(half)], atol=1e-7, rtol=1e-7, size=32)  # it can fail


@pytest.mark.gpu
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-3), ("fp16", 5e-2)])
def test_engine_matches_onnxruntime(models: Path, tmp_path: Path, precision: str, tol: float) -> None:
    engine = onnx_to_engine(models / "detect.onnx", tmp_path / f"d.{precision}.engine",
                            EngineOptions(precision=precision, batch=(1, 4, 8), timing_cache=tmp_path / "t.cache"))
    assert compare([_ort(models / "detect.onnx"), _trt(engine)], atol=tol, rtol=tol)
    meta, raw = read_sidecar(engine)
    assert meta.precision == precision and meta.profile == {"min": 1, "opt": 4, "max": 8}
    assert (tmp_path / "t.cache").stat().st_size > 0


@pytest.mark.gpu
def test_int8_engine_matches_onnxruntime_loosely(models: Path, tmp_path: Path) -> None:
    from export import trt_build
    from runtime.backends import trt_compat

    trt = trt_compat.import_tensorrt()
    onnx = models / "detect.onnx"
    if trt_build.has_calibrators(trt):  # 8.5 - 10.x: implicit INT8 with the calibrator + cache
        opts = EngineOptions(precision="int8", batch=(1, 4, 8), calib_data="synthetic", calib_size=64,
                             calib_batch=8, calib_cache=tmp_path / "calib.cache")
    else:  # 11.x: explicit INT8 from a Q/DQ ONNX
        qdq = tmp_path / "detect.int8.onnx"
        p = run_module("calibration.quantize", "--onnx", onnx, "--data", "synthetic", "--target", "trt",
                       "--out", qdq, "--calib-size", "64", "--no-speed", "--quiet", "--max-auc-drop", "1",
                       "--max-dprob", "1",
                       timeout=600)
        assert p.returncode == 0, p.stderr
        onnx, opts = qdq, EngineOptions(precision="int8", batch=(1, 4, 8))
    engine = onnx_to_engine(onnx, tmp_path / "d.int8.engine", opts)
    assert compare([_ort(models / "detect.onnx"), _trt(engine)], atol=0.5, rtol=0.2)


@pytest.mark.gpu
def test_backend_matches_onnxruntime_from_a_worker_thread(models: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from runtime.backends import open_backend

    engine = onnx_to_engine(models / "full.onnx", tmp_path / "f.fp32.engine",
                            EngineOptions(precision="fp32", batch=(1, 2, 4)))
    x = np.random.default_rng(0).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    want = ort.InferenceSession(str(models / "full.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    got: dict = {}
    with open_backend(engine) as b:
        assert b.max_batch == 4
        t = threading.Thread(target=lambda: got.update(plain=b.infer(x), full=b.infer(x, reconstruct=True)))
        t.start()
        t.join()
    assert set(got["plain"]) == {"logit"} and set(got["full"]) == {"logit", "recon"}
    np.testing.assert_allclose(got["full"]["logit"], want[0], atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(got["full"]["recon"], want[1], atol=1e-3, rtol=1e-3)
