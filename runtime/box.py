"""The camera box's part of ``runtime.detect``: its options, their checks, and what they open.

Several sources (``--source`` given more than once, a named ``--source NAME=SRC``, or
``--cameras FILE.toml``) make a camera box: each camera is isolated (a camera that cannot open,
stalls or dies is retried with the reconnect policy while the others go on), the summary has a
section per camera, and the exit code says whether any camera failed. Events, their sinks
(``--events``, ``--webhook``, ``--mqtt``) and ``--metrics`` work with one source too.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from typing import Any

from runtime.errors import EXIT_USAGE, UserError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``1d`` → seconds."""
    m = _DURATION.match(str(text).lower())
    if m is None or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration such as 3600, 15m, 1h or 1d, got {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The box's options (the single-source options are every camera's defaults)."""
    b = p.add_argument_group("camera box (several cameras, events, metrics)")
    b.add_argument("--cameras", metavar="FILE.toml", help="cameras as [cameras.NAME] tables with per-camera "
                   "options (source, stride, live, max_reconnects, timeout, faces, face_model, face_threshold, "
                   "detect_every, detect_width, min_face, max_faces, scan_every); the command line gives the defaults")
    b.add_argument("--batch-wait", type=float, metavar="MS", help="the shared inference may wait up to MS "
                   "milliseconds for faces of other cameras to fill a batch (default: 5 with several cameras on a GPU, "
                   "0 on a CPU or with one camera)")
    b.add_argument("--jsonl-frames", choices=("all", "faces", "events"), default="all", help="which frames --jsonl "
                   "writes: all (default), those with a face, or those with a face in an open event")
    b.add_argument("--rotate-size", type=float, metavar="MB", help="start a new --jsonl/--events file once it has "
                   "MB megabytes (the old one becomes FILE.1, ...)")
    b.add_argument("--rotate-every", type=duration, metavar="TIME", help="... or once it is TIME old (3600, 15m, 1h, 1d)")
    b.add_argument("--rotate-keep", type=int, default=10, metavar="N", help="rotated files kept (default 10)")
    e = p.add_argument_group("events (a track that looks manipulated for long enough)")
    e.add_argument("--events", metavar="FILE", help="JSON Lines, one line per event open / update / close")
    e.add_argument("--event-frames", type=int, default=5, metavar="K", help="scored frames in a row at or above "
                   "the threshold that open an event, and below it (minus the hysteresis) that close it (default 5)")
    e.add_argument("--event-hysteresis", type=float, default=0.05, metavar="P", help="an open event closes only "
                   "below threshold - P (default 0.05)")
    e.add_argument("--event-update", type=float, default=5.0, metavar="SEC", help="an update of an open event at "
                   "most every SEC seconds (default 5)")
    e.add_argument("--event-media", metavar="DIR", help="write each event's snapshot (peak frame, box drawn) and "
                   "face crop as JPEG, and its clip, under DIR/<camera>/")
    e.add_argument("--event-clip", type=float, default=0.0, metavar="SEC", help="with --event-media: a clip from SEC "
                   "seconds before the event to SEC after it (default 0: none; at most 60 s in all)")
    e.add_argument("--event-budget", type=float, default=1024.0, metavar="MB", help="--event-media's size; the "
                   "oldest files are deleted first (default 1024)")
    e.add_argument("--webhook", metavar="URL", help="POST each event message's JSON to URL (bounded queue, "
                   "retries with backoff; a token from the environment variable JRC_WEBHOOK_TOKEN)")
    e.add_argument("--webhook-timeout", type=float, default=5.0, metavar="SEC", help="seconds per POST (default 5)")
    e.add_argument("--mqtt", metavar="URL", help="mqtt://HOST[:PORT][/PREFIX]: events, retained camera states and "
                   "availability on an MQTT broker (paho-mqtt; topic prefix default 'jrc')")
    e.add_argument("--mqtt-auth", metavar="FILE", help="MQTT user name (first line) and password (second line); "
                   "or the environment: JRC_MQTT_USERNAME, JRC_MQTT_PASSWORD")
    e.add_argument("--queue", type=int, default=1000, metavar="N", help="event messages the webhook and MQTT "
                   "each hold while their receiver is slow or away; past it the oldest are dropped and counted "
                   "(default 1000)")
    e.add_argument("--metrics", metavar="[HOST:]PORT", help="serve Prometheus metrics on HOST:PORT (default host "
                   "127.0.0.1)")
    w = p.add_argument_group("live view (a page in a browser)")
    w.add_argument("--web", metavar="[HOST:]PORT", help="serve the live view on HOST:PORT (default host 127.0.0.1): "
                   "each camera's annotated frames, fps, drops and state, each face's p(fake) over the last minute, "
                   "the recent events with their snapshots and clips; JSON at /api/cameras, /api/tracks, /api/events")
    w.add_argument("--web-token-file", metavar="FILE", help="a token (first line, 16+ characters) every request "
                   "to --web must carry; needed to listen beyond this machine (open /?token=TOKEN once)")
    w.add_argument("--web-fps", type=float, default=5.0, metavar="N", help="frames a second each camera sends "
                   "its viewers, encoded only while someone watches (default 5)")
    w.add_argument("--web-viewers", type=int, default=4, metavar="N", help="viewers each camera takes at once "
                   "(default 4)")


def is_box(a: argparse.Namespace) -> bool:
    """Several cameras, a named one, or a cameras file: the camera box's isolation and summary."""
    from runtime.cameras import split_name

    sources = a.source or []
    return bool(a.cameras) or len(sources) > 1 or any(split_name(s)[0] for s in sources)


def check_args(a: argparse.Namespace) -> None:
    """The box's values argparse cannot check (exit code 2)."""
    for name, low in (("event_frames", 1), ("rotate_keep", 1), ("queue", 1), ("web_viewers", 1)):
        v = getattr(a, name)
        if v < low:
            raise UserError(f"--{name.replace('_', '-')} {v}: must be at least {low}", EXIT_USAGE)
    for name in ("batch_wait", "event_clip", "event_update"):
        v = getattr(a, name)
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise UserError(f"--{name.replace('_', '-')} {v}: must be a number of at least 0", EXIT_USAGE)
    for name in ("webhook_timeout", "event_budget", "rotate_size"):
        v = getattr(a, name)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UserError(f"--{name.replace('_', '-')} {v}: must be a positive number", EXIT_USAGE)
    if not 0.0 <= a.event_hysteresis < 1.0:
        raise UserError(f"--event-hysteresis {a.event_hysteresis}: must be from 0 to below 1", EXIT_USAGE)
    if a.event_clip and not a.event_media:
        raise UserError("--event-clip needs --event-media DIR (where clips are written)", EXIT_USAGE)
    if a.jsonl_frames == "events" and not wants_events(a):
        raise UserError("--jsonl-frames events needs events: add --events, --webhook or --mqtt", EXIT_USAGE)
    if a.webhook:
        from runtime.webhook import check_url

        check_url(a.webhook)
    if a.mqtt:
        from runtime.mqtt import parse_url

        parse_url(a.mqtt)
    if a.metrics:
        from runtime.metrics import parse_address

        parse_address(a.metrics)
    check_web(a)
    if a.event_media:
        from pathlib import Path

        p = Path(a.event_media)
        if p.exists() and not p.is_dir():
            raise UserError(f"--event-media {a.event_media}: is a file; pass a folder", EXIT_USAGE)


def check_web(a: argparse.Namespace) -> None:
    """``--web`` and its options (exit code 2): an address, a token to listen beyond this machine."""
    if not a.web:
        for flag in ("web_token_file",):
            if getattr(a, flag):
                raise UserError(f"--{flag.replace('_', '-')} applies to --web; add --web [HOST:]PORT", EXIT_USAGE)
        return
    from runtime.metrics import parse_address
    from runtime.web.access import check_bind, read_token

    host, _ = parse_address(a.web, "--web", 8090)
    check_bind(host, a.web, a.web_token_file)
    if a.web_token_file:
        read_token(a.web_token_file, warn=False)
    if not (math.isfinite(a.web_fps) and 0 < a.web_fps <= 60):
        raise UserError(f"--web-fps {a.web_fps}: must be above 0 and at most 60", EXIT_USAGE)


def open_web(a: argparse.Namespace) -> Any:
    """The live view's server (None without ``--web``), listening before the cameras open."""
    if not a.web:
        return None
    from runtime.web.server import WebView

    return WebView(a.web, a.web_token_file, fps=a.web_fps, viewers=a.web_viewers)


def wants_events(a: argparse.Namespace) -> bool:
    """Events are worked out for their sinks and for the live view (which lists them)."""
    return bool(a.events or a.webhook or a.mqtt or a.event_media or a.web)


def event_options(a: argparse.Namespace) -> Any:
    if not wants_events(a):
        return None
    from runtime.events import EventOptions

    return EventOptions(frames=a.event_frames, hysteresis=a.event_hysteresis, update_s=a.event_update,
                        media=a.event_media, clip_s=a.event_clip, budget_mb=a.event_budget,
                        snapshots_for_sinks=bool(a.mqtt or a.web))


def rotation(a: argparse.Namespace) -> Any:
    if not (a.rotate_size or a.rotate_every):
        return None
    from runtime.sinks import Rotation

    return Rotation(max_bytes=int(a.rotate_size * 1024 * 1024) if a.rotate_size else None,
                    max_age_s=a.rotate_every, keep=a.rotate_keep)


def open_sinks(a: argparse.Namespace) -> tuple[list[Any], Any]:
    """The event sinks (events file, webhook, MQTT) and the metrics server; the metrics first, so a
    port in use is reported before anything connects."""
    from runtime.sinks import EventsFile

    metrics = None
    if a.metrics:
        from runtime.metrics import Metrics

        metrics = Metrics(a.metrics)
    out: list[Any] = []
    try:
        if a.events:
            out.append(EventsFile(a.events, rotate=rotation(a)))
        if a.webhook or a.mqtt:
            from runtime.outbox import Drain

            drain = Drain()  # closing one starts both drains: together they take at most DRAIN_S
        if a.webhook:
            from runtime.webhook import WebhookSink

            out.append(WebhookSink(a.webhook, timeout=a.webhook_timeout, maxlen=a.queue, drain=drain))
        if a.mqtt:
            from runtime.mqtt import MqttSink

            out.append(MqttSink(a.mqtt, a.mqtt_auth, maxlen=a.queue, drain=drain))
    except BaseException:
        for s in out:
            s.close()
        if metrics is not None:
            metrics.close()
        raise
    return out, metrics


def open_cameras(specs: list[Any], a: argparse.Namespace, decode_threads: int) -> list[Any]:
    """A :class:`runtime.loop.Camera` per spec. Files, folders and globs open now (a bad path is an
    error before the run); cameras, URLs and pipelines open in their own thread, retried with the
    reconnect policy while the others run."""
    from runtime.faces import detector_options
    from runtime.loop import Camera, Faces
    from runtime.sources import open_source

    cams = []
    try:
        for s in specs:
            stride, live = s.option(a, "stride"), s.option(a, "live")
            src = open_source(s.source, stride=stride, live=live, max_reconnects=s.option(a, "max_reconnects"),
                              open_timeout=s.option(a, "timeout"), read_timeout=s.option(a, "timeout"),
                              decode_threads=decode_threads, retry_open=True)
            if stride > 1 and src.live:
                src.close()
                raise UserError(f"camera {s.name} ({s.source}): stride applies to files; live sources drop stale "
                                "frames instead", EXIT_USAGE)
            faces = None
            face_keys = ("faces", "face_model", "face_threshold", "detect_every", "detect_width", "min_face",
                         "max_faces", "scan_every")
            if any(k in s.options for k in face_keys):
                ns = argparse.Namespace(**{k: s.option(a, k) for k in face_keys}, engine=a.engine,
                                        provider=a.provider)
                kind, options = detector_options(ns)
                faces = Faces(kind, detect_every=ns.detect_every, max_faces=ns.max_faces, scan_every=ns.scan_every,
                              options=options)
            cams.append(Camera(s.name, src, faces))
    except BaseException:
        for c in cams:
            c.source.close()
        raise
    return cams


def failed_cameras_error(loop: Any) -> UserError | None:
    """One line naming every camera that failed (exit code 3), or None."""
    from runtime.errors import EXIT_SOURCE

    failed = [c for c in loop.cameras if c.error is not None]
    if not failed:
        return None
    names = "; ".join(f"{c.name}: {c.error}" for c in failed)
    return UserError(f"{len(failed)} of {len(loop.cameras)} cameras failed ({names}); the other cameras' results "
                     "are written", EXIT_SOURCE)


def print_cameras(summary: dict[str, Any]) -> None:
    """One verdict line per camera, then the overall one."""
    from runtime.sinks import verdict_line

    for c in summary.get("cameras", []):
        if c.get("frames"):
            print(verdict_line(f"camera {c['camera']}", c, summary["threshold"]))
        else:
            print(f"camera {c['camera']}: no frame ({c['status']})")
    if summary.get("frames"):
        print(verdict_line("overall", summary, summary["threshold"]))
    sys.stdout.flush()
