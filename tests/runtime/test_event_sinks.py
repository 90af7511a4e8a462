"""The event sinks against real receivers: a loopback HTTP server that answers 500s and hangs (webhook)
and a Mosquitto broker that is absent at the start and killed mid-run (MQTT). Neither ever blocks
the caller; what could not be delivered is counted; no MQTT event within the queue is lost."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from runtime.webhook import WebhookSink
from tests.helpers import ROOT
from tests.helpers.servers import Broker, Subscriber, WebhookServer, free_port, mosquitto

needs_broker = pytest.mark.skipif(mosquitto() is None, reason="needs the mosquitto broker (apt-get install "
                                  "mosquitto; .ci/run installs it)")


def message(i: int, kind: str = "open") -> dict:
    return {"schema": 1, "type": kind, "event": {"id": f"door-{i}", "camera": "door", "track": i},
            "_snapshot": b"\xff\xd8jpeg"}


# --- webhook ---------------------------------------------------------------------------------
def test_webhook_retries_5xx_with_backoff_then_delivers(monkeypatch):
    monkeypatch.setenv("JRC_WEBHOOK_TOKEN", "s3cret")
    with WebhookServer([500, 503]) as server:
        sink = WebhookSink(server.url, timeout=2, retries=3, backoff=0.05)
        sink.publish(message(1))
        sink.close()
    r = sink.report()
    assert (r["sent"], r["retries"], r["undelivered"]) == (1, 2, 0) and server.requests == 3
    assert server.bodies == [{"schema": 1, "type": "open", "event": {"id": "door-1", "camera": "door", "track": 1}}]
    assert server.headers[0]["Authorization"] == "Bearer s3cret"


def test_webhook_that_hangs_never_blocks_the_caller_and_counts_what_was_lost():
    with WebhookServer(["hang"] * 50) as server:
        sink = WebhookSink(server.url, timeout=0.3, retries=1, maxlen=3, backoff=0.05)
        t0 = time.perf_counter()
        for i in range(10):
            sink.publish(message(i))
        publish_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sink.close()
        close_s = time.perf_counter() - t0
    r = sink.report()
    assert publish_s < 0.5  # ten publishes while the receiver hangs: the caller never waited on it
    assert close_s < 10  # the drain at the end is bounded too
    assert r["sent"] == 0 and r["dropped"] == 7 and r["undelivered"] == 10  # nothing vanished uncounted
    assert "timed out" in r["last_error"] or "Timeout" in r["last_error"]


@needs_broker
def test_closing_a_hanging_webhook_and_an_absent_broker_together_shares_one_short_deadline():
    from runtime.mqtt import GOODBYE_S, MqttSink
    from runtime.outbox import Drain

    drain = Drain(1.5)
    with WebhookServer(["hang"] * 5) as server:
        hook = WebhookSink(server.url, timeout=20, drain=drain)
        mqtt = MqttSink(f"mqtt://127.0.0.1:{free_port()}/t", drain=drain)  # nothing listens there
        hook.publish(message(1))
        mqtt.publish(message(1))
        time.sleep(0.3)  # the POST is under way: its receiver does not answer
        t0 = time.monotonic()
        hook.close()  # one after the other, as the frame loop closes its sinks
        mqtt.close()
        close_s = time.monotonic() - t0
    assert close_s < 1.5 + 2 * GOODBYE_S + 0.5, close_s  # one deadline for both, not 2 x 20 s + 5 s + 5 s
    assert (hook.report()["left"], hook.report()["sent"]) == (1, 0)  # the POST in flight counts as left
    assert mqtt.report()["undelivered"] == 2 and mqtt.report()["sent"] == 0  # the event and its snapshot
    assert hook.report()["last_error"]


def test_webhook_4xx_fails_at_once_and_credentials_in_the_url_are_refused():
    with WebhookServer([404]) as server:
        sink = WebhookSink(server.url, timeout=2, backoff=0.05)
        sink.publish(message(1))
        sink.close()
    assert sink.report()["failed"] == 1 and sink.report()["retries"] == 0 and server.requests == 1
    from runtime.errors import UserError

    with pytest.raises(UserError, match="JRC_WEBHOOK_TOKEN"):
        WebhookSink("http://user:pw@127.0.0.1:1/x")


@pytest.mark.parametrize("status", [302, 307])
def test_webhook_never_follows_a_redirect_and_counts_the_event_undelivered(monkeypatch, status):
    monkeypatch.setenv("JRC_WEBHOOK_TOKEN", "s3cret")
    with WebhookServer() as other, WebhookServer([(status, other.url), (status, "ftp://127.0.0.1/x")]) as server:
        sink = WebhookSink(server.url, timeout=2, backoff=0.05)
        sink.publish(message(1))
        sink.publish(message(2))
        sink.close()
    r = sink.report()
    assert other.requests == 0 and other.headers == []  # neither the token nor the event went elsewhere
    assert server.requests == 2 and (r["sent"], r["failed"], r["retries"], r["undelivered"]) == (0, 2, 0, 2)
    assert r["last_error"] == (f"HTTP {status}: redirected to ftp://127.0.0.1/x; point --webhook at the final "
                               "URL")


# --- MQTT ------------------------------------------------------------------------------------
@needs_broker
def test_mqtt_events_wait_for_a_broker_absent_at_the_start_and_one_killed_mid_run(tmp_path):
    from runtime.mqtt import MqttSink

    broker = Broker()
    with broker:  # the subscriber's persistent session exists before the box starts
        sub = Subscriber(broker.port, ["t/events"], client_id="test-box-sub")
        assert sub.subscribed.wait(10)
        sub.close()
        broker.stop()  # saved with its session
        sink = MqttSink(f"{broker.url}/t", drain_s=10)
        for i in range(3):  # the broker is not there
            sink.publish(message(i))
        time.sleep(0.3)
        assert sink.pending == 6 and not sink.connected.is_set()  # 3 events, 3 snapshots
        broker.start()
        sub = Subscriber(broker.port, ["t/events"], client_id="test-box-sub")
        assert sub.wait_for(lambda: len(sub.on("t/events")) == 3), sub.messages
        broker.stop()  # save the session again (what was delivered is done)
        broker.start()
        assert sink.connected.wait(15)
        broker.kill()  # dies mid-run: no clean save
        for i in range(3, 6):
            sink.publish(message(i, "close"))
        time.sleep(0.3)
        broker.start()
        assert sub.wait_for(lambda: len(sub.on("t/events")) >= 6, timeout=20), (sink.report(), sink.pending, sink.connected.is_set(), sub.connected.is_set())
        sink.close()
        sub.close()
    ids = [json.loads(p)["event"]["id"] for p in sub.on("t/events")]
    assert sorted(set(ids)) == [f"door-{i}" for i in range(6)]  # every event, none lost
    assert all("_snapshot" not in json.loads(p) for p in sub.on("t/events"))
    assert sink.report()["undelivered"] == 0 and sink.connects >= 3


@needs_broker
def test_mqtt_availability_last_will_retained_state_and_snapshot(tmp_path):
    with Broker() as broker:
        code = ("import sys, time; from runtime.mqtt import MqttSink; s = MqttSink(sys.argv[1]); "
                "s.connected.wait(10); s.camera_state('door', {'camera': 'door', 'up': True}); "
                "s.publish({'schema': 1, 'type': 'open', 'event': {'camera': 'door'}, '_snapshot': b'JPEG'}); "
                "time.sleep(0.5); print('up', flush=True); time.sleep(60)")
        proc = subprocess.Popen([sys.executable, "-c", code, f"{broker.url}/t"], cwd=ROOT, stdout=subprocess.PIPE,
                                text=True)
        try:
            assert proc.stdout.readline().strip() == "up"
            proc.kill()  # the box dies: the broker publishes its last will
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        sub = Subscriber(broker.port, ["t/#"])
        assert sub.wait_for(lambda: sub.on("t/available") and sub.on("t/door/state") and sub.on("t/door/snapshot"))
        sub.close()
    retained = {t: p for t, p, r in sub.messages if r}
    assert retained["t/available"] == b"offline"
    assert json.loads(retained["t/door/state"]) == {"camera": "door", "up": True}
    assert retained["t/door/snapshot"] == b"JPEG"


def test_mqtt_credentials_never_from_the_command_line(tmp_path):
    from runtime.errors import UserError
    from runtime.mqtt import credentials, parse_url

    with pytest.raises(UserError, match="--mqtt-auth FILE"):
        parse_url("mqtt://user:pw@127.0.0.1:1883")
    assert parse_url(f"mqtt://127.0.0.1:{free_port()}")[3] == "jrc"
    assert parse_url("mqtt://127.0.0.1/site/jrc/")[3] == "site/jrc" and parse_url("mqtt://h/a$b")[3] == "a$b"
    auth = tmp_path / "auth"
    auth.write_text("box\npa ss\n")
    assert credentials(str(auth)) == ("box", "pa ss")
    auth.write_bytes(b"box\npa\xffss\n")  # not UTF-8: one line naming the file, no traceback
    with pytest.raises(UserError, match=r"^--mqtt-auth .*auth: is not UTF-8 text; write the user name") as e:
        credentials(str(auth))
    assert e.value.exit_code == 2
