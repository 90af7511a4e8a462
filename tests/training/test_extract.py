"""Face extraction CLI on generated videos, with damaged files that must be skipped and reported."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.faces import make_detector
from runtime.meta import Meta
from runtime.preprocess import crop_face
from tests.helpers import ROOT, run_module
from training.data import open_dataset
from training.extract import Manifest
from training.sample_faces import astronaut_bgr
from training.video_frames import sample_indices

SIZE = 64


def write_video(path: Path, frames: int = 20, shift: int = 5) -> None:
    """The astronaut's head moving over a gradient background, MJPG in an .avi."""
    path.parent.mkdir(parents=True, exist_ok=True)
    face = cv2.resize(astronaut_bgr(), (200, 200), interpolation=cv2.INTER_AREA)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    assert w.isOpened()
    yy, xx = np.mgrid[0:240, 0:320]
    for i in range(frames):
        bg = np.zeros((240, 320, 3), np.uint8)
        bg[..., 0], bg[..., 1], bg[..., 2] = (xx // 2) % 256, (yy + 5 * i) % 256, 90
        x, y = 10 + shift * i, 20 + (i % 5) * 3
        bg[y:y + 200, x:x + 200] = face
        w.write(bg)
    w.release()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "real" / "clip1.avi")
    write_video(root / "fake" / "set" / "clip2.avi", shift=4)
    (root / "fake" / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (root / "real" / "empty.mp4").write_bytes(b"")
    (root / "real" / "readme.txt").write_text("not a video")
    return root


@pytest.fixture(scope="module")
def extracted(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("crops")
    res = run_module("training.extract", "--videos", videos, "--out", out, "--frames", 8, "--size", SIZE)
    return out, res


def test_extract_writes_crops_and_reports_bad_files(extracted):
    out, res = extracted
    assert res.returncode == 0, res.stderr
    skipped = [line for line in res.stderr.splitlines() if "skipped" in line and "extract:" in line]
    assert any("broken.mp4" in line for line in skipped) and any("empty.mp4" in line for line in skipped)
    assert "Traceback" not in res.stderr
    summary = res.stdout.strip().splitlines()[-1]
    m = re.search(r"2 videos processed, 2 skipped, (\d+) crops written, (\d+) sampled frames without", summary)
    assert m, summary
    crops, no_face = int(m.group(1)), int(m.group(2))
    assert crops + no_face == 16 and crops >= 12  # the detector finds the astronaut in (nearly) every frame
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == crops
    assert {(r["label"], r["video"]) for r in rows} == {("real", "clip1"), ("fake", "set/clip2")}
    for r in rows:
        assert (out / r["path"]).is_file()
        assert r["path"].startswith(f"{r['label']}/{r['video']}/")


def test_crops_are_the_runtime_crop(videos, extracted):
    out, _ = extracted
    detector = make_detector()  # the default, as extraction uses it
    margin = Meta().face_margin
    cap = cv2.VideoCapture(str(videos / "real" / "clip1.avi"))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 20
    written = sorted((out / "real" / "clip1").glob("*.png"))
    assert len(written) >= 6 and {int(p.stem) for p in written} <= set(sample_indices(20, 8))
    for p in written:
        frame = frames[int(p.stem)]
        box = detector.detect(frame)[0]
        np.testing.assert_array_equal(cv2.imread(str(p)), crop_face(frame, box, margin, SIZE))


def test_extracted_folder_and_manifest_open_alike(extracted):
    out, _ = extracted
    meta = Meta(input_size=SIZE)
    by_csv = open_dataset(out / "manifest.csv", meta, train=False)
    by_dir = open_dataset(out, meta, train=False)
    assert sorted(zip(by_csv.videos, by_csv.labels)) == sorted(zip(by_dir.videos, by_dir.labels))


def test_extract_refuses_to_clobber_manifest(videos, extracted):
    out, _ = extracted
    res = run_module("training.extract", "--videos", videos, "--out", out, "--frames", 2)
    assert res.returncode == 1 and "--overwrite" in res.stderr


def test_extract_fails_cleanly_without_usable_videos(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_module("training.extract", "--videos", empty, "--out", tmp_path / "o1", "--label", "real")
    assert res.returncode == 1 and "no video files" in res.stderr and "Traceback" not in res.stderr
    (empty / "bad.mp4").write_bytes(b"\x00garbage" * 100)
    res = run_module("training.extract", "--videos", empty, "--out", tmp_path / "o2", "--label", "fake")
    assert res.returncode == 1 and "skipped" in res.stderr and "0 videos processed, 1 skipped" in res.stdout
    assert (tmp_path / "o2" / "manifest.csv").read_text() == "path,label,video\n"
    res = run_module("training.extract", "--videos", empty, "--out", tmp_path / "o3")
    assert res.returncode == 1 and "--label" in res.stderr


def test_sample_indices():
    assert sample_indices(20, 8) == [0, 3, 5, 8, 11, 14, 16, 19]
    assert sample_indices(5, 32) == [0, 1, 2, 3, 4]
    assert sample_indices(0, 4) == []


def test_manifest_rows_are_on_disk_before_close(tmp_path):
    m = Manifest(tmp_path / "manifest.csv")
    m.add("real/a,b/000001.png", "real", "a,b")
    rows = list(csv.DictReader(open(tmp_path / "manifest.csv", newline="")))
    assert rows == [{"path": "real/a,b/000001.png", "label": "real", "video": "a,b"}]
    m.close()


def test_extract_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.argv = ['extract', '--help']\n"
            "from training.extract import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    sys.exit(e.code)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--frames" in res.stdout, res.stderr


def test_extraction_uses_the_runtimes_default_detector():
    from runtime.faces import DEFAULT_DETECTOR
    from training.extract import build_parser

    a = build_parser().parse_args(["--videos", "v", "--out", "o"])
    assert a.faces == DEFAULT_DETECTOR == "mtcnn" and a.face_threshold == 0.9


def test_photos_are_read_one_crop_each_and_counted(tmp_path):
    """Photos beside videos: one crop of the largest face each, the photo's folder its video id; a
    photo without a face and a damaged one are counted, never silently ignored."""
    from skimage import data

    root = tmp_path / "in"
    (root / "real" / "eileen").mkdir(parents=True)
    (root / "fake").mkdir()
    face = astronaut_bgr()
    cv2.imwrite(str(root / "real" / "eileen" / "a.png"), face)
    cv2.imwrite(str(root / "real" / "eileen" / "a.jpg"), cv2.flip(face, 1))  # same stem: the suffix names it
    cv2.imwrite(str(root / "real" / "brick.png"), data.brick())  # no face
    cv2.imwrite(str(root / "fake" / "swap.jpg"), face[:, ::-1])
    (root / "fake" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    write_video(root / "real" / "clip1.avi", frames=6)
    out = tmp_path / "out"
    res = run_module("training.extract", "--videos", root, "--out", out, "--frames", 2, "--size", SIZE)
    assert res.returncode == 0, res.stderr
    assert "1 videos processed, 0 skipped" in res.stdout and "4 photos read, 1 without a face, 1 skipped" in res.stdout
    assert "broken.png" in res.stderr
    with open(out / "manifest.csv", newline="") as f:
        rows = {r["path"]: (r["label"], r["video"]) for r in csv.DictReader(f)}
    photo_rows = {p: v for p, v in rows.items() if not p.startswith("real/clip1/")}
    assert photo_rows == {"real/eileen/a_png.png": ("real", "eileen"), "real/eileen/a_jpg.png": ("real", "eileen"),
                          "fake/swap.png": ("fake", "swap")}
    by_dir = open_dataset(out, Meta(input_size=SIZE), train=False)
    assert {("real", "eileen"), ("fake", "swap")} <= {(["real", "fake"][y], v) for y, v in zip(by_dir.labels, by_dir.videos)}


def test_overwrite_removes_the_earlier_crops_and_only_those(tmp_path):
    """The folder is a --data too: after --overwrite it holds what the new manifest lists, and the
    user's own files (and anything the old manifest names outside the folder) are left alone."""
    videos = tmp_path / "videos"
    write_video(videos / "real" / "clip1.avi")
    out = tmp_path / "crops"
    res = run_module("training.extract", "--videos", videos, "--out", out, "--frames", 6, "--size", SIZE)
    assert res.returncode == 0, res.stderr
    assert len(list(out.rglob("*.png"))) == 6
    (out / "notes.txt").write_text("mine")
    (out / "real" / "mine.png").write_bytes(b"my own picture")
    (tmp_path / "outside.png").write_bytes(b"outside")
    with open(out / "manifest.csv", "a", encoding="utf-8") as f:
        f.write("../outside.png,real,x\n")
    res = run_module("training.extract", "--videos", videos, "--out", out, "--frames", 2, "--size", SIZE,
                     "--overwrite")
    assert res.returncode == 0, res.stderr
    assert "training.extract: --overwrite: removed 6 crops of the earlier extraction" in res.stderr
    rows = list(csv.DictReader(open(out / "manifest.csv", encoding="utf-8")))
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == sorted([r["path"] for r in rows]
                                                                                  + ["real/mine.png"])
    assert len(rows) == 2 and (out / "notes.txt").read_text() == "mine"
    assert (tmp_path / "outside.png").read_bytes() == b"outside"
    assert res.stdout.startswith("training.extract: 1 videos processed")


def test_overwrite_removes_a_link_itself_never_what_it_points_to(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "real" / "clip1.avi", frames=6)
    out = tmp_path / "crops"
    res = run_module("training.extract", "--videos", videos, "--out", out, "--frames", 2, "--size", SIZE)
    assert res.returncode == 0, res.stderr
    mine, theirs = tmp_path / "mine.png", tmp_path / "folder"
    mine.write_bytes(b"my own picture")
    theirs.mkdir()
    (theirs / "a.png").write_bytes(b"in a linked folder")
    first = out / "real" / "clip1" / "000000.png"  # the new run writes this crop again
    first.unlink()
    first.symlink_to(mine)
    (out / "real" / "linked").symlink_to(theirs)
    with open(out / "manifest.csv", "a", encoding="utf-8") as f:
        f.write("real/linked/a.png,real,linked\n")
    res = run_module("training.extract", "--videos", videos, "--out", out, "--frames", 2, "--size", SIZE,
                     "--overwrite")
    assert res.returncode == 0, res.stderr
    assert "removed 2 crops of the earlier extraction" in res.stderr
    assert mine.read_bytes() == b"my own picture" and (theirs / "a.png").read_bytes() == b"in a linked folder"
    assert not first.is_symlink() and cv2.imread(str(first)).shape == (SIZE, SIZE, 3)


def test_overwrite_keeps_the_earlier_crops_when_the_new_run_writes_none(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "real" / "clip1.avi", frames=6)
    out = tmp_path / "crops"
    res = run_module("training.extract", "--videos", videos, "--out", out, "--frames", 2, "--size", SIZE)
    assert res.returncode == 0, res.stderr
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "bad.mp4").write_bytes(b"\x00garbage" * 100)
    res = run_module("training.extract", "--videos", junk, "--out", out, "--label", "real", "--overwrite")
    assert res.returncode == 1 and "none of the 1 videos and 0 photos could be read" in res.stderr
    assert (f"--overwrite: no crop was written, so {out / 'manifest.csv'} and the crops it lists are kept as they "
            "were") in res.stderr and "Traceback" not in res.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
