"""Unusual but valid inputs (issue 7): 16-bit, grayscale and RGBA images, very large and very small
images, a video with damaged frames. Each is processed (converted as needed; damaged frames
skipped and counted) or reported as having no face, with exit 0."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.detect import main
from tests.helpers.media import head
from tests.helpers.models import expected_prob, make_onnx


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_onnx(tmp_path_factory.mktemp("m") / "m.onnx")


def _run(model: Path, source: Path, tmp: Path, *extra: str) -> tuple[int, list[dict], dict]:
    code = main(["--engine", str(model), "--source", str(source), "--quiet", "--jsonl", str(tmp / "o.jsonl"),
                 "--summary", str(tmp / "s.json"), *extra])
    recs = [json.loads(x) for x in (tmp / "o.jsonl").read_text().splitlines()] if (tmp / "o.jsonl").exists() else []
    return code, recs, json.loads((tmp / "s.json").read_text())


def _scene(w: int = 320, h: int = 240, side: int = 150) -> np.ndarray:
    """A face on a grey background, BGR uint8."""
    f = np.full((h, w, 3), 90, np.uint8)
    y, x = (h - side) // 2, (w - side) // 2
    f[y: y + side, x: x + side] = head(side)
    return f


@pytest.fixture(scope="module")
def reference(model, tmp_path_factory):
    """The face's box and score in the plain 8-bit BGR PNG, to compare the conversions with."""
    tmp = tmp_path_factory.mktemp("ref")
    cv2.imwrite(str(tmp / "ref.png"), _scene())
    code, recs, _ = _run(model, tmp / "ref.png", tmp)
    assert code == 0 and len(recs[0]["faces"]) == 1
    return recs[0]["faces"][0]


@pytest.mark.parametrize("kind", ["16-bit", "16-bit gray", "gray", "rgba", "rgba half transparent"])
def test_converted_images_find_the_same_face(model, reference, tmp_path, kind):
    bgr = _scene()
    img = {"16-bit": bgr.astype(np.uint16) * 257,
           "16-bit gray": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257,
           "gray": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
           "rgba": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
           "rgba half transparent": np.dstack([bgr, np.full(bgr.shape[:2], 128, np.uint8)])}[kind]
    cv2.imwrite(str(tmp_path / "x.png"), img)
    assert cv2.imread(str(tmp_path / "x.png"), cv2.IMREAD_UNCHANGED).shape == img.shape  # really stored so
    code, recs, s = _run(model, tmp_path / "x.png", tmp_path)
    assert code == 0 and s["status"] == "ok" and len(recs) == 1
    (face,) = recs[0]["faces"]
    if "gray" in kind:  # the colour CNN detector sees the same face without its colours: nearly the same box
        from runtime.tracking import iou

        assert iou(face["box"], reference["box"]) > 0.9
    else:
        assert face["box"] == reference["box"]  # the detector saw the same picture
        assert math.isclose(face["prob"], reference["prob"], abs_tol=1e-3)  # and the model the same colours


def test_very_large_image(model, tmp_path):
    big = np.full((6000, 8000, 3), 90, np.uint8)
    big[1500:4500, 2500:5500] = cv2.resize(head(300), (3000, 3000), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(tmp_path / "big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    del big
    code, recs, s = _run(model, tmp_path / "big.jpg", tmp_path)
    assert code == 0 and s["frames"] == 1
    (face,) = recs[0]["faces"]
    x, y, w, h = face["box"]
    assert 2500 <= x < 5500 and 1500 <= y < 4500 and w > 500  # found, in full-resolution pixels


@pytest.mark.parametrize("side", [8, 1])
def test_very_small_images(model, tmp_path, capsys, side):
    cv2.imwrite(str(tmp_path / "tiny.png"), np.full((side, side, 3), 255, np.uint8))
    code, recs, s = _run(model, tmp_path / "tiny.png", tmp_path)
    assert code == 0 and s["verdict"] == "no_face" and recs[0]["no_face"]
    assert "no face found in 1 frame(s)" in capsys.readouterr().out
    code, recs, s = _run(model, tmp_path / "tiny.png", tmp_path, "--faces", "none")  # as a face crop: scored
    assert code == 0 and math.isclose(recs[0]["prob"], expected_prob(255), abs_tol=1e-3)


def test_video_with_damaged_frames_skips_and_counts_them(model, tmp_path):
    path = tmp_path / "v.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(60):
        out.write(np.full((48, 64, 3), 40 + 3 * i, np.uint8))
    out.release()
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i: i + 3] == b"\xff\xd8\xff"]  # JPEG frames
    assert len(starts) == 60
    damaged = [20, 21, 40]
    rng = np.random.default_rng(0)
    for k in damaged:  # noise over the frame's JPEG bytes; the AVI chunk headers (8 bytes) stay intact
        a, b = starts[k], starts[k + 1] - 8
        data[a:b] = rng.integers(0, 256, b - a, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    code, recs, s = _run(model, path, tmp_path, "--faces", "none")
    assert code == 0 and s["status"] == "ok"
    assert s["damaged"] == 3 and s["missing"] == 0 and s["frames"] == 57
    assert [r["frame"] for r in recs] == [i for i in range(60) if i not in damaged]
    for r in recs:  # the frames kept are the right ones: their grey level gives their score
        assert math.isclose(r["prob"], expected_prob(40 + 3 * r["frame"]), abs_tol=0.02)
