"""``--save``: one video, one annotated image, or a folder of annotated images; the rest refused in one line."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime.detect import main
from tests.helpers.media import face_video
from tests.helpers.models import make_onnx


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_onnx(tmp_path_factory.mktemp("m") / "m.onnx")


@pytest.fixture()
def photos(tmp_path):
    """A folder of three images of different sizes, one in a sub-folder, one a JPEG."""
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    for name, size in (("a.png", (40, 30)), ("b.jpg", (64, 48)), ("sub/c.png", (32, 32))):
        cv2.imwrite(str(d / name), np.full((size[1], size[0], 3), 100, np.uint8))
    return d


def _run(model, source, save, *extra):
    return main(["--engine", str(model), "--source", str(source), "--faces", "none", "--quiet", "--save", str(save),
                 *extra])


def test_a_folder_of_images_saves_one_annotated_image_per_input(model, photos, tmp_path):
    out = tmp_path / "annotated"
    assert _run(model, photos, str(out) + "/") == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a.png", "b.jpg", "sub/c.png"]  # named as the inputs, sub-folders kept
    for name in written:
        img, src = cv2.imread(str(out / name)), cv2.imread(str(photos / name))
        assert img is not None and img.shape == src.shape and not np.array_equal(img, src)  # annotated


def test_one_image_saves_one_annotated_image(model, photos, tmp_path):
    out = tmp_path / "new" / "one.png"  # its folder is created
    assert _run(model, photos / "a.png", out) == 0
    assert cv2.imread(str(out)).shape == (30, 40, 3)


def test_a_video_in_a_folder_output_becomes_an_annotated_video(model, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    face_video(clips / "walk.mp4", frames=6)
    out = tmp_path / "annotated"
    assert _run(model, clips, out) == 0  # a name without a suffix is a folder
    cap = cv2.VideoCapture(str(out / "walk.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6


@pytest.mark.parametrize("save, why", [("out.png", "one image name"), ("x.mkv", "is not an output --save writes"),
                                       ("x.gif", "is not an output --save writes")])
def test_unsupported_saves_are_refused_in_one_line_before_anything_is_written(model, photos, tmp_path, capsys,
                                                                               save, why):
    assert _run(model, photos, tmp_path / save) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and why in err and ".mp4" in err
    assert not (tmp_path / save).exists()


def test_a_save_folder_that_would_overwrite_or_feed_the_inputs_is_refused(model, photos, capsys):
    for out in (photos, photos / "annotated"):
        assert _run(model, photos, str(out) + "/") == 1
        assert "source" in capsys.readouterr().err
    assert _run(model, photos / "*.png", str(photos) + "/") == 1  # a glob's folder: a.png over a.png
    assert "over the input" in capsys.readouterr().err
    assert sorted(p.name for p in photos.iterdir()) == ["a.png", "b.jpg", "sub"]
