"""Helpers shared by the tests: where things are, what the machine has, running a module, strict JSON.

Builders of test inputs live beside this file: ``models`` (tiny ONNX models and checkpoints),
``media`` (generated faces and videos), ``trt_fakes`` (a ``tensorrt`` per release,
built from the API lists in ``trt-api/``), ``fake_cuda`` (a numpy ``pycuda``, the crashing stand-in
``tensorrt``, the device the fakes stand for).
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRT_API_DIR = ROOT / "trt-api"


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


def run_in_process(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m module args`` without a new interpreter: the module runs as ``__main__`` here (runpy),
    stdout and stderr captured, its exit status returned as run_module's would be. For the one-line
    error paths of the PyTorch tools, which would otherwise pay torch's import (about 3 s of CPU) per
    call; not for runs that install signal handlers, start threads or print from native code."""
    import contextlib
    import io
    import runpy
    import warnings

    out, err, code = io.StringIO(), io.StringIO(), 0
    argv = sys.argv
    sys.argv = [module, *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            # runpy's note that the module was imported before (by an earlier test); nothing else is hidden
            warnings.filterwarnings("ignore", "'.*' found in sys.modules after import of package", RuntimeWarning)
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess([module, *map(str, args)], code, out.getvalue(), err.getvalue())


def detect_process(*args: str, **kw) -> subprocess.Popen:
    """``python -m runtime.detect args`` as a foreground job would run it, output piped, for tests that
    signal it: SIGINT at its default in the child, because a pytest started in the background (``&``,
    ``nohup``) passes SIGINT on ignored, and the runtime keeps an ignored SIGINT ignored."""
    return subprocess.Popen([sys.executable, "-m", "runtime.detect", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


def load_strict(path):
    """Parse a benchmark's JSON strictly: NaN or Infinity in the file fails the test."""
    def refuse(token):
        raise ValueError(f"{path}: non-JSON constant {token}")
    return json.loads(Path(path).read_text(), parse_constant=refuse)
