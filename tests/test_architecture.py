"""The layers of docs/architecture.md, checked on every module's imports (module level and inside functions).

runtime < training < export < calibration < benchmarks: a package imports only packages to its left
(and itself); ``runtime`` imports no torch and no ONNX tooling; no module imports another package's
private (``_name``) module; the tests import no test module (shared builders live in tests/helpers);
no module changes the process's working directory (``os.chdir``): every tool may be called with
paths relative to the caller's, and a library function must not move them under other threads.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

LAYERS = ["runtime", "training", "export", "calibration", "benchmarks"]
HEAVY_FOR_RUNTIME = {"torch", "onnx", "onnxslim", "onnxsim", "polygraphy", "onnxruntime_extensions"}


def imports(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in ``path``, relative imports resolved against ``package``
    (by default the package the file sits in)."""
    tree = ast.parse(path.read_text(), str(path))
    if package is None:
        package = ".".join(path.relative_to(ROOT).parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in (*parts, base) if p)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return found


def sources(top: str) -> list[Path]:
    return sorted((ROOT / top).rglob("*.py"))


def is_module(dotted: str) -> bool:
    parts = dotted.split(".")
    path = ROOT.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@pytest.mark.parametrize("top", LAYERS)
def test_packages_import_only_lower_layers(top: str):
    allowed = set(LAYERS[: LAYERS.index(top) + 1])
    bad = []
    for path in sources(top):
        for line, mod in imports(path):
            root = mod.split(".")[0]
            if root in LAYERS and root not in allowed:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
            if top == "runtime" and root in HEAVY_FOR_RUNTIME:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod} (runtime must run without it)")
    assert not bad, "\n".join(bad)


def test_no_private_module_of_another_package_is_imported():
    bad = []
    for top in LAYERS:
        for path in sources(top):
            own = ".".join(path.relative_to(ROOT).parts[:-1])
            for line, mod in imports(path):
                parts = mod.split(".")
                if parts[0] not in LAYERS:
                    continue
                for i, part in enumerate(parts):
                    if part.startswith("_") and not part.startswith("__") and is_module(".".join(parts[: i + 1])):
                        owner = ".".join(parts[:i])
                        if owner != own:
                            bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod} (private to {owner})")
                        break
    assert not bad, "\n".join(bad)


def test_tests_share_builders_through_helpers_not_test_modules():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}"
           for p in sources("tests") for line, mod in imports(p)
           if mod.startswith("tests.") and any(part.startswith("test_") for part in mod.split("."))]
    assert not bad, "\n".join(bad)


def chdir_calls(path: Path) -> list[int]:
    """Lines that change the working directory: ``os.chdir``/``os.fchdir`` (called or passed on)
    and ``chdir`` imported by name (``from os import chdir``, ``from contextlib import chdir``)."""
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("chdir", "fchdir"):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and any(a.name in ("chdir", "fchdir") for a in node.names):
            lines.append(node.lineno)
    return sorted(lines)


def test_no_module_changes_the_working_directory():
    bad = [f"{path.relative_to(ROOT)}:{line} changes the working directory; use absolute paths instead"
           for top in LAYERS for path in sources(top) for line in chdir_calls(path)]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_what_it_must_refuse(tmp_path: Path):
    """The checks above are only as good as ``imports``: it must see function-level and relative imports."""
    p = ROOT / "runtime" / "backends" / "onnxruntime.py"
    assert any(mod.startswith("runtime.") for _, mod in imports(p))
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from calibration import quantize\n    from .engine import x\n")
    found = {m for _, m in imports(probe, package="export")}
    assert "calibration.quantize" in found and "export.engine.x" in found
    probe.write_text("import os\nfrom contextlib import chdir\n\ndef f(d):\n    os.chdir(d)\n    undo = os.chdir\n")
    assert chdir_calls(probe) == [2, 5, 6]
