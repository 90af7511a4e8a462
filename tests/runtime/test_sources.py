"""Sources and tracking on real media: truncated files, a stream that dies (loopback HTTP),
live-only checks, and tracking that searches only around known faces."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.capture import quiet_video_logs
from runtime.errors import UserError
from runtime.faces import make_detector
from runtime.pipeline import share_cores
from runtime.sources import open_source
from runtime.tracking import FaceTracker, iou
from tests.helpers import run_module
from tests.helpers.media import face_video
from tests.helpers.models import make_onnx


def mjpeg_avi(path: Path, frames: int) -> Path:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(frames):
        out.write(np.full((48, 64, 3), (i * 3) % 256, np.uint8))
    out.release()
    return path


def test_truncated_video_is_processed_up_to_the_cut(tmp_path):
    data = mjpeg_avi(tmp_path / "full.avi", 100).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    quiet_video_logs()
    src = open_source(str(cut))
    n = sum(1 for _ in src)
    assert 30 < n < 70 and src.stats.missing == 100 - n


def test_stream_that_dies_ends_with_exit_3_and_results_written(tmp_path):
    data = mjpeg_avi(tmp_path / "s.avi", 300).read_bytes()
    served = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.end_headers()
            self.wfile.write(data[: len(data) // 3])  # a third of the stream, then the line drops
            served.set()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop_after_first():
        served.wait(30)
        server.shutdown()
        server.server_close()  # reconnects are refused from now on

    threading.Thread(target=stop_after_first, daemon=True).start()
    model = make_onnx(tmp_path / "m.onnx")
    # played live (--live yes): a URL that serves a file is otherwise read in full, like a local file
    res = run_module("runtime.detect", "--engine", model, "--source", f"http://127.0.0.1:{port}/s.avi",
                     "--live", "yes", "--faces", "none", "--timeout", "3", "--max-reconnects", "1", "--quiet",
                     "--jsonl", tmp_path / "o.jsonl", "--summary", tmp_path / "s.json", timeout=120)
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(err) == 1 and "reconnect" in err[0] and f"127.0.0.1:{port}" in err[0]
    s = json.loads((tmp_path / "s.json").read_text())
    recs = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert s["status"] == "source_lost" and s["exit_code"] == 3 and s["frames"] == len(recs) > 0
    assert s["reconnects"] >= 1 and s["live"] is True


def test_decoder_threads_change_the_cost_not_the_frames(tmp_path):
    clip = face_video(tmp_path / "c.mp4", frames=12, size=(320, 240))
    default = [f.image for f in open_source(str(clip))]
    src = open_source(str(clip), decode_threads=1)
    one = [f.image for f in src]
    assert len(one) == len(default) == 12
    assert all(np.array_equal(a, b) for a, b in zip(one, default))
    if hasattr(cv2, "CAP_PROP_N_THREADS"):  # OpenCV >= 4.6 takes the setting
        assert cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG, src.capture_params()).get(cv2.CAP_PROP_N_THREADS) == 1
    assert open_source(str(clip)).capture_params() == []  # 0: FFmpeg's own choice


def test_cores_are_shared_between_stages():
    before = cv2.getNumThreads()
    try:
        assert share_cores(1, cores=2) == 1  # inference 1, detection 1, decoder the floor of 1
        assert share_cores(2, cores=8) == 5
        assert share_cores(0, cores=6) == 5  # inference on a GPU
        assert cv2.getNumThreads() == 1  # OpenCV: one thread per stage
    finally:
        cv2.setNumThreads(before)


def test_live_only_options_are_checked():
    with pytest.raises(UserError, match="always live"):
        open_source("0", live="no")  # a camera; a URL may be read like a file (--live no)
    if "GStreamer:                   NO" in cv2.getBuildInformation():
        with pytest.raises(UserError, match="without GStreamer"):
            open_source("videotestsrc ! videoconvert ! appsink")


def test_tracker_searches_near_known_faces_and_keeps_up(tmp_path):
    clip = face_video(tmp_path / "c.mp4", frames=24, size=(480, 360))
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    haar = make_detector("haar")
    seen: list[tuple[int, int]] = []

    class Spy:
        supports_roi = True

        def detect(self, frame, sizes=None, coarse=False):
            seen.append(frame.shape[:2])
            return haar.detect(frame, sizes=sizes, coarse=coarse)

    tracker = FaceTracker(Spy(), detect_every=2, full_every=1000)
    for f in frames:
        faces, ended = tracker.update(f)
        assert len(faces) == 1 and faces[0].track == 1 and not ended
        assert faces[0].detected  # confirmed on every frame: by the window around it, or its unchanged look
        assert iou(faces[0].box, haar.detect(f)[0]) > 0.6  # a window detection lands where a full scan does
    assert seen[0] == (360, 480) and len(frames) // 2 <= len(seen) <= len(frames)  # a full scan, then windows
    assert all(h * w < 360 * 480 / 4 for h, w in seen[1:])  # later frames look at small windows only
    assert tracker.refits >= len(frames) // 2 - 1  # every detection round, and whenever the face changed
