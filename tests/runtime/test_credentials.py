"""A camera's credentials never leave the box: its address (a password in the URL, a GStreamer
``user-pw=``, a secret in the query) is shown with ``***`` in every output, log line, error and
event, while the real address is what opens the camera.

A real HTTP server on loopback serves a clip at ``http://viewer:<password>@127.0.0.1:PORT/…`` (FFmpeg
sends the credentials, the server ignores them) and a second camera at an RTSP address with a
password fails to open; both are in a cameras TOML file, as the README says credentials belong.
"""

from __future__ import annotations

import functools
import http.server
import json
import socket
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.redact import shown
from tests.helpers import run_module
from tests.helpers.models import make_onnx

SECRET_HTTP, SECRET_RTSP = "S3cretPW-http", "Secr3tPass-rtsp"


@pytest.mark.parametrize("text, expected", [
    ("rtsp://admin:Secr3t@10.0.0.5:554/s1", "rtsp://admin:***@10.0.0.5:554/s1"),
    ("rtsp://u:p@ss@host/x", "rtsp://u:***@host/x"),  # a password holding '@'
    ("rtsp://admin@host/x", "rtsp://admin@host/x"),  # no password: nothing to hide
    ("rtsp://host:554/x", "rtsp://host:554/x"),
    ("http://h/snap.cgi?usr=a&pwd=zz&w=640", "http://h/snap.cgi?usr=a&pwd=***&w=640"),
    ("rtspsrc location=rtsp://h/x user-id=admin user-pw=abc ! decodebin ! appsink",
     "rtspsrc location=rtsp://h/x user-id=admin user-pw=*** ! decodebin ! appsink"),
    ("camera door: rtsp://a:b@h/x: could not be opened", "camera door: rtsp://a:***@h/x: could not be opened"),
    ("/data/clips/door.mp4", "/data/clips/door.mp4"),
    ("/tmp/p1/a&key=1.mp4", "/tmp/p1/a&key=1.mp4"),  # a local path is never touched
    ("/data/run&token=1/x.jpg", "/data/run&token=1/x.jpg"),
    ("http://h/v?keyframe=1&monkey=2", "http://h/v?keyframe=1&monkey=2"),  # only parameters named so
    ("rtsp://admin:pa/ss@h/x", "rtsp://admin:***@h/x"),  # a password holding '/'
    ("souphttpsrc location=http://h/x proxy-pw=q ! jpegdec", "souphttpsrc location=http://h/x proxy-pw=*** ! jpegdec"),
    ("--webhook http://h:0/h?token=X: the port", "--webhook http://h:0/h?token=***: the port"),
])
def test_shown_hides_every_kind_of_secret_and_nothing_else(text, expected):
    assert shown(text) == expected


@pytest.fixture
def served_clip(tmp_path):
    folder = tmp_path / "www"
    folder.mkdir()
    out = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for _ in range(12):
        out.write(np.full((48, 64, 3), 200, np.uint8))
    out.release()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_output_log_or_event_repeats_a_cameras_password(tmp_path, served_clip):
    model = make_onnx(tmp_path / "m.onnx")
    cfg = tmp_path / "cams.toml"
    cfg.write_text(f'[cameras.door]\nsource = "http://viewer:{SECRET_HTTP}@127.0.0.1:{served_clip}/clip.avi"\n'
                   f'[cameras.gate]\nsource = "rtsp://admin:{SECRET_RTSP}@127.0.0.1:{_closed_port()}/stream1"\n'
                   'max_reconnects = 0\ntimeout = 2\n')
    outs = {name: tmp_path / name for name in ("o.jsonl", "ev.jsonl", "s.json")}
    p = run_module("runtime.detect", "--engine", model, "--cameras", cfg, "--faces", "none", "--threshold", "0",
                   "--event-frames", "2", "--jsonl", outs["o.jsonl"], "--events", outs["ev.jsonl"],
                   "--summary", outs["s.json"], timeout=120)
    assert p.returncode == 3, p.stderr  # the RTSP camera failed, the other went on
    summary = json.loads(outs["s.json"].read_text())
    cams = {c["camera"]: c for c in summary["cameras"]}
    assert cams["door"]["frames"] == 12 and cams["gate"]["status"] in ("error", "source_lost")
    assert "viewer:***@127.0.0.1" in cams["door"]["source"] and "admin:***@" in cams["gate"]["source"]
    events = [json.loads(x) for x in outs["ev.jsonl"].read_text().splitlines()]
    assert events and all("viewer:***@" in e["event"]["source"] for e in events if "event" in e)
    for text in [p.stdout, p.stderr] + [f.read_text() for f in outs.values()]:
        assert SECRET_HTTP not in text and SECRET_RTSP not in text
    assert "***" in p.stderr  # the failed camera is still named, its password hidden


def test_local_files_keep_their_names_in_every_output(tmp_path):
    """Hiding credentials touches URLs only: two local videos whose names look like queries
    (``a&key=1.mp4``) stay two sources, and ``--save DIR/`` writes one file for each."""
    model = make_onnx(tmp_path / "m.onnx")
    folder = tmp_path / "in"
    folder.mkdir()
    for k in (1, 2):
        out = cv2.VideoWriter(str(folder / f"a&key={k}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
        for _ in range(3):
            out.write(np.full((48, 64, 3), 60 * k, np.uint8))
        out.release()
    p = run_module("runtime.detect", "--engine", model, "--source", folder, "--faces", "none", "--quiet",
                   "--save", f"{tmp_path / 'saved'}/", "--summary", tmp_path / "s.json", timeout=120)
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert sorted(Path(x["source"]).name for x in s["sources"]) == ["a&key=1.avi", "a&key=2.avi"]
    assert sorted(f.name for f in (tmp_path / "saved").iterdir()) == ["a&key=1.mp4", "a&key=2.mp4"]
