"""pytest configuration: gpu tests skip by capability; the tiny model fixture."""

from __future__ import annotations

import pytest

from tests.helpers import ROOT, has_gpu

SUITE = ROOT / "tests" / "benchmarks" / "suite"


def pytest_ignore_collect(collection_path, config):
    """The pytest-benchmark suite runs only when asked for: ``pytest tests/benchmarks/suite --benchmark-only``."""
    if collection_path == SUITE and not config.getoption("benchmark_only", default=False):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not has_gpu():
        skip = pytest.mark.skip(reason="needs TensorRT, pycuda and a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny untrained JRC artifacts (checkpoint, detect and full ONNX), once per test module."""
    from benchmarks.fixtures import make_tiny_artifacts

    return make_tiny_artifacts(tmp_path_factory.mktemp("tiny"))
