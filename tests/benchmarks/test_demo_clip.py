"""The demo: a generated clip with a real and a manipulated segment, scored per segment; with
``--videos`` also sample training videos that ``training.extract`` turns into a training set."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage")
demo = pytest.importorskip("benchmarks.demo")

from runtime.errors import UserError  # noqa: E402
from runtime.preprocess import square_box  # noqa: E402
from tests.helpers.models import make_onnx  # noqa: E402


def test_manipulation_changes_only_the_face():
    head = demo._astronaut_head()
    fake = demo.manipulate(head, seed=1)
    from runtime.faces import make_detector

    box = make_detector().detect(head)[0]  # the detector manipulate() uses
    x0, y0, x1, y1 = square_box(box, 0.15)
    diff = np.abs(fake.astype(int) - head.astype(int)).sum(axis=2)
    outside = diff.copy()
    outside[y0:y1, x0:x1] = 0
    assert outside.max() == 0  # untouched outside the face crop
    assert (diff[y0:y1, x0:x1] > 6).mean() > 0.15  # a visible part of the face was replaced
    nose = np.round(box.landmarks[2]).astype(int)
    assert diff[nose[1], nose[0]] > 0  # the face itself, found from its landmarks


def test_demo_runs_and_prints_both_segments(tmp_path, capsys):
    model = make_onnx(tmp_path / "m.onnx")
    rc = demo.main(["--engine", str(model), "--frames", "6", "--size", "480x270", "--out", str(tmp_path / "out"),
                    "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("real ", "manipulated "))}
    assert set(rows) == {"real", "manipulated"}
    for row in rows.values():
        assert row[1] == "6" and row[2] == "6", row  # six frames, a face in each
        assert 0.0 <= float(row[3]) <= 1.0
    assert (tmp_path / "out" / "clip.mp4").is_file() and (tmp_path / "out" / "demo.jsonl").is_file()
    assert not (tmp_path / "out" / "videos").exists()  # only with --videos


def test_demo_videos_feed_extraction_and_a_two_class_split(tmp_path, capsys):
    """``--out DIR --videos``: DIR/clip.mp4 plus DIR/videos/{real,fake}/astronaut_<k>.mp4, which
    training.extract turns into crops whose held-out 20 % (training without --val) has both labels."""
    import cv2

    from runtime.meta import Meta
    from training import extract
    from training.dataspec import open_items

    model = make_onnx(tmp_path / "m.onnx", size=64)  # forgeries made at the bundled model's size
    out = tmp_path / "samples"
    rc = demo.main(["--engine", str(model), "--frames", "4", "--size", "480x270", "--out", str(out), "--videos",
                    "--quiet"])
    assert rc == 0
    assert "python -m training.extract --videos" in capsys.readouterr().out
    names = [f"astronaut_{k}.mp4" for k in range(1, demo.VIDEOS + 1)]
    for label in ("real", "fake"):
        assert sorted(p.name for p in (out / "videos" / label).iterdir()) == names
    assert (out / "clip.mp4").is_file()
    cap = cv2.VideoCapture(str(out / "videos" / "fake" / names[0]))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == 4
    real1, fake1 = (cv2.VideoCapture(str(out / "videos" / lab / names[0])).read()[1] for lab in ("real", "fake"))
    assert real1.shape == (270, 480, 3) and np.abs(real1.astype(int) - fake1.astype(int)).max() > 40  # the face differs

    crops = tmp_path / "crops"
    assert extract.main(["--videos", str(out / "videos"), "--out", str(crops), "--frames", "2", "--size", "32"]) == 0
    meta = Meta(input_size=32)
    everything = open_items(crops, meta)
    assert sorted(set(everything.labels)) == [0, 1] and len(set(everything.videos)) == 2 * demo.VIDEOS
    held_out = open_items(crops, meta, split="val")
    assert sorted(set(held_out.labels)) == [0, 1], held_out.videos


def test_videos_need_out(tmp_path):
    model = make_onnx(tmp_path / "m.onnx")
    with pytest.raises(UserError, match="--videos: needs --out"):
        demo.main(["--engine", str(model), "--videos"])


def test_missing_bundled_model_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="demo model is missing"):
        demo.main(["--engine", str(tmp_path / "absent.onnx")])
