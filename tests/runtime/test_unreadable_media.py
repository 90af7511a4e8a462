"""Files the decoders refuse or cannot read whole, on real files through the CLI: each is one line
naming the file (no traceback), skipped and counted in a folder with the others still read, a
failing camera alone in a box; formats OpenCV reads are read in a folder as they are alone."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from runtime.media import read_image
from runtime.sources import open_source
from tests.helpers import run_module
from tests.helpers.media import head
from tests.helpers.models import make_onnx


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_onnx(tmp_path_factory.mktemp("m") / "m.onnx")


def _detect(model: Path, tmp: Path, *sources: str, extra: tuple[str, ...] = ()):
    """Run the CLI in a subprocess (a traceback or a crash shows there as it would to a user)."""
    src = [a for s in sources for a in ("--source", str(s))]
    res = run_module("runtime.detect", "--engine", model, *src, "--faces", "none", "--quiet",
                     "--jsonl", tmp / "o.jsonl", "--summary", tmp / "s.json", *extra, timeout=180)
    jsonl = tmp / "o.jsonl"
    recs = [json.loads(x) for x in jsonl.read_text().splitlines()] if jsonl.exists() else []
    summary = json.loads((tmp / "s.json").read_text()) if (tmp / "s.json").exists() else {}
    return res, recs, summary


def _lines(stderr: str) -> list[str]:
    return [x for x in stderr.splitlines() if x.strip()]


def huge_png(path: Path, side: int = 50000) -> Path:
    """A small valid PNG whose header (IHDR, its CRC fixed) declares side × side pixels: over
    OpenCV's pixel limit, so ``imdecode`` raises instead of returning None."""
    data = bytearray(cv2.imencode(".png", np.full((8, 8, 3), 90, np.uint8))[1].tobytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_an_image_over_the_pixel_limit_alone_is_one_line(model, tmp_path):
    big = huge_png(tmp_path / "big.png")
    res, _, s = _detect(model, tmp_path, big)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    err = _lines(res.stderr)
    assert len(err) == 1 and "big.png" in err[0] and "pixels" in err[0], res.stderr
    assert s["status"] == "error" and "internal error" not in s["error"]
    assert read_image(str(big)) is None  # what training and extraction ask: undecodable, not an exception


def test_an_image_over_the_pixel_limit_in_a_folder_is_skipped_and_the_others_read(model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_good.jpg"), np.full((64, 64, 3), 120, np.uint8))
    huge_png(folder / "b_big.png")
    cv2.imwrite(str(folder / "c_good.png"), np.full((64, 64, 3), 200, np.uint8))
    res, recs, s = _detect(model, tmp_path, folder)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    warn = [x for x in _lines(res.stderr) if "b_big.png" in x]
    assert len(warn) == 1 and "skipped" in warn[0]
    assert s["status"] == "ok" and s["sources_total"] == 2 and s["skipped"] == [str(folder / "b_big.png")]
    assert sorted(Path(r["source"]).name for r in recs) == ["a_good.jpg", "c_good.png"]


def test_an_image_over_the_pixel_limit_fails_its_camera_alone(model, tmp_path):
    clip = tmp_path / "clip.avi"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for _ in range(20):
        out.write(cv2.resize(head(120), (160, 120)))
    out.release()
    big = huge_png(tmp_path / "big.png")
    res, recs, s = _detect(model, tmp_path, f"good={clip}", f"bad={big}")
    assert res.returncode == 3 and "Traceback" not in res.stderr, res.stderr
    assert any("camera bad" in x and "big.png" in x for x in _lines(res.stderr))
    cams = {c["camera"]: c for c in s["cameras"]}
    assert cams["bad"]["status"] == "error" and "pixels" in cams["bad"]["error"]
    assert cams["good"]["status"] == "ok" and cams["good"]["frames"] == 20
    assert len([r for r in recs if r.get("camera") == "good"]) == 20


def test_a_folder_reads_every_format_read_alone_and_names_the_files_it_does_not_read(model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((64, 64, 3), 100, np.uint8))
    frames = [Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)) for i in range(5)]
    frames[0].save(folder / "b.gif", save_all=True, append_images=frames[1:], duration=40)
    (folder / "c.jpe").write_bytes(cv2.imencode(".jpg", np.full((64, 64, 3), 150, np.uint8))[1].tobytes())
    expected = {"a.jpg": 1, "b.gif": 5, "c.jpe": 1}
    try:
        if cv2.imwrite(str(folder / "d.avif"), np.full((64, 64, 3), 200, np.uint8)):
            expected["d.avif"] = 1  # an ISO-BMFF image: not to be refused as a video named .avif
    except cv2.error:  # this OpenCV was built without AVIF
        pass
    for name in ("notes.txt", "todo.txt", "meta.json", ".DS_Store"):
        (folder / name).write_text("not media")
    (tmp_path / "alone").mkdir()
    res, recs, _ = _detect(model, tmp_path / "alone", folder / "b.gif")
    assert res.returncode == 0 and len(recs) == 5  # alone: every frame of the animation
    for source in (str(folder), str(folder / "*")):
        res, recs, s = _detect(model, tmp_path, source)
        assert res.returncode == 0 and s["status"] == "ok" and s["skipped"] == [], res.stderr
        got: dict[str, int] = {}
        for r in recs:
            got[Path(r["source"]).name] = got.get(Path(r["source"]).name, 0) + 1
        assert got == expected and s["sources_total"] == len(expected)
        assert sorted(Path(f).name for f in s["not_media"]) == ["meta.json", "notes.txt", "todo.txt"]  # the summary says
        err = _lines(res.stderr)  # one line for the three files left out; the hidden file unmentioned
        assert len(err) == 1 and source in err[0] and "3 file(s)" in err[0] and ".txt ×2, .json ×1" in err[0]
    src = open_source(str(folder))  # what the summary can report: the files not read
    assert sorted(Path(f).name for f in src.stats.not_media) == ["meta.json", "notes.txt", "todo.txt"]


def mp4_clip(path: Path, frames: int = 60) -> Path:
    """An MPEG-4 part 2 .mp4 as OpenCV writes it: ftyp, free, mdat (the frames), then moov (the index)."""
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    for i in range(frames):
        out.write(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    out.release()
    return path


def top_boxes(data: bytes) -> dict[bytes, tuple[int, int]]:
    """The top-level boxes of an ISO-BMFF file: type → (offset, size)."""
    boxes, pos = {}, 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos: pos + 8])
        boxes[kind] = (pos, size)
        pos += size
    return boxes


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "frames zeroed"])
def test_a_bad_video_file_played_live_gets_the_files_message(model, tmp_path, kind):
    data = mp4_clip(tmp_path / "clip.mp4").read_bytes()
    bad = tmp_path / f"{kind.replace(' ', '_')}.mp4"
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "text":
        bad.write_text("not a video\n" * 20)
    elif kind == "truncated":
        bad.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: it cannot be opened
    else:
        at, size = top_boxes(data)[b"mdat"]
        bad.write_bytes(data[: at + 8] + bytes(size - 8) + data[at + size:])  # opens, no frame decodes
    lines = []
    for live in ("auto", "yes"):
        (tmp_path / live).mkdir()
        res, recs, _ = _detect(model, tmp_path / live, bad, extra=("--live", live))
        assert res.returncode == 1 and "Traceback" not in res.stderr and recs == []
        err = _lines(res.stderr)
        assert len(err) == 1 and str(bad) in err[0] and "stream" not in err[0], res.stderr
        lines.append(err[0])
    assert lines[0] == lines[1]  # the file's own message, whatever --live says


@pytest.mark.parametrize("kind", ["damaged", "truncated"])
def test_frames_not_read_are_told_damaged_in_a_complete_file_and_missing_in_a_truncated_one(model, tmp_path, kind):
    if kind == "damaged":  # complete: a run of zeros over a quarter of the frames' bytes, the index intact
        data = bytearray(mp4_clip(tmp_path / "clip.mp4", 100).read_bytes())
        at, size = top_boxes(bytes(data))[b"mdat"]
        data[at + size // 3: at + size // 3 + size // 4] = bytes(size // 4)
        bad = tmp_path / "damaged.mp4"
    else:  # an AVI cut in the middle (its index, at the end, is gone; the frames before the cut play)
        out = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
        for i in range(100):
            out.write(np.full((48, 64, 3), 2 * i, np.uint8))
        out.release()
        data = bytearray((tmp_path / "clip.avi").read_bytes()[: (tmp_path / "clip.avi").stat().st_size // 2])
        bad = tmp_path / "truncated.avi"
    bad.write_bytes(bytes(data))
    res, recs, s = _detect(model, tmp_path, bad)
    assert res.returncode == 0 and s["status"] == "ok" and 0 < len(recs) < 100, res.stderr
    err = _lines(res.stderr)
    assert len(err) == 1 and str(bad) in err[0] and "warning" in err[0], res.stderr
    assert s["frames"] + s["damaged"] + s["missing"] == 100
    if kind == "damaged":
        assert "(damaged: the file is complete" in err[0] and "truncated" not in err[0]
        assert s["missing"] == 0 and s["damaged"] > 0
    else:
        assert "(truncated: " in err[0] and s["damaged"] == 0 and s["missing"] > 0
