"""pytest-benchmark suite configuration: ``pytest tests/benchmarks/suite --benchmark-only``.

Collected only with ``--benchmark-only`` (``tests/conftest.py``), so ``make test`` never times
anything. Artifacts: ``JRC_BENCH_ENGINES`` (paths separated by ``os.pathsep``), else the bundled ``runtime/assets/jrc_edge_detect.onnx``,
else a tiny generated model (numbers meaningless, the suite still runs). Batches:
``JRC_BENCH_BATCHES`` (default ``1,8``); threads: ``JRC_BENCH_THREADS`` (default all cores).
TensorRT engines are marked ``gpu`` and skip without TensorRT, pycuda and a CUDA device
(``tests/conftest.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import ROOT

BUNDLED = ROOT / "runtime" / "assets" / "jrc_edge_detect.onnx"
TINY = "tiny"


def engine_paths() -> list[str]:
    env = os.environ.get("JRC_BENCH_ENGINES", "")
    if env.strip():
        return [p for p in env.split(os.pathsep) if p.strip()]
    return [str(BUNDLED)] if BUNDLED.is_file() else [TINY]


def batches() -> list[int]:
    return [int(b) for b in os.environ.get("JRC_BENCH_BATCHES", "1,8").split(",") if b.strip()]


def threads() -> int:
    from benchmarks.report import default_threads

    return int(os.environ.get("JRC_BENCH_THREADS", "0")) or default_threads()


def is_engine(path: str) -> bool:
    return path.lower().endswith((".engine", ".plan"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine_path" in metafunc.fixturenames:
        params = [pytest.param(p, id=Path(p).name, marks=[pytest.mark.gpu] if is_engine(p) else [])
                  for p in engine_paths()]
        metafunc.parametrize("engine_path", params)
    if "batch" in metafunc.fixturenames:
        metafunc.parametrize("batch", batches(), ids=lambda b: f"b{b}")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from benchmarks.fixtures import make_tiny_artifacts

    return make_tiny_artifacts(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def resolve(tiny_dir):
    def _resolve(path: str) -> str:
        return str(tiny_dir["detect"]) if path == TINY else path
    return _resolve


@pytest.fixture
def backend(engine_path, resolve):
    from runtime.backends import open_backend

    path = resolve(engine_path)
    opts = {"threads": threads(), "max_batch": max(batches())} if path.lower().endswith(".onnx") else {}
    b = open_backend(path, **opts)
    yield b
    b.close()


@pytest.fixture
def device_info() -> dict[str, str]:
    from runtime.cpu import name as cpu_name

    return {"device": cpu_name(), "threads": str(threads())}
