"""calibration.threshold: the operating threshold for a false-alarm target, chosen on real faces and
written into a copy of the model whose graph and weights are untouched."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest

from tests.helpers import run_module
from tests.helpers.models import SIZE, expected_prob, make_onnx

pytest.importorskip("onnx")


def _crops(root, grays_by_label):
    """One uniform crop per (label, grey level), each its own video: the tiny model's p(fake) is known."""
    for label, grays in grays_by_label.items():
        for g in grays:
            d = root / label / f"{label}{g:03d}" if label else root / f"v{g:03d}"
            d.mkdir(parents=True)
            cv2.imwrite(str(d / "0.png"), np.full((SIZE, SIZE, 3), g, np.uint8))
    return root


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lowest_threshold_for_the_target_in_a_copy_with_the_same_graph(tmp_path):
    import onnx

    from runtime.meta import ONNX_KEY, Meta

    model = make_onnx(tmp_path / "m.onnx")
    before = _sha(model)
    reals, fakes = list(range(20, 120)), list(range(100, 200, 4))  # 100 reals, 25 fakes
    data = _crops(tmp_path / "crops", {"real": reals, "fake": fakes})
    r = run_module("calibration.threshold", "--onnx", model, "--data", data, "--fpr", "0.05", "--json",
                   tmp_path / "t.json", "--quiet")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "m.fpr0.05.onnx"
    assert r.stdout.strip().splitlines()[-1] == f"wrote {out}"
    assert _sha(model) == before  # the model itself is never changed
    p_real = sorted((expected_prob(g) for g in reals), reverse=True)
    # 5 of 100 reals may be called fake: just above the 6th highest real score
    want = float(np.nextafter(p_real[5], np.inf))
    new, old = onnx.load(str(out)), onnx.load(str(model))
    assert new.graph.SerializeToString() == old.graph.SerializeToString()
    meta = Meta.from_json({p.key: p.value for p in new.metadata_props}[ONNX_KEY], source="out")
    assert meta.threshold == pytest.approx(want, abs=1e-6)
    rule = meta.training["threshold_rule"]
    assert rule["rule"] == "fpr:0.05" and rule["target_fpr"] == 0.05 and rule["achieved_fpr"] == pytest.approx(0.05)
    assert rule["real_items"] == 100 and rule["real_faces"] == 100 and rule["previous_threshold"] == 0.5
    assert rule["chosen_by"] == "calibration.threshold" and str(data) in rule["chosen_on"]
    assert sum(expected_prob(g) >= meta.threshold for g in reals) == 5  # the lowest such threshold
    caught = sum(expected_prob(g) >= meta.threshold for g in fakes) / len(fakes)
    d = json.loads((tmp_path / "t.json").read_text())
    assert d["detection_rate"] == pytest.approx(caught) and d["fake_items"] == 25 and d["out"] == str(out)
    assert f"{caught:.2%} of its 25 fakes" in r.stdout
    # 100 reals are 5 false alarms at 5 %: too few to trust, and said so (10 / 0.05 = 200 would do)
    assert r.stderr.strip().splitlines() == [
        "calibration.threshold: warning: 100 real items cannot resolve a false-alarm rate of 0.05 (one item is "
        "1.00% of them); the threshold rests on a few faces: use at least 200 real items"]
    # the runtime applies it and its summary says how it was chosen
    from runtime.detect import main as detect

    crop = next((data / "real").rglob("*.png"))
    assert detect(["--engine", str(out), "--source", str(crop), "--faces", "none", "--quiet",
                   "--summary", str(tmp_path / "s.json")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["threshold"] == pytest.approx(meta.threshold) and summary["model"]["threshold_rule"] == rule


def test_an_unlabelled_folder_is_real_faces(tmp_path):
    import onnx

    from runtime.meta import ONNX_KEY, Meta

    model = make_onnx(tmp_path / "m.onnx")
    data = _crops(tmp_path / "reals", {"": list(range(0, 250, 5))})  # 50 crops, no real/ or fake/
    out = tmp_path / "new" / "folder" / "chosen.onnx"  # missing folders are created, as by every tool
    r = run_module("calibration.threshold", "--onnx", model, "--data", data, "--fpr", "0", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    meta = Meta.from_json({p.key: p.value for p in onnx.load(str(out)).metadata_props}[ONNX_KEY], source="out")
    assert meta.threshold > expected_prob(245) and meta.training["threshold_rule"]["real_items"] == 50
    assert "fakes are called fake" not in r.stdout and r.stderr == ""
    # run again: the earlier result is replaced, and said so
    r = run_module("calibration.threshold", "--onnx", model, "--data", data, "--fpr", "0", "--out", out, "--quiet")
    assert r.returncode == 0 and r.stderr.strip().splitlines() == [
        f"calibration.threshold: note: replacing {out} (an earlier result)"], r.stderr


@pytest.mark.parametrize("args, needle", [
    (["--fpr", "1.5"], "--fpr 1.5"),
    (["--fpr", "nan"], "--fpr nan"),
    (["--size", "0"], "--size 0"),
    (["--out", "{model}"], "would overwrite the model"),
    (["--out", "{tmp}/link.onnx"], "would overwrite the model"),
    (["--out", "{model}/m.onnx"], "is a file, not a folder"),  # a missing folder is created; a file in the way is not
    (["--json", "{tmp}"], "is a folder"),
    (["--data", "{tmp}/fakes-only"], "no real faces"),
    (["--out", "/proc/jrc-threshold.onnx"], "nothing can be written in /proc"),  # checked before any scoring
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, needle):
    model = make_onnx(tmp_path / "m.onnx")
    (tmp_path / "link.onnx").symlink_to(model)
    _crops(tmp_path / "fakes-only", {"fake": [10, 20, 30]})
    _crops(tmp_path / "crops", {"real": [10, 20], "fake": [30]})
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = {"--onnx": str(model), "--data": str(tmp_path / "crops")}
    for k, v in zip(args[::2], args[1::2]):
        argv[k] = v.format(model=model, tmp=tmp_path)
    r = run_module("calibration.threshold", *[x for kv in argv.items() for x in kv], "--quiet")
    lines = r.stderr.strip().splitlines()
    usage = args[0] in ("--fpr", "--size")  # a value out of range: a command-line error
    assert r.returncode == (2 if usage else 1) and len(lines) == 1, r.stderr
    assert lines[0].startswith("calibration.threshold: error:"), r.stderr
    assert needle in lines[0] and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_a_named_split_of_the_pool_is_recorded_with_its_people(tmp_path):
    """The bundled model's threshold is chosen on the pool's validation people (`--split val`): the
    metadata says which split and how many people, so nobody mistakes it for a test-set choice."""
    from export.onnx_io import file_meta
    from training.face_pool import pool_faces

    model = make_onnx(tmp_path / "m.onnx")
    r = run_module("calibration.threshold", "--onnx", model, "--data", "pool:40", "--split", "val", "--quiet")
    assert r.returncode == 0, r.stderr
    rule = file_meta(tmp_path / "m.fpr0.01.onnx").training["threshold_rule"]
    assert rule["split"] == "val" and rule["chosen_on"].endswith(", split val")
    assert rule["real_items"] == 20
    val_people = {f.person for f in pool_faces("val")}
    assert 1 < rule["real_faces"] <= len(val_people)
