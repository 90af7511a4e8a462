"""benchmarks.streams: the output's structure on a tiny run (timings are never asserted)."""

from __future__ import annotations

from tests.helpers import load_strict, run_module
from tests.helpers.models import make_onnx


def test_streams_compares_one_process_with_n_processes_per_camera_count(tmp_path):
    model = make_onnx(tmp_path / "m.onnx")
    res = run_module("benchmarks.streams", "--engine", model, "--cameras", "1,2", "--frames", "6", "--size",
                     "160x120", "--rounds", "1", "--faces", "haar", "--quiet", "--json", tmp_path / "s.json",
                     timeout=300)
    assert res.returncode == 0, res.stderr
    doc = load_strict(tmp_path / "s.json")
    assert doc["tool"] == "benchmarks.streams" and "cpu_flags" in doc["machine"]
    assert [r["cameras"] for r in doc["rows"]] == [1, 2]
    for row in doc["rows"]:
        for way in ("one", "separate"):
            assert row[f"{way}_fps"] > 0 and row[f"{way}_latency_p95_ms"] >= row[f"{way}_latency_p50_ms"] > 0
            assert row[f"{way}_cpu_ms_per_frame"] > 0
            (run,) = row["runs"][way]
            assert run["frames"] == 6 * row["cameras"]  # every frame of every camera, both ways
        assert row["fps_ratio"] > 0 and row["rounds"] == 1
    assert "N processes fps" in res.stdout and doc["target"]["cameras"] == 4
