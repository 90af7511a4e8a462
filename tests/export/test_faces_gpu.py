"""The face detector's networks as TensorRT engines on a real GPU (``gpu`` marker: skipped without
TensorRT, pycuda and a CUDA device): built by export.engine, they find the same faces as ONNX
Runtime, and runtime.detect runs both models on the device."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.engine import faces_to_engines, onnx_to_engine
from export.trt_build import EngineOptions
from runtime.faces_cnn import BUNDLED, MtcnnFaceDetector
from tests.helpers import run_module

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("face_engines")
    out = {}
    for precision in ("fp32", "fp16"):
        faces_to_engines(BUNDLED, d / precision, EngineOptions(precision=precision))
        out[precision] = d / precision
    return out


def _astronaut() -> np.ndarray:
    import cv2
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.mark.parametrize("precision,tol_px,tol_score", [("fp32", 1, 1e-3), ("fp16", 3, 2e-2)])
def test_engines_find_the_faces_onnxruntime_finds(engines: dict, precision: str, tol_px: int,
                                                  tol_score: float) -> None:
    frame = _astronaut()
    want = MtcnnFaceDetector().detect(frame)
    det = MtcnnFaceDetector(engines[precision], suffix=".engine")
    try:
        got = det.detect(frame)
        assert len(got) == len(want) == 1
        assert np.abs(np.subtract(got[0], want[0])).max() <= tol_px
        assert abs(got[0].score - want[0].score) <= tol_score
        assert np.abs(got[0].landmarks - want[0].landmarks).max() <= 2 * tol_px
        assert det.refine(frame, want[0])
        assert det.describe()["backend"] == "tensorrt"
    finally:
        det.close()


def test_detect_runs_both_models_on_the_gpu(engines: dict, tmp_path: Path) -> None:
    """A classifier engine with the face engines beside --face-model: both on the device."""
    import cv2

    from tests.helpers.models import tiny_onnx

    onnx = tiny_onnx(tmp_path / "detect.onnx")
    plan = onnx_to_engine(onnx, tmp_path / "detect.fp16.engine", EngineOptions(precision="fp16"))
    img = tmp_path / "astronaut.png"
    cv2.imwrite(str(img), _astronaut())
    summary = tmp_path / "s.json"
    p = run_module("runtime.detect", "--engine", plan, "--source", img, "--face-model", engines["fp16"],
                   "--faces", "mtcnn", "--summary", summary, "--quiet")
    assert p.returncode == 0, p.stderr
    s = json.loads(summary.read_text())
    assert s["backend"]["backend"] == "tensorrt" and s["face_detector"]["backend"] == "tensorrt"
    assert s["faces"] == 1
