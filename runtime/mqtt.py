"""``--mqtt mqtt://HOST[:PORT][/PREFIX]``: events, camera states and availability on an MQTT broker (paho-mqtt).

Topics (``PREFIX`` defaults to ``jrc``), as Frigate users expect:

- ``PREFIX/available``: ``online`` once connected, ``offline`` at a clean exit, and ``offline`` as
  the connection's last will, so the broker says it when the box dies. Retained, QoS 1.
- ``PREFIX/events``: every event message (open / update / close) as JSON. QoS 1, not retained.
- ``PREFIX/<camera>/state``: the camera's state as JSON (up, status, frames, open events).
  Retained, QoS 1; sent again after each reconnect (a restarted broker may have lost it).
- ``PREFIX/<camera>/snapshot``: the JPEG of the latest event's peak frame. Retained, QoS 1.

Messages wait in a bounded queue (:class:`runtime.outbox.Outbox`) and leave it only once the
broker has acknowledged them (PUBACK), so an event published while the broker is away, or lost
with a broker that dies, is sent after the reconnect (at least once: a duplicate is possible,
never a loss within the queue). The client reconnects on its own (every 0.5 s, doubling to 10 s).
Credentials come from ``--mqtt-auth FILE`` (user on the first line, password on the second) or
the environment (``JRC_MQTT_USERNAME``, ``JRC_MQTT_PASSWORD``), never the command line.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from runtime.errors import EXIT_USAGE, UserError, missing_dependency
from runtime.outbox import Drain, Outbox, receiver_url

USER_ENV, PASSWORD_ENV = "JRC_MQTT_USERNAME", "JRC_MQTT_PASSWORD"
DEFAULT_PREFIX = "jrc"
ACK_TIMEOUT_S = 10.0  # connected but no PUBACK for this long: publish again
GOODBYE_S = 0.5  # at close, past the drain's deadline: the most for "offline" and for paho's thread to end


class _NotYet(Exception):
    pass


def parse_url(url: str) -> tuple[str, int, bool, str]:
    """host, port, TLS, topic prefix of an ``mqtt://`` or ``mqtts://`` URL."""
    u = receiver_url(url, "--mqtt", ("mqtt", "mqtts"), "mqtt://HOST[:PORT][/PREFIX] (or mqtts:// for TLS)",
                     f"--mqtt-auth FILE or the environment ({USER_ENV}, {PASSWORD_ENV})")
    port = u.port or (8883 if u.scheme == "mqtts" else 1883)  # receiver_url refused 0 and non-numbers
    return u.hostname, port, u.scheme == "mqtts", topic_prefix(url, u.path)


def topic_prefix(url: str, path: str) -> str:
    """The topics' first levels: the URL's path without its leading and trailing '/'. Wildcards,
    empty levels and a leading '$' (the broker's own topics, such as $SYS: it drops what clients
    publish there) are refused, as is what urlsplit would hide from the path ('#...', '?...');
    NUL and other control characters were refused with the URL."""
    prefix = path[1:] if path.startswith("/") else path
    prefix = prefix[:-1] if prefix.endswith("/") else prefix
    wrong = ("holds '+' or '#' (wildcards are for subscribers)" if any(c in url for c in "+#") else
             "holds '?'" if "?" in url else
             "has an empty level ('//')" if prefix and "" in prefix.split("/") else
             "starts with '$' (topics beginning with '$' are the broker's own, such as $SYS; it drops what "
             "clients publish there)" if prefix.startswith("$") else None)
    if wrong:
        raise UserError(f"--mqtt {url}: the topic prefix {wrong}; give one such as mqtt://HOST/{DEFAULT_PREFIX} "
                        f"or mqtt://HOST/site/{DEFAULT_PREFIX}", EXIT_USAGE)
    return prefix or DEFAULT_PREFIX


def credentials(auth_file: str | None) -> tuple[str | None, str | None]:
    if auth_file:
        try:
            with open(auth_file, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise UserError(f"--mqtt-auth {auth_file}: cannot be read ({e.strerror or e})", EXIT_USAGE) from None
        except UnicodeDecodeError:
            raise UserError(f"--mqtt-auth {auth_file}: is not UTF-8 text; write the user name on the first line "
                            "and the password on the second, as UTF-8", EXIT_USAGE) from None
        if not lines or not lines[0].strip():
            raise UserError(f"--mqtt-auth {auth_file}: expected the user name on the first line and the password "
                            "on the second", EXIT_USAGE)
        return lines[0].strip(), (lines[1] if len(lines) > 1 else None)
    return os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)


class MqttSink(Outbox):
    name = "mqtt"

    def __init__(self, url: str, auth_file: str | None = None, maxlen: int = 1000, drain_s: float = 5.0,
                 client_id: str | None = None, drain: Drain | None = None) -> None:
        super().__init__(maxlen=maxlen, backoff=0.2, max_backoff=1.0, drain_s=drain_s, drain=drain)
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise missing_dependency("paho-mqtt", "box") from None
        self._mqtt = mqtt
        self.url = url
        host, port, tls, self.prefix = parse_url(url)
        user, password = credentials(auth_file)
        self.available = f"{self.prefix}/available"
        self.connected = threading.Event()
        self.connects = 0
        self._states: dict[str, bytes] = {}
        cid = client_id or f"jrc-edge-{socket.gethostname()}-{os.getpid()}"
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True)
        if user:
            c.username_pw_set(user, password)
        if tls:
            c.tls_set()
        c.will_set(self.available, "offline", qos=1, retain=True)
        c.reconnect_delay_set(0.5, 10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        self._client = c
        c.connect_async(host, port, keepalive=30)
        c.loop_start()  # connects, and reconnects, in paho's own thread
        self.start()

    # --- paho's thread ------------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            self.last_error = f"broker refused the connection: {reason}"
            return
        self.connects += 1
        client.publish(self.available, "online", qos=1, retain=True)
        self.connected.set()
        if self.connects > 1:  # a restarted broker may have lost the retained states
            for name, payload in list(self._states.items()):
                self.put((f"{self.prefix}/{name}/state", payload, True))

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        self.connected.clear()

    # --- the frame loop's side -----------------------------------------------------------
    def publish(self, message: dict[str, Any]) -> None:
        from runtime.events import public
        from runtime.sinks import to_json

        ev = message["event"]
        self.put((f"{self.prefix}/events", to_json(public(message)).encode("utf-8"), False))
        if message.get("_snapshot"):
            self.put((f"{self.prefix}/{ev['camera']}/snapshot", message["_snapshot"], True))

    def camera_state(self, name: str, state: dict[str, Any]) -> None:
        from runtime.sinks import to_json

        payload = to_json(state).encode("utf-8")
        if self._states.get(name) != payload:
            self._states[name] = payload
            self.put((f"{self.prefix}/{name}/state", payload, True))

    # --- the outbox's thread -------------------------------------------------------------
    def deliver(self, item: tuple[str, bytes, bool]) -> bool:
        topic, payload, retain = item
        while not self.connected.is_set():  # the broker is away: the message waits in the queue
            if self.wait_retry(0.1):
                raise _NotYet("closing before the broker came back")
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            raise _NotYet(f"publish failed: {self._mqtt.error_string(info.rc)}")
        since = time.monotonic()
        while not info.is_published():  # paho sends it again after a reconnect; PUBACK ends the wait
            if self.wait_retry(0.02):
                raise _NotYet("closing before the broker acknowledged")
            if not self.connected.is_set():
                since = time.monotonic()
            elif time.monotonic() - since > ACK_TIMEOUT_S:
                raise _NotYet(f"no acknowledgement within {ACK_TIMEOUT_S:g} s")
        return True

    def close(self, deadline: float | None = None) -> None:
        """The queue until the drain's deadline, then ``offline`` and the disconnect, each given what
        is left of it but at least ``GOODBYE_S`` (paho's thread may be in a connect that hangs: it
        is left to end with the process)."""
        deadline = self.drain.start(deadline)
        super().close(deadline)
        if self.connected.is_set():
            info = self._client.publish(self.available, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(min(2.0, max(GOODBYE_S, deadline - time.monotonic())))
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        stopper = threading.Thread(target=self._client.loop_stop, name="jrc-mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(max(GOODBYE_S, deadline - time.monotonic()))

    def report(self) -> dict[str, Any]:
        from runtime.redact import shown

        return {"url": shown(self.url), "prefix": self.prefix, "connects": self.connects, **super().report()}
