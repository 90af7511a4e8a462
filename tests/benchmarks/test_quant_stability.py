"""benchmarks.photo_faces and benchmarks.quant_stability on a tiny model: the table a lead re-runs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import has_module, load_strict, run_module

pytestmark = pytest.mark.skipif(not (has_module("torch") and has_module("onnxruntime") and has_module("skimage")),
                                reason="needs torch, onnxruntime and scikit-image")


def test_photo_faces_are_runtime_crops_of_three_photos() -> None:
    from benchmarks.photo_faces import PHOTOS, photo_crops

    crops = photo_crops(per_photo=2, size=48)
    assert sorted({name.rsplit("_", 1)[0] for name, _ in crops}) == sorted(PHOTOS)
    assert len(crops) == 6 and all(c.shape == (48, 48, 3) and c.dtype == np.uint8 for _, c in crops)
    a, b = crops[0][1], crops[1][1]
    assert not np.array_equal(a, b)  # two variants of one photo differ
    again = photo_crops(per_photo=2, size=48)
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(crops, again))  # seeded


def test_stability_table_per_calibration_set(tiny, tmp_path) -> None:
    out = tmp_path / "stab.json"
    p = run_module("benchmarks.quant_stability", "--onnx", tiny["detect"], "--calib", "synthetic,photos,mix",
                   "--method", "minmax", "--cpu-plan", "all", "--calib-size", "12", "--eval-size", "20",
                   "--photos", "2", "--anchor", "pool,none", "--agree-photos", "2", "--out-dir", tmp_path / "runs",
                   "--json", out)
    assert p.returncode == 0, p.stderr[-3000:]
    d = load_strict(out)
    assert [(r["calibration"], r["anchor"]) for r in d["rows"]] == [
        (c, x) for c in ("synthetic", "photos", "mix") for x in ("pool", "none")]
    assert {r["label"] for r in d["rows"]} == {"detect.onnx"}
    for r in d["rows"]:
        assert r["artifact"] == "int8-cpu" and r["method"] == "minmax" and r["samples"] == 20
        assert 0 <= r["max_dprob"] <= 1 and r["mean_dprob"] <= r["max_dprob"] and r["headroom"] == 2.0
        assert 0 <= r["photos_max_dprob"] <= 1  # the second check: the same artifact on other photo crops
        assert r["within"] == (abs(r["d_auc"]) <= 0.005 and r["max_dprob"] <= 0.05)
    assert d["bounds"] == {"max_auc_drop": 0.005, "max_dprob": 0.05}
    assert "calibrated on" in p.stdout and "max|Δprob|" in p.stdout
    assert len(list((tmp_path / "runs").rglob("*.int8-cpu*.onnx"))) == 6  # kept with --out-dir (or moved aside)
    reports = {f.parent.name: load_strict(f) for f in (tmp_path / "runs").rglob("quant.json")}
    assert {k: v["anchor"] is not None for k, v in reports.items()} == {
        f"{c}-minmax-anchor-{x}-headroom-2": x == "pool" for c in ("synthetic", "photos", "mix") for x in ("pool", "none")}
    assert "photos max|Δp|" in p.stdout and "anchor" in p.stdout
    assert len(list((tmp_path / "runs").rglob("photos/*.png"))) == 6


def test_stability_bad_input_is_one_line(tmp_path) -> None:
    p = run_module("benchmarks.quant_stability", "--onnx", tmp_path / "missing.onnx")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [
        f"benchmarks.quant_stability: error: --onnx {tmp_path / 'missing.onnx'}: file not found; "
        "export one with python -m export.onnx"]


def test_models_of_one_file_name_keep_apart() -> None:
    """Two styles exported as ``v3/detect.onnx`` and ``minimal/detect.onnx``: the table names their
    folders, and each keeps its own artifacts folder (one used to overwrite the other's)."""
    from benchmarks.report import artifact_labels

    labels = artifact_labels(["runs/v3/detect.onnx", "runs/minimal/detect.onnx", "runs/x/full.onnx"])
    assert labels == {"runs/v3/detect.onnx": "v3/detect.onnx", "runs/minimal/detect.onnx": "minimal/detect.onnx",
                      "runs/x/full.onnx": "full.onnx"}

