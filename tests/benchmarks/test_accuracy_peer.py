"""benchmarks.accuracy with models of different crop geometries side by side: the bundled model (128 px)
and the converted MesoNet peers (256 px, their own margin) on the same items, each cut as its runtime
cuts them; fakes caught at each model's own threshold."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import ROOT, load_strict, run_module

BUNDLED = ROOT / "runtime" / "assets" / "jrc_edge_detect.onnx"
PEERS = ROOT / "benchmarks" / "assets" / "mesonet"


def test_bundled_and_peers_on_mesonets_own_test_images(tmp_path):
    out = tmp_path / "acc.json"
    p = run_module("benchmarks.accuracy", "--engine", BUNDLED, "--engine", PEERS / "Meso4_DF.onnx",
                   "--engine", PEERS / "Meso4_F2F.onnx", "--data", PEERS / "test_images", "--runs", "2",
                   "--warmup", "0", "--threads", "1", "--json", out, "--quiet")
    assert p.returncode == 0, p.stderr
    d = load_strict(out)
    assert d["data"]["faces"] == 4 and d["data"]["fake"] == 2
    rows = {r["label"]: r for r in d["results"]}
    from export.onnx_io import file_meta

    bundled = file_meta(BUNDLED)
    assert rows["jrc_edge_detect.onnx"]["input_size"] == bundled.input_size != 256
    assert rows["jrc_edge_detect.onnx"]["threshold"] == pytest.approx(bundled.threshold)
    assert rows["Meso4_DF.onnx"]["input_size"] == 256
    assert rows["Meso4_DF.onnx"]["face_margin"] == 0.07 and rows["Meso4_DF.onnx"]["encoder"] == "meso4"
    # the smoke test through the benchmark: both deepfakes caught, no real called fake, at 0.5
    df = rows["Meso4_DF.onnx"]
    assert (df["auc"], df["far"], df["caught"], df["acc"], df["threshold"]) == (1.0, 0.0, 1.0, 1.0, 0.5)
    assert rows["Meso4_F2F.onnx"]["caught"] == 0.0  # Face2Face weights call these deepfakes real
    for r in d["results"]:
        assert r["acc"] == pytest.approx(0.5 * (1 - r["far"]) + 0.5 * r["caught"])  # 2 real, 2 fake
    assert "caught@thr" in p.stdout and "at 256 px, margin 0.07" in p.stdout


def test_each_geometry_gets_the_same_items_cut_its_own_way():
    pytest.importorskip("skimage")
    from benchmarks.accuracy import Faces
    from runtime.meta import Meta
    from training.calibration_set import load

    small, big = Meta(input_size=32, face_margin=0.15), Meta(input_size=48, face_margin=0.05)
    faces = Faces("synthetic:12", None, None, small)
    assert faces.crops.shape == (12, 32, 32, 3)
    wide = load("synthetic:12", big, None, held_out=True, need_labels=True, progress=False)
    np.testing.assert_array_equal(faces.crops_for(big), wide.crops)  # what its own evaluation would read
    assert faces.inputs(big).shape == (12, 3, 48, 48)
    assert faces.labels.tolist() == wide.labels.tolist()
    # the margin is honoured: not the 0.15 crop resized
    from runtime.preprocess import resize_square

    resized = np.stack([resize_square(c, 48) for c in load("synthetic:12", small.with_(input_size=48), None,
                                                             held_out=True, need_labels=True, progress=False).crops])
    assert np.abs(resized.astype(int) - wide.crops.astype(int)).mean() > 5
