"""Forgery families: each generator changes only what its mask says, is seeded, and is what it claims."""

from __future__ import annotations

import numpy as np
import pytest

from training.forgeries import (
    FAMILIES,
    forge,
    identity_blend,
    local_warp,
    parse_families,
    region_blend,
    region_mask,
    resample_blend,
)
from training.sample_faces import sample_real_faces


@pytest.fixture(scope="module")
def faces():
    return [f for _, f in sample_real_faces(64)]


@pytest.mark.parametrize("family", FAMILIES)
def test_mask_confines_the_change_and_seed_reproduces_it(faces, family):
    changed = 0
    for seed in range(8):
        face, donor = faces[seed], faces[-1 - seed]
        fake, mask = forge(family, face, np.random.default_rng(seed), donor)
        assert fake.dtype == np.uint8 and fake.shape == face.shape
        assert mask.dtype == np.float32 and mask.shape == face.shape[:2]
        assert 0.0 <= mask.min() and mask.max() <= 1.0 and mask.max() > 0
        outside = mask == 0
        assert outside.mean() > 0.1, f"{family}: the mask should leave part of the crop alone"
        np.testing.assert_array_equal(fake[outside], face[outside])
        changed += int(np.abs(fake.astype(np.int16) - face.astype(np.int16))[mask > 0].mean() > 0.5)
        again = forge(family, face, np.random.default_rng(seed), donor)
        np.testing.assert_array_equal(again[0], fake)
        np.testing.assert_array_equal(again[1], mask)
    assert changed >= 6, f"{family}: forged regions barely changed in {8 - changed} of 8 seeds"


def test_identity_blend_brings_in_the_donor(faces):
    face, donor = faces[1], faces[2]
    fake, mask = identity_blend(face, donor, np.random.default_rng(0), hard_p=1.0)
    assert set(np.unique(mask)) <= {0.0, 1.0}, "hard paste: a 0/1 mask"
    soft = identity_blend(face, donor, np.random.default_rng(0), hard_p=0.0)[1]
    assert ((soft > 0) & (soft < soft.max())).any(), "soft paste: a graded boundary"
    inside = mask == 1
    # the donor's structure, not the target's, fills the mask: closer to the donor than a self-blend
    d_face = np.abs(fake.astype(np.int16) - face.astype(np.int16))[inside].mean()
    assert d_face > 3.0
    with pytest.raises(ValueError, match="donor"):
        forge("i2g", face, np.random.default_rng(0))


def test_grey_face_stays_grey(faces):
    grey = faces[5]
    colour = sample_real_faces(64, lfw=False)[0][1]  # the astronaut
    assert (grey[..., 0] == grey[..., 1]).all()
    for family in FAMILIES:
        fake, _ = forge(family, grey, np.random.default_rng(3), colour)
        assert (fake[..., 0] == fake[..., 1]).all() and (fake[..., 1] == fake[..., 2]).all(), family


def test_region_blend_stays_in_its_region():
    rng = np.random.default_rng(0)
    for region, (lo, hi) in (("eyes", (0.25, 0.6)), ("mouth", (0.55, 0.9))):
        m = region_mask(100, 100, region, rng)
        ys = np.nonzero(m > 0.5)[0]
        assert lo * 100 < ys.mean() < hi * 100, region
        assert (m > 0).mean() < 0.3, f"{region}: a region, not the face"
    face = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
    _, mask = region_blend(face, np.random.default_rng(1))
    assert (mask > 0).mean() < 0.3


def test_warp_moves_pixels_without_new_colours(faces):
    face = faces[0]
    fake, mask = local_warp(face, np.random.default_rng(2))
    assert (mask > 0).any()
    assert fake.min() >= face.min() and fake.max() <= face.max(), "a warp interpolates, it adds no colour"


def test_resample_keeps_the_face_s_colour(faces):
    face = faces[0].copy()
    fake, mask = resample_blend(face, np.random.default_rng(4))
    inside = mask > 0.9
    assert abs(float(fake[inside].mean()) - float(face[inside].mean())) < 3.0, "no colour shift, only resampling"


def test_parse_families():
    assert parse_families(None) == ("sbi",)
    assert parse_families("i2g, sbi") == ("sbi", "i2g")
    assert parse_families("all") == FAMILIES
    assert parse_families("all,sbi") == FAMILIES  # 'all' with more names is still all
    with pytest.raises(ValueError, match="nope"):
        parse_families("sbi,nope")
