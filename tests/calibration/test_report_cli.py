"""calibration.report checks its command line, its artifacts and --json before reading any face."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calibration import report
from runtime.errors import UserError
from tests.helpers.models import make_onnx


@pytest.fixture()
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import training.calibration_set

    def never(*_a, **_k):
        raise AssertionError("faces were read before the command line was checked")

    monkeypatch.setattr(training.calibration_set, "load", never)
    return make_onnx(tmp_path / "detect.onnx")


def _refused(model: Path, extra: list, match: str, code: int) -> None:
    with pytest.raises(UserError, match=match) as e:
        report.main(["--fp32", str(model), *map(str, extra)])
    assert e.value.exit_code == code, str(e.value)


def test_bad_values_exit_2(model: Path, tmp_path: Path) -> None:
    _refused(model, ["--artifact", "int8"], "expected NAME=PATH", 2)
    _refused(model, ["--artifact", f"a={model}", "--artifact", f"a={model}"], "given twice", 2)
    _refused(model, ["--eval-size", "1"], "--eval-size 1", 2)
    _refused(model, ["--max-auc-drop", "2"], "--max-auc-drop 2", 2)
    _refused(model, ["--max-dprob", "0.05"], "only checked with --max-auc-drop", 2)


def test_json_that_is_an_input_exits_2_and_unwritable_json_is_one_line(model: Path, tmp_path: Path) -> None:
    other = make_onnx(tmp_path / "detect.int8.onnx")
    before = other.read_bytes()
    _refused(model, ["--json", model], "--json .*the same file as --fp32", 2)
    _refused(model, ["--artifact", f"int8={other}", "--json", other], "--json .*the same file as --artifact int8", 2)
    assert other.read_bytes() == before
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _refused(model, ["--json", blocker / "r.json"], "is a file, not a folder", 1)
    (tmp_path / "r.json").mkdir()
    _refused(model, ["--json", tmp_path / "r.json"], "is a folder; name a file", 1)
    _refused(model, ["--artifact", f"int8={tmp_path / 'missing.onnx'}"], "missing.onnx not found", 1)


def test_write_json_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("earlier")
    link = tmp_path / "hard.json"
    link.hardlink_to(path)  # a reader holding the old file keeps it: the new one is renamed into place
    report.write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1} and link.read_text() == "earlier"
