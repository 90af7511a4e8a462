"""Loopback servers for tests: an MJPEG camera over HTTP, a webhook receiver, a Mosquitto broker; and a
fake camera device (a cv2.VideoCapture look-alike).

Every server binds 127.0.0.1 on a free port and stops by itself at the end of its ``with`` block.
"""

from __future__ import annotations

import getpass
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jpeg_frame(i: int) -> bytes:
    return cv2.imencode(".jpg", np.full((48, 64, 3), (i * 7) % 256, np.uint8))[1].tobytes()


class MjpegServer:
    """Loopback MJPEG server. ``script[k]`` says what connection k gets: ``(frames, then)`` with
    ``then`` in ``"stall"`` (keep the connection open, send nothing) or ``"close"``; connections
    past the script get headers and then nothing. Every wait ends at ``stop()`` or after 30 s."""

    def __init__(self, script: list[tuple[int, str]], shutdown_after: int | None = None) -> None:
        self.script = script
        self.connections: list[float] = []  # monotonic time of each connection
        self._stop = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                k = len(outer.connections)
                outer.connections.append(time.monotonic())
                frames, then = outer.script[k] if k < len(outer.script) else (0, "stall")
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for i in range(frames):
                        if outer._stop.is_set():
                            return
                        b = jpeg_frame(i)
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                         % (len(b), b))
                        self.wfile.flush()
                        time.sleep(0.04)  # 25 fps, like a camera
                except OSError:
                    return
                if then == "stall":
                    outer._stop.wait(30)
                if shutdown_after is not None and k + 1 >= shutdown_after:
                    threading.Thread(target=outer.stop, daemon=True).start()  # later connections are refused

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cam.mjpg"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MjpegServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.server.shutdown()
            self.server.server_close()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._thread.join(10)



class WebhookServer:
    """Receives POSTs (and counts any other request). ``script`` says what request k gets: an HTTP
    status, ``(status, location)`` (a redirect), or ``"hang"`` (no answer until the server stops);
    requests past the script get 200. ``bodies`` holds what was answered 200, ``methods`` every
    request's method."""

    def __init__(self, script: list[int | str | tuple[int, str]] | None = None) -> None:
        self.script = list(script or [])
        self.requests = 0
        self.methods: list[str] = []
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self._stop = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                k = outer.requests
                outer.requests += 1
                outer.methods.append(self.command)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                what = outer.script[k] if k < len(outer.script) else 200
                if what == "hang":
                    outer._stop.wait(30)
                    return
                status, location = what if isinstance(what, tuple) else (what, None)
                self.send_response(int(status))
                if location:
                    self.send_header("Location", location)
                self.end_headers()
                if status == 200 and self.command == "POST":
                    outer.bodies.append(json.loads(body))
                    outer.headers.append(dict(self.headers))

            do_GET = do_PUT = do_HEAD = do_POST  # noqa: N815 - http.server's names

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


def mosquitto() -> str | None:
    """The broker's binary (Debian package ``mosquitto``), or None."""
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)


class Broker:
    """A Mosquitto broker on 127.0.0.1:``port`` (a free one by default). Its sessions (a
    subscriber's subscriptions and the QoS 1 messages queued for it) are saved when it is
    :meth:`stop`-ped cleanly and loaded when it starts; :meth:`kill` (SIGKILL) loses what came since."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._dir = tempfile.mkdtemp(prefix="jrc-mosquitto-")
        self.conf = Path(self._dir) / "mosquitto.conf"
        # run as this user (as root, mosquitto would switch to its own and could not save here)
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {self._dir}/\nautosave_interval 0\n"
                             f"user {getpass.getuser()}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        binary = mosquitto()
        assert binary, "mosquitto is not installed"
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start on port {self.port}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        """A clean stop: sessions are saved."""
        self.kill(signal.SIGTERM)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)


class Subscriber:
    """A paho client with a persistent session (QoS 1 messages published while it is away are kept
    for it by the broker) that subscribes to ``topics`` and keeps every message as (topic, payload
    bytes, retained)."""

    def __init__(self, port: int, topics: list[str], client_id: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.connected = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"test-sub-{os.getpid()}-{id(self)}",
                        clean_session=False)
        self.subscribed = threading.Event()
        c.on_subscribe = lambda *a: self.subscribed.set()

        def on_connect(client, userdata, flags, reason, properties=None):
            for t in topics:
                client.subscribe(t, qos=1)
            self.connected.set()

        def on_message(client, userdata, msg):
            with self._lock:
                self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

        c.on_connect, c.on_message = on_connect, on_message
        c.on_disconnect = lambda *a: self.connected.clear()
        c.reconnect_delay_set(0.1, 0.5)
        c.connect_async("127.0.0.1", port, keepalive=10)
        c.loop_start()
        self.client = c

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FakeCamera:
    """A capture that delivers ``frames`` frames, then fails (unplugged) or, with ``hang``, blocks
    in read() until ``release_hang`` is set, as some drivers do."""

    def __init__(self, frames: int, opened: bool = True, hang: threading.Event | None = None) -> None:
        self.left, self.opened, self.hang = frames, opened, hang
        self.n = 0

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return self.opened

    def get(self, prop: int) -> float:
        return 25.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        if not self.opened:
            return False, None
        if self.left <= 0:
            if self.hang is not None:
                self.hang.wait(30)
            return False, None
        self.left -= 1
        self.n += 1
        time.sleep(0.01)
        return True, np.full((48, 64, 3), (self.n * 9) % 256, np.uint8)

    def release(self) -> None:
        self.opened = False
