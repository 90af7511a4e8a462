"""pytest-benchmark cases: classifier per backend/precision/batch, a bare session, the CPU stages.

Run with ``pytest tests/benchmarks/suite --benchmark-only`` (add ``--benchmark-json out.json`` to keep the
numbers). Each case records device, backend, precision and batch in ``extra_info``.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.runners import make_input


def _info(benchmark, device_info, backend: str, precision: str, batch: int, **more) -> None:
    benchmark.extra_info.update(device_info)
    benchmark.extra_info.update({"backend": backend, "precision": precision, "batch": batch, **more})


def test_classifier(benchmark, backend, batch, device_info):
    """The runtime's backend (ONNX Runtime or TensorRT) on one batch of faces."""
    if batch > backend.max_batch:
        pytest.skip(f"batch {batch} exceeds the artifact's max batch {backend.max_batch}")
    x = make_input(backend.meta, batch)
    d = backend.describe()
    _info(benchmark, device_info, backend.name, backend.meta.precision, batch, graph=backend.meta.graph,
          provider=d.get("provider", "tensorrt"))
    if "device" in d:  # TensorRT: the GPU, not the CPU
        benchmark.extra_info.update(device=d["device"], tensorrt=d.get("tensorrt", ""))
    out = benchmark(backend.infer, x)
    assert out["logit"].shape == (batch, 1) and np.isfinite(out["logit"]).all()


def test_bare_onnxruntime(benchmark, engine_path, resolve, batch, device_info):
    """A plain InferenceSession on the same file: the runtime's overhead is the difference."""
    from benchmarks.runners import Spec, open_runner
    from tests.benchmarks.suite.conftest import is_engine, threads

    if is_engine(engine_path):
        pytest.skip("bare onnxruntime applies to .onnx artifacts")
    r = open_runner(Spec("bare", resolve(engine_path), threads(), max(batch, 1), reconstruct=False))
    x = make_input(r.meta, batch)
    _info(benchmark, device_info, "onnxruntime (bare)", r.meta.precision, batch, graph=r.meta.graph)
    out = benchmark(r.bind(x))
    assert out[0].shape[0] == batch


def test_preprocess(benchmark, backend, batch, device_info):
    """Crops → normalised NCHW input (runtime.preprocess.to_input)."""
    from runtime.preprocess import to_input

    s = backend.meta.input_size
    crops = np.random.default_rng(0).integers(0, 256, (batch, s, s, 3), dtype=np.uint8)
    _info(benchmark, device_info, "numpy", "fp32", batch, stage="preprocess")
    x = benchmark(to_input, crops, backend.meta)
    assert x.shape == (batch, 3, s, s)


def test_face_detection_720p(benchmark, device_info, tmp_path):
    """The Haar detector on one 720p frame of the generated clip (downscaled to 640 px)."""
    import cv2

    from benchmarks.pipeline import generate_clip
    from runtime.faces import HaarFaceDetector

    cap = cv2.VideoCapture(generate_clip(tmp_path / "c.mp4", 2))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (720, 1280, 3)
    det = HaarFaceDetector(detect_width=640)
    _info(benchmark, device_info, "opencv haar", "n/a", 1, stage="faces", frame="1280x720")
    boxes = benchmark(det.detect, frame)
    assert len(boxes) == 1
