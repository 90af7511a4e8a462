"""The live view in a real browser (headless Chromium): ``runtime.detect`` runs two cameras, one of them
with a manipulated segment, serving ``--web`` beyond loopback with a token; the page is opened with
the token and checked as a person would look at it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np

from runtime.sinks import VideoSink
from tests.helpers import ROOT, detect_process
from tests.helpers.browser import chromium_or_skip, console_errors, headless_chromium
from tests.helpers.media import segment_video
from tests.helpers.models import make_onnx
from tests.helpers.servers import free_port

BRIGHT = (40, 90)  # the manipulated segment of camera "door" (frames): the brightness model scores it fake
K = 3  # --event-frames

# every tile's frame as (seq, a checksum of its pixels), read in the page
TILE_PIXELS = """
const out = {};
for (const t of document.querySelectorAll('.tile')) {
  const img = t.querySelector('img.frame');
  if (!img.complete || !img.naturalWidth) continue;
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 7) sum = (sum * 31 + d[i]) % 1000000007;
  out[t.dataset.camera] = [Number(img.dataset.seq), sum];
}
return out;
"""

# the door tile's timeline: points drawn, painted pixels, and threshold-coloured pixels on the threshold's row
TIMELINE = """
const canvas = document.querySelector('.tile[data-camera="door"] .timeline canvas');
if (!canvas) return null;
const ctx = canvas.getContext('2d');
const w = canvas.width, h = canvas.height;
const d = ctx.getImageData(0, 0, w, h).data;
let painted = 0;
for (let i = 3; i < d.length; i += 4) if (d[i] > 0) painted++;
const y = Math.round(h - 2 - (h - 4) * 0.5);
let red = 0;
for (let x = 0; x < w; x++) {
  const i = (y * w + x) * 4;
  if (d[i + 3] > 0 && d[i] > 150 && d[i + 1] < 120) red++;
}
return {points: Number(canvas.dataset.points || 0), painted, red, w, h};
"""


# a box as the live view sees it, in a process of its own: python -c BOX PORT CAMERAS EVENTS COLOUR FPS. Its
# cameras show one colour; the first has EVENTS closed events, ids COLOUR-0, COLOUR-1, ...
BOX = """
import sys, time
import numpy as np
from runtime.camera_state import BoxState, CameraState
from runtime.pipeline import Result
from runtime.sources import Frame
from runtime.web.server import WebView

port, names, events, colour, fps = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4], sys.argv[5]
box = BoxState()
cams = [CameraState(name, name + ".mp4") for name in names]
for c in cams:
    box.add(c)
for i in range(events):
    cams[0].event({"schema": 1, "type": "close", "event": {
        "id": f"{colour}-{i}", "camera": names[0], "track": i, "active": False, "peak_prob": 0.9, "mean_prob": 0.8,
        "frames": 10,
        "start": "2026-01-01T10:00:00.000+00:00", "end": "2026-01-01T10:00:01.000+00:00",
        "snapshot": None, "crop": None, "clip": None}})
view = WebView(port, fps=float(fps))
view.attach(box)
print("serving", flush=True)
img = np.full((90, 120, 3), {"red": (0, 0, 220), "blue": (220, 0, 0)}[colour], np.uint8)
i = 0
while True:
    for c in cams:
        c.update(Result(Frame(img, i, i / 25, "cam.mp4", 0), [], [], camera=c.name), [], 0, 0.5, keep_frame=True)
    i += 1
    time.sleep(0.02)
"""

# what the page shows: its events' ids, and each tile's frame as its seq and its centre pixel's RGB
PAGE = """
const out = {events: [...document.querySelectorAll('#events .event')].map((li) => li.dataset.id), tiles: {}};
for (const t of document.querySelectorAll('.tile')) {
  const img = t.querySelector('img.frame');
  let rgb = null;
  if (img.complete && img.naturalWidth) {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    rgb = [...ctx.getImageData(c.width >> 1, c.height >> 1, 1, 1).data.slice(0, 3)];
  }
  out.tiles[t.dataset.camera] = {seq: Number(img.dataset.seq || 0), rgb};
}
return out;
"""


def _wait(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_the_live_view_in_chromium(tmp_path):
    chromium_or_skip()
    model = make_onnx(tmp_path / "m.onnx")
    door = segment_video(tmp_path / "door.mp4", 500, bright=BRIGHT)
    lobby = segment_video(tmp_path / "lobby.mp4", 500)
    token = "t0k3n-" + os.urandom(12).hex()
    token_file = tmp_path / "web.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = detect_process("--engine", model, "--source", f"door={door}", "--source", f"lobby={lobby}",
                          "--faces", "none", "--live", "yes", "--threshold", "0.5", "--event-frames", K,
                          "--event-media", tmp_path / "media", "--event-clip", "0.4", "--quiet",
                          "--summary", tmp_path / "s.json", "--web", f"0.0.0.0:{port}",
                          "--web-token-file", token_file, "--web-fps", "10")
    try:
        def serving():
            try:
                code, body, _ = _get(f"{base}/api/cameras", token)
            except OSError:
                return False
            return code == 200 and all(c["frames"] > 0 for c in json.loads(body)["cameras"])

        _wait(serving, 60, "the live view to serve both cameras")

        # bound off loopback: nothing is served without the token, on any route
        for route in ("/", "/static/app.js", "/api/cameras", "/api/tracks", "/api/events",
                      "/api/cameras/door/frame.jpg", "/stream/door.mjpg", "/api/events/x/snapshot.jpg", "/metrics"):
            code, _, _ = _get(base + route)
            assert code == 401, (route, code)
            code, _, _ = _get(base + route + "?token=wrong-token-of-some-length")
            assert code == 401, (route, code)
        assert _get(f"{base}/api/cameras", token, method="POST")[0] == 405  # read-only

        with headless_chromium() as driver:
            driver.get(f"{base}/?token={token}")  # sets the cookie, then the page without the token
            assert driver.current_url == f"{base}/"
            _wait(lambda: driver.execute_script("return document.querySelectorAll('.tile img[data-seq]').length")
                  == 2, 20, "both tiles to show a frame")
            assert console_errors(driver) == []

            # each tile's image changes over time
            def both_tiles():
                now = driver.execute_script(TILE_PIXELS)
                return now if set(now) == {"door", "lobby"} else None  # a frame still loading is not read

            first = _wait(both_tiles, 10, "both tiles' pictures")

            def changed():
                now = driver.execute_script(TILE_PIXELS)
                # a tile whose next frame is still loading is left out of this reading: not changed yet
                return all(c in now and now[c][0] > first[c][0] and now[c][1] != first[c][1] for c in first)

            _wait(changed, 10, "every tile's picture to change")

            # the event of the manipulated segment, with its snapshot shown
            shown = ('const li = document.querySelector(\'.event[data-camera="door"]\'); '
                     'if (!li) return null; const img = li.querySelector("img.shot"); '
                     'return img.complete && img.naturalWidth > 0 ? li.dataset.id : null;')
            event_id = _wait(lambda: driver.execute_script(shown), 20, "the door event with its snapshot")
            events = json.loads(_get(f"{base}/api/events", token)[1])["events"]
            ev = next(e for e in events if e["id"] == event_id)
            assert ev["camera"] == "door" and BRIGHT[0] <= ev["start_frame"] < BRIGHT[1]  # a live camera may drop frames
            assert BRIGHT[0] <= ev["peak_frame"] < BRIGHT[1] and ev["peak_prob"] > 0.85
            assert not any(e["camera"] == "lobby" for e in events)

            # the timeline draws: p(fake) over time and the threshold, dashed, on its row
            def drawn():
                t = driver.execute_script(TIMELINE)
                return t if t and t["points"] >= 5 else None  # a second of the track at least (one point per 0.2 s)

            tl = _wait(drawn, 20, "the door track's timeline")
            assert tl["painted"] > 100 and tl["red"] > tl["w"] // 5, tl

            # the event's clip (written once the event has closed) plays in the page's player
            button = f'.event[data-id="{event_id}"] button.play'
            _wait(lambda: driver.execute_script(f"return !!document.querySelector('{button}')"), 20,
                  "the clip of the event")
            driver.find_element("css selector", button).click()
            played = driver.execute_async_script(
                "const done = arguments[arguments.length - 1]; const v = document.getElementById('player-video');"
                "v.play().then(() => done(true), (e) => done(String(e)));")
            assert played is True
            playing = ("const v = document.getElementById('player-video'); "
                       "return !v.error && v.readyState >= 2 && v.currentTime > 0.2 ? v.currentTime : null;")
            _wait(lambda: driver.execute_script(playing), 10, "the clip to play")
            assert driver.execute_script("return document.getElementById('player').open") is True
            clip = _get(f"{base}/api/events/{event_id}/clip", token)
            assert clip[0] == 200 and clip[2]["Content-Type"] in ("video/mp4", "video/webm")

            shot = tmp_path / "live-view.png"
            driver.execute_script("document.getElementById('player').close()")
            assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
            assert console_errors(driver) == []

            # what --save writes plays too: H.264 .mp4 (PyAV) and VP8 .webm (OpenCV, also without PyAV)
            for name in ("saved.mp4", "saved.webm"):
                sink = VideoSink(str(tmp_path / name), 25.0)
                for i in range(30):
                    sink.write(np.full((120, 160, 3), 40 + 5 * i, np.uint8))
                sink.close()
                assert sink.report()["plays_in_browsers"], sink.report()
            page = tmp_path / "saved.html"
            page.write_text('<video id="mp4" muted src="saved.mp4"></video><video id="webm" muted src="saved.webm"></video>')
            driver.get(page.as_uri())
            for vid in ("mp4", "webm"):
                played = driver.execute_async_script(
                    f"const done = arguments[arguments.length - 1]; const v = document.getElementById('{vid}');"
                    "v.play().then(() => done(true), (e) => done(String(e)));")
                assert played is True, (vid, played)
                advancing = f"const v = document.getElementById('{vid}'); return !v.error && v.currentTime > 0.2"
                _wait(lambda js=advancing: driver.execute_script(js), 10, f"the saved {vid} to play")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    s = json.loads((tmp_path / "s.json").read_text())
    web = s["sinks"]["web"]
    assert web["token"] is True and web["frames_encoded"] > 0 and web["requests_refused"] >= 18
    files = sorted(p.name for p in (tmp_path / "media" / "door").iterdir())
    assert [f for f in files if f.endswith((".mp4", ".webm"))] == [f"{event_id}{s['events']['media']['codec'] == 'h264' and '.mp4' or '.webm'}"]


def test_the_page_starts_over_when_the_box_starts_again_on_its_port():
    chromium_or_skip()
    port = free_port()
    boxes: list[subprocess.Popen] = []

    def start(cameras: str, events: int, colour: str, fps: float) -> None:
        proc = subprocess.Popen([sys.executable, "-c", BOX, str(port), cameras, str(events), colour, str(fps)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        boxes.append(proc)
        assert proc.stdout.readline().strip() == "serving", proc.communicate(timeout=30)[1]

    def showing(cameras: set, events: set, colour: str, min_seq: int = 1):
        lit, dark = (0, 2) if colour == "red" else (2, 0)  # the frames' channel (RGB) and the one they lack

        def check():
            page = driver.execute_script(PAGE)
            tiles = page["tiles"]
            return set(page["events"]) == events and set(tiles) == cameras and all(
                t["seq"] >= min_seq and t["rgb"] and t["rgb"][lit] > 150 and t["rgb"][dark] < 80
                for t in tiles.values())
        return check

    try:
        start("door,hall", 30, "red", 20)  # box A: its cursor reaches 30, its frames 60 and more
        with headless_chromium() as driver:
            driver.get(f"http://127.0.0.1:{port}/")
            _wait(showing({"door", "hall"}, {f"red-{i}" for i in range(30)}, "red", min_seq=60), 20,
                  "box A's events and frames")
            assert console_errors(driver) == []
            boxes[0].send_signal(signal.SIGTERM)
            boxes[0].communicate(timeout=10)
            # box B on the same port numbers from 0 again: 3 events, 2 frames a second (far below A's)
            start("door,lobby", 3, "blue", 2)
            _wait(showing({"door", "lobby"}, {"blue-0", "blue-1", "blue-2"}, "blue"), 12,
                  "the page to show box B's events and frames, and its cameras only")
            # while the box was away the page's requests failed; nothing else went wrong
            assert all("ERR_CONNECTION" in m or "Failed to fetch" in m for m in console_errors(driver))
    finally:
        for proc in boxes:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
