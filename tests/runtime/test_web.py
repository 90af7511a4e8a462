"""The live view's server (runtime.web) over real HTTP on loopback, fed by a box state written as the
frame loop writes it: frames encoded only while watched and at most N a second, one encoding for
every viewer, bounded viewers, a stalled viewer dropped, the token and Host rules, read-only,
event pictures by id only, the events cursor, /metrics."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="aiohttp is not installed (the box extra: pip install -e '.[box]')")

import runtime.web.feeds as feeds  # noqa: E402 - after the skip
from runtime.camera_state import BoxState, CameraState  # noqa: E402
from runtime.pipeline import Face, Result  # noqa: E402
from runtime.sources import Frame  # noqa: E402
from runtime.web.server import WebView  # noqa: E402
from tests.helpers.servers import free_port  # noqa: E402


def result(i: int, size=(160, 120), noise: bool = False, prob: float = 0.3) -> Result:
    w, h = size
    img = (np.random.default_rng(i).integers(0, 256, (h, w, 3), np.uint8) if noise
           else np.full((h, w, 3), (i * 9) % 256, np.uint8))
    return Result(Frame(img, i, i / 25, "cam.mp4", 0), [Face(track=1, box=(10, 10, 50, 50), detected=True, prob=prob)],
                  [], camera="door")


class Camera:
    """A camera's state written by a thread at ``fps``, as the frame loop writes it."""

    def __init__(self, box: BoxState, name: str = "door", fps: float = 50.0, **kw) -> None:
        self.state = CameraState(name, f"{name}.mp4")
        box.add(self.state)
        self.fps, self.kw = fps, kw
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            self.state.update(result(i, **self.kw), [], 0, 0.5, keep_frame=True)
            i += 1
            time.sleep(1.0 / self.fps)

    def __enter__(self) -> Camera:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def get(url: str, headers: dict | None = None, method: str = "GET") -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def mjpeg_frames(url: str, seconds: float, out: list, headers: str = "") -> None:
    """Read an MJPEG stream for ``seconds``; append each JPEG part to ``out``."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
        data = b""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            s.settimeout(max(0.05, end - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except (TimeoutError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
            while True:
                a = data.find(b"\xff\xd8")
                b = data.find(b"\xff\xd9", a + 2)
                if a < 0 or b < 0:
                    break
                out.append(data[a:b + 2])
                data = data[b + 2:]


@pytest.fixture
def box():
    return BoxState()


@pytest.fixture
def view(box):
    views = []

    def make(**kw):
        v = WebView(str(free_port()), **kw)
        v.attach(box)
        views.append(v)
        return v

    yield make
    for v in views:
        v.close()


def test_frames_only_while_watched_at_most_n_a_second_one_encoding_for_every_viewer(box, view, monkeypatch):
    monkeypatch.setattr(feeds, "LINGER_S", 0.3)
    v = view(fps=5.0)
    with Camera(box):
        time.sleep(1.0)
        feed_encoded = lambda: v.report()["frames_encoded"]  # noqa: E731
        assert feed_encoded() == 0  # nobody watches: nothing is encoded
        a: list[bytes] = []
        b: list[bytes] = []
        readers = [threading.Thread(target=mjpeg_frames, args=(f"{v.url}stream/door.mjpg", 2.0, got))
                   for got in (a, b)]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        encoded = feed_encoded()
        assert 2 <= encoded <= 5 * 2 + 2  # at most 5 a second for 2 s (the camera has 50)
        for got in (a, b):
            assert 2 <= len(got) <= encoded
            img = cv2.imdecode(np.frombuffer(got[-1], np.uint8), cv2.IMREAD_COLOR)
            assert img.shape == (120, 160, 3)
        assert len(set(a)) == len(a)  # every frame sent is a new one
        assert len(set(a) & set(b)) >= min(len(a), len(b)) - 2  # both viewers got the same encodings
        time.sleep(1.0)
        assert feed_encoded() - encoded <= 5  # the viewers left: encoding stops (after the linger)
        settled = feed_encoded()
        time.sleep(0.6)
        assert feed_encoded() == settled
        # the page's way: one frame newer than the last seen, at once when there is one
        code, body, headers = get(f"{v.url}api/cameras/door/frame.jpg?after=0")
        assert code == 200 and body[:2] == b"\xff\xd8" and int(headers["X-Frame-Seq"]) > 0
        seq = int(headers["X-Frame-Seq"])
        code, _, headers = get(f"{v.url}api/cameras/door/frame.jpg?after={seq}")
        assert code == 200 and int(headers["X-Frame-Seq"]) > seq
    assert get(f"{v.url}api/cameras/nowhere/frame.jpg")[0] == 404


def test_bounded_viewers_and_a_stalled_viewer_is_dropped(box, view):
    v = view(fps=30.0, viewers=2, write_timeout=3.0, max_width=None, quality=95)

    def viewers(n: int) -> None:
        count = lambda: v.feeds["door"].viewers if "door" in v.feeds else 0  # noqa: E731
        deadline = time.monotonic() + 15
        while count() != n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count() == n

    with Camera(box, fps=10.0, size=(960, 720), noise=True):  # ~1 MB frames: a reader that stops fills its socket
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", v.port))
        stalled.sendall(b"GET /stream/door.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        got: list[bytes] = []
        reader = threading.Thread(target=mjpeg_frames, args=(f"{v.url}stream/door.mjpg", 4.0, got))
        reader.start()
        viewers(2)
        code, body, headers = get(f"{v.url}api/cameras/door/frame.jpg")  # a third viewer
        assert code == 503 and headers.get("Retry-After") == "5" and b"--web-viewers" in body
        deadline = time.monotonic() + 20
        while v.report()["viewers_stalled"] < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert v.report()["viewers_stalled"] == 1
        viewers(1)
        code, body, _ = get(f"{v.url}api/cameras/door/frame.jpg")  # the stalled one's place is free again
        assert code == 200 and body[:2] == b"\xff\xd8"
        reader.join()
        stalled.close()
    assert len(got) >= 10  # the viewer that reads went on receiving meanwhile
    assert v.report()["viewers_refused"] == 1


def test_loopback_serves_this_machine_only_and_the_token_guards_every_route(box, view, tmp_path):
    plain = view()
    Camera(box)  # registered, never started: no frame yet
    assert get(f"{plain.url}api/cameras")[0] == 200
    assert get(f"{plain.url}api/cameras", {"Host": f"localhost:{plain.port}"})[0] == 200
    code, body, _ = get(f"{plain.url}api/cameras", {"Host": "attacker.example:80"})  # DNS rebinding
    assert code == 403 and b"localhost only" in body
    assert get(f"{plain.url}api/cameras", method="POST")[0] == 405
    assert get(f"{plain.url}api/cameras", method="DELETE")[0] == 405
    for route in ("static/..%2Fserver.py", "static/%2e%2e/access.py", "static/server.py", "static/"):
        assert get(plain.url + route)[0] == 404, route
    code, body, headers = get(plain.url)
    assert code == 200 and b"jrc-edge live view" in body
    assert "default-src 'self'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"
    assert "Access-Control-Allow-Origin" not in headers

    token = "a-token-of-thirty-two-characters"
    (tmp_path / "t").write_text(token + "\n")
    guarded = view(token_file=str(tmp_path / "t"))
    for route in ("", "static/app.js", "api/cameras", "api/events", "api/tracks", "stream/door.mjpg",
                  "api/cameras/door/frame.jpg", "api/events/x/clip", "metrics"):
        code, body, headers = get(guarded.url + route)
        assert code == 401 and b"token" in body and "Content-Security-Policy" in headers, route
    assert get(f"{guarded.url}api/cameras", {"Authorization": f"Bearer {token}"})[0] == 200
    assert get(f"{guarded.url}api/cameras?token={token}")[0] == 200
    assert get(f"{guarded.url}api/cameras", {"Authorization": f"Bearer {token}x"})[0] == 401
    assert get(f"{guarded.url}api/cameras", {"Cookie": f"jrc_token={token}"})[0] == 200
    # opening /?token=... once: a cookie for every later request, and the token out of the address bar
    conn = socket.create_connection(("127.0.0.1", guarded.port), timeout=10)
    conn.sendall(f"GET /?token={token} HTTP/1.1\r\nHost: box.local\r\nConnection: close\r\n\r\n".encode())
    answer = b""
    while chunk := conn.recv(65536):
        answer += chunk
    conn.close()
    head = answer.decode("latin-1").split("\r\n\r\n")[0].lower()
    assert head.startswith("http/1.1 303") and "\r\nlocation: /\r\n" in head
    cookie = next(line for line in head.split("\r\n") if line.startswith("set-cookie:"))
    assert f"jrc_token={token}" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert guarded.report()["requests_refused"] == 10


def test_events_their_pictures_by_id_only_the_cursor_and_metrics(box, view, tmp_path):
    from runtime.metrics import Metrics

    metrics = Metrics(str(free_port()))
    v = view()
    v.attach(box, metrics)
    cam = Camera(box)
    media = tmp_path / "media"
    media.mkdir()
    (media / "e1.face.jpg").write_bytes(cv2.imencode(".jpg", np.zeros((20, 20, 3), np.uint8))[1].tobytes())
    (media / "e1.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (tmp_path / "secret.txt").write_text("not for the web")
    (media / "e2.jpg").write_bytes(b"\xff\xd8 the snapshot of e2")
    shot = cv2.imencode(".jpg", np.full((30, 40, 3), 200, np.uint8))[1].tobytes()

    def message(eid: str, **kw) -> dict:
        ev = {"id": eid, "camera": "door", "track": 1, "active": True, "start": "2026-01-01T10:00:00.000+00:00",
              "end": None, "peak_prob": 0.9, "snapshot": None, "crop": None, "clip": None, **kw}
        return {"schema": 1, "type": "open", "event": ev}

    cam.state.event({**message("e1", crop=str(media / "e1.face.jpg"), clip=str(media / "e1.mp4")),
                     "_snapshot": shot})
    cam.state.event(message("e2", snapshot=str(media / "e2.jpg"), crop="../../secret.txt"))
    code, body, _ = get(f"{v.url}api/events")
    listing = json.loads(body)
    assert [e["id"] for e in listing["events"]] == ["e2", "e1"]  # newest change first
    e1 = listing["events"][1]
    assert e1["snapshot"] == "/api/events/e1/snapshot.jpg" and e1["crop"] == "/api/events/e1/crop.jpg"
    assert e1["clip"] == "/api/events/e1/clip"
    assert listing["events"][0]["crop"] is None  # a path that is no file is no link
    assert get(v.url + e1["snapshot"][1:])[1] == shot
    assert get(v.url + e1["crop"][1:])[1] == (media / "e1.face.jpg").read_bytes()
    code, body, headers = get(v.url + e1["clip"][1:])
    assert code == 200 and headers["Content-Type"] == "video/mp4" and body.startswith(b"\x00\x00\x00\x18ftyp")
    for route in ("api/events/e1/..%2F..%2Fsecret.txt", "api/events/..%2Fsecret.txt/clip", "api/events/nope/clip",
                  "api/events/e1/secret.txt", "api/events/e2/crop.jpg"):
        code, body, _ = get(v.url + route)
        assert code == 404 and b"not for the web" not in body, route
    assert get(f"{v.url}api/events/e2/snapshot.jpg")[1] == b"\xff\xd8 the snapshot of e2"  # the record's own file

    cursor = listing["cursor"]
    assert json.loads(get(f"{v.url}api/events?since={cursor}")[1])["events"] == []
    cam.state.event({**message("e1", active=False, end="2026-01-01T10:00:05.000+00:00"), "type": "close"})
    news = json.loads(get(f"{v.url}api/events?since={cursor}")[1])
    assert [e["id"] for e in news["events"]] == ["e1"] and news["cursor"] > cursor and not news["events"][0]["active"]
    # a clip is whole some time after its event closed: the event comes again, with its clip
    cam.state.event(message("e3", clip=str(media / "e3.mp4")))
    listing = json.loads(get(f"{v.url}api/events?since={news['cursor']}")[1])
    assert [(e["id"], e["clip"], e["clip_pending"]) for e in listing["events"]] == [("e3", None, True)]
    assert get(f"{v.url}api/events/e3/clip")[0] == 404
    (media / "e3.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    again = json.loads(get(f"{v.url}api/events?since={listing['cursor']}")[1])
    assert [(e["id"], e["clip"], e["clip_pending"]) for e in again["events"]] == [("e3", "/api/events/e3/clip", False)]
    assert json.loads(get(f"{v.url}api/events?since={again['cursor']}")[1])["events"] == []  # told once
    since = json.loads(get(f"{v.url}api/events?since=2026-01-01T10:00:04Z")[1])["events"]
    assert [e["id"] for e in since] == ["e1"]
    assert get(f"{v.url}api/events?since=yesterday")[0] == 400

    cam.state.update(result(0, prob=0.8), [], 0, 0.5)
    tracks = json.loads(get(f"{v.url}api/tracks")[1])["cameras"][0]
    assert tracks["threshold"] == 0.5 and tracks["tracks"][0]["points"] == [[0.0, 0.8]]
    code, body, _ = get(f"{v.url}metrics")
    assert code == 200 and b"jrc_inference_batch_size" in body
    metrics.close()


def test_malformed_or_out_of_range_query_parameters_are_a_400_that_says_which(box, view):
    v = view()
    with Camera(box):
        bad = {"api/events?since=0001-01-01T00:00:00": "since",  # local time of year 1: year 0 in UTC
               "api/events?since=9999-12-31T23:59:59": "since",  # year 10000 in UTC, west of it
               "api/events?since=-1": "since", "api/events?since=nan": "since", "api/events?since=5_0": "since",
               "api/events?since=%EF%BC%95": "since",  # a full-width digit
               "api/events?since=%ff": "since", "api/events?since=": "since",
               "api/events?since=" + "9" * 17: "since", "api/events?since=" + "9" * 5000: "since",
               "api/events?since=1&since=2": "since", "api/events?run=a&run=b": "run",
               "api/events?limit=0": "limit", "api/events?limit=501": "limit", "api/events?limit=-1": "limit",
               "api/events?limit=nan": "limit", "api/events?limit=1e3": "limit", "api/events?limit=" + "9" * 5000: "limit",
               "api/events?limit=5&limit=5": "limit",
               "api/cameras/door/frame.jpg?after=-1": "after", "api/cameras/door/frame.jpg?after=inf": "after",
               "api/cameras/door/frame.jpg?after=" + "9" * 17: "after",
               "api/cameras/door/frame.jpg?after=1&after=1": "after", "api/cameras/door/frame.jpg?run=a&run=a": "run"}
        zone = os.environ.get("TZ")
        os.environ["TZ"] = "America/Los_Angeles"  # where 9999-12-31T23:59:59 local is past year 9999 in UTC
        time.tzset()
        try:
            for route, name in bad.items():
                code, body, headers = get(v.url + route)
                assert code == 400 and body.startswith(f"400: {name} ".encode()), (route, code, body)
                assert len(body) < 120 and b"Traceback" not in body and "Content-Security-Policy" in headers, route
        finally:
            if zone is None:
                del os.environ["TZ"]
            else:
                os.environ["TZ"] = zone
            time.tzset()
        for route in ("api/events?since=0", "api/events?since=9007199254740991", "api/events?limit=1",
                      "api/events?limit=500", "api/events?since=0002-01-01T00:00:00Z",
                      "api/events?since=2026-01-01T10:00:04", "api/cameras/door/frame.jpg?after=0"):
            assert get(v.url + route)[0] == 200, route


def test_every_answer_names_its_run_and_another_runs_numbers_count_from_0(box, view):
    a, b = view(), view()
    cam = Camera(box)
    for i in range(3):
        cam.state.event({"schema": 1, "type": "open", "event": {
            "id": f"e{i}", "camera": "door", "track": i, "active": True, "start": "2026-01-01T10:00:00.000+00:00",
            "end": None, "peak_prob": 0.9, "snapshot": None, "crop": None, "clip": None}})
    assert len(a.run) >= 16 and a.run != b.run  # a server started again has another run
    for route in ("api/cameras", "api/tracks", "api/events"):
        assert json.loads(get(a.url + route)[1])["run"] == a.run, route
    listing = json.loads(get(f"{a.url}api/events")[1])
    cursor = listing["cursor"]
    assert json.loads(get(f"{a.url}api/events?since={cursor}&run={a.run}")[1])["events"] == []
    # a page that read run b's cursor asks run a: a's events are all new to it
    again = json.loads(get(f"{a.url}api/events?since={cursor + 1000}&run={b.run}")[1])
    assert [e["id"] for e in again["events"]] == ["e2", "e1", "e0"] and again["cursor"] == cursor
    assert again["run"] == a.run
    with cam:
        code, _, headers = get(f"{a.url}api/cameras/door/frame.jpg?after=0")
        assert code == 200 and headers["X-Run"] == a.run
        seq = int(headers["X-Frame-Seq"])
        code, _, headers = get(f"{a.url}api/cameras/door/frame.jpg?after={seq}&run={a.run}")
        assert code == 200 and int(headers["X-Frame-Seq"]) > seq
        # another run's frame number, far ahead of this run's: the latest frame at once, not 10 s of waiting
        started = time.monotonic()
        code, body, headers = get(f"{a.url}api/cameras/door/frame.jpg?after={seq + 100000}&run={b.run}")
        assert code == 200 and body[:2] == b"\xff\xd8" and headers["X-Run"] == a.run
        assert time.monotonic() - started < 5


def test_a_track_timeline_keeps_a_minute_one_point_a_step_with_its_highest_score():
    from runtime.camera_state import TIMELINE_S, TIMELINE_STEP_S

    state = CameraState("door", "door.mp4")
    for i in range(25 * 90):  # 90 s at 25 fps, one spike of one frame
        r = result(i, prob=0.97 if i == 25 * 80 + 2 else 0.2)
        state.update(r, [], 0, 0.5)
    points = state.tracks()[0]["points"]
    times = [t for t, _ in points]
    assert times[-1] - times[0] <= TIMELINE_S and times[0] >= 90 - TIMELINE_S - 0.1
    assert all(b - a >= TIMELINE_STEP_S - 1e-6 for a, b in zip(times, times[1:]))
    assert len(points) <= TIMELINE_S / TIMELINE_STEP_S + 1
    assert max(p for _, p in points) == 0.97  # the spike survives the thinning


def test_cli_web_options_are_checked_before_anything_opens(tmp_path, capsys):
    from runtime.detect import main

    (tmp_path / "short").write_text("abc\n")
    cases = [(["--web", f"0.0.0.0:{free_port()}"], "--web-token-file"),
             (["--web", "8080", "--web-token-file", str(tmp_path / "short")], "at least 16 characters"),
             (["--web", "8080", "--web-token-file", str(tmp_path / "none")], "no such file"),
             (["--web-token-file", str(tmp_path / "short")], "applies to --web"),
             (["--web", "99999"], "port from 1 to 65535"),
             (["--web", "8080", "--web-fps", "0"], "--web-fps"),
             (["--web", "8080", "--web-viewers", "0"], "--web-viewers")]
    for args, needle in cases:
        code = main(["--engine", str(tmp_path / "m.onnx"), "--source", "x.mp4", *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and needle in err[0], (args, err)


def test_a_port_in_use_is_one_line(box):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        from runtime.errors import UserError

        with pytest.raises(UserError, match=r"cannot listen on 127\.0\.0\.1:\d+ .*choose a free port"):
            WebView(str(s.getsockname()[1]))



def test_a_host_that_does_not_resolve_says_so_and_an_ipv6_view_gets_its_own_tunnel(box, tmp_path):
    from runtime.errors import UserError
    from runtime.web.server import serve_address

    token = tmp_path / "t"
    token.write_text("x" * 32)
    with pytest.raises(UserError, match=r"host name nohost\.invalid cannot be resolved"):
        WebView("nohost.invalid:18093", str(token))
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
    except OSError as e:  # a machine without IPv6 loopback
        pytest.skip(f"no ::1 here: {e}")
    v6 = WebView(f"[::1]:{port}")
    try:
        assert f"ssh -L {v6.port}:[::1]:{v6.port} " in serve_address(v6)
    finally:
        v6.close()
