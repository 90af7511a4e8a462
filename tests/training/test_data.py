"""Torch datasets over every spec (folder, CSV manifest, synthetic), offline faces and augmentations.

The spec rules themselves are tested in test_dataspec.py."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from runtime.errors import UserError
from runtime.faces import HaarFaceDetector
from runtime.meta import Meta
from runtime.preprocess import to_input
from training.augment import Augment, ColorJitter, RandomBlur, RandomFlip, RandomJpeg, color_jitter
from training.data import open_dataset
from training.dataspec import split_ids, video_id_from_path
from training.sample_faces import lfw_frame, lfw_images, sample_real_faces

META = Meta(input_size=32)


def _crop(seed: int, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _write(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


@pytest.fixture()
def crops_dir(tmp_path):
    root = tmp_path / "crops"
    for i in range(3):
        _write(root / "real" / "clipA" / f"{i:06d}.png", _crop(i))
        _write(root / "fake" / "clipB" / f"{i:06d}.png", _crop(10 + i))
    _write(root / "fake" / "clipC_f0007.png", _crop(20))
    _write(root / "fake" / "clipC_f0009.png", _crop(21))
    (root / "fake" / "notes.txt").write_text("not an image")
    return root


# --- offline faces ---------------------------------------------------------------------------
def test_offline_faces():
    faces = sample_real_faces(40)
    assert len(faces) == 101
    ids = [fid for fid, _ in faces]
    assert len(set(ids)) == 101 and ids[0] == "astronaut" and ids[1] == "lfw-000"
    for _, crop in faces:
        assert crop.shape == (40, 40, 3) and crop.dtype == np.uint8
    assert faces[0][1].std(axis=2).mean() > 5  # the astronaut is in colour
    assert faces[1][1].std(axis=2).max() == 0  # LFW is grayscale


def test_lfw_first_hundred_are_faces():
    det = HaarFaceDetector(min_face=20, neighbors=3)
    hits_faces = sum(bool(det.detect(lfw_frame(img))) for img in lfw_images(faces=True))
    hits_other = sum(bool(det.detect(lfw_frame(img))) for img in lfw_images(faces=False))
    assert hits_faces >= 90 and hits_other <= 5, (hits_faces, hits_other)


def test_split_ids_is_disjoint_and_seed_free():
    ids = [f"v{i}" for i in range(50)]
    train, val = split_ids(ids, "train"), split_ids(ids, "val")
    assert not train & val and train | val == set(ids) and len(val) == 10
    assert split_ids(list(reversed(ids)), "val") == val
    with pytest.raises(UserError):
        split_ids(ids, "test")


# --- augmentations ---------------------------------------------------------------------------
def test_augment_deterministic_and_shapes():
    img = _crop(1, 64)
    a = [Augment(p=1.0, seed=5)(img) for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    assert a[0].shape == img.shape and a[0].dtype == np.uint8
    assert not np.array_equal(a[0], img)
    b = Augment(p=1.0)(img, np.random.default_rng(9))
    np.testing.assert_array_equal(b, Augment(p=1.0)(img, np.random.default_rng(9)))
    np.testing.assert_array_equal(Augment(p=0.0, ops=[RandomJpeg(0.0), RandomBlur(0.0)])(img), img)


def test_augment_ops_do_what_they_say():
    img = cv2.GaussianBlur(_crop(2, 64), (0, 0), 2)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(RandomFlip(1.0)(img, rng), img[:, ::-1])
    assert RandomBlur(1.0, (1.5, 1.5))(img, rng).std() < img.std()
    j = RandomJpeg(1.0, (30, 30))(img, rng)
    assert j.shape == img.shape and 0 < np.abs(j.astype(int) - img).mean() < 20
    same = ColorJitter(1.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)(img, rng)
    np.testing.assert_array_equal(same, img)
    assert color_jitter(img, brightness=0.2).mean() > img.mean() + 10
    assert color_jitter(img, contrast=-0.5).std() < 0.6 * img.std()
    grey = cv2.cvtColor(color_jitter(img, saturation=-1.0), cv2.COLOR_BGR2HSV)[..., 1]
    assert grey.max() <= 2
    with pytest.raises(ValueError):
        Augment()(img.astype(np.float32))


# --- folder datasets -------------------------------------------------------------------------
def test_folder_dataset(crops_dir):
    ds = open_dataset(crops_dir, META, train=False)
    assert len(ds) == 8
    assert ds.labels == [0, 0, 0, 1, 1, 1, 1, 1]
    assert ds.videos == ["clipA"] * 3 + ["clipB"] * 3 + ["clipC"] * 2
    x, y, i = ds[4]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.float32
    assert float(y) == 1.0 and i == 4
    expected = to_input(cv2.imread(str(crops_dir / "fake" / "clipB" / "000001.png")), META)[0]
    np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=1e-6)
    xb, yb, ib = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert xb.shape == (8, 3, 32, 32) and yb.dtype == torch.float32 and ib.tolist() == list(range(8))


def test_video_id_rule_and_label_clash(tmp_path):
    assert video_id_from_path(Path("a/b/000001.png")) == "a/b"
    assert video_id_from_path(Path("clip7_f0031.png")) == "clip7"
    assert video_id_from_path(Path("img_9.png")) == "img_9"
    _write(tmp_path / "real" / "same" / "0.png", _crop(0))
    _write(tmp_path / "fake" / "same" / "0.png", _crop(1))
    assert open_dataset(tmp_path, META, train=False).videos == ["real/same", "fake/same"]


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="neither a real/ nor a fake/"):
        open_dataset(tmp_path, META, train=False)
    (tmp_path / "real").mkdir()
    with pytest.raises(UserError, match="hold no images"):
        open_dataset(tmp_path, META, train=False)
    _write(tmp_path / "real" / "v" / "0.png", _crop(0))
    (tmp_path / "real" / "v" / "1.png").write_bytes(b"")
    with pytest.raises(UserError, match=r"1\.png"):
        open_dataset(tmp_path, META, train=False)
    with pytest.raises(UserError, match="no such folder"):
        open_dataset(tmp_path / "nope", META, train=False)


def test_damaged_image_at_load_names_the_file(tmp_path):
    good = _write(tmp_path / "real" / "v" / "0.png", _crop(0))
    ds = open_dataset(tmp_path, META, train=False)
    good.write_bytes(good.read_bytes()[:40])  # header intact, data cut
    with pytest.raises(UserError, match=r"0\.png: cannot be decoded"):
        ds[0]


def test_folder_split_by_video(tmp_path):
    for v in range(10):
        for f in range(2):
            _write(tmp_path / ("real" if v % 2 else "fake") / f"vid{v}" / f"{f}.png", _crop(v * 10 + f, 16))
    tr = open_dataset(tmp_path, META, train=True, split="train")
    va = open_dataset(tmp_path, META, train=False, split="val")
    assert len(tr) + len(va) == 20 and len(va) == 4
    assert not set(tr.videos) & set(va.videos)


# --- CSV manifests ---------------------------------------------------------------------------
def test_manifest_dataset(crops_dir, tmp_path):
    csv_path = crops_dir / "manifest.csv"
    csv_path.write_text("path,label,video\nreal/clipA/000000.png,real,A\n"
                        f"{crops_dir / 'fake' / 'clipB' / '000000.png'},1,B\n\nfake/clipC_f0007.png,fake,\n")
    ds = open_dataset(csv_path, META, train=False)
    assert ds.labels == [0, 1, 1] and ds.videos == ["A", "B", "fake/clipC_f0007.png"]
    assert ds[2][0].shape == (3, 32, 32)


@pytest.mark.parametrize("body, match", [
    ("path,label,video\nreal/clipA/000000.png,0,A\nreal/clipA/000001.png,maybe,A\n", r"manifest\.csv:3: label 'maybe'"),
    ("path,label,video\nreal/clipA/000000.png,0,A\nreal/missing.png,0,A\n", r"manifest\.csv:3: real/missing\.png does not exist"),
    ("path,label,video\n,0,A\n", r"manifest\.csv:2: empty path"),
    ("file,class\nreal/clipA/000000.png,0\n", r"expected columns path,label,video"),
    ("path,label,video\n", r"has no rows"),
])
def test_manifest_errors(crops_dir, body, match):
    csv_path = crops_dir / "manifest.csv"
    csv_path.write_text(body)
    with pytest.raises(UserError, match=match):
        open_dataset(csv_path, META, train=False)


# --- synthetic ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def meta64():
    return Meta(input_size=64)


def test_synthetic_balance_and_disjoint_split(meta64):
    tr = open_dataset("synthetic", meta64, train=True, split="train", seed=1)
    va = open_dataset("synthetic", meta64, train=False, split="val", seed=2)
    assert sum(tr.labels) * 2 == len(tr) and sum(va.labels) * 2 == len(va)
    assert not set(tr.videos) & set(va.videos)
    assert len(set(tr.videos) | set(va.videos)) == 101 and len(set(va.videos)) == 20
    small = open_dataset("synthetic:10", meta64, train=True, split="train")
    assert len(small) == 10 and small.labels == [0, 1] * 5 and len(set(small.videos)) == 5
    assert set(small.videos) <= set(tr.videos)
    with pytest.raises(UserError):
        open_dataset("synthetic:1", meta64, train=True)


def test_synthetic_determinism(meta64):
    def items(ds, idx):
        return [ds[i][0].numpy() for i in idx]

    a = open_dataset("synthetic:20", meta64, train=True, split="train", seed=3)
    b = open_dataset("synthetic:20", meta64, train=True, split="train", seed=3)
    for u, v in zip(items(a, range(6)), items(b, range(6))):
        np.testing.assert_array_equal(u, v)
    first = items(a, [1, 3])
    a.set_epoch(1)
    assert any(not np.array_equal(u, v) for u, v in zip(first, items(a, [1, 3])))
    a.set_epoch(0)
    for u, v in zip(first, items(a, [1, 3])):
        np.testing.assert_array_equal(u, v)
    va = open_dataset("synthetic", meta64, train=False, split="val")
    before = items(va, [0, 1])
    va.set_epoch(5)  # evaluation sets stay fixed
    for u, v in zip(before, items(va, [0, 1])):
        np.testing.assert_array_equal(u, v)


def test_synthetic_real_items_are_the_faces(meta64):
    va = open_dataset("synthetic", meta64, train=False, split="val")
    faces = dict(sample_real_faces(64))
    np.testing.assert_array_equal(va.image(0), faces[va.videos[0]])
    assert not np.array_equal(va.image(1), faces[va.videos[1]])
