"""Data specs: one set of parsing rules, and calibration/evaluation sets that are the runtime's
preprocessing byte for byte, balanced, deterministic, hashed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.errors import UserError
from runtime.faces import make_detector
from runtime.meta import Meta
from runtime.preprocess import as_bgr8, crop_face, resize_square, to_input
from tests.helpers import has_module
from training import calibration_set
from training import dataspec as data

META = Meta(input_size=32, graph="detect", outputs=("logit",))


def runtime_decode(path: Path) -> np.ndarray:
    """How the runtime reads an image file (runtime/sources.py): imdecode unchanged, then as_bgr8."""
    return as_bgr8(cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED))


@pytest.fixture
def crops_dir(tmp_path: Path) -> Path:
    """real/ (6 files) and fake/ (3 files) of mixed sizes and formats."""
    rng = np.random.default_rng(1)
    for i in range(6):
        img = rng.integers(0, 256, (40 + 4 * i, 40 + 4 * i, 3), dtype=np.uint8)
        (tmp_path / "real" / f"clip{i}").mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "real" / f"clip{i}" / "000.png"), img)
    (tmp_path / "fake").mkdir()
    cv2.imwrite(str(tmp_path / "fake" / "a.jpg"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "fake" / "b.png"), rng.integers(0, 256, (20, 20), dtype=np.uint8))  # gray
    cv2.imwrite(str(tmp_path / "fake" / "c.png"), rng.integers(0, 65535, (50, 50, 3), dtype=np.uint16))
    return tmp_path


def test_folder_batches_equal_runtime_preprocessing_byte_for_byte(crops_dir: Path) -> None:
    cs = calibration_set.load(crops_dir, META, None, progress=False)
    assert cs.skipped == 0 and len(cs) == 9 and cs.labels is not None
    files = sorted(crops_dir.rglob("*.png")) + sorted(crops_dir.rglob("*.jpg"))
    expected = {f: to_input(runtime_decode(f), META)[0] for f in files if f.name != "d.png"}
    batches = np.concatenate(list(cs.batches(4)))
    assert batches.dtype == np.float32 and batches.shape == (9, 3, 32, 32)
    for row in batches:  # every batch row is exactly one file through the runtime's to_input
        assert sum(row.tobytes() == e.tobytes() for e in expected.values()) == 1
    assert cs.inputs().tobytes() == batches.tobytes()


def test_balanced_interleaved_and_deterministic(crops_dir: Path) -> None:
    a = calibration_set.load(crops_dir, META, 6, progress=False)
    b = calibration_set.load(crops_dir, META, 6, progress=False)
    assert list(a.labels) == [0, 1, 0, 1, 0, 1]  # 3 fakes readable, 3 reals to match
    assert a.data_sha256 == b.data_sha256 and np.array_equal(a.crops, b.crops)
    c = calibration_set.load(crops_dir, META, 6, seed=1, progress=False)
    assert c.data_sha256 != a.data_sha256  # another seed, another draw
    more = calibration_set.load(crops_dir, META, 8, progress=False)  # fakes run out: reals fill up
    assert list(more.labels).count(1) == 3 and len(more) == 8


def test_select_balances_and_fills() -> None:
    labels = [0] * 10 + [1] * 3
    idx = calibration_set.select(list(range(13)), labels, 8, seed=0)
    assert len(idx) == 8 and sorted(labels[i] for i in idx) == [0] * 5 + [1] * 3
    assert [labels[i] for i in idx[:6]] == [0, 1, 0, 1, 0, 1]
    assert idx == calibration_set.select(list(range(13)), labels, 8, seed=0)
    assert len(set(calibration_set.select(list(range(13)), None, 13, seed=3))) == 13


def test_manifest_and_cache_key(crops_dir: Path, tmp_path: Path) -> None:
    rows = ["path,label,video"] + [f"{p.relative_to(crops_dir)},{'fake' if 'fake' in p.parts else 0},v"
                                   for p in sorted(crops_dir.rglob("*.png")) if p.name != "d.png"]
    manifest = crops_dir / "list.csv"
    manifest.write_text("\n".join(rows) + "\n")
    cs = calibration_set.load(manifest, META, None, progress=False)
    assert len(cs) == 8 and int(cs.labels.sum()) == 2
    key = cs.cache_key()
    assert key["data_sha256"] == cs.data_sha256 and key["preprocess"]["input_size"] == 32
    other = calibration_set.CalibrationSet(cs.crops, cs.labels, META.with_(mean=(0.5, 0.5, 0.5)), cs.source)
    assert other.data_sha256 == cs.data_sha256 and other.cache_key() != key  # same bytes, other preprocessing
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nx.png,maybe\n")
    with pytest.raises(UserError, match="bad.csv:2: label 'maybe', expected 0, 1, real or fake"):
        calibration_set.load(bad, META, None, progress=False)


def test_unlabelled_folder_and_errors(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((32, 32, 3), 40 * i, np.uint8))
    cs = calibration_set.load(tmp_path, META, 2, progress=False)
    assert cs.labels is None and len(cs) == 2
    with pytest.raises(UserError, match="needs labels"):
        calibration_set.load(tmp_path, META, 2, need_labels=True, progress=False)
    with pytest.raises(UserError, match="not found"):
        calibration_set.load(tmp_path / "nope", META, 2, progress=False)
    with pytest.raises(UserError, match="--calib-size 0"):
        calibration_set.load(tmp_path, META, 0, progress=False)


def test_videos_are_cropped_as_the_runtime_crops_frames(tmp_path: Path) -> None:
    """A clip of the astronaut's face drifting: each sampled frame → Haar's largest face → crop_face."""
    pytest.importorskip("skimage")
    from skimage import data as skdata

    face = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)[:256, 96:352]
    frames = [cv2.copyMakeBorder(face, 20 + k, 60 - k, 30 + 2 * k, 30, cv2.BORDER_CONSTANT) for k in range(12)]
    h, w = frames[0].shape[:2]
    (tmp_path / "real").mkdir()
    path = tmp_path / "real" / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for f in frames:
        writer.write(cv2.resize(f, (w, h)))
    writer.release()
    cs = calibration_set.load(tmp_path, META, 4, progress=False)
    assert len(cs) == 4 and list(cs.labels) == [0, 0, 0, 0]
    cap = cv2.VideoCapture(str(path))
    decoded = [cap.read()[1] for _ in range(12)]
    cap.release()
    det = make_detector()  # the default detector, as calibration uses it
    want = [crop_face(decoded[i], det.detect(decoded[i])[0], META.face_margin, META.input_size)
            for i in (0, 4, 7, 11)]  # np.linspace(0, 11, 4) rounded
    assert cs.crops.tobytes() == np.stack(want).tobytes()


@pytest.mark.skipif(not (has_module("torch") and has_module("skimage")), reason="needs torch and scikit-image")
def test_synthetic_calibration_and_evaluation_use_disjoint_faces() -> None:
    from training.data import open_dataset

    calib = calibration_set.load("synthetic", META, 16, progress=False)
    held = calibration_set.load("synthetic", META, 16, held_out=True, progress=False)
    assert list(calib.labels) == [0, 1] * 8 and list(held.labels) == [0, 1] * 8
    train_ds = open_dataset("synthetic:16", META, train=False, split="train", augment=False)
    val_ds = open_dataset("synthetic:16", META, train=False, split="val", augment=False)
    assert set(train_ds.videos).isdisjoint(val_ds.videos)
    for i in range(16):  # the very crops training's datasets produce, as the network sees them
        assert calib.crops[i].tobytes() == resize_square(train_ds.image(i), 32).tobytes()
        assert held.crops[i].tobytes() == resize_square(val_ds.image(i), 32).tobytes()
    assert calib.inputs().tobytes() == np.stack([train_ds[i][0].numpy() for i in range(16)]).tobytes()


# --- one set of rules for every tool ---------------------------------------------------------
def test_manifest_rules(crops_dir: Path) -> None:
    """Header required (any column order, extra columns ignored), '#' comments and blank rows
    skipped, labels in any case (0/1, 0.0/1.0, real/fake), an empty video makes the row its own."""
    manifest = crops_dir / "list.csv"
    manifest.write_text("# made by hand\nlabel,extra,path,video\n\nREAL,x,real/clip0/000.png,A\n"
                        "# a comment row\n1.0,y,fake/a.jpg,\nFake,z,fake/b.png,B\n")
    files, labels, videos = data.read_manifest(manifest)
    assert labels == [0, 1, 1] and videos == ["A", "fake/a.jpg", "B"]
    assert files[0] == crops_dir / "real" / "clip0" / "000.png"
    cs = calibration_set.load(manifest, META, None, progress=False)  # calibration reads the same rows
    assert len(cs) == 3 and sorted(cs.labels.tolist()) == [0, 1, 1]
    manifest.write_text("real/clip0/000.png,0,A\n")  # no header: an error, not a guess
    with pytest.raises(UserError, match=r"list\.csv:1: header .*expected columns path,label,video"):
        calibration_set.load(manifest, META, None, progress=False)


def test_missing_or_damaged_crops_are_errors_everywhere(crops_dir: Path) -> None:
    """Calibration used to skip what training refused: now both name the file."""
    manifest = crops_dir / "list.csv"
    manifest.write_text("path,label\n# comment\nreal/clip0/000.png,0\nfake/gone.png,1\n")
    with pytest.raises(UserError, match=r"list\.csv:4: fake/gone\.png does not exist"):
        calibration_set.load(manifest, META, None, progress=False)
    manifest.write_text("path,label\nreal/clip0/000.png,0\nreal/clip0,0\n")  # a folder is not "missing"
    with pytest.raises(UserError, match=r"list\.csv:3: real/clip0 is a folder, not a crop file; fix the path"):
        calibration_set.load(manifest, META, None, progress=False)
    (crops_dir / "fake" / "d.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match=r"d\.png: not a readable image"):
        calibration_set.load(crops_dir, META, None, progress=False)


def test_folder_listing_is_torch_free_and_shared(crops_dir: Path) -> None:
    items = data.open_items(crops_dir, META)
    assert items.labels == [0] * 6 + [1] * 3
    assert items.videos == [f"clip{i}" for i in range(6)] + ["a", "b", "c"]
    (crops_dir / "fake" / "clip0").mkdir()
    cv2.imwrite(str(crops_dir / "fake" / "clip0" / "x_f0001.png"), np.zeros((8, 8, 3), np.uint8))
    assert data.open_items(crops_dir, META).videos[0] == "real/clip0"  # one id under both labels


def test_videos_are_for_calibration_only(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "v.avi").write_bytes(b"RIFF")
    with pytest.raises(UserError, match="python -m training.extract"):
        data.open_items(tmp_path, META)
    with pytest.raises(UserError, match="neither a .csv manifest nor a video"):
        data.open_items(Path(__file__), META)


def test_split_for_roles() -> None:
    assert [data.split_for("synthetic:20", r) for r in ("train", "calibrate", "validate", "evaluate")] == \
        ["train", "train", "val", "val"]
    assert {data.split_for("crops/", r) for r in ("train", "calibrate", "validate", "evaluate")} == {None}


@pytest.mark.skipif(not has_module("skimage"), reason="needs scikit-image")
def test_synthetic_loads_without_torch() -> None:
    """export.engine reads specs on Jetsons where torch is absent, synthetic included."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    code = ("import sys; sys.modules['torch'] = None\n"
            "from runtime.meta import Meta\nfrom training import calibration_set\n"
            "cs = calibration_set.load('synthetic:4', Meta(input_size=32), progress=False, held_out=True)\n"
            "assert cs.labels.tolist() == [0, 1, 0, 1], cs.labels\nprint('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


def _split_manifest(crops_dir: Path, rows: list[str], header: str = "path,label,video,split,group") -> Path:
    manifest = crops_dir / "split.csv"
    manifest.write_text("\n".join([header, *rows]) + "\n")
    return manifest


def test_manifest_split_column_selects_rows(crops_dir: Path) -> None:
    rows = [f"real/clip{i}/000.png,real,clip{i},{s},g{i // 2}"
            for i, s in enumerate(("train", "train", "val", "test", "test", ""))]
    manifest = _split_manifest(crops_dir, rows + ["fake/a.jpg,fake,a,TEST,g1"])
    assert {s: data.open_items(manifest, META, s).videos for s in ("train", "val", "test")} == {
        "train": ["clip0", "clip1"], "val": ["clip2"], "test": ["clip3", "clip4", "a"]}
    items = data.open_items(manifest, META, "test")
    assert items.columns == {"split": ["test"] * 3, "group": ["g1", "g2", "g1"]}
    assert len(data.open_items(manifest, META)) == 7  # no split: every row, the unsplit one too
    assert data.read_manifest(manifest)[2][-1] == "a"  # the three-column reader is unchanged
    only_train = _split_manifest(crops_dir, rows[:2])
    with pytest.raises(UserError, match="no row has split 'val' .*holds train") as e:
        data.open_items(only_train, META, "val")
    assert "\n" not in str(e.value)


def test_manifest_split_errors_are_one_line(crops_dir: Path) -> None:
    bad = _split_manifest(crops_dir, ["real/clip0/000.png,real,clip0,training,g0"])
    with pytest.raises(UserError, match=r"split.csv:2: split 'training', expected train, val, test"):
        data.open_items(bad, META)
    plain = _split_manifest(crops_dir, ["real/clip0/000.png,real,clip0", "fake/a.jpg,fake,a"], "path,label,video")
    with pytest.raises(UserError, match="has no split column, so it has no test split"):
        data.open_items(plain, META, "test")
    with pytest.raises(UserError, match="split 'dev' is unknown"):
        data.open_items(plain, META, "dev")


def test_hash_split_keeps_groups_together(crops_dir: Path) -> None:
    """Without a split column, train/val draw whole groups: a fake never leaves its source's side."""
    rows = [f"real/clip{i}/000.png,real,clip{i},g{i % 3}" for i in range(6)]
    rows += [f"fake/{n},fake,{n[0]},g{k}" for k, n in enumerate(("a.jpg", "b.png", "c.png"))]
    manifest = _split_manifest(crops_dir, rows, "path,label,video,group")
    train, val = (data.open_items(manifest, META, s) for s in ("train", "val"))
    assert len(train) + len(val) == 9
    assert not set(train.columns["group"]) & set(val.columns["group"])


def _clips(root: Path, real: list[str], fake: list[str]) -> Path:
    for label, names in (("real", real), ("fake", fake)):
        for name in names:
            (root / label / name).mkdir(parents=True)
            cv2.imwrite(str(root / label / name / "000.png"), np.full((24, 24, 3), 90, np.uint8))
    return root


def test_the_automatic_validation_split_holds_both_classes(tmp_path: Path) -> None:
    """Split within each class: here the two ids first in hash order are both fake, so an unstratified
    split held out no real face (validation AUC undefined, no best.pt, an 'eer' threshold never set)."""
    fakes = ["clip13", "clip17", "clip03", "clip07", "clip23", "clip27", "clip33", "clip37"]
    root = _clips(tmp_path / "a", ["clip36", "clip32"], fakes)
    val = data.open_items(root, META, split="val")
    train = data.open_items(root, META, split="train")
    assert sorted(set(val.labels)) == [0, 1] and sorted(set(train.labels)) == [0, 1]
    assert not set(val.videos) & set(train.videos) and len(val) + len(train) == 10
    # the newcomer's case: one video id per class (real/lfw, fake/lfw): refused in one line
    one = _clips(tmp_path / "b", ["lfw"], ["lfw"])
    with pytest.raises(UserError, match="two video ids or more holding real faces.*--val") as e:
        data.open_items(one, META, split="val")
    assert "\n" not in str(e.value)
    assert set(data.open_items(one, META, split="train").labels) == {0, 1}
