"""pytest configuration: gpu tests skip by capability; the tiny model fixture."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests.helpers import ROOT, has_gpu

SUITE = ROOT / "tests" / "benchmarks" / "suite"
CACHE = pytest.StashKey[tuple]()


def pytest_ignore_collect(collection_path, config):
    """The pytest-benchmark suite runs only when asked for: ``pytest tests/benchmarks/suite --benchmark-only``."""
    if collection_path == SUITE and not config.getoption("benchmark_only", default=False):
        return True
    return None


def pytest_configure(config):
    """The offline faces' detection cache (training.sample_faces) lives in a folder of this run's own,
    so no test reads a cache from outside the repository; the pytest-xdist workers and every process
    a test starts inherit it. Removed at the end by the process that made it. They inherit the OpenMP
    thread count set here too."""
    if hasattr(config, "workerinput") and os.environ.get("JRC_CACHE_DIR"):
        return  # a worker: the controller's folder
    # One OpenMP thread per process (PyTorch's intra-op pool), unless the caller chose: `make test` runs
    # one pytest worker per core, and two-thread pools in two workers (and in the processes they start)
    # spin against each other (measured on 2 cores: the torch-heavy tests took 30 % less CPU with one).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    folder = tempfile.mkdtemp(prefix="jrc-test-cache-")
    config.stash[CACHE] = (folder, os.environ.get("JRC_CACHE_DIR"))
    os.environ["JRC_CACHE_DIR"] = folder


def pytest_unconfigure(config):
    folder, before = config.stash.get(CACHE, (None, None))
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        if before is None:
            os.environ.pop("JRC_CACHE_DIR", None)
        else:
            os.environ["JRC_CACHE_DIR"] = before


def pytest_collection_modifyitems(config, items):
    # The tests that take minutes run first (stable order otherwise). `make test` uses pytest-xdist's
    # --dist worksteal: each worker starts with a contiguous half of this order and an idle worker takes
    # half of the other's queue, so the minutes-long tests start at once and the short ones fill in around
    # them. (--dist load hands out fixed chunks of ~N/8 tests: both long tests landed on one worker, with
    # a hundred short ones queued behind them, and that worker finished 77 s after the other.)
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
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
