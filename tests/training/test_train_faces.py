"""Training-time variants of the offline faces: colour and sharpness carry no label."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage")

from training.sample_faces import sample_real_faces, vary_face  # noqa: E402
from training.synthetic import is_gray, perturb_colour, self_blend  # noqa: E402


@pytest.fixture(scope="module")
def faces():
    return sample_real_faces(64)


def test_grey_faces_mostly_get_a_skin_tone(faces):
    grey = faces[1][1]
    assert is_gray(grey)
    out = [vary_face(grey, np.random.default_rng(s)) for s in range(40)]
    coloured = [o for o in out if not is_gray(o)]
    assert 0.6 * len(out) <= len(coloured) < len(out)  # mostly, not always
    for o in coloured:
        b, g, r = (float(o[..., c].mean()) for c in range(3))
        assert r > g > b  # a skin tone: red over green over blue
        assert o.shape == grey.shape and o.dtype == np.uint8


def test_colour_faces_are_sometimes_desaturated(faces):
    astronaut = faces[0][1]
    sat = [float(np.ptp(vary_face(astronaut, np.random.default_rng(s)).astype(np.int16), axis=2).mean())
           for s in range(40)]
    full = float(np.ptp(astronaut.astype(np.int16), axis=2).mean())
    assert min(sat) < 0.8 * full and max(sat) > 0.9 * full


def test_variants_are_reproducible(faces):
    a = vary_face(faces[5][1], np.random.default_rng(3))
    np.testing.assert_array_equal(a, vary_face(faces[5][1], np.random.default_rng(3)))


def test_blends_of_grey_faces_stay_grey(faces):
    """A forgery of a grey face must not gain colour: no real forgery would carry that cue."""
    for s in range(10):
        grey = faces[1 + s][1]
        assert is_gray(perturb_colour(grey, np.random.default_rng(s)))
        assert is_gray(self_blend(grey, np.random.default_rng(s))[0])
    assert not is_gray(perturb_colour(faces[0][1], np.random.default_rng(0)))
