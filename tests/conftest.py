"""Shared test helpers: capability checks for skipping by what the machine has, the tiny model, strict JSON."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRT_API_DIR = ROOT.parent / "shared" / "trt-api"


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def has_gpu() -> bool:
    """TensorRT importable and a CUDA device usable (checked in a subprocess: no crash here)."""
    if not (has_module("tensorrt") and has_module("pycuda")):
        return False
    code = "import pycuda.driver as d; d.init(); assert d.Device.count() > 0"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).returncode == 0


def run_module(module: str, *args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` from the repository root and capture its output."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kw)


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not has_gpu():
        skip = pytest.mark.skip(reason="needs TensorRT, pycuda and a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def load_strict(path):
    """Parse a benchmark's JSON strictly: NaN or Infinity in the file fails the test."""
    def refuse(token):
        raise ValueError(f"{path}: non-JSON constant {token}")
    return json.loads(Path(path).read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny untrained JRC artifacts (checkpoint, detect and full ONNX), once per test module."""
    from benchmarks.fixtures import make_tiny_artifacts

    return make_tiny_artifacts(tmp_path_factory.mktemp("tiny"))
