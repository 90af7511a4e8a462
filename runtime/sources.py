"""Where frames come from: camera index, video file, URL, GStreamer pipeline, image, folder, glob.

``open_source(spec)`` picks the kind from the string (an existing file is a file, whatever its
name holds). Files yield every frame (or every ``stride``-th); live sources (cameras, URLs,
pipelines) are read by a grabber thread that keeps only the newest frame, so a slow consumer never
blocks the camera: frames it did not take are dropped and counted. Opening and reading are bounded
in time; a stream that fails is reopened with backoff up to ``max_reconnects`` times before the run
ends with :data:`EXIT_SOURCE`. A URL that serves a file (its frame count is known) is read frame
by frame like a local file, every frame, unless ``live="yes"`` (then it is played like a camera,
stale frames dropped and counted, and it ends at the file's end); a URL that serves a stream (no
frame count: RTSP, an MJPEG camera) is live. ``live="yes"`` applies to one video file, a URL or a
camera: a folder or glob is read file by file, and refused with it.
What a spec names, and :func:`reads` (would a source read this path?), live in
:mod:`runtime.source_specs`.
"""

from __future__ import annotations

import glob
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from runtime.capture import bounded, capture_opener, has_gstreamer, timeouts
from runtime.errors import EXIT_SOURCE, UserError
from runtime.media import (
    IMAGE_EXTS,
    MEDIA_EXTS,
    VIDEO_EXTS,
    check_content_matches_name,
    container_complete,
    decode_image,
    decoder_refusal,
    read_image,
)
from runtime.preprocess import as_bgr8
from runtime.redact import shown
from runtime.source_specs import folder_files, is_glob, is_url, live_kind, media_files, not_media

MAX_DAMAGED_RUN = 25  # consecutive undecodable frames before a file is considered ended
BACKOFF_S, MAX_BACKOFF_S = 0.5, 10.0  # live reconnects: first wait, doubled per failure up to the max
STALL_GRACE_S = 2.0  # a live read may overrun its timeout by this much before the watchdog fires


class SourceLost(UserError):
    """A live source stopped delivering frames and could not be reopened."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_SOURCE)


@dataclass
class Frame:
    image: np.ndarray | None  # BGR uint8; None once nothing downstream needs the pixels
    index: int  # frame number within its item (file frame number, counting skipped ones)
    time: float  # seconds: position in a file, or since the start for live sources
    source: str  # the item: file path, URL, camera
    item: int  # ordinal of the item (folders and globs hold several)
    read_at: float = 0.0  # perf_counter() when the frame loop took it from the source (latency)


@dataclass
class SourceStats:
    dropped: int = 0  # live frames replaced by a newer one before they were taken
    damaged: int = 0  # frames a file could not decode, skipped (good frames followed, or the file is complete)
    missing: int = 0  # frames a file's header announced that were not there (truncated, or not told from damaged)
    reconnects: int = 0
    skipped: list[str] = field(default_factory=list)  # items of a folder/glob that could not be read
    not_media: list[str] = field(default_factory=list)  # files of a folder/glob not read: not images or videos


def named(spec: str) -> str:
    """How outputs name a source or one of its files: a URL or pipeline with its credentials hidden
    (:func:`runtime.redact.shown`), a local path as it is (``--save`` maps files by their path)."""
    pipeline = "!" in spec and not os.path.exists(spec)
    return shown(spec) if is_url(spec) or pipeline else spec


class Source:
    """Iterate frames; ``close()`` stops reading (from any thread) and releases the device."""

    live = False
    fps: float | None = None

    def __init__(self, spec: str) -> None:
        self.spec = named(spec)  # what every output shows; the real address opens it (never shown)
        self.stats = SourceStats()
        self._stop = threading.Event()

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()


# --- files ----------------------------------------------------------------------------------
def _undecodable_video(path: str) -> str:
    return f"{path}: cannot be decoded as a video (damaged, truncated, or not a video); check the file or re-encode it"


def _no_frame(path: str) -> str:
    return f"{path}: no frame could be decoded (damaged, truncated, or not a video); check the file or re-encode it"


class FileSource(Source):
    """One or more files (an image, a video, a folder's or a glob's images and videos), in order."""

    def __init__(self, spec: str, paths: list[str], stride: int = 1, skip_bad: bool = False,
                 decode_threads: int = 0) -> None:
        """``decode_threads``: FFmpeg's threads per video (0: its own choice, one per core)."""
        super().__init__(spec)
        self.paths = paths
        self.stride = max(1, int(stride))
        self.skip_bad = skip_bad
        self.decode_threads = max(0, int(decode_threads))
        self.fps = self._probe_fps()

    def _probe_fps(self) -> float | None:
        for p in self.paths[:1]:
            if Path(p).suffix.lower() in VIDEO_EXTS:
                try:
                    cap = cv2.VideoCapture(p, cv2.CAP_FFMPEG)
                    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
                    cap.release()
                except cv2.error:
                    return None  # reading the file says what is wrong with it
                return fps / self.stride if fps and 0 < fps < 1000 else None
        return None

    def _capture(self, path: str) -> cv2.VideoCapture:
        if os.path.getsize(path) == 0:
            raise UserError(f"{path}: the file is empty (0 bytes); nothing to decode")
        check_content_matches_name(path)
        return cv2.VideoCapture(path, cv2.CAP_FFMPEG, self.capture_params())

    def __iter__(self) -> Iterator[Frame]:
        for item, path in enumerate(self.paths):
            if self._stop.is_set():
                return
            try:
                yield from self._item(path, item)
            except UserError as e:
                if not self.skip_bad:
                    raise
                self.stats.skipped.append(named(path))
                print(f"jrc-detect: warning: skipped {e}", file=sys.stderr)

    def capture_params(self) -> list[int]:
        prop = getattr(cv2, "CAP_PROP_N_THREADS", None)  # OpenCV >= 4.6
        return [prop, self.decode_threads] if prop is not None and self.decode_threads else []

    def _item(self, path: str, item: int) -> Iterator[Frame]:
        """One file's frames. OpenCV raises on some files where a damaged one only fails to decode
        (a header declaring too many pixels, a codec disabled): the same one-line error here."""
        try:
            if Path(path).suffix.lower() in IMAGE_EXTS:
                yield from self._image(path, item)
            else:
                yield from self._video(path, item)
        except cv2.error as e:
            raise UserError(f"{path}: cannot be decoded: {decoder_refusal(e)}") from None

    def _image(self, path: str, item: int) -> Iterator[Frame]:
        check_content_matches_name(path)
        yield Frame(decode_image(path), 0, 0.0, named(path), item)

    def _video(self, path: str, item: int) -> Iterator[Frame]:
        cap = self._capture(path)
        try:
            if not cap.isOpened():
                if not is_url(path) and Path(path).suffix.lower() not in VIDEO_EXTS and read_image(path) is not None:
                    yield from self._image(path, item)
                    return
                raise UserError(_undecodable_video(path))
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
            name = named(path)  # once per file, not per frame
            index, bad_run, produced = 0, 0, 0
            while not self._stop.is_set():
                if not cap.grab():
                    if total and index < total - 1 and bad_run < MAX_DAMAGED_RUN:
                        bad_run += 1  # damaged if a good frame follows, missing if the file ends
                        index += 1
                        continue
                    break
                self.stats.damaged += bad_run
                bad_run = 0
                if index % self.stride == 0:
                    ok, img = cap.retrieve()
                    if ok and img is not None:
                        produced += 1
                        yield Frame(as_bgr8(img), index, index / fps if fps else float(index), name, item)
                    else:
                        self.stats.damaged += 1
                index += 1
            read = index - bad_run
            if total and read < total and produced and not self._stop.is_set():
                self._unread(path, total, total - read)
            if produced == 0 and not self._stop.is_set():
                raise UserError(_no_frame(path))
        finally:
            cap.release()


    def _unread(self, path: str, total: int, unread: int) -> None:
        """Frames the header announces that were never read: damaged in a file that is complete (its
        container's sizes end at the file's end), missing from a truncated one or when that cannot
        be told."""
        complete = None if is_url(path) else container_complete(path)
        if complete:
            self.stats.damaged += unread
            why = "damaged: the file is complete, the frames are there but do not decode"
        else:
            self.stats.missing += unread
            why = ("truncated: the file ends before the size its container declares" if complete is False
                   else "damaged or truncated")
        print(f"jrc-detect: warning: {named(path)}: {unread} of the {total} frames its header announces could not be "
              f"read ({why})", file=sys.stderr)


class UrlFileSource(FileSource):
    """A URL read frame by frame like a file (``--live no``): every frame (or every ``stride``-th),
    to the end of what the server sends; opening and each read are bounded by the timeouts."""

    def __init__(self, spec: str, stride: int = 1, open_timeout: float = 10.0, read_timeout: float = 5.0,
                 decode_threads: int = 0) -> None:
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        super().__init__(spec, [spec], stride, decode_threads=decode_threads)

    def _probe_fps(self) -> float | None:
        self._first = self._capture(self.paths[0])  # opened once (the real address): the first read uses it
        if not self._first.isOpened():
            self._first.release()
            raise UserError(f"{self.spec}: the stream could not be opened (unreachable, or an unsupported "
                            "format); check the address")
        fps = self._first.get(cv2.CAP_PROP_FPS)
        return fps / self.stride if fps and 0 < fps < 1000 else None

    def _capture(self, path: str) -> cv2.VideoCapture:
        first, self._first = getattr(self, "_first", None), None
        if first is not None:
            return first
        params = timeouts(self.open_timeout, self.read_timeout) + self.capture_params()
        return bounded(lambda: cv2.VideoCapture(path, cv2.CAP_FFMPEG, params), path, self.open_timeout + 1.0)

    def close(self) -> None:
        super().close()
        first, self._first = getattr(self, "_first", None), None
        if first is not None:
            first.release()


# --- live -----------------------------------------------------------------------------------
class LiveSource(Source):
    """A camera, URL or pipeline read by a grabber thread that keeps only the newest frame."""

    live = True

    def __init__(self, spec: str, kind: str, max_reconnects: int = 5, open_timeout: float = 10.0,
                 read_timeout: float = 5.0, pace: float | None = None,
                 opener: Callable[[], cv2.VideoCapture] | None = None, backoff: float = BACKOFF_S,
                 retry_open: bool = False) -> None:
        """``opener`` returns a new capture (default: OpenCV for ``kind``); reconnects call it again,
        after ``backoff`` seconds, doubling per failed attempt (at most :data:`MAX_BACKOFF_S`).
        ``retry_open`` (the camera box): the first open happens in the grabber thread and a camera
        that is not up yet is retried like a lost one, instead of failing here."""
        super().__init__(spec)
        self.kind = kind
        self.max_reconnects = max(0, int(max_reconnects))
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.pace = pace  # a file forced live is read at its own frame rate, like a camera
        self.backoff = backoff
        self._opener = opener or capture_opener(spec, kind, open_timeout, read_timeout)
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, int, float] | None = None
        self._ended: UserError | None | bool = None  # True: clean end; UserError: gave up
        self._reading_since: float | None = None  # monotonic start of the grabber's current read
        self.up = False  # a capture is open and delivering
        self.frames_total: int | None = None
        cap = None if retry_open else self._open()
        if cap is not None:
            self._describe(cap)
        self._thread = threading.Thread(target=self._grab, args=(cap,), daemon=True, name="source-grab")

    def _describe(self, cap: cv2.VideoCapture) -> None:
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        # a URL that serves a file announces its frame count (a stream announces none): reading
        # past its last frame is its end, not a lost stream to reopen (and replay from the start)
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT) if self.kind == "url" else 0.0
        self.frames_total = int(count) if count and 0 < count < 2**31 else None

    def _open(self) -> cv2.VideoCapture:
        cap = bounded(self._opener, self.spec, self.open_timeout + 1.0)
        if not cap.isOpened():
            cap.release()
            what = "camera" if self.kind == "camera" else "stream"
            raise UserError(f"{self.spec}: the {what} could not be opened (not connected, busy, unreachable, "
                            "or an unsupported format); check the device or address")
        return cap

    def _grab(self, cap: cv2.VideoCapture | None) -> None:
        index, start, failures = 0, time.monotonic(), 0
        if cap is None:
            cap = self._first_open()
        try:
            while cap is not None and not self._stop.is_set():
                self._reading_since = time.monotonic()
                ok, img = cap.read()
                self._reading_since = None
                self.up = bool(ok and img is not None)
                if not ok or img is None:
                    at_end = self._at_end(cap)
                    cap.release()
                    if self.kind == "file" or at_end:
                        cap = None
                        self._finish(UserError(_no_frame(self.spec)) if self.kind == "file" and not index else True)
                        return
                    cap = self._reconnect(failures)
                    failures += 1
                    if cap is not None and self.frames_total and index:
                        cap.set(cv2.CAP_PROP_POS_FRAMES, index)  # a file: go on where it broke off
                    continue
                failures = 0
                with self._cond:
                    if self._latest is not None:
                        self.stats.dropped += 1
                    self._latest = (img, index, time.monotonic() - start)
                    self._cond.notify()
                index += 1
                if self.pace:
                    time.sleep(max(0.0, start + index / self.pace - time.monotonic()))
        except cv2.error as e:  # a dead grabber would leave the run waiting for the stall watchdog
            self._reading_since = None
            lost = UserError if self.kind == "file" else SourceLost
            self._finish(lost(f"{self.spec}: a read failed: {decoder_refusal(e)}; results so far are written"))
        finally:
            if cap is not None:
                cap.release()

    def _first_open(self) -> cv2.VideoCapture | None:
        """Open in the grabber thread (``retry_open``), retried with the reconnect policy."""
        for attempt in range(self.max_reconnects + 1):
            if attempt and self._stop.wait(min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF_S)):
                return None
            if attempt:
                self.stats.reconnects += 1
            try:
                cap = self._open()
            except UserError as e:
                last = e
                continue
            self._describe(cap)
            return cap
        if not self._stop.is_set():
            self._finish(SourceLost(f"{last}; gave up after {self.max_reconnects} more attempts"))
        return None

    def _at_end(self, cap: cv2.VideoCapture) -> bool:
        """A URL serving a file has been read to its last frame (a missing last frame or two in
        the header's count is tolerated, as for local files)."""
        if not self.frames_total:
            return False
        return cap.get(cv2.CAP_PROP_POS_FRAMES) >= self.frames_total - 1

    def _reconnect(self, failures: int) -> cv2.VideoCapture | None:
        if failures >= self.max_reconnects:
            self._finish(SourceLost(f"{self.spec}: stopped delivering frames and {self.max_reconnects} "
                                    "reconnect attempts failed; results so far are written"))
            return None
        if self._stop.wait(min(self.backoff * 2 ** failures, MAX_BACKOFF_S)):
            return None
        self.stats.reconnects += 1
        try:
            cap = bounded(self._opener, self.spec, self.open_timeout + 1.0)
        except UserError:
            return cv2.VideoCapture()  # not opened: the next read fails and counts as a failure
        return cap

    def _finish(self, how: UserError | bool) -> None:
        with self._cond:
            self._ended = how
            self._cond.notify()

    def __iter__(self) -> Iterator[Frame]:
        self._thread.start()
        while True:
            with self._cond:
                while self._latest is None and self._ended is None and not self._stop.is_set():
                    self._cond.wait(0.1)
                    self._check_stalled()
                if self._latest is not None:
                    img, index, t = self._latest
                    self._latest = None
                elif isinstance(self._ended, UserError):
                    raise self._ended
                else:
                    return
            yield Frame(as_bgr8(img), index, t, self.spec, 0)

    def _check_stalled(self) -> None:
        """The watchdog for drivers that ignore the read timeout (a camera or pipeline can hang
        in a read forever): a read that has not returned in ``read_timeout`` + a grace period
        ends the run like a lost source, instead of stalling it."""
        since = self._reading_since
        limit = self.read_timeout + STALL_GRACE_S
        if since is not None and time.monotonic() - since > limit and self._ended is None:
            self._ended = SourceLost(f"{self.spec}: a read has not returned for {limit:g} s (the device or "
                                     "stream hangs; --timeout sets the limit); results so far are written")

    def close(self) -> None:
        first = not self._stop.is_set()
        super().close()
        with self._cond:
            self._cond.notify_all()
        if first and self._thread.is_alive():  # a grabber stuck in a driver call is waited for once
            self._thread.join(self.read_timeout + 1.0)


# --- choosing -------------------------------------------------------------------------------
def open_source(spec: str, stride: int = 1, live: str = "auto", max_reconnects: int = 5,
                open_timeout: float = 10.0, read_timeout: float = 5.0, decode_threads: int = 0,
                retry_open: bool = False) -> Source:
    """A source for ``spec``; ``live`` is ``auto`` (cameras/URLs/pipelines), ``yes`` or ``no``.
    ``decode_threads``: FFmpeg threads per video file (0: FFmpeg's choice); ``retry_open``: a
    camera, URL or pipeline that does not open yet is retried in the background (the camera box)."""
    spec = str(spec).strip()
    if not spec:
        raise UserError("--source is empty; pass a camera index, file, folder, glob, URL or pipeline")
    kind = live_kind(spec)
    if kind is None:
        return _file_source(spec, stride, live, max_reconnects, open_timeout, read_timeout, decode_threads)
    if kind == "gstreamer" and not has_gstreamer():
        raise UserError(f"{spec}: looks like a GStreamer pipeline but this OpenCV was built without "
                        "GStreamer; use the OpenCV that comes with JetPack, or pass a camera index/file")
    if live == "no":
        if kind == "url":
            return UrlFileSource(spec, stride, open_timeout, read_timeout, decode_threads)
        raise UserError(f"{spec}: a {kind} source is always live; drop --live no")
    if kind == "url" and live == "auto":
        try:  # a file served over HTTP is read in full; a stream is live
            return _url_source(spec, stride, max_reconnects, open_timeout, read_timeout, decode_threads)
        except UserError:
            if not retry_open:
                raise
            # not up yet (the camera box): a stream that may come, retried in its own thread
    return LiveSource(spec, kind, max_reconnects, open_timeout, read_timeout, retry_open=retry_open)


def _url_source(spec: str, stride: int, max_reconnects: int, open_timeout: float, read_timeout: float,
                decode_threads: int) -> Source:
    """A URL with ``--live auto``: the file it serves read in full (its frame count is known), or,
    for a stream, a live source that starts from the capture already opened here."""
    src = UrlFileSource(spec, stride, open_timeout, read_timeout, decode_threads)  # opens the URL once
    count = src._first.get(cv2.CAP_PROP_FRAME_COUNT) if src._first is not None else 0.0
    if count and 0 < count < 2**31:
        return src
    opened = [src._first]
    src._first = None

    def opener() -> cv2.VideoCapture:  # the open capture first; reconnects open a new one
        return opened.pop() if opened else capture_opener(spec, "url", open_timeout, read_timeout)()

    return LiveSource(spec, "url", max_reconnects, open_timeout, read_timeout, opener=opener)


def _live_file(spec: str, open_timeout: float, read_timeout: float) -> LiveSource:
    """A video file played like a camera (``--live yes``), checked and opened as a file is: an
    empty, damaged or non-video file says so, not that a stream could not be reached."""
    src = FileSource(spec, [spec])
    cap = src._capture(spec)  # the empty-file and content checks
    if not cap.isOpened():
        cap.release()
        raise UserError(_undecodable_video(spec))
    opened = [cap]

    def opener() -> cv2.VideoCapture:  # the capture checked here; a file is never reopened
        return opened.pop() if opened else cv2.VideoCapture()

    return LiveSource(spec, "file", 0, open_timeout, read_timeout, pace=src.fps or 25.0, opener=opener)


def _warn_not_media(spec: str, others: list[str]) -> None:
    """One line for the files of a folder or glob that are not read, counted by suffix."""
    counts: dict[str, int] = {}
    for f in others:
        suffix = Path(f).suffix.lower() or "no suffix"
        counts[suffix] = counts.get(suffix, 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    listed = ", ".join(f"{k} ×{n}" for k, n in top[:6]) + (", …" if len(top) > 6 else "")
    print(f"jrc-detect: warning: {spec}: {len(others)} file(s) are not images or videos and were not read "
          f"({listed})", file=sys.stderr)


def _file_source(spec: str, stride: int, live: str, max_reconnects: int, open_timeout: float,
                 read_timeout: float, decode_threads: int = 0) -> Source:
    p = Path(spec)
    if live == "yes" and (p.is_dir() or is_glob(spec)):
        raise UserError(f"{spec}: --live yes plays one video file, URL or camera like a camera; a "
                        f"{'folder' if p.is_dir() else 'glob'} is read file by file, every frame: drop --live yes")
    if p.is_dir() or is_glob(spec):
        found = folder_files(spec) if p.is_dir() else sorted(glob.glob(spec, recursive=True))
        paths, others = media_files(found), not_media(found)
        if not paths and p.is_dir():
            raise UserError(f"{spec}: the folder (and its sub-folders) holds no images or videos "
                            f"({', '.join(sorted(MEDIA_EXTS))})")
        if not paths:
            raise UserError(f"{spec}: the pattern matches no image or video files")
        if others:
            _warn_not_media(spec, others)
        src = FileSource(spec, paths, stride, skip_bad=True, decode_threads=decode_threads)
        src.stats.not_media = others
        return src
    if not p.exists():
        raise UserError(f"{spec}: no such file or folder (nor a camera index, URL or pipeline)")
    if not p.is_file() or not os.access(spec, os.R_OK):
        raise UserError(f"{spec}: cannot be read; check the path and its permissions")
    if live == "yes":
        if p.suffix.lower() in IMAGE_EXTS:
            raise UserError(f"{spec}: an image cannot be a live source; drop --live yes")
        return _live_file(spec, open_timeout, read_timeout)
    return FileSource(spec, [spec], stride, decode_threads=decode_threads)
