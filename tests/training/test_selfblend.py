"""Self-blends drawn from a face's landmarks, the pool and selfblend:FOLDER data specs, and
every forgery family made in a face's frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime.errors import UserError
from training.blend_set import FrameFaceSet, crop_view, paste
from training.dataspec import open_items, parse_generated, split_for, synthetic_spec
from training.face_pool import pool_faces
from training.face_shape import HULLS, hull_points, landmark_mask
from training.forgeries import FAMILIES
from training.model import default_meta
from training.synthetic import self_blend

META = default_meta("edge", 64, None)
FACE = pool_faces("val")[1]


@pytest.mark.parametrize("kind", HULLS)
def test_hulls_cover_the_face_and_not_the_background(kind):
    pts = hull_points(FACE.landmarks, kind)
    x, y, w, h = FACE.box
    # every hull lies about the face box (the forehead hull reaches a little above it)
    assert pts[:, 0].min() > x - 0.35 * w and pts[:, 0].max() < x + 1.35 * w
    assert pts[:, 1].min() > y - 0.6 * h and pts[:, 1].max() < y + 1.25 * h
    mask = landmark_mask(FACE.image.shape[:2], FACE.landmarks, np.random.default_rng(0), kind)
    nose = FACE.landmarks[2].round().astype(int)
    assert mask[nose[1], nose[0]] == 1 and mask[0, 0] == 0 and mask[-1, -1] == 0


def test_landmark_self_blend_changes_the_face_inside_its_mask_only():
    rng = np.random.default_rng(7)
    for _ in range(6):
        fake, mask = self_blend(FACE.image, rng, landmarks=FACE.landmarks, box=FACE.box)
        assert fake.shape == FACE.image.shape and mask.max() > 0.2
        nose = FACE.landmarks[2].round().astype(int)
        assert mask[nose[1], nose[0]] > 0 and mask[:10].max() == 0 and mask[:, :10].max() == 0
        inside = mask > 0.2
        assert np.abs(fake[inside].astype(int) - FACE.image[inside]).mean() > 0.5
    with pytest.raises(ValueError, match="box"):
        self_blend(FACE.image, rng, landmarks=FACE.landmarks)


def test_crop_view_and_paste_round_trip():
    crop, where = crop_view(FACE.image, FACE.box, 0.15)
    assert crop.shape[0] == where[2] - where[0] == where[3] - where[1]
    assert np.array_equal(paste(FACE.image, crop, where), FACE.image)


def test_parse_generated_specs():
    g = parse_generated("pool-i2g:40:camera=off")
    assert (g.base, g.n, g.families, g.camera_on) == ("pool", 40, ("i2g",), False)
    g = parse_generated("selfblend:/data/cam:01/faces:300:families=sbi,warp")
    assert (g.base, g.path, g.n, g.families, g.camera_on) == ("selfblend", "/data/cam:01/faces", 300,
                                                             ("sbi", "warp"), True)
    assert parse_generated("synthetic").camera_on is False and parse_generated("crops/") is None
    assert synthetic_spec(20, ("warp",), like="selfblend:/x:camera=off") == "selfblend:/x:20:families=warp:camera=off"
    assert synthetic_spec(20, ("sbi",)) == "synthetic:20"
    for bad, msg in (("pool:foo", "unknown"), ("pool-i2g:families=sbi", "once"), ("selfblend:", "name a folder"),
                     ("pool:families=bogus", "unknown")):
        with pytest.raises(UserError, match=msg):
            parse_generated(bad)
    assert [split_for("pool", r) for r in ("train", "calibrate", "validate", "evaluate")] == \
        ["train", "train", "val", "test"]
    assert split_for("selfblend:/x", "evaluate") == "val" and split_for("crops/", "train") is None


def test_pool_items_alternate_and_keep_people_apart():
    train, val = open_items("pool:40", META, "train"), open_items("pool:40", META, "val")
    assert train.labels == [0, 1] * 20 and not set(train.videos) & set(val.videos)
    assert set(open_items("pool", META, "test").videos).isdisjoint(val.videos)
    a = train.crop(1, np.random.default_rng(3), vary=True)
    b = train.crop(1, np.random.default_rng(3), vary=True)
    assert a.shape == (64, 64, 3) and np.array_equal(a, b)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_in_the_frame(family):
    items = FrameFaceSet(f"pool-{family}", pool_faces("val")[:4], META, 4, (family,), camera=None)
    rng = np.random.default_rng(11)
    real_frame, face = items.frame(0, rng)
    fake_frame, _ = items.frame(1, rng)
    assert fake_frame.shape == face.image.shape
    changed = np.abs(fake_frame.astype(int) - items.faces[items.face_of[1]].image).max(axis=2) > 0
    ys, xs = np.nonzero(changed)
    assert ys.size > 0  # something was forged, about the face and not at the frame's far corner
    x, y, w, h = items.faces[items.face_of[1]].box
    assert x - w < np.median(xs) < x + 2 * w and y - h < np.median(ys) < y + 2 * h
    assert np.array_equal(real_frame, face.image)


def test_selfblend_folder_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("JRC_CACHE_DIR", "")
    for i, f in enumerate(pool_faces("test")[:5]):
        (tmp_path / f"p{i}").mkdir()
        cv2.imwrite(str(tmp_path / f"p{i}" / "a.jpg"), f.image)
    spec = f"selfblend:{tmp_path}:12"
    train, val = open_items(spec, META, "train"), open_items(spec, META, "val")
    assert len(train) == 12 and not set(train.videos) & set(val.videos)
    with pytest.raises(UserError, match="no test split"):
        open_items(spec, META, "test")


def test_camera_ramp_follows_the_training_epoch():
    from training.data import FaceDataset

    train = FaceDataset(open_items("pool:8:ramp=4", META, "train"), META, train=True)
    val = FaceDataset(open_items("pool:8:ramp=4", META, "val"), META, train=False)
    train.set_epoch(1)
    val.set_epoch(1)
    assert train.items.strength == 0.25 and val.items.strength == 1.0
    train.set_epoch(9)
    assert train.items.strength == 1.0
    assert parse_generated("pool:8:ramp=4").text() == "pool:8:ramp=4"
