"""Failing live sources must end the run cleanly, never hang it: a network stream that stalls or
stops mid-run, and a camera that disappears, comes back, or hangs in a read. Bounded read timeouts,
reconnects with backoff up to --max-reconnects, and a clean end: exit 3, summary ``source_lost``,
JSONL complete.

The stream is MJPEG over HTTP (multipart/x-mixed-replace) served on 127.0.0.1 by a server that
follows a script per connection and stops by itself; OpenCV's FFmpeg backend reads it. Cameras
are fake captures handed to the real CLI in place of ``cv2.VideoCapture``.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import runtime.sources as sources
from runtime.detect import main
from tests.helpers import run_module
from tests.helpers.models import make_onnx
from tests.helpers.servers import FakeCamera, MjpegServer


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_onnx(tmp_path_factory.mktemp("m") / "m.onnx")


def _results(tmp: Path) -> tuple[dict, list[dict]]:
    summary = json.loads((tmp / "s.json").read_text())
    recs = [json.loads(x) for x in (tmp / "o.jsonl").read_text().splitlines()]  # every line complete
    return summary, recs


def _check_complete(summary: dict, recs: list[dict]) -> None:
    assert summary["frames"] == len(recs) > 0
    idx = [r["frame"] for r in recs]
    assert idx == sorted(set(idx))  # in order, none twice; live sources may drop frames in between
    assert summary["frames"] + summary["dropped"] <= max(idx) + 1


def _one_line(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("jrc-detect: error: "), stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_stream_that_stalls_recovers_then_is_given_up(model, tmp_path):
    """Connection 1 stalls after 20 frames (read timeout), connection 2 closes after 20 frames
    (end of stream), connection 3 stalls before its first frame (open timeout): with
    --max-reconnects 1 the first two outages are each survived by one reconnect, the third is not."""
    with MjpegServer([(20, "stall"), (20, "close")]) as server:
        t0 = time.monotonic()
        res = run_module("runtime.detect", "--engine", model, "--source", server.url, "--faces", "none",
                         "--timeout", "1", "--max-reconnects", "1", "--quiet", "--jsonl", tmp_path / "o.jsonl",
                         "--summary", tmp_path / "s.json", timeout=120)
        elapsed = time.monotonic() - t0
    assert res.returncode == 3, res.stderr
    _one_line(res.stderr, server.url, "1 reconnect attempts failed")
    summary, recs = _results(tmp_path)
    assert summary["status"] == "source_lost" and summary["exit_code"] == 3 and summary["live"] is True
    _check_complete(summary, recs)
    assert summary["reconnects"] == 2 and len(server.connections) == 3
    assert max(r["frame"] for r in recs) >= 20  # frames from after the first reconnect were processed
    assert elapsed < 60  # bounded: a stalled read or open never hangs the run


def test_stream_that_stops_for_good_ends_with_exit_3(model, tmp_path):
    with MjpegServer([(25, "close")], shutdown_after=1) as server:
        res = run_module("runtime.detect", "--engine", model, "--source", server.url, "--faces", "none",
                         "--timeout", "2", "--max-reconnects", "2", "--quiet", "--jsonl", tmp_path / "o.jsonl",
                         "--summary", tmp_path / "s.json", timeout=120)
    assert res.returncode == 3, res.stderr
    _one_line(res.stderr, "2 reconnect attempts failed")
    summary, recs = _results(tmp_path)
    assert summary["status"] == "source_lost" and summary["reconnects"] == 2
    _check_complete(summary, recs)


# --- cameras -----------------------------------------------------------------------------------
class Plug:
    """The device: each open() returns the next scripted camera (None = the device is gone)."""

    def __init__(self, script: list[FakeCamera | None]) -> None:
        self.script, self.opens = script, []

    def __call__(self, spec, kind, open_s, read_s):
        assert kind == "camera"

        def opener():
            k = len(self.opens)
            self.opens.append(time.monotonic())
            cam = self.script[k] if k < len(self.script) else None
            return cam if cam is not None else FakeCamera(0, opened=False)

        return opener


def _camera_run(model, tmp, monkeypatch, plug: Plug, *extra: str) -> int:
    monkeypatch.setattr(sources, "capture_opener", plug)
    return main(["--engine", str(model), "--source", "0", "--faces", "none", "--quiet", "--jsonl",
                 str(tmp / "o.jsonl"), "--summary", str(tmp / "s.json"), *extra])


def test_camera_that_disappears_is_retried_with_backoff_then_given_up(model, tmp_path, monkeypatch, capsys):
    plug = Plug([FakeCamera(15)])  # unplugged after 15 frames, never comes back
    assert _camera_run(model, tmp_path, monkeypatch, plug, "--max-reconnects", "2", "--timeout", "2") == 3
    _one_line(capsys.readouterr().err, "0: stopped delivering frames", "2 reconnect attempts failed")
    summary, recs = _results(tmp_path)
    assert summary["status"] == "source_lost" and summary["reconnects"] == 2
    _check_complete(summary, recs)
    assert len(plug.opens) == 3
    waits = np.diff(plug.opens)
    assert waits[0] >= sources.BACKOFF_S and waits[1] >= 2 * sources.BACKOFF_S  # the wait doubles


def test_camera_that_comes_back_is_picked_up_again(model, tmp_path, monkeypatch):
    plug = Plug([FakeCamera(10), None, None, FakeCamera(1000)])  # gone for two attempts, then back
    assert _camera_run(model, tmp_path, monkeypatch, plug, "--max-reconnects", "5", "--max-frames", "40") == 0
    summary, recs = _results(tmp_path)
    assert summary["status"] == "ok" and summary["reconnects"] == 3 and summary["frames"] == 40
    _check_complete(summary, recs)
    assert max(r["frame"] for r in recs) >= 10  # frames of the camera after it came back


def test_camera_that_hangs_in_a_read_is_ended_by_the_watchdog(model, tmp_path, monkeypatch, capsys):
    hang = threading.Event()
    try:
        plug = Plug([FakeCamera(12, hang=hang)])
        t0 = time.monotonic()
        code = _camera_run(model, tmp_path, monkeypatch, plug, "--timeout", "0.5")
        elapsed = time.monotonic() - t0
    finally:
        hang.set()  # let the stuck fake driver return
    assert code == 3
    _one_line(capsys.readouterr().err, "has not returned", "results so far are written")
    summary, recs = _results(tmp_path)
    assert summary["status"] == "source_lost" and summary["frames"] > 0
    _check_complete(summary, recs)
    assert elapsed < 30


class FileServer:
    """``python -m http.server`` in a thread: serves a folder's files on 127.0.0.1."""

    def __init__(self, folder: Path) -> None:
        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **k):
                super().__init__(*a, directory=str(folder), **k)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


@pytest.mark.parametrize("live", ["auto", "no", "yes"])
def test_a_url_serving_a_file_ends_at_its_end(model, tmp_path, live, capsys):
    """A finite file over HTTP is read once and the run ends (exit 0, no reconnect): by default (and
    with --live no) frame by frame like a local file, every frame; with --live yes played like a
    camera, and a verdict that rests on fewer frames says how many were dropped."""
    clip = tmp_path / "clip.avi"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(30):
        out.write(np.full((48, 64, 3), 40 + 5 * i, np.uint8))
    out.release()
    with FileServer(tmp_path) as server:
        code = main(["--engine", str(model), "--source", server.base + "clip.avi", "--live", live, "--faces", "none",
                     "--quiet", "--timeout", "3", "--max-frames", "200", "--jsonl", str(tmp_path / "o.jsonl"),
                     "--summary", str(tmp_path / "s.json")])
    summary, recs = _results(tmp_path)
    assert code == 0 and summary["status"] == "ok" and summary["reconnects"] == 0
    assert summary["frames"] + summary["dropped"] == 30  # each frame once: no replay
    if live != "yes":
        assert not summary["live"] and [r["frame"] for r in recs] == list(range(30)) and summary["dropped"] == 0
    else:
        assert summary["live"]
        dropped = summary["dropped"]
        assert summary["sources"][0].get("dropped", 0) == dropped
        line = next(x for x in capsys.readouterr().out.splitlines() if "clip.avi" in x)
        assert (f"{dropped} frame(s) dropped" in line) == (dropped > 0), line


def test_existing_file_with_a_bang_in_its_name_is_a_file_not_a_pipeline(model, tmp_path):
    clip = tmp_path / "take!1.avi"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for _ in range(3):
        out.write(np.full((48, 64, 3), 90, np.uint8))
    out.release()
    code = main(["--engine", str(model), "--source", str(clip), "--faces", "none", "--quiet",
                 "--summary", str(tmp_path / "s.json")])
    assert code == 0 and json.loads((tmp_path / "s.json").read_text())["frames"] == 3


def test_recursive_glob_reads_each_file_once_through_symlink_loops(model, tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "a" / "one.png"), np.full((16, 16, 3), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "a" / "b" / "two.png"), np.full((16, 16, 3), 90, np.uint8))
    (tmp_path / "a" / "b" / "loop").symlink_to(tmp_path / "a")  # a/b/loop/b/loop/... forever
    (tmp_path / "a" / "alias.png").symlink_to(tmp_path / "a" / "one.png")
    code = main(["--engine", str(model), "--source", str(tmp_path / "a" / "**" / "*.png"), "--faces", "none",
                 "--quiet", "--summary", str(tmp_path / "s.json")])
    s = json.loads((tmp_path / "s.json").read_text())
    assert code == 0 and s["frames"] == 2 and s["sources_total"] == 2
