"""The TensorRT API lists the repository carries (``trt-api/``) and the script that regenerates them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, TRT_API_DIR

RELEASES = ("8.5.3.1", "8.6.1", "10.3.0", "10.13.0.35", "11.4")

# A stand-in ``tensorrt`` rebuilt from one list: classes with exactly the listed members, other
# names as objects of the listed type. dump.py must turn it back into the same list.
STAND_IN = '''
import json as _json, sys as _sys, types as _types
_api = _json.load(open({path!r}))
__version__ = _api["__version__"]
_examples = {{"str": "x", "function": lambda: None, "builtin_function_or_method": len, "module": _types}}
_mod = _sys.modules[__name__]
for _name, _v in _api["top"].items():
    if isinstance(_v, list):
        setattr(_mod, _name, type(_name, (), {{m: None for m in _v}}))
for _name, _v in _api["top"].items():
    if not isinstance(_v, list):
        _cls = getattr(_mod, _v, None)
        if _v not in _examples and not isinstance(_cls, type):  # a nested class, e.g. Logger.Severity
            _cls = type(_v, (), {{}})
        setattr(_mod, _name, _cls() if isinstance(_cls, type) else _examples[_v])
'''


def test_every_supported_release_is_carried_in_the_repository():
    assert TRT_API_DIR == ROOT / "trt-api" and TRT_API_DIR.is_dir()
    for release in RELEASES:
        api = json.loads((TRT_API_DIR / f"tensorrt-{release}.json").read_text())
        assert api["__version__"].startswith(release)
        assert "Builder" in api["top"] and "execute_async_v3" in api["top"]["IExecutionContext"]


@pytest.mark.parametrize("release", ["8.5.3.1", "11.4"])
def test_dump_regenerates_a_list_from_an_installed_module(tmp_path: Path, release: str):
    source = TRT_API_DIR / f"tensorrt-{release}.json"
    pkg = tmp_path / "tensorrt"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(STAND_IN.format(path=str(source)))
    p = subprocess.run([sys.executable, str(ROOT / "trt-api" / "dump.py")], capture_output=True, text=True,
                       cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == json.loads(source.read_text())


def test_dump_without_tensorrt_is_one_line(tmp_path: Path):
    (tmp_path / "tensorrt.py").write_text("raise ImportError('No module named tensorrt')\n")
    p = subprocess.run([sys.executable, str(ROOT / "trt-api" / "dump.py")], capture_output=True, text=True,
                       cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}, timeout=60)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "pip install tensorrt" in p.stderr
