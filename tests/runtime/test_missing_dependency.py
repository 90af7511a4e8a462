"""Missing-dependency errors name an extra that exists (pyproject.toml) and a command that installs it."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
import tomllib

from runtime.errors import EXTRAS, missing_dependency
from tests.helpers import ROOT


def test_extras_match_pyproject():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS) == set(extras)


def test_every_call_names_an_existing_extra_or_none():
    calls = []
    for top in ("runtime", "training", "export", "calibration", "benchmarks"):
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "missing_dependency":
                    extra = node.args[1] if len(node.args) > 1 else next(k.value for k in node.keywords if k.arg == "extra")
                    calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", ast.literal_eval(extra)))
    assert len(calls) >= 8
    bad = [(where, extra) for where, extra in calls if extra is not None and extra not in EXTRAS]
    assert not bad, bad


def test_unknown_extra_is_a_programming_error():
    with pytest.raises(ValueError, match="no extra named 'runtime'"):
        missing_dependency("onnxruntime", "runtime")


def test_onnxruntime_missing_names_a_real_install(tmp_path):
    (tmp_path / "onnxruntime.py").write_text("raise ImportError('No module named onnxruntime')\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "from runtime.backends.onnxruntime import _import_ort\n"
            "try:\n    _import_ort()\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert p.stdout.startswith("UserError onnxruntime is not installed"), p.stdout + p.stderr
    assert "pip install onnxruntime" in p.stdout and "extra 'runtime'" not in p.stdout
