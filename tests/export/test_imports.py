"""Dependency hygiene: the export modules import, and their --help runs, with torch, onnx, onnxruntime,
onnxslim, polygraphy, tensorrt, pycuda and h5py all blocked (they are imported only where used)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT

HEAVY = ("torch", "onnx", "onnxruntime", "onnxslim", "polygraphy", "tensorrt", "pycuda", "pycuda.driver", "h5py")
MODULES = ("export.onnx", "export.fp16", "export.engine", "export.triton", "export.deepstream", "export.mesonet")
BLOCK = f"import sys\nfor m in {HEAVY!r}:\n    sys.modules[m] = None\n"


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_modules_import_without_heavy_libraries() -> None:
    p = _run("".join(f"import {m}\n" for m in MODULES) + "import runtime.backends.tensorrt\nprint('ok')\n")
    assert p.stdout.strip() == "ok", p.stderr


@pytest.mark.parametrize("module", MODULES)
def test_help_without_heavy_libraries(module: str) -> None:
    p = _run(f"import runpy\nsys.argv = [{module!r}, '--help']\nrunpy.run_module({module!r}, run_name='__main__')\n")
    assert p.returncode == 0 and "usage:" in p.stdout, p.stderr
