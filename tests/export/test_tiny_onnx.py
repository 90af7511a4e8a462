"""The small real ONNX model that the export and TensorRT tests build runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers.models import tiny_onnx


def test_tiny_onnx_runs(tmp_path: Path) -> None:
    import onnxruntime as ort

    path = tiny_onnx(tmp_path / "f.onnx", graph="full", qdq=True)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    logit, recon = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert logit.shape == (2, 1) and np.allclose(recon, x / 2)
