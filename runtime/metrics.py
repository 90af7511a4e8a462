"""``--metrics [HOST:]PORT``: Prometheus metrics of the running box (prometheus_client), on loopback by default.

Per camera (label ``camera``): ``jrc_frames_read_total`` (decoded), ``jrc_frames_processed_total``,
``jrc_frames_dropped_total`` (live frames replaced before they were taken), ``jrc_faces_scored_total``,
``jrc_events_total`` (opened), ``jrc_events_open``, ``jrc_stream_up`` (1 while it delivers frames),
``jrc_reconnects_total``, ``jrc_frame_latency_seconds`` (p50/p95 of frame read → result written).
For the one inference stage: ``jrc_inference_batch_size`` and ``jrc_inference_latency_seconds``
histograms. For each event sink (label ``sink``): ``jrc_sink_sent_total``, ``jrc_sink_undelivered_total``,
``jrc_sink_queued``. Counters are read from the loop's own state when scraped, so the frame loop
pays nothing per frame for them; the histograms are observed once per inference batch.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from typing import Any, Iterator

from runtime.errors import EXIT_USAGE, UserError, missing_dependency

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]*)(\.[A-Za-z0-9_-]+)*\.?$")  # a host name's labels


def parse_address(text: str, flag: str = "--metrics", example: int = 9100) -> tuple[str, int]:
    """``9100`` → 127.0.0.1:9100; ``0.0.0.0:9100``, ``[::1]:9100`` (``--metrics``, ``--web``). A host
    that is neither a name nor an address (``[::1``, ``a b``) is malformed: an error before anything
    tries to listen there."""
    host, sep, port = str(text).rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host if sep else "127.0.0.1"
    if sep and not _host_ok(host, bracketed):
        raise UserError(f"{flag} {text}: the address is malformed; expected [HOST:]PORT with HOST a name, an IPv4 "
                        f"address or an IPv6 address in brackets (e.g. 0.0.0.0:{example}, [::1]:{example})",
                        EXIT_USAGE)
    try:
        n = int(port)
    except ValueError:
        n = -1
    if not 0 < n < 65536:
        raise UserError(f"{flag} {text}: expected [HOST:]PORT with a port from 1 to 65535 (e.g. {example}, or "
                        f"0.0.0.0:{example} to listen beyond this machine)", EXIT_USAGE)
    return host, n


def _host_ok(host: str, bracketed: bool) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # fe80::1%eth0: a scope Python 3.8 cannot parse
    except ValueError:
        return not bracketed and _NAME.match(host) is not None
    return address.version == 6 or not bracketed


def listen_error(flag: str, address: str, host: str, port: int, error: BaseException) -> UserError:
    """Why ``host:port`` cannot be listened on, and what to do, in one line (``--metrics``, ``--web``)."""
    why = error.strerror if isinstance(error, OSError) and error.strerror else str(error) or type(error).__name__
    if isinstance(error, socket.gaierror):
        return UserError(f"{flag} {address}: the host name {host} cannot be resolved ({why}); give an address of "
                         f"this machine (127.0.0.1, or 0.0.0.0 to listen beyond it) or a name it resolves")
    if getattr(error, "errno", None) == errno.EADDRNOTAVAIL:
        return UserError(f"{flag} {address}: {host} is not an address of this machine ({why}); give one of its "
                         "addresses (127.0.0.1, or 0.0.0.0 to listen on every one)")
    return UserError(f"{flag} {address}: cannot listen on {host}:{port} ({why}); choose a free port")


def _import() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise missing_dependency("prometheus_client", "box") from None
    return prometheus_client


class Metrics:
    """The registry and its HTTP server; :meth:`attach` points it at a running loop."""

    def __init__(self, address: str) -> None:
        pc = _import()
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        self.host, self.port = parse_address(address)
        self.registry = pc.CollectorRegistry()
        self.batch = pc.Histogram("jrc_inference_batch_size", "Faces per inference batch", buckets=BATCH_BUCKETS,
                                  registry=self.registry)
        self.infer = pc.Histogram("jrc_inference_latency_seconds", "Seconds per inference batch",
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self.loop: Any = None
        self.sinks: list[Any] = []
        self._counter, self._gauge = CounterMetricFamily, GaugeMetricFamily
        self.registry.register(self)
        try:
            self.server, self.thread = pc.start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as e:
            raise listen_error("--metrics", address, self.host, self.port, e) from None

    def attach(self, loop: Any, sinks: list[Any]) -> None:
        self.loop, self.sinks = loop, sinks

    def on_batch(self, faces: int, seconds: float) -> None:
        self.batch.observe(faces)
        self.infer.observe(seconds)

    def describe(self) -> list[Any]:
        return []  # collected on each scrape: nothing to check when registering

    def collect(self) -> Iterator[Any]:
        cams = list(getattr(self.loop, "cameras", []) or [])
        events = getattr(self.loop, "events", None)
        counters = {
            "jrc_frames_read": ("Frames decoded", lambda c: c.pipeline.decoded if c.pipeline else 0),
            "jrc_frames_processed": ("Frames processed (results written)", lambda c: c.agg.frames),
            "jrc_frames_dropped": ("Live frames dropped before they were taken", lambda c: c.source.stats.dropped),
            "jrc_faces_scored": ("Faces scored", lambda c: c.agg.faces),
            "jrc_reconnects": ("Reconnect attempts", lambda c: c.source.stats.reconnects),
            "jrc_events": ("Events opened", lambda c: events.opened.get(c.name, 0) if events else 0),
        }
        for name, (text, value) in counters.items():
            m = self._counter(name, text, labels=["camera"])
            for c in cams:
                m.add_metric([c.name], float(value(c)))
            yield m
        up = self._gauge("jrc_stream_up", "1 while the camera delivers frames", labels=["camera"])
        open_ = self._gauge("jrc_events_open", "Events open now", labels=["camera"])
        lat = self._gauge("jrc_frame_latency_seconds", "Frame read to result written, recent frames",
                          labels=["camera", "quantile"])
        for c in cams:
            up.add_metric([c.name], 1.0 if c.state.up_now(c.source, c.done) else 0.0)
            open_.add_metric([c.name], float(len(events.open_tracks(c.name)) if events else 0))
            s = c.latency.summary()
            for q in ("p50", "p95"):
                if s[q] is not None:
                    lat.add_metric([c.name, "0.5" if q == "p50" else "0.95"], s[q] / 1000.0)
        yield from (up, open_, lat)
        sent = self._counter("jrc_sink_sent", "Event messages delivered", labels=["sink"])
        lost = self._counter("jrc_sink_undelivered", "Event messages not delivered (failed, dropped)",
                             labels=["sink"])
        queued = self._gauge("jrc_sink_queued", "Event messages waiting", labels=["sink"])
        for s in self.sinks:
            if hasattr(s, "pending"):
                r = s.report()
                sent.add_metric([s.name], float(r["sent"]))
                lost.add_metric([s.name], float(r["failed"] + r["dropped"]))
                queued.add_metric([s.name], float(s.pending))
        yield from (sent, lost, queued)

    def close(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            server.shutdown()
            server.server_close()
            self.server = None

    def report(self) -> dict[str, Any]:
        return {"address": f"{self.host}:{self.port}"}
