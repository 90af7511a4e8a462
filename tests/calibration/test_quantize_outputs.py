"""calibration.quantize's outputs are checked before any face is read: an output that is an input or
another output is a bad command line (exit 2), one that cannot be written is one line (exit 1), and an
earlier artifact being replaced is said with the engines built from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from calibration import quantize
from runtime.errors import UserError
from tests.helpers.models import make_onnx


@pytest.fixture()
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    def never(*_a, **_k):
        raise AssertionError("faces were read before the outputs were checked")

    monkeypatch.setattr(quantize, "_load", never)
    return make_onnx(tmp_path / "detect.onnx")


def _refused(model: Path, extra: list, match: str, code: int) -> None:
    with pytest.raises(UserError, match=match) as e:
        quantize.main(["--onnx", str(model), "--data", "synthetic", *map(str, extra)])
    assert e.value.exit_code == code, str(e.value)


def test_outputs_that_are_inputs_or_each_other_exit_2(model: Path, tmp_path: Path) -> None:
    before = model.read_bytes()
    _refused(model, ["--out", model], "--out .*the same file as --onnx", 2)
    _refused(model, ["--report", model], "--report .*the same file as --onnx", 2)
    manifest = tmp_path / "faces.csv"
    manifest.write_text("path,label\n")
    _refused(model, ["--data", manifest, "--report", manifest], "--report .*the same file as --data", 2)
    _refused(model, ["--out", tmp_path / "x.json", "--report", tmp_path / "x.json"], "one output would overwrite", 2)
    _refused(model, ["--target", "trt,cpu", "--out", tmp_path / "x.onnx"], "--out names one file", 2)
    _refused(model, ["--target", "gpu"], "--target 'gpu'", 2)
    _refused(model, ["--calib-size", "0"], "--calib-size 0", 2)
    _refused(model, ["--max-dprob", "nan"], "--max-dprob nan", 2)
    assert model.read_bytes() == before


def test_unwritable_outputs_are_one_line_before_calibration(model: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _refused(model, ["--out", blocker / "x.onnx"], "is a file, not a folder", 1)
    _refused(model, ["--out-dir", blocker], "is a file, not a folder", 1)
    (tmp_path / "detect.quant.json").mkdir()
    _refused(model, [], "detect.quant.json: is a folder", 1)
    _refused(model, ["--report", "/proc/jrc-x/r.json"], "nothing can be written in /proc", 1)


def test_replacing_an_artifact_names_the_engines_built_from_it(model: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in ("detect.int8.onnx", "detect.int8.engine", "detect.int8.engine.json", "detect.quant.json"):
        (out / name).write_text("earlier")

    def calibrate(*_a, **_k):
        raise AssertionError("calibration started")

    monkeypatch.setattr(quantize, "_load", lambda a: (None, None))  # the inputs read and passed
    monkeypatch.setattr(quantize, "_anchor_set", lambda a, meta: None)
    monkeypatch.setattr(quantize, "_calibrate_and_quantize", calibrate)
    with pytest.raises(AssertionError, match="calibration started"):  # the notes come before the work
        quantize.main(["--onnx", str(model), "--data", "synthetic", "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert (f"note: replacing {out / 'detect.int8.onnx'} (an earlier result); built from the earlier one, "
            "rebuild them: detect.int8.engine, detect.int8.engine.json") in err
    assert f"note: replacing {out / 'detect.quant.json'} (an earlier result)\n" in err
