"""calibration.threshold and calibration.report say "note: replacing <earlier output>" only once the
model and the faces passed their checks: with an earlier output in place and a bad input, stderr is the
run's one error line; with good inputs the note is still said."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import has_module, run_in_process
from tests.helpers.models import tiny_onnx

pytestmark = pytest.mark.skipif(not has_module("onnxruntime"), reason="needs onnxruntime")


@pytest.fixture
def earlier(tmp_path: Path) -> dict[str, Path]:
    files = {"json": tmp_path / "existing.json", "onnx": tmp_path / "existing.onnx"}
    for p in files.values():
        p.write_text("an earlier result")
    return files


@pytest.mark.parametrize("module, argv, error", [
    ("calibration.threshold", ["--onnx", "{model}", "--data", "/nonexistent", "--json", "{json}", "--out", "{onnx}"],
     "/nonexistent: not found"),
    ("calibration.threshold", ["--onnx", "{missing}", "--data", "/nonexistent", "--json", "{json}", "--out", "{onnx}"],
     "ONNX model not found"),
    ("calibration.report", ["--fp32", "{model}", "--eval-data", "/nonexistent", "--json", "{json}"],
     "/nonexistent: not found"),
    ("calibration.report", ["--fp32", "{model}", "--artifact", "x={model}", "--eval-data", "/nonexistent",
                            "--json", "{json}"], "/nonexistent: not found"),
], ids=["threshold-data", "threshold-onnx", "report-eval-data", "report-artifact-eval-data"])
def test_a_bad_input_is_the_only_line(module: str, argv: list[str], error: str, tmp_path: Path,
                                      earlier: dict[str, Path]) -> None:
    names = {"model": tiny_onnx(tmp_path / "detect.onnx"), "missing": tmp_path / "nope.onnx", **earlier}
    r = run_in_process(module, *(a.format(**names) for a in argv))
    lines = r.stderr.splitlines()
    assert r.returncode != 0 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"{module}: error:") and error in lines[0], r.stderr
    assert all(p.read_text() == "an earlier result" for p in earlier.values())


def test_report_says_what_it_replaces_with_good_inputs(tmp_path: Path, earlier: dict[str, Path]) -> None:
    model = tiny_onnx(tmp_path / "detect.onnx")
    r = run_in_process("calibration.report", "--fp32", str(model), "--eval-data", "synthetic:8", "--eval-size", "8",
                       "--json", str(earlier["json"]), "--quiet")
    assert r.returncode == 0, r.stderr
    assert f"calibration.report: note: replacing {earlier['json']} (an earlier result)" in r.stderr.splitlines()
    assert earlier["json"].read_text() != "an earlier result"
