"""Dependency hygiene: the runtime runs without torch, and --help without any backend library."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT
from tests.helpers.media import gray_video
from tests.helpers.models import make_onnx

HEAVY = ("onnxruntime", "tensorrt", "pycuda", "torch", "onnx", "paho", "prometheus_client", "tomli", "aiohttp", "av",
         "selenium")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def _blocking(names) -> str:
    return "import sys\n" + "".join(f"sys.modules[{n!r}] = None\n" for n in names)


def test_help_works_with_every_backend_library_blocked():
    res = _python(_blocking(HEAVY) + "from runtime.detect import main\nsys.exit(main(['--help']))")
    assert res.returncode == 0, res.stderr
    assert "--engine" in res.stdout and "--source" in res.stdout and "Exit codes" in res.stdout


def test_package_roots_import_without_backend_libraries():
    res = _python(_blocking(HEAVY) + "import runtime, runtime.backends, runtime.backends.base, runtime.detect\n"
                  "print('ok')")
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


@pytest.mark.parametrize("faces", ["none", "mtcnn"])
def test_a_full_run_imports_no_torch_onnx_or_training(tmp_path, faces):
    model = make_onnx(tmp_path / "m.onnx")
    clip = gray_video(tmp_path / "g.mp4", [100] * 3)
    code = ("import sys\nfrom runtime.detect import main\n"
            f"rc = main(['--engine', {str(model)!r}, '--source', {str(clip)!r}, '--faces', {faces!r}, '--quiet'])\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'onnx', 'onnxslim', 'polygraphy', 'training', 'export', 'calibration', 'tensorrt', 'pycuda'))\n"
            "print(rc, bad)")
    res = _python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "0 []"


def test_missing_onnxruntime_is_a_one_line_error_naming_it(tmp_path):
    model = make_onnx(tmp_path / "m.onnx")
    res = _python(_blocking(["onnxruntime"]) + "from runtime.errors import run_cli\nfrom runtime.detect import main\n"
                  f"sys.argv = ['jrc-detect', '--engine', {str(model)!r}, '--source', 'x.png']\n"
                  "run_cli(main, 'jrc-detect')")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "onnxruntime is not installed" in res.stderr and "pip install" in res.stderr


def test_engine_without_tensorrt_is_a_one_line_error(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not a plan")
    res = _python(_blocking(["tensorrt", "pycuda"]) + "from runtime.detect import main\n"
                  f"sys.exit(main(['--engine', {str(engine)!r}, '--source', 'x.png']))")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jrc-detect: error: ") and "m.engine" in lines[0]


@pytest.mark.parametrize("flag, value, module", [("--mqtt", "mqtt://127.0.0.1:1", "paho"),
                                                 ("--metrics", "1", "prometheus_client"),
                                                 ("--web", "1", "aiohttp")])
def test_a_missing_box_dependency_is_one_line_naming_the_extra(tmp_path, flag, value, module):
    model = make_onnx(tmp_path / "m.onnx")
    clip = gray_video(tmp_path / "g.mp4", [100] * 3)
    res = _python(_blocking([module]) + "from runtime.errors import run_cli\nfrom runtime.detect import main\n"
                  f"sys.argv = ['jrc-detect', '--engine', {str(model)!r}, '--source', {str(clip)!r}, {flag!r}, "
                  f"{value!r}, '--quiet']\nrun_cli(main, 'jrc-detect')")
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 1 and len(err) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "is not installed" in err[0] and "pip install 'jrc-edge[box]'" in err[0]
