"""The live view's HTTP server (aiohttp) on a thread of its own, and its routes. Read-only: GET only.

| route | what |
|---|---|
| ``/`` and ``/static/NAME`` | the page (``runtime/web/static/``: HTML, CSS, JavaScript; no CDN) |
| ``/api/cameras`` | per camera: up, status, frames, faces, dropped, fps, threshold, viewers |
| ``/api/tracks`` | per camera: its live tracks, each with p(fake) over the last minute |
| ``/api/events?since=SEQ&run=RUN`` | the recent events changed after ``SEQ`` (or an ISO 8601 time), newest first, and ``cursor`` |
| ``/api/events/ID/snapshot.jpg``, ``crop.jpg``, ``clip`` | an event's pictures, by its id only |
| ``/api/cameras/NAME/frame.jpg?after=SEQ&run=RUN`` | the camera's next annotated frame newer than ``SEQ`` (204: none within 10 s) |
| ``/stream/NAME.mjpg`` | the camera's annotated frames as MJPEG (``multipart/x-mixed-replace``), for other players |
| ``/metrics`` | Prometheus metrics, where ``--metrics`` is on |

Every answer carries a Content-Security-Policy that allows this origin only, ``nosniff``, no
framing and no referrer. Files of events are looked up from the event's own record: nothing in a
request is ever part of a path. A query parameter that is malformed, out of range or given twice is
a 400 that says which.

Cursors and frame numbers start again at 0 when the box starts again, so every JSON answer names
the server's ``run`` (made at random when it starts; ``X-Run`` on frames). A reader that gives
``run=RUN`` with its ``since`` or ``after`` is answered from 0 when ``RUN`` is another run's, and
the page clears what it showed when the run changes.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import secrets
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote

from runtime.errors import missing_dependency
from runtime.web.access import COOKIE, Access, check_bind, is_loopback, read_token
from runtime.web.feeds import Feed, Full

STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
WRITE_TIMEOUT_S = 5.0  # a frame not taken by a viewer within this is a stalled viewer: dropped
STREAM_SNDBUF = 256 * 1024  # a stream's socket buffer: a viewer that stops reading is noticed within seconds
BOUNDARY = "jrcframe"
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self'; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
DEFAULT_FPS = 5.0
DEFAULT_VIEWERS = 4
MAX_NUMBER = 2 ** 53 - 1  # the largest whole number the page's JavaScript holds exactly
MAX_EVENTS = 500  # the most events one answer lists


def _import() -> Any:
    try:
        from aiohttp import web
    except ImportError:
        raise missing_dependency("aiohttp", "box") from None
    return web


class WebView:
    """The server: started at construction (a port in use is a one-line error), pointed at the loop's
    state with :meth:`attach`, stopped with :meth:`close`."""

    name = "web"

    def __init__(self, address: str, token_file: str | None = None, fps: float = DEFAULT_FPS,
                 viewers: int = DEFAULT_VIEWERS, quality: int = 80, max_width: int | None = 960,
                 write_timeout: float = WRITE_TIMEOUT_S) -> None:
        from runtime.metrics import parse_address

        self.web = _import()
        self.address = address
        self.host, self.port = parse_address(address, "--web", 8090)
        check_bind(self.host, address, token_file)
        self.access = Access(read_token(token_file) if token_file else None)
        self.fps, self.max_viewers, self.quality, self.max_width = fps, viewers, quality, max_width
        self.write_timeout = write_timeout
        self.run = secrets.token_hex(8)  # this run's cursors and frame numbers are its own
        self.state: Any = None
        self.metrics: Any = None
        self.feeds: dict[str, Feed] = {}
        self.refused = 0  # requests without the token (or for another host)
        self._clips_pending: set[str] = set()  # events listed before their clip was whole
        self._static = {p.name: p.read_bytes() for p in STATIC.iterdir() if p.suffix in STATIC_TYPES}
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix="jrc-web-jpeg")
        self._loop = asyncio.new_event_loop()
        self._closing: asyncio.Event | None = None
        self._runner: Any = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        logging.getLogger("aiohttp").addHandler(logging.NullHandler())  # its own log lines stay off stderr
        self._thread = threading.Thread(target=self._serve, name="jrc-web", daemon=True)
        self._thread.start()
        self._started.wait(30.0)
        if self._error is not None:
            self._encoder.shutdown(wait=False)
            from runtime.metrics import listen_error

            raise listen_error("--web", address, self.host, self.port, self._error) from None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def attach(self, state: Any, metrics: Any = None) -> None:
        """Read ``state`` (a :class:`runtime.camera_state.BoxState`); serve ``metrics`` (a
        :class:`runtime.metrics.Metrics`) at /metrics."""
        self.state, self.metrics = state, metrics

    # --- the server's thread -------------------------------------------------------------
    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as e:  # the port is taken, the address does not exist: said by __init__
            self._error = e
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        web = self.web
        self._closing = asyncio.Event()

        @web.middleware
        async def guard(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
            return await self._guard(request, handler)

        app = web.Application(middlewares=[guard])
        r = app.router
        r.add_get("/", self._index)
        r.add_get("/static/{name}", self._file)
        r.add_get("/api/cameras", self._cameras)
        r.add_get("/api/tracks", self._tracks)
        r.add_get("/api/events", self._events)
        r.add_get("/api/events/{id}/{what}", self._event_media)
        r.add_get("/api/cameras/{name}/frame.jpg", self._frame)
        r.add_get("/stream/{name}.mjpg", self._stream)
        r.add_get("/metrics", self._metrics)
        app.on_shutdown.append(self._on_shutdown)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()

    async def _on_shutdown(self, app: Any) -> None:
        assert self._closing is not None
        self._closing.set()
        for feed in self.feeds.values():
            feed.stop()

    def close(self) -> None:
        """Stop serving (streams end), then the thread."""
        if self._runner is not None and self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            try:
                fut.result(10.0)
            except Exception:  # a handler that would not end: the loop stops all the same
                pass
            self._runner = None
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10.0)
        self._encoder.shutdown(wait=False)

    def report(self) -> dict[str, Any]:
        feeds = [f.report() for f in self.feeds.values()]
        return {"address": f"{self.host}:{self.port}", "token": self.access.needs_token,
                "frames_encoded": sum(f["encoded"] for f in feeds),
                "viewers_refused": sum(f["refused"] for f in feeds),
                "viewers_stalled": sum(f["stalled"] for f in feeds), "requests_refused": self.refused}

    # --- every request -------------------------------------------------------------------
    async def _guard(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        """The token (or the loopback Host), then the handler; security headers on every answer."""
        web = self.web
        why = self.access.refusal(request.headers, request.cookies, request.query)
        if why is not None:
            self.refused += 1
            status = 401 if self.access.needs_token else 403
            resp: Any = web.Response(status=status, text=f"{status}: {why}\n", content_type="text/plain")
        elif request.path == "/" and "token" in request.query:
            resp = web.Response(status=303, headers={"Location": "/"})  # the token leaves the address bar
            resp.set_cookie(COOKIE, request.query["token"], httponly=True, samesite="Lax", path="/")
        else:
            try:
                resp = await handler(request)
            except web.HTTPException as e:
                _secure(e.headers)
                raise
        _secure(resp.headers)
        return resp

    # --- the page ------------------------------------------------------------------------
    async def _index(self, request: Any) -> Any:
        return self._static_answer("index.html")

    async def _file(self, request: Any) -> Any:
        return self._static_answer(request.match_info["name"])

    def _static_answer(self, name: str) -> Any:
        body = self._static.get(name)  # a name of the shipped files, never a path
        if body is None:
            raise self.web.HTTPNotFound(text="404: no such file\n")
        ctype = STATIC_TYPES[Path(name).suffix]
        return self.web.Response(body=body, content_type=ctype, charset="utf-8" if ctype != "image/svg+xml" else None)

    # --- JSON ----------------------------------------------------------------------------
    def _json(self, data: Any) -> Any:
        from runtime.sinks import to_json

        return self.web.Response(text=to_json(data), content_type="application/json")

    def _states(self) -> list[Any]:
        return self.state.cameras() if self.state is not None else []

    async def _cameras(self, request: Any) -> Any:
        out = []
        for c in self._states():
            d = c.counters()
            feed = self.feeds.get(c.name)
            d["viewers"] = feed.viewers if feed is not None else 0
            d["frame_url"] = f"/api/cameras/{quote(c.name)}/frame.jpg"
            d["stream_url"] = f"/stream/{quote(c.name)}.mjpg"
            out.append(d)
        return self._json({"cameras": out, "web_fps": self.fps, "max_viewers": self.max_viewers, "run": self.run})

    async def _tracks(self, request: Any) -> Any:
        out = []
        for c in self._states():
            d = c.counters()
            out.append({"camera": c.name, "threshold": d["threshold"], "tracks": c.tracks()})
        return self._json({"cameras": out, "run": self.run})

    async def _events(self, request: Any) -> Any:
        since = self._since(self._param(request, "since", "0"))
        limit = self._whole(request, "limit", 100, low=1, high=MAX_EVENTS)
        if isinstance(since, int) and not self._this_run(request):
            since = 0  # another run's cursor
        self._announce_clips()
        events = self.state.events(0 if isinstance(since, float) else since, limit=MAX_EVENTS) if self.state else []
        if isinstance(since, float):
            events = [e for e in events if _changed_at(e) >= since]
        cursor = max([e["seq"] for e in events], default=since if isinstance(since, int) else 0)
        return self._json({"events": [self._public_event(e) for e in events[:limit]], "cursor": cursor,
                           "run": self.run})

    def _announce_clips(self) -> None:
        """A clip is whole some seconds after its event closed (the frames after it): an event
        listed while its clip was pending is then renumbered once, so a reader asking for changes
        learns that it has a clip."""
        recent = set()
        for c in self._states():
            for e in c.events():
                recent.add(e["id"])
                if e["id"] in self._clips_pending and _is_file(e.get("clip")):
                    self._clips_pending.discard(e["id"])
                    c.event_changed(e["id"])
        self._clips_pending &= recent

    def _since(self, text: str) -> int | float:
        """``since``: a cursor (a whole number from an earlier answer) or an ISO 8601 time (→ epoch seconds)."""
        if text.isascii() and text.isdigit():
            return self._number("since", text, 0, MAX_NUMBER)
        try:
            t = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return t.timestamp() if t.tzinfo is not None else t.astimezone().timestamp()
        except (ValueError, OverflowError, OSError):  # not a time, or one beyond what this machine converts
            raise self.web.HTTPBadRequest(text="400: since must be a cursor (a whole number) or an ISO 8601 "
                                               "time (years 2 to 9998)\n") from None

    # --- query parameters ----------------------------------------------------------------
    def _param(self, request: Any, name: str, default: str) -> str:
        """The query's one value of ``name`` (``default`` when absent); given twice is a 400."""
        values = request.query.getall(name, [])
        if len(values) > 1:
            raise self.web.HTTPBadRequest(text=f"400: {name} is given more than once\n")
        return values[0] if values else default

    def _whole(self, request: Any, name: str, default: int, low: int = 0, high: int = MAX_NUMBER) -> int:
        return self._number(name, self._param(request, name, str(default)), low, high)

    def _number(self, name: str, text: str, low: int, high: int) -> int:
        """``text`` as a whole number from ``low`` to ``high`` (plain digits only), else a 400."""
        if not (text.isascii() and text.isdigit()) or len(text) > len(str(high)) or not low <= int(text) <= high:
            raise self.web.HTTPBadRequest(text=f"400: {name} must be a whole number from {low} to {high}\n")
        return int(text)

    def _this_run(self, request: Any) -> bool:
        """Whether the numbers in the request are this run's (they are unless ``run`` names another)."""
        return self._param(request, "run", self.run) == self.run

    def _public_event(self, e: dict[str, Any]) -> dict[str, Any]:
        """An event as the page sees it: its pictures as URLs of this server (None when there is none)."""
        base = f"/api/events/{quote(e['id'])}"
        cam = self.state.camera(e["camera"]) if self.state is not None else None
        has_shot = (cam is not None and cam.event_snapshot(e["id"]) is not None) or _is_file(e.get("snapshot"))
        clip = _is_file(e.get("clip"))
        if e.get("clip") and not clip:
            self._clips_pending.add(e["id"])
        return {**e, "snapshot": f"{base}/snapshot.jpg" if has_shot else None,
                "crop": f"{base}/crop.jpg" if _is_file(e.get("crop")) else None,
                "clip": f"{base}/clip" if clip else None, "clip_pending": bool(e.get("clip")) and not clip}

    async def _event_media(self, request: Any) -> Any:
        web = self.web
        found = self.state.find_event(request.match_info["id"]) if self.state is not None else None
        what = request.match_info["what"]
        if found is None or what not in ("snapshot.jpg", "crop.jpg", "clip"):
            raise web.HTTPNotFound(text="404: no such event (only recent events are kept)\n")
        cam, e = found
        if what == "snapshot.jpg":
            jpeg = cam.event_snapshot(e["id"])
            if jpeg is not None:
                return web.Response(body=jpeg, content_type="image/jpeg")
        path = e.get({"snapshot.jpg": "snapshot", "crop.jpg": "crop", "clip": "clip"}[what])
        if not _is_file(path):
            raise web.HTTPNotFound(text=f"404: this event has no {what.split('.')[0]} (yet)\n")
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return web.FileResponse(path, headers={"Content-Type": ctype})

    async def _metrics(self, request: Any) -> Any:
        if self.metrics is None:
            raise self.web.HTTPNotFound(text="404: metrics are off (run with --metrics)\n")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, self.metrics.registry)
        resp = self.web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    # --- frames --------------------------------------------------------------------------
    def _feed(self, name: str) -> Feed:
        state = self.state.camera(name) if self.state is not None else None
        if state is None:
            raise self.web.HTTPNotFound(text="404: no such camera\n")
        feed = self.feeds.get(name)
        if feed is None:
            feed = self.feeds[name] = Feed(state, self._encoder, self.fps, self.max_viewers, self.quality,
                                           self.max_width)
        return feed

    def _busy(self, name: str) -> Any:
        return self.web.HTTPServiceUnavailable(text=f"503: camera {name} has {self.max_viewers} viewers, as many as "
                                                    "it takes (--web-viewers); try again later\n",
                                               headers={"Retry-After": "5"})

    async def _frame(self, request: Any) -> Any:
        """The page's frames: one JPEG newer than ``after``, as soon as there is one."""
        web = self.web
        name = request.match_info["name"]
        feed = self._feed(name)
        after = self._whole(request, "after", 0)
        if not self._this_run(request):
            after = 0  # another run's frame number
        try:
            with feed.viewer():
                got = await self._until_closing(feed.next(after))
        except Full:
            raise self._busy(name) from None
        if got is None:
            return web.Response(status=204, headers={"X-Run": self.run})
        seq, jpeg = got
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg", "X-Frame-Seq": str(seq), "X-Run": self.run,
                                           **HEADERS})
        resp.content_length = len(jpeg)
        await resp.prepare(request)
        if not await self._send(request, resp, feed, jpeg):
            return resp
        await resp.write_eof()
        return resp

    async def _stream(self, request: Any) -> Any:
        """MJPEG: every new frame of the camera (at most the feed's rate) until the viewer leaves."""
        web = self.web
        name = request.match_info["name"]
        feed = self._feed(name)
        try:
            with feed.viewer():
                resp = web.StreamResponse(headers={
                    "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}", **HEADERS})
                sock = request.transport.get_extra_info("socket") if request.transport else None
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
                await resp.prepare(request)
                seq = 0
                while True:
                    got = await self._until_closing(feed.next(seq, timeout=1.0))
                    if self._closing is not None and self._closing.is_set():
                        break
                    if got is None:
                        continue
                    seq, jpeg = got
                    part = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                            ).encode("ascii") + jpeg + b"\r\n"
                    if not await self._send(request, resp, feed, part):
                        break
                return resp
        except Full:
            raise self._busy(name) from None

    async def _send(self, request: Any, resp: Any, feed: Feed, data: bytes) -> bool:
        """Write ``data``; a viewer that has not taken it within the write timeout is dropped."""
        try:
            await asyncio.wait_for(resp.write(data), self.write_timeout)
            return True
        except asyncio.TimeoutError:
            feed.stalled += 1
            if request.transport is not None:
                request.transport.abort()
            return False
        except (ConnectionError, RuntimeError):  # the viewer left (aiohttp: ClientConnectionResetError)
            return False

    async def _until_closing(self, waiting: Awaitable[Any]) -> Any:
        """``waiting``'s result, or None as soon as the server is shutting down."""
        assert self._closing is not None
        task = asyncio.ensure_future(waiting)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            done, _ = await asyncio.wait({task, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
        if task in done:
            return task.result()
        task.cancel()
        return None


def _secure(headers: Any) -> None:
    for k, v in HEADERS.items():
        headers.setdefault(k, v)


def _is_file(path: Any) -> bool:
    return isinstance(path, str) and bool(path) and os.path.isfile(path)


def _changed_at(e: dict[str, Any]) -> float:
    """When an event last changed (its end, else its start), as epoch seconds."""
    stamp = e.get("end") or e.get("start")
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else 0.0
    except ValueError:
        return 0.0


def serve_address(view: WebView) -> str:
    """What to open: the URL, and for a loopback view how to reach it from another machine."""
    if is_loopback(view.host):
        from runtime.web.access import tunnel

        return f"{view.url} (this machine only; from another: {tunnel(view.host, view.port)})"
    return f"{view.url} (open /?token=TOKEN once; the token is in --web-token-file)"
