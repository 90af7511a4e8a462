"""benchmarks.liveview: the output's structure on a tiny run (timings are never asserted)."""

from __future__ import annotations

import pytest

from tests.helpers import load_strict, run_module
from tests.helpers.models import make_onnx


def test_liveview_measures_windows_with_and_without_viewers_in_one_run(tmp_path):
    pytest.importorskip("aiohttp", reason="aiohttp is not installed (the box extra)")
    model = make_onnx(tmp_path / "m.onnx")
    res = run_module("benchmarks.liveview", "--engine", model, "--size", "160x120", "--frames", "200", "--repeat",
                     "100", "--faces", "none", "--rounds", "1", "--window", "0.5", "--warmup", "0", "--quiet",
                     "--json", tmp_path / "l.json", timeout=300)
    assert res.returncode == 0, res.stderr
    doc = load_strict(tmp_path / "l.json")
    assert doc["tool"] == "benchmarks.liveview" and "cpu_flags" in doc["machine"]
    assert [(w["round"], w["kind"]) for w in doc["windows"]] == [(1, "none"), (1, "viewers")]
    assert all(w["fps"] > 0 and w["frames"] > 0 for w in doc["windows"])
    none, viewers = doc["windows"]
    assert none["viewer_fps_per_camera"] is None and viewers["viewer_fps_per_camera"] > 0  # the viewers got frames
    r = doc["result"]
    assert r["rounds"] == 1 and r["ratio"] == r["ratio_min"] == r["ratio_max"] > 0 and r["ratios"] == [r["ratio"]]
    assert doc["web"]["frames_encoded"] > 0 and doc["web"]["viewers_stalled"] == 0  # the box's own count
    assert r["cpu_ratio"] > 0 and all(w["cpu_ms_per_frame"] > 0 for w in doc["windows"])
    assert "target ≥ 0.9" in res.stdout


def test_default_repeat_outlasts_the_rounds_at_the_assumed_rate():
    """Without --repeat, each camera gets enough copies to read through the warm-up and every window
    at MAX_CAMERA_FPS (a fixed 100 ran out on a quiet 2-core machine at 360 frames/s a camera)."""
    from benchmarks.liveview import MAX_CAMERA_FPS, build_parser, default_repeat

    for argv in ([], ["--rounds", "6"], ["--rounds", "2", "--window", "10", "--frames", "40"]):
        a = build_parser().parse_args(["--engine", "m.onnx", *argv])
        need = (a.warmup + 2 * a.rounds * a.window) * MAX_CAMERA_FPS
        assert default_repeat(a) * a.frames >= need
        assert (default_repeat(a) - 1) * a.frames < need + 10 * MAX_CAMERA_FPS  # not wildly more
