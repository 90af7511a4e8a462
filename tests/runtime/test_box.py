"""The camera box end to end (``runtime.detect`` with several sources): each camera isolated, a camera
dead from the start and one dying mid-run, one not up yet at the start, SIGTERM flushing every
camera, metrics scraped while it runs, events over webhook and MQTT, JSONL rotation."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest

import runtime.sources as sources
from runtime.detect import main
from runtime.sinks import JsonlSink, Rotation
from tests.helpers import detect_process, run_module
from tests.helpers.media import face_video, lines
from tests.helpers.models import make_onnx
from tests.helpers.servers import (
    Broker,
    FakeCamera,
    MjpegServer,
    Subscriber,
    WebhookServer,
    free_port,
    mosquitto,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("box")
    return {"model": make_onnx(d / "m.onnx"), "clip": face_video(d / "face.mp4", frames=40), "dir": d}


def per_camera(recs: list[dict]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in recs:
        out.setdefault(r["camera"], []).append(r["frame"])
    return out


def test_three_cameras_one_dead_from_the_start_one_dying_mid_run(setup, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/cam.mjpg"  # nothing listens there
    with MjpegServer([(25, "close")], shutdown_after=1) as dying, WebhookServer() as hook:
        res = run_module("runtime.detect", "--engine", setup["model"], "--source", f"lobby={setup['clip']}",
                         "--source", f"door={dead}", "--source", f"yard={dying.url}", "--faces", "none",
                         "--threshold", "0", "--event-frames", "3", "--max-reconnects", "1", "--timeout", "1",
                         "--quiet", "--jsonl", tmp_path / "o.jsonl", "--summary", tmp_path / "s.json",
                         "--events", tmp_path / "e.jsonl", "--webhook", hook.url, timeout=120)
    assert res.returncode == 3, res.stderr
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert "Traceback" not in res.stderr
    assert any(x.startswith("jrc-detect: warning: camera door:") for x in err)
    assert any(x.startswith("jrc-detect: warning: camera yard:") for x in err)
    assert err[-1].startswith("jrc-detect: error: 2 of 3 cameras failed") and "door" in err[-1] and "yard" in err[-1]
    s = json.loads((tmp_path / "s.json").read_text())
    cams = {c["camera"]: c for c in s["cameras"]}
    assert s["status"] == "source_lost" and s["exit_code"] == 3 and s["cameras_failed"] == ["door", "yard"]
    assert cams["lobby"]["status"] == "ok" and cams["lobby"]["frames"] == 40
    assert cams["door"]["status"] == "source_lost" and cams["door"]["frames"] == 0 and cams["door"]["reconnects"] == 1
    assert cams["yard"]["status"] == "source_lost" and 0 < cams["yard"]["frames"] <= 25
    recs = lines(tmp_path / "o.jsonl")
    frames = per_camera(recs)
    assert frames["lobby"] == list(range(40)) and "door" not in frames
    assert frames["yard"] == sorted(set(frames["yard"]))  # in order; a live camera may drop frames
    assert s["frames"] == len(recs) == sum(c["frames"] for c in s["cameras"])
    events = lines(tmp_path / "e.jsonl")
    closes = {e["event"]["camera"]: e["event"] for e in events if e["type"] == "close"}
    assert closes["lobby"]["end_reason"] in ("track_ended", "camera_ended") and closes["lobby"]["frames"] == 40
    assert closes["yard"]["end_reason"] == "camera_ended"
    assert [b["type"] for b in hook.bodies] == [e["type"] for e in events]  # the webhook got every message
    assert s["sinks"]["webhook"]["undelivered"] == 0 and s["events"]["total"] == 2


def test_a_camera_not_up_at_the_start_is_retried_while_the_others_run(setup, tmp_path, monkeypatch):
    opens = []

    def plug(spec, kind, open_s, read_s):
        def opener():
            opens.append(time.monotonic())
            return FakeCamera(1000) if len(opens) == 3 else FakeCamera(0, opened=False)

        return opener

    monkeypatch.setattr(sources, "capture_opener", plug)
    code = main(["--engine", str(setup["model"]), "--source", "door=0", "--source", str(setup["clip"]),
                 "--faces", "none", "--quiet", "--max-reconnects", "3", "--max-frames", "20", "--jsonl",
                 str(tmp_path / "o.jsonl"), "--summary", str(tmp_path / "s.json")])
    assert code == 0
    s = json.loads((tmp_path / "s.json").read_text())
    cams = {c["camera"]: c for c in s["cameras"]}
    assert cams["door"]["status"] == "ok" and cams["door"]["reconnects"] == 2 and cams["door"]["frames"] == 20
    assert cams["cam2"]["frames"] == 20 and len(opens) == 3


def test_sigterm_flushes_every_camera_and_metrics_are_served_meanwhile(setup, tmp_path):
    port = free_port()
    long = face_video(tmp_path / "long.mp4", frames=300, size=(160, 120))
    proc = detect_process("--engine", setup["model"], "--source", f"a={long}", "--source", f"b={long}",
                          "--live", "yes", "--faces", "none", "--threshold", "0", "--event-frames", "3",
                          "--quiet", "--jsonl", tmp_path / "o.jsonl", "--summary", tmp_path / "s.json",
                          "--events", tmp_path / "e.jsonl", "--metrics", str(port))
    try:
        text = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                continue
            if min(_value(text, "jrc_frames_processed_total", f'camera="{c}"') for c in "ab") >= 10:
                break
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    for cam in ("a", "b"):
        assert _value(text, "jrc_frames_processed_total", f'camera="{cam}"') >= 1
        assert _value(text, "jrc_stream_up", f'camera="{cam}"') == 1.0
        assert _value(text, "jrc_events_total", f'camera="{cam}"') == 1.0
    assert _value(text, "jrc_inference_batch_size_count", "") >= 1
    assert "jrc_inference_latency_seconds_bucket" in text
    s = json.loads((tmp_path / "s.json").read_text())
    recs = lines(tmp_path / "o.jsonl")  # every line complete
    frames = per_camera(recs)
    assert s["status"] == "interrupted" and {c["camera"]: c["frames"] for c in s["cameras"]} == \
        {k: len(v) for k, v in frames.items()}
    assert s["sinks"]["metrics"]["address"] == f"127.0.0.1:{port}"  # loopback unless told otherwise
    events = lines(tmp_path / "e.jsonl")
    opened = {e["event"]["id"] for e in events if e["type"] == "open"}
    closed = {e["event"]["id"]: e["event"] for e in events if e["type"] == "close"}
    assert len(opened) == 2 and set(closed) == opened
    assert {e["end_reason"] for e in closed.values()} == {"shutdown"}


@pytest.mark.slow
def test_sigterm_with_a_hanging_webhook_and_an_absent_broker_ends_within_the_drain(setup, tmp_path):
    from runtime.mqtt import GOODBYE_S
    from runtime.outbox import DRAIN_S

    long = face_video(tmp_path / "long.mp4", frames=300, size=(160, 120))
    with WebhookServer(["hang"] * 10) as hook:
        proc = detect_process("--engine", setup["model"], "--source", f"a={long}", "--live", "yes", "--faces",
                              "none", "--threshold", "0", "--event-frames", "3", "--quiet", "--webhook", hook.url,
                              "--webhook-timeout", "20", "--mqtt", f"mqtt://127.0.0.1:{free_port()}/t",
                              "--summary", tmp_path / "s.json")
        try:
            deadline = time.monotonic() + 60
            while hook.requests == 0 and time.monotonic() < deadline:  # the event's POST hangs
                time.sleep(0.1)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=90)
            stop_s = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert hook.requests >= 1 and proc.returncode == 130, stderr
    assert stop_s < DRAIN_S + 2 * GOODBYE_S + 4, stop_s  # well within a service manager's 30 s
    assert DRAIN_S <= 10
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["status"] == "interrupted"
    assert s["sinks"]["webhook"]["left"] >= 1 and s["sinks"]["mqtt"]["left"] >= 1  # counted, not lost


def _value(text: str, name: str, labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + ("{" + labels + "}" if labels else " ")):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


@pytest.mark.skipif(mosquitto() is None, reason="needs the mosquitto broker (apt-get install mosquitto)")
def test_a_run_publishes_events_state_snapshot_and_availability_over_mqtt(setup, tmp_path):
    with Broker() as broker:
        sub = Subscriber(broker.port, ["box/#"])
        assert sub.subscribed.wait(10)
        res = run_module("runtime.detect", "--engine", setup["model"], "--source", f"door={setup['clip']}",
                         "--faces", "none", "--threshold", "0", "--event-frames", "3", "--quiet",
                         "--mqtt", f"{broker.url}/box", "--summary", tmp_path / "s.json", timeout=120)
        assert res.returncode == 0, res.stderr
        assert sub.wait_for(lambda: sub.on("box/available")[-1:] == [b"offline"])
        sub.close()
    events = [json.loads(p) for p in sub.on("box/events")]
    assert [e["type"] for e in events] == ["open", "close"] and events[0]["event"]["camera"] == "door"
    states = [json.loads(p) for p in sub.on("box/door/state")]
    assert states[0]["up"] is True and states[-1]["status"] == "ok" and states[-1]["up"] is False
    assert sub.on("box/door/snapshot")[-1][:2] == b"\xff\xd8"
    assert sub.on("box/available")[0] == b"online"
    assert json.loads((tmp_path / "s.json").read_text())["sinks"]["mqtt"]["undelivered"] == 0


def test_a_webhook_that_redirects_is_one_warning_line_and_undelivered(setup, tmp_path, capsys):
    with WebhookServer() as other, WebhookServer([(302, other.url)] * 10) as hook:
        code = main(["--engine", str(setup["model"]), "--source", str(setup["clip"]), "--faces", "none",
                     "--threshold", "0", "--event-frames", "3", "--quiet", "--webhook", hook.url,
                     "--summary", str(tmp_path / "s.json")])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert code == 0 and other.requests == 0 and hook.requests == 2, err  # open and close, neither followed
    warnings = [x for x in err if x.startswith("jrc-detect: warning: webhook:")]
    assert len(warnings) == 1 and f"redirected to {other.url}; point --webhook at the final URL" in warnings[0], err
    assert json.loads((tmp_path / "s.json").read_text())["sinks"]["webhook"]["undelivered"] == 2


@pytest.mark.parametrize("args, needle", [
    (["--source", "a.mp4", "--source", "b.mp4", "--save", "x.mp4"], "--save and --show take one camera"),
    ([], "no input: give --source"),
    (["--source", "a.mp4", "--event-clip", "2"], "--event-clip needs --event-media"),
    (["--source", "a.mp4", "--metrics", "x:y"], "--metrics x:y: expected [HOST:]PORT"),
    (["--source", "a.mp4", "--mqtt", "mqtt://u:p@host"], "credentials on the command line"),
    (["--source", "a.mp4", "--jsonl-frames", "events"], "needs events"),
    (["--source", "a.mp4", "--webhook", "http://[::1"], "--webhook http://[::1: not a URL (Invalid IPv6 URL)"),
    (["--source", "a.mp4", "--mqtt", "mqtt://[::1"], "--mqtt mqtt://[::1: not a URL (Invalid IPv6 URL)"),
    (["--source", "a.mp4", "--webhook", "http://host:abc/"], "the port is not a number from 1 to 65535"),
    (["--source", "a.mp4", "--webhook", "http://host:99999/"], "the port is not a number from 1 to 65535"),
    (["--source", "a.mp4", "--mqtt", "mqtt://host:0"], "--mqtt mqtt://host:0: the port is not a number"),
    (["--source", "a.mp4", "--mqtt", "mqtt://host:65536/t"], "the port is not a number from 1 to 65535"),
    (["--source", "a.mp4", "--webhook", "http://host/a b"], "--webhook 'http://host/a b': a URL may not hold ' '"),
    (["--source", "a.mp4", "--webhook", "http://host/a\nb"], "may not hold '\\n'"),
    (["--source", "a.mp4", "--webhook", "http://host/caf\u00e9"], "holds characters beyond ASCII"),
    (["--source", "a.mp4", "--mqtt", "mqtt://host/$SYS/jrc"], "the topic prefix starts with '$'"),
    (["--source", "a.mp4", "--mqtt", "mqtt://host/jrc/#"], "the topic prefix holds '+' or '#'"),
    (["--source", "a.mp4", "--mqtt", "mqtt://host/a/+/b"], "the topic prefix holds '+' or '#'"),
    (["--source", "a.mp4", "--mqtt", "mqtt://host//jrc"], "the topic prefix has an empty level"),
    (["--source", "a.mp4", "--mqtt", "mqtt://host/jrc?qos=1"], "the topic prefix holds '?'"),
    (["--source", "a.mp4", "--mqtt", "mqtt://host/j\x00rc"], "may not hold '\\x00'"),
    (["--source", "a.mp4", "--metrics", "[::1"], "--metrics [::1: the address is malformed"),
    (["--source", "a.mp4", "--metrics", "a b:9100"], "--metrics a b:9100: the address is malformed"),
    (["--source", "a.mp4", "--web", "[::1"], "--web [::1: the address is malformed"),
    (["--source", "a.mp4", "--web", "[::1]x:8090"], "--web [::1]x:8090: the address is malformed"),
])
def test_box_usage_errors_are_one_line_exit_2(setup, tmp_path, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(tmp_path)
    for name in ("a.mp4", "b.mp4"):
        face_video(Path(name), frames=3)
    code = main(["--engine", str(setup["model"]), "--quiet", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err


def test_listen_errors_say_what_went_wrong_and_a_loopback_tunnel_reaches_the_address_listened_on():
    import socket

    from runtime.errors import UserError
    from runtime.metrics import Metrics, parse_address
    from runtime.web.access import tunnel

    with pytest.raises(UserError, match=r"^--metrics nohost\.invalid:\d+: the host name nohost\.invalid cannot be "
                       r"resolved \(.+\); give an address of this machine"):
        Metrics(f"nohost.invalid:{free_port()}")
    with pytest.raises(UserError, match=r"^--metrics 192\.0\.2\.1:\d+: 192\.0\.2\.1 is not an address of this "
                       r"machine"):  # TEST-NET-1: documentation only
        Metrics(f"192.0.2.1:{free_port()}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = rf"^--metrics {port}: cannot listen on 127\.0\.0\.1:{port} .*choose a free port"
        with pytest.raises(UserError, match=in_use):
            Metrics(str(port))
    assert parse_address("[::1]:18094", "--web") == ("::1", 18094)
    assert tunnel("::1", 18094) == "ssh -L 18094:[::1]:18094 USER@THIS-HOST, then open http://localhost:18094/"
    assert tunnel("127.0.0.1", 8090).startswith("ssh -L 8090:127.0.0.1:8090 ")


def test_jsonl_rotation_keeps_n_files_each_within_the_size(tmp_path):
    path = tmp_path / "f.jsonl"
    sink = JsonlSink(str(path), rotate=Rotation(max_bytes=1000, keep=3))
    for i in range(200):
        sink.write({"frame": i, "pad": "x" * 40})
    sink.close()
    files = sorted(tmp_path.iterdir())
    assert [p.name for p in files] == ["f.jsonl", "f.jsonl.1", "f.jsonl.2", "f.jsonl.3"]
    assert all(p.stat().st_size <= 1000 for p in files)
    newest = lines(path)
    assert newest[-1]["frame"] == 199 and lines(tmp_path / "f.jsonl.1")[-1]["frame"] == newest[0]["frame"] - 1


@pytest.mark.parametrize("flag, rotate, continued", [("--events", None, True), ("--jsonl", Rotation(max_bytes=1000), True),
                                                     ("--jsonl", None, False)])
def test_a_restart_continues_the_event_log_and_rotated_files(tmp_path, flag, rotate, continued):
    """A box restarted by systemd must not wipe its history: ``--events`` and rotated outputs are
    continued (a line cut short by a crash stays its own line, rotation counts the existing size);
    a plain ``--jsonl`` is one run's frames and starts empty."""
    path = tmp_path / "f.jsonl"
    path.write_text('{"frame": 0}\n{"frame": 1, "cut sho')
    sink = JsonlSink(str(path), flag, rotate=rotate)
    for i in range(2, 30):
        sink.write({"frame": i, "pad": "x" * 40})
    sink.close()
    text = path.read_text() if not (tmp_path / "f.jsonl.1").exists() else (tmp_path / "f.jsonl.1").read_text()
    if continued:
        assert text.startswith('{"frame": 0}\n{"frame": 1, "cut sho\n{"frame":2')
        if rotate is not None:
            assert (tmp_path / "f.jsonl.1").stat().st_size <= 1000 and lines(path)[-1]["frame"] == 29
    else:
        assert [r["frame"] for r in lines(path)] == list(range(2, 30))
