"""The camera's trip (training.camera): each step does what it says, on a real face, reproducibly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from training import camera
from training.camera import OFF, CameraConfig, camera_view, jitter_box
from training.face_pool import pool_faces

FACE = pool_faces("val")[0]


def _view(cfg: CameraConfig, seed: int = 0) -> np.ndarray:
    return camera_view(FACE.image, FACE.box, FACE.landmarks, np.random.default_rng(seed), 96, 0.15, cfg)


def test_off_is_the_runtime_crop():
    from runtime.preprocess import crop_face

    assert np.array_equal(_view(OFF), crop_face(FACE.image, tuple(FACE.box), 0.15, 96))


def test_reproducible_and_varied():
    a, b, c = _view(camera.DEFAULT, 3), _view(camera.DEFAULT, 3), _view(camera.DEFAULT, 4)
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_scale_loses_detail_as_the_face_shrinks():
    def sharpness(img: np.ndarray) -> float:
        g = img.astype(np.float64).mean(axis=2)
        return float(np.abs(np.diff(g, axis=1)).mean())

    only_scale = replace(OFF, face_px=(40.0, 40.0))
    assert sharpness(_view(only_scale)) < 0.8 * sharpness(_view(OFF))


@pytest.mark.parametrize("step", ["dim", "noise", "blur"])
def test_each_step_changes_the_face(step):
    scaled = replace(OFF, face_px=(74.0, 74.0))  # the face at about the crop's size: nothing averaged away
    out, before = _view(replace(scaled, **{f"p_{step}": 1.0})), _view(scaled)
    assert np.abs(out.astype(int) - before).mean() > 1.0
    if step == "dim":
        assert out.mean() < 0.8 * before.mean()


def test_compression_jpeg_and_h264():
    jpeg_only = replace(OFF, p_compress=1.0, p_h264=0.0, jpeg=(10, 10))
    assert np.abs(_view(jpeg_only).astype(int) - _view(OFF)).mean() > 1.0
    if not camera.has_h264():
        pytest.skip("PyAV with libx264 is not installed (pip install av): H.264 falls back to JPEG")
    img = np.ascontiguousarray(FACE.image[:101, :99])  # odd sides: padded for 4:2:0 and cut back
    light, heavy = camera.h264(img, 18), camera.h264(img, 45, predicted=True, shift=(1.0, -0.5))
    assert light.shape == heavy.shape == img.shape
    err = [np.abs(x.astype(int) - img).mean() for x in (light, heavy)]
    assert err[0] < err[1]


def test_jitter_box_ranges():
    rng = np.random.default_rng(0)
    box = np.array([100.0, 80.0, 50.0, 60.0])
    margins = []
    for _ in range(300):
        b, m = jitter_box(box, 0.15, rng, p_wide=0.3)
        margins.append(m)
        side = max(box[2], box[3])
        assert abs((b[0] + b[2] / 2) - 125) <= 0.061 * side and 0.89 <= b[2] / box[2] <= 1.16
    margins = np.asarray(margins)
    assert margins.min() >= 0 and margins.max() <= 0.6
    assert 0.15 < np.mean(np.abs(margins - 0.15) > 0.05) < 0.45  # about p_wide of them far from the model's


def test_without_names_the_steps():
    assert OFF.p_compress == 0 and OFF.face_px == (0.0, 0.0)
    with pytest.raises(ValueError, match="camera step"):
        CameraConfig().without("fog")


def test_strength_ramps_every_step_toward_the_mildest():
    full, half, none = camera.DEFAULT, camera.DEFAULT.at(0.5), camera.DEFAULT.at(0.0)
    assert camera.DEFAULT.at(1.0) is full
    assert half.p_compress == pytest.approx(full.p_compress / 2) and none.p_noise == 0 and none.p_wide == 0
    assert none.face_px == (full.face_px[1], full.face_px[1]) and full.face_px[0] < half.face_px[0] < full.face_px[1]
    assert half.crf[1] < full.crf[1] and half.jpeg[0] > full.jpeg[0]
