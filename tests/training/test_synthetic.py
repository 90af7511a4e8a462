"""Self-blended forgeries: the mask confines the change, and a seed reproduces it."""

from __future__ import annotations

import numpy as np
import pytest

from training.sample_faces import sample_real_faces
from training.synthetic import BLEND_RATIOS, face_mask, self_blend


@pytest.fixture(scope="module")
def faces():
    return sample_real_faces(64)


def test_unchanged_outside_mask_changed_inside(faces):
    for seed, (_, face) in enumerate(faces[:12]):
        fake, mask = self_blend(face, np.random.default_rng(seed))
        assert fake.dtype == np.uint8 and fake.shape == face.shape
        assert mask.dtype == np.float32 and mask.shape == face.shape[:2]
        assert 0.0 <= mask.min() and mask.max() <= 1.0
        outside = mask == 0
        assert outside.mean() > 0.1, "the mask should leave the crop's border alone"
        np.testing.assert_array_equal(fake[outside], face[outside])
        inside = mask >= 0.5 * mask.max()
        assert inside.mean() > 0.15, "the mask should cover the face"
        diff = np.abs(fake.astype(np.int16) - face.astype(np.int16))[inside].mean()
        assert diff > 2.0, f"seed {seed}: forged region barely changed (mean |diff| {diff:.2f})"


def test_mask_peak_is_a_blend_ratio(faces):
    peaks = {round(float(self_blend(faces[0][1], np.random.default_rng(s))[1].max()), 4) for s in range(40)}
    assert peaks <= {round(r, 4) for r in BLEND_RATIOS}
    assert len(peaks) >= 2  # partial and full blends both occur


def test_deterministic_given_rng(faces):
    face = faces[3][1]
    a = self_blend(face, np.random.default_rng(123))
    b = self_blend(face, np.random.default_rng(123))
    c = self_blend(face, np.random.default_rng(124))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_works_on_any_size_and_colour():
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (90, 90, 3), dtype=np.uint8)
    fake, mask = self_blend(face, rng)
    assert fake.shape == (90, 90, 3) and mask.shape == (90, 90)
    np.testing.assert_array_equal(fake[mask == 0], face[mask == 0])
    with pytest.raises(ValueError):
        self_blend(face.astype(np.float32), rng)


def test_mask_is_centred_blob():
    m = face_mask(100, 100, np.random.default_rng(5))
    assert set(np.unique(m)) <= {0.0, 1.0}
    ys, xs = np.nonzero(m)
    assert 35 < xs.mean() < 65 and 35 < ys.mean() < 70
    assert m[0].sum() == 0 and m[:, 0].sum() == 0


def test_plain_synthetic_spec_is_still_self_blends():
    """``synthetic[:N]`` without families draws exactly what it drew before families existed."""
    from runtime.meta import Meta
    from training.dataspec import open_items

    items = open_items("synthetic:20", Meta(input_size=64, graph="detect", outputs=("logit",)), "val")
    assert set(items.families_of[1::2]) == {"sbi"}
    face = items.faces[items.face_of[1]][1]
    np.testing.assert_array_equal(items.crop(1, np.random.default_rng(7)),
                                  self_blend(face, np.random.default_rng(7))[0])
