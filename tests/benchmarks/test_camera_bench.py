"""benchmarks.camera: every condition of the camera's trip scored on the pool's test people."""

from __future__ import annotations

import json

import pytest

from runtime.errors import UserError
from tests.helpers.models import make_onnx

camera_bench = pytest.importorskip("benchmarks.camera")


def test_rows_per_condition_and_the_condition_reaches_the_crops(tmp_path, capsys):
    model = make_onnx(tmp_path / "m.onnx", size=32)  # logit = 4 · mean of the input: a brightness meter
    out = tmp_path / "camera.json"
    assert camera_bench.main(["--engine", str(model), "--items", "16", "--boot", "5", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["condition"] for r in rows] == list(camera_bench.conditions())
    by = {r["condition"]: r for r in rows}
    assert all(0.0 <= r["auc"] <= 1.0 and r["n"] == 16 for r in rows)
    assert by["dim light"]["far"] < by["clean"]["far"]  # darker faces: the meter calls fewer of them fake
    assert "dim light" in capsys.readouterr().out


def test_needs_a_model_and_real_faces_in_frames(tmp_path):
    with pytest.raises(UserError, match="at least one model"):
        camera_bench.main([])
    model = make_onnx(tmp_path / "m.onnx", size=32)
    with pytest.raises(UserError, match="expected pool or selfblend"):
        camera_bench.main(["--engine", str(model), "--data", "synthetic", "--items", "4"])
