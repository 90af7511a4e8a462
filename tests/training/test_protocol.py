"""The forgery-family protocol's bookkeeping: spec grammar, family rotation, splits by face id with
no leakage (donors included), leave-one-family-out folds and the paired summary."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import families as proto
from runtime.errors import UserError
from runtime.meta import Meta
from training import calibration_set, dataspec
from training.forgeries import FAMILIES

META = Meta(input_size=32, graph="detect", outputs=("logit",))


@pytest.mark.parametrize("spec, n, fams", [
    ("synthetic", None, ("sbi",)),
    ("synthetic:200", 200, ("sbi",)),
    ("synthetic-i2g", None, ("i2g",)),
    ("synthetic-warp:50", 50, ("warp",)),
    ("synthetic:80:families=warp,sbi", 80, ("sbi", "warp")),
    ("synthetic:families=all", None, FAMILIES),
])
def test_spec_grammar_round_trips(spec, n, fams):
    assert dataspec.is_synthetic(spec)
    assert dataspec.parse_synthetic(spec) == (n, fams)
    assert dataspec.parse_synthetic(dataspec.synthetic_spec(n, fams)) == (n, fams)


@pytest.mark.parametrize("spec", ["synthetic-nope:10", "synthetic:10:families=sbi,nope",
                                  "synthetic-sbi:10:families=i2g"])
def test_bad_family_specs_are_user_errors(spec):
    with pytest.raises(UserError):
        dataspec.open_items(spec, META, "train")


def test_families_rotate_over_pairs_and_faces():
    items = dataspec.open_items("synthetic:400:families=all", META, "train")
    reals = [f for f, y in zip(items.families_of, items.labels) if y == 0]
    fakes = [f for f, y in zip(items.families_of, items.labels) if y == 1]
    assert set(reals) == {""} and set(fakes) == set(FAMILIES)
    counts = [fakes.count(f) for f in FAMILIES]
    assert max(counts) - min(counts) <= 1, "families drawn equally often"
    per_face: dict[str, set] = {}
    for v, f, y in zip(items.videos, items.families_of, items.labels):
        if y:
            per_face.setdefault(v, set()).add(f)
    assert all(len(s) >= 2 for s in per_face.values()), "no face tied to one family"
    one = dataspec.open_items("synthetic-region:40", META, "val")
    assert {f for f, y in zip(one.families_of, one.labels) if y} == {"region"}


def test_split_by_face_and_donors_stay_in_their_split(monkeypatch):
    import training.forgeries as forgeries

    train = dataspec.open_items("synthetic:300:families=i2g,region", META, "train")
    val = dataspec.open_items("synthetic:300:families=i2g,region", META, "val")
    assert not set(train.videos) & set(val.videos), "a face in both splits"
    assert len(set(val.videos)) >= 15 and len(set(train.videos)) >= 70
    seen = []
    real_forge = forgeries.forge

    def spy(family, face, rng, donor=None):
        seen.append((face, donor))
        return real_forge(family, face, rng, donor)

    monkeypatch.setattr(forgeries, "forge", spy)
    for items in (train, val):
        own = {id(f) for _, f in items.faces}
        seen.clear()
        for i in range(1, 60, 2):
            crop, mask = items.forgery(i, np.random.default_rng(i))
            assert mask.max() > 0
        assert seen and all(id(d) in own and d is not f for f, d in seen if d is not None), \
            "a donor from the other split or the face itself"
        assert any(d is not None for _, d in seen)


def test_real_items_have_empty_masks_and_forgeries_are_seeded():
    items = dataspec.open_items("synthetic:20:families=warp", META, "val")
    crop, mask = items.forgery(0, np.random.default_rng(0))
    assert items.labels[0] == 0 and not mask.any()
    a = items.forgery(1, np.random.default_rng(5))
    b = items.forgery(1, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])


def test_load_keeps_the_families():
    warp = calibration_set.load("synthetic:40:families=warp", META, size=20, held_out=True, progress=False)
    sbi = calibration_set.load("synthetic:40", META, size=20, held_out=True, progress=False)
    assert len(warp) == 20 and list(warp.labels) == list(sbi.labels)
    fake = warp.labels == 1
    np.testing.assert_array_equal(warp.crops[~fake], sbi.crops[~fake])
    assert not np.array_equal(warp.crops[fake], sbi.crops[fake]), "the families were dropped"


def test_leave_one_family_out_folds():
    fs = proto.folds(FAMILIES)
    assert [h for h, _ in fs] == list(FAMILIES)
    for held, rest in fs:
        assert held not in rest and set(rest) | {held} == set(FAMILIES)
    assert proto.folds(FAMILIES, ["warp"]) == [("warp", tuple(f for f in FAMILIES if f != "warp"))]
    with pytest.raises(UserError):
        proto.folds(("sbi",))
    with pytest.raises(UserError):
        proto.folds(("sbi", "i2g"), ["warp"])


def test_cross_family_folds_train_once_and_test_every_other_family():
    fs = proto.folds(FAMILIES, train_on=("sbi",))
    assert [h for h, _ in fs] == [f for f in FAMILIES if f != "sbi"]
    assert {t for _, t in fs} == {("sbi",)}  # one training set for every fold
    assert {proto.run_name(h, t, cross=True) for h, t in fs} == {"on-sbi"}  # so one run folder: trained once
    assert len({proto.run_name(h, t, cross=False) for h, t in proto.folds(FAMILIES)}) == len(FAMILIES)
    assert proto.folds(FAMILIES, ["warp"], train_on=("sbi", "i2g")) == [("warp", ("sbi", "i2g"))]
    with pytest.raises(UserError, match="--folds sbi"):
        proto.folds(FAMILIES, ["sbi"], train_on=("sbi",))  # a family trained on is never its own test
    with pytest.raises(UserError, match="no family"):
        proto.folds(("sbi", "i2g"), train_on=("sbi", "i2g"))


def test_test_set_uses_held_out_faces_and_distinct_reals():
    crops, labels, faces = proto.test_set("warp", 80, META, seed=3)
    val = dataspec.open_items("synthetic:10", META, "val")
    assert set(faces) <= {fid for fid, _ in val.faces}
    assert crops.shape == (80, 32, 32, 3) and labels.sum() == 40
    reals = crops[labels == 0]
    assert len({r.tobytes() for r in reals}) == len(reals), "every real item its own variant"
    again = proto.test_set("warp", 80, META, seed=3)[0]
    np.testing.assert_array_equal(again, crops)


def test_train_argv_leaves_the_family_out():
    a = proto.build_parser().parse_args(["--items", "64", "--val-items", "32"])
    argv = proto.train_argv(a, ("sbi", "region"), 0.1, 2, proto.Path("x"))
    assert argv[argv.index("--data") + 1] == "synthetic:64:families=sbi,region"
    assert argv[argv.index("--val") + 1] == "synthetic:32:families=sbi,region"
    assert argv[argv.index("--seed") + 1] == "2" and argv[argv.index("--lambda") + 1] == "0.1"


def test_summary_pairs_by_seed():
    runs = [{"held_out": "warp", "lambda": lam, "seed": s, "auc": 0.6 + 0.1 * (lam > 0) + 0.01 * s,
             "far": 0.1, "se_faces": 0.02} for lam in (0.1, 0.0) for s in range(3)]
    runs.append({"held_out": "warp", "lambda": 0.1, "seed": 9, "auc": 0.9, "far": 0.0, "se_faces": 0.0})  # unpaired
    (row,) = proto.summarise(runs, [0.1, 0.0])
    assert row["paired_diffs"] == pytest.approx([0.1, 0.1, 0.1])
    assert row["seeds_0.1"] == 4 and row["seeds_0"] == 3
    assert row["paired_diff"].startswith("0.100") and row["ahead"] == "3/3"


def test_summary_pools_every_fold_and_seed_in_a_last_row():
    auc = {("warp", 0.1): [0.60, 0.70], ("warp", 0.0): [0.65, 0.60], ("i2g", 0.1): [0.50, 0.56],
           ("i2g", 0.0): [0.58, 0.59]}
    runs = [{"held_out": fam, "lambda": lam, "seed": s, "auc": a, "far": 0.1 * s, "se_faces": 0.02}
            for (fam, lam), aucs in auc.items() for s, a in enumerate(aucs)]
    warp, i2g, pooled = proto.summarise(runs, [0.1, 0.0])
    assert (warp["held_out"], i2g["held_out"], pooled["held_out"]) == ("warp", "i2g", "all 2 folds")
    assert warp["ahead"] == "1/2" and i2g["ahead"] == "0/2"
    # pairs are (fold, seed): seed 0 of warp is never paired with seed 0 of i2g
    assert pooled["paired_diffs"] == pytest.approx([-0.05, 0.10, -0.08, -0.03])
    assert pooled["ahead"] == "1/4" and pooled["seeds_0.1"] == 4
    assert pooled["auc_0.1"] == "0.590 ± 0.084" and pooled["far_0"] == pytest.approx(0.05)


def test_fold_metrics():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    probs = np.clip(rng.normal(0.4 + 0.2 * labels, 0.1), 0, 1)
    faces = [f"f{i % 10}" for i in range(200)]
    m = proto.fold_metrics(probs, labels, faces, 0.5, boot=200)
    assert 0.8 < m["auc"] <= 1 and m["se_items"] > 0 and m["se_faces"] > 0
    assert m["far"] == pytest.approx(np.mean(probs[:100] >= 0.5)) and m["faces"] == 10


def test_train_records_families_and_the_fpr_threshold(tmp_path, capsys):
    from training import evaluate, train
    from training.checkpoint import read_checkpoint

    out = tmp_path / "run"
    train.main(["--data", "synthetic:8", "--families", "warp,i2g", "--val", "synthetic:12:families=warp,i2g",
                "--input-size", "32", "--epochs", "1", "--batch-size", "4", "--lambda", "0", "--threshold", "fpr:0.2",
                "--workers", "0", "--threads", "1", "--device", "cpu", "--out", str(out)])
    meta = read_checkpoint(out / "best.pt")["meta"]
    t = meta["training"]
    assert t["data"] == "synthetic:8:families=i2g,warp" and t["families"] == ["i2g", "warp"]
    rule = t["threshold_rule"]
    assert rule["rule"] == "fpr:0.2" and rule["target_fpr"] == 0.2 and rule["achieved_fpr"] <= 0.2
    assert rule["chosen_on"] == "synthetic:12:families=warp,i2g" and rule["real_items"] == 6  # --val as given
    assert rule["threshold"] == meta["threshold"]
    capsys.readouterr()
    evaluate.main(["--ckpt", str(out / "best.pt"), "--data", "synthetic:12:families=i2g,warp", "--workers", "0",
                   "--device", "cpu", "--out", str(tmp_path / "eval")])
    text = capsys.readouterr().out
    assert "false-alarm rate" in text and "threshold chosen for FPR 0.2" in text
    # benchmarks.families --ckpt scores it on every family's held-out test set, marking those it was trained on
    # and its ONNX export the same way through the runtime (--engine): the same numbers
    import json

    from export import onnx as export_onnx

    export_onnx.main(["--ckpt", str(out / "best.pt"), "--out", str(tmp_path / "onnx")])
    report = tmp_path / "families.json"
    common = ["--families", "sbi,warp,i2g", "--test-items", "24", "--boot", "20", "--json", str(report)]
    proto.main(["--ckpt", str(out / "best.pt"), "--engine", str(tmp_path / "onnx" / "detect.onnx"), *common])
    rows = json.loads(report.read_text())["rows"]
    assert [(r["family"], r["trained_on_it"]) for r in rows[:3]] == [("sbi", False), ("i2g", True), ("warp", True)]
    assert [r["family"] for r in rows[3:4]] == ["mean, all 3"]  # one family not trained on: no mean of one
    assert rows[3]["auc"] == pytest.approx(np.mean([r["auc"] for r in rows[:3]]))
    assert all(r["n"] == 24 and r["threshold"] == pytest.approx(meta["threshold"]) for r in rows[:3])
    assert [r["model"].endswith("detect.onnx") for r in rows] == [False] * 4 + [True] * 4
    assert [r["trained_on_it"] for r in rows[4:]] == [r["trained_on_it"] for r in rows[:4]]  # the metadata travels
    for key in ("auc", "far", "tpr"):
        assert [r[key] for r in rows[4:]] == pytest.approx([r[key] for r in rows[:4]], abs=1e-3), key
    # a missing model is refused before anything is scored; one that fails to open stops the run, and
    # the rows of those before it stay on disk
    report.unlink()
    with pytest.raises(UserError, match="no such file"):
        proto.main(["--ckpt", str(out / "best.pt"), "--engine", str(tmp_path / "nope.onnx"), *common])
    assert not report.exists()
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(UserError, match="broken.onnx"):
        proto.main(["--ckpt", str(out / "best.pt"), "--engine", str(tmp_path / "broken.onnx"), *common])
    assert len(json.loads(report.read_text())["rows"]) == 4
    with pytest.raises(UserError, match="checkpoint not found"):
        proto.main(["--ckpt", str(tmp_path / "nope.pt")])


def test_train_refuses_families_for_non_synthetic_data(tmp_path):
    from training import train

    with pytest.raises(UserError, match="only synthetic data"):
        train.main(["--data", str(tmp_path), "--families", "sbi"])
    with pytest.raises(UserError, match="fpr:X"):
        train.main(["--data", "synthetic:8", "--threshold", "fpr:2"])


def test_trained_families_read_from_the_metadata_or_the_data_spec():
    from runtime.backends import open_backend
    from tests.helpers import ROOT

    bundled = open_backend(ROOT / "runtime/assets/jrc_edge_detect.onnx")
    try:  # trained on the pool's self-blends: the metadata records the family
        assert bundled.meta.training["families"] == ["sbi"] and proto.trained_families(bundled.meta) == ("sbi",)
    finally:
        bundled.close()
    # a model from before meta.training recorded "families": the data spec's default, sbi
    assert proto.trained_families(META.with_(training={"data": "synthetic:1600"})) == ("sbi",)
    assert proto.trained_families(META.with_(training={"data": "pool:4800:ramp=3"})) == ("sbi",)
    assert proto.trained_families(META.with_(training={"data": "synthetic:8:families=warp,i2g"})) == ("i2g", "warp")
    assert proto.trained_families(META.with_(training={"data": "x", "families": ["region"]})) == ("region",)
    assert proto.trained_families(META.with_(training={"data": "crops/"})) == ()
    assert proto.trained_families(META) == ()
