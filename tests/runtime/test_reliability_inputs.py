"""Unusual but valid inputs must be handled, never refused or crashed on: 16-bit, grayscale and RGBA
images, very large and very small images, a video with damaged frames. Each is processed (converted
as needed; damaged frames skipped and counted) or reported as having no face, with exit 0."""

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


def _moving_face_clip(path: Path, frames: int = 40) -> Path:
    """A face panning right then left, up to 6 px a frame (as fast as the demo clip's)."""
    face = head(96)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    for i in range(frames):
        f = np.full((240, 320, 3), 90, np.uint8)
        x = int(112 + 80 * math.sin(2 * math.pi * i / 80))
        f[60:156, x: x + 96] = face
        out.write(f)
    out.release()
    return path


@pytest.mark.parametrize("stride", [1, 2, 3, 5])
def test_stride_keeps_the_face_in_every_processed_frame_and_one_track(model, tmp_path, stride):
    """Detection cadence and tracking follow the source's frames: with --stride, the face (in every
    frame) is found in every processed frame, as one track, as with --detect-every 1."""
    clip = _moving_face_clip(tmp_path / "pan.avi")
    code, recs, s = _run(model, clip, tmp_path, "--stride", str(stride))
    assert code == 0 and [r["frame"] for r in recs] == list(range(0, 40, stride))
    assert s["frames_without_face"] == 0 and s["frames_with_face"] == len(recs)
    assert s["tracks_total"] == 1 and {f["track"] for r in recs for f in r["faces"]} == {1}


def _jpeg_with_orientation(upright: np.ndarray, orientation: int) -> bytes:
    """A JPEG whose pixels are stored turned, with the EXIF orientation tag that turns them back
    (6: shown turned 90° clockwise, 8: 90° anticlockwise, 3: 180°). The APP1 segment is written
    here: OpenCV writes no EXIF."""
    stored = {6: cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE), 8: cv2.rotate(upright, cv2.ROTATE_90_CLOCKWISE),
              3: cv2.rotate(upright, cv2.ROTATE_180)}[orientation]
    jpeg = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    ifd = (b"\x00\x01" + b"\x01\x12" + b"\x00\x03" + b"\x00\x00\x00\x01" + orientation.to_bytes(2, "big")
           + b"\x00\x00" + b"\x00\x00\x00\x00")  # one entry: Orientation (0x0112), SHORT, 1 value; no next IFD
    exif = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + ifd
    return jpeg[:2] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + jpeg[2:]


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_exif_orientation_is_honoured(model, reference, tmp_path, orientation):
    """A photo stored sideways with an EXIF orientation tag is read upright everywhere images are
    read (runtime.media.read_image: --source, training crops, extraction, calibration)."""
    from runtime.media import read_image

    upright = _scene()
    path = tmp_path / "photo.jpg"
    path.write_bytes(_jpeg_with_orientation(upright, orientation))
    assert cv2.imread(str(path)).shape == upright.shape  # OpenCV's default reading agrees
    img = read_image(str(path))
    assert img.shape == upright.shape and np.abs(img.astype(int) - upright).mean() < 4
    code, recs, s = _run(model, path, tmp_path, "--save", str(tmp_path / "o.avi"))
    assert code == 0 and len(recs) == 1
    (face,) = recs[0]["faces"]
    assert all(abs(a - b) <= 4 for a, b in zip(face["box"], reference["box"]))  # found upright, same place
    cap = cv2.VideoCapture(str(tmp_path / "o.avi"))
    ok, saved = cap.read()
    cap.release()
    assert ok and saved.shape == upright.shape  # saved upright


def test_float_image_with_nan_pixels_is_read_without_warnings(tmp_path):
    """NaN/inf pixels of a float TIFF become 0 / the largest finite value; the rest of the frame
    is kept (not black) and numpy warns about nothing."""
    import warnings

    from runtime.media import read_image

    img = np.full((24, 32, 3), 0.5, np.float32)
    img[0, 0], img[1, 1], img[2, 2] = np.nan, np.inf, -np.inf
    cv2.imwrite(str(tmp_path / "f.tiff"), img)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = read_image(str(tmp_path / "f.tiff"))
    assert out.dtype == np.uint8 and out[10, 10].tolist() == [127, 127, 127]
    assert out[0, 0].tolist() == [0, 0, 0] and out[1, 1].tolist() == [127, 127, 127]


@pytest.mark.parametrize("w, h", [(1, 1), (1, 4000)])
def test_save_of_a_frame_size_the_encoder_refuses_names_the_size(model, tmp_path, capsys, w, h):
    cv2.imwrite(str(tmp_path / "one.png"), np.full((h, w, 3), 200, np.uint8))
    code = main(["--engine", str(model), "--source", str(tmp_path / "one.png"), "--quiet",
                 "--save", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert code == 1 and f"{w}×{h} frames" in err and "cannot write this video format" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png"]  # the format probe left nothing


def test_native_log_lines_never_reach_stderr(model, tmp_path):
    """OpenCV's and FFmpeg's own messages ("Could not open codec", "moov atom not found") stay out
    of stderr: a failure is the CLI's one line (in a fresh process: FFmpeg's level is set once)."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    cv2.imwrite(str(tmp_path / "wide.png"), np.full((20, 20000, 3), 200, np.uint8))
    clip = tmp_path / "cut.mp4"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    for _ in range(10):
        out.write(np.full((48, 64, 3), 90, np.uint8))
    out.release()
    data = clip.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat") > 0
    clip.write_bytes(data[: data.find(b"moov") - 4])  # the moov atom (after the frames) is gone
    runs = [subprocess.Popen([sys.executable, "-m", "runtime.detect", "--engine", str(model), "--source", str(src),
                              "--quiet", *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for src, extra in ((tmp_path / "wide.png", ["--save", str(tmp_path / "o.mp4")]), (clip, []))]
    for proc, needle in zip(runs, ("20000×20 frames", "cut.mp4")):
        _, err = proc.communicate(timeout=60)
        lines = [x for x in err.splitlines() if x.strip()]
        assert proc.returncode == 1 and len(lines) == 1 and needle in lines[0], err
