"""Outputs never destroy inputs or each other, never replace a special file, are checked before the
first frame, and a write that fails is one line with what was written before kept. Every JSON
written is strict (no NaN/Infinity tokens)."""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

import runtime.sinks as sinks
from runtime.detect import main
from runtime.pipeline import Face, Result
from runtime.sources import Frame
from tests.helpers import load_strict
from tests.helpers.models import make_onnx


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_onnx(tmp_path_factory.mktemp("m") / "m.onnx")


def _clip(path: Path, frames: int = 6) -> Path:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(frames):
        out.write(np.full((48, 64, 3), 40 + 20 * i, np.uint8))
    out.release()
    return path


def _run(model: Path, source: str | Path, *extra: str) -> int:
    return main(["--engine", str(model), "--source", str(source), "--faces", "none", "--quiet", *map(str, extra)])


def _one_error(err: str, *needles: str) -> None:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("jrc-detect: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# --- 1. an output is never an input, nor another output -------------------------------------
@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "clips" / "sub").mkdir(parents=True)
    clip = _clip(tmp_path / "clips" / "clip.avi")
    _clip(tmp_path / "clips" / "sub" / "deep.avi")
    (tmp_path / "link.avi").symlink_to(clip)
    os.link(clip, tmp_path / "hard.avi")
    return tmp_path


CONFLICTS = [  # (source, flag, output) relative to the tmp folder; "same" names a second output
    ("clips/clip.avi", "--save", "clips/clip.avi"),
    ("clips/clip.avi", "--save", "clips/sub/../clip.avi"),
    ("clips/clip.avi", "--jsonl", "link.avi"),
    ("clips/clip.avi", "--summary", "hard.avi"),
    ("clips", "--save", "clips/new.avi"),  # would be read by the folder source next time
    ("clips", "--save", "clips/sub/new.avi"),  # so would anything below it
    ("clips", "--summary", "clips/clip.avi"),
    ("clips/*.avi", "--save", "clips/new.avi"),
    ("clips/**/*.avi", "--save", "clips/sub/new.avi"),
    ("clips/**/*.avi", "--jsonl", "hard.avi"),  # a hard link of a matched file
    ("clips/clip.avi", "--summary", "m.onnx"),  # the model
    ("clips/clip.avi", "same", "out.json"),  # --jsonl F --summary F
]


@pytest.mark.parametrize("source, flag, output", CONFLICTS, ids=[f"{s} {f} {o}" for s, f, o in CONFLICTS])
def test_output_that_is_an_input_or_another_output_is_refused(model, inputs, capsys, monkeypatch, source, flag,
                                                              output):
    monkeypatch.chdir(inputs)
    (inputs / "m.onnx").write_bytes(Path(model).read_bytes())
    before = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
    extra = ["--jsonl", output, "--summary", output] if flag == "same" else [flag, output]
    code = _run(Path("m.onnx"), source, *extra)
    assert code == 2  # a bad command line
    _one_error(capsys.readouterr().err, output)
    after = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
    assert after == before  # nothing written, no input touched


def test_outputs_beside_a_folder_source_are_fine(model, inputs, capsys):
    code = _run(model, inputs / "clips", "--jsonl", inputs / "o.jsonl", "--save", inputs / "o.avi",
                "--summary", inputs / "clips" / "s.json")  # not a media file: never read as an input
    # a folder source reads its sub-folders too: clips/clip.avi and clips/sub/deep.avi, 6 frames each
    assert code == 0 and json.loads((inputs / "clips" / "s.json").read_text())["frames"] == 12


# --- 2. special files are written into, never replaced ---------------------------------------
def _fifo_reader(path: Path, got: list[bytes]) -> threading.Thread:
    def read():
        with open(path, "rb") as f:
            got.append(f.read())
    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def test_fifos_and_devices_are_written_into_never_replaced(model, tmp_path):
    clip = _clip(tmp_path / "c.avi")
    jsonl, summary = tmp_path / "j.fifo", tmp_path / "s.fifo"
    os.mkfifo(jsonl)
    os.mkfifo(summary)
    got_j: list[bytes] = []
    got_s: list[bytes] = []
    readers = [_fifo_reader(jsonl, got_j), _fifo_reader(summary, got_s)]
    assert _run(model, clip, "--jsonl", jsonl, "--summary", summary) == 0
    for t in readers:
        t.join(10)
    assert stat.S_ISFIFO(os.stat(jsonl).st_mode) and stat.S_ISFIFO(os.stat(summary).st_mode)
    assert len([json.loads(x) for x in got_j[0].decode().splitlines()]) == 6
    assert json.loads(got_s[0])["frames"] == 6
    assert sorted(os.listdir(tmp_path)) == ["c.avi", "j.fifo", "s.fifo"]  # no temporary left
    assert _run(model, clip, "--jsonl", os.devnull, "--summary", os.devnull) == 0
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_save_onto_a_special_file_is_refused_before_the_run(model, tmp_path, capsys, kind):
    clip = _clip(tmp_path / "c.avi")
    target = tmp_path / "v.avi"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        try:
            os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
        except PermissionError:
            pytest.skip("creating a device node needs CAP_MKNOD")
    assert _run(model, clip, "--save", target, "--jsonl", tmp_path / "o.jsonl") == 1
    _one_error(capsys.readouterr().err, "--save", "not a regular file")
    assert not (tmp_path / "o.jsonl").exists()  # refused before the first frame
    mode = os.stat(target).st_mode
    assert stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode)


# --- 6. output paths checked first; write errors are one line -------------------------------
# a missing folder is created (every tool's rule); a --save folder holds one annotated file per input
BAD_PATHS = [(flag, what, rel) for flag in ("--summary", "--jsonl", "--save")
             for what, rel in (("a folder", "adir"), ("below a file", "afile/x")) if (flag, what) != ("--save", "a folder")]
BAD_PATHS.append(("--event-media", "below a file", "afile/x"))  # a folder of event files, made before the run


@pytest.mark.parametrize("flag, what, rel", BAD_PATHS, ids=[f"{b[1]}-{b[0]}" for b in BAD_PATHS])
def test_bad_output_path_is_one_line_before_the_first_frame(model, tmp_path, capsys, monkeypatch, flag, what, rel):
    clip = _clip(tmp_path / "c.avi")
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    frames = []
    monkeypatch.setattr(sinks, "frame_record", lambda *a: frames.append(a) or {})
    path = str(tmp_path / rel) + (".avi" if flag == "--save" and rel != "adir" else "")
    assert _run(model, clip, flag, path) == 1
    _one_error(capsys.readouterr().err, flag, path)
    assert frames == []  # checked before any frame


@pytest.mark.parametrize("cameras", [1, 2])
def test_a_failure_while_the_loop_starts_still_writes_the_summary(model, tmp_path, capsys, monkeypatch, cameras):
    """Set-up that fails after the cameras' pipelines exist but before frames flow (here the event
    files' folder) is one line, and the summary is still written (it once crashed on the unset start time)."""
    import runtime.event_media as em
    from runtime.errors import UserError

    def refuse(self, *a, **k):
        raise UserError("--event-media: refused by the test")

    monkeypatch.setattr(em.EventMedia, "__init__", refuse)
    clip = _clip(tmp_path / "c.avi")
    sources = [f"cam{i}={clip}" for i in range(cameras)] if cameras > 1 else [str(clip)]
    args = ["--engine", str(model), "--faces", "none", "--quiet", "--event-media", tmp_path / "media",
            "--summary", tmp_path / "s.json"]
    for src in sources:
        args += ["--source", src]
    assert main(list(map(str, args))) == 1
    _one_error(capsys.readouterr().err, "refused by the test")
    s = load_strict(tmp_path / "s.json")
    assert s["status"] == "error" and "refused by the test" in s["error"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_is_one_line_and_keeps_the_other_results(model, tmp_path, capsys):
    clip = _clip(tmp_path / "c.avi")
    assert _run(model, clip, "--jsonl", "/dev/full", "--summary", tmp_path / "s.json") == 1
    _one_error(capsys.readouterr().err, "--jsonl /dev/full", "No space left on device")
    s = load_strict(tmp_path / "s.json")
    assert s["status"] == "error" and "No space left" in s["error"]
    assert _run(model, clip, "--jsonl", tmp_path / "o.jsonl", "--summary", "/dev/full") == 1
    _one_error(capsys.readouterr().err, "--summary /dev/full", "No space left on device")
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 6  # the JSONL is complete
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


@pytest.mark.parametrize("err", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_write_error_mid_run_is_one_line_and_keeps_the_lines_written(model, tmp_path, capsys, monkeypatch, err):
    """The third JSONL line fails (read-only file system, permission lost, disk full): one line,
    exit 1, the two lines written before kept, the summary says why."""
    clip = _clip(tmp_path / "c.avi")

    class Failing:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, s):
            self.n += 1
            if self.n == 3:
                raise OSError(err, os.strerror(err))
            return self.f.write(s)

        def flush(self):
            self.f.flush()

        def close(self):
            self.f.close()

    monkeypatch.setattr(sinks, "open", lambda *a, **k: Failing(open(*a, **k)), raising=False)
    assert _run(model, clip, "--jsonl", tmp_path / "o.jsonl", "--summary", tmp_path / "s.json") == 1
    _one_error(capsys.readouterr().err, "--jsonl", os.strerror(err))
    assert [r["frame"] for r in map(json.loads, (tmp_path / "o.jsonl").read_text().splitlines())] == [0, 1]
    assert load_strict(tmp_path / "s.json")["status"] == "error"


# --- 9. strict JSON -------------------------------------------------------------------------
def test_non_finite_numbers_are_written_as_null(tmp_path):
    frame = Frame(None, 3, 0.12, "x.avi", 0)
    faces = [Face(1, (0, 0, 8, 8), True, float("inf"), 1.0), Face(2, (9, 0, 8, 8), True, float("-inf"), 0.0),
             Face(3, (0, 9, 8, 8), False, float("nan"), float("nan"))]
    ended = [{"track": 7, "prob": float("inf"), "max_prob": np.float32("nan")}]
    sink = sinks.JsonlSink(str(tmp_path / "o.jsonl"))
    sink.write(sinks.frame_record(Result(frame, faces, []), ended, 0.5, 0))
    sink.close()
    rec = load_strict(tmp_path / "o.jsonl")
    assert [f["logit"] for f in rec["faces"]] == [None, None, None]
    assert [f["prob"] for f in rec["faces"]] == [1.0, 0.0, None] and rec["prob"] == 1.0
    assert rec["tracks_ended"] == [{"track": 7, "prob": None, "max_prob": None}]
    sinks.write_summary(str(tmp_path / "s.json"), {"prob": float("nan"), "timing": [float("inf"), 1.5]})
    assert load_strict(tmp_path / "s.json") == {"prob": None, "timing": [None, 1.5]}
