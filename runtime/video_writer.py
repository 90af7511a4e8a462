"""Video files a browser plays: H.264 MP4 through PyAV where it is installed, else what OpenCV writes.

Browsers play H.264 in MP4 and VP8/VP9 in WebM; none plays MPEG-4 part 2 (``mp4v``), which is all
many OpenCV builds write into a .mp4. The pip wheel of OpenCV 4.x writes VP8/VP9 WebM but not
H.264; PyAV's wheels (``pip install av``, in the ``box`` extra) carry libx264. So:

- ``--save out.mp4`` (:class:`runtime.sinks.VideoSink`): H.264 through PyAV when it imports and has
  libx264; else OpenCV's ``avc1`` where that build has H.264; else MPEG-4 part 2, with a note that
  browsers will not play it and how to get H.264. ``.webm``: VP8 through OpenCV. ``.avi``: Motion
  JPEG (as before; no browser plays it).
- Event clips (:mod:`runtime.event_media`): the first of H.264 ``.mp4`` (PyAV), ``avc1`` ``.mp4``,
  VP8 ``.webm``, MPEG-4 part 2 ``.mp4`` that writes a probe frame here.

H.264 is encoded with x264's ``veryfast`` preset (about 11 ms a 720p frame on one AVX-512 core,
against 4.5 ms for ``mp4v`` and 31 ms for OpenCV's VP8), yuv420p (what every browser decodes; odd
sides are padded by one black pixel), with the index at the front (``+faststart``) so a browser
starts playing before it has the whole file.
"""

from __future__ import annotations

import contextlib
import functools
import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

H264 = "h264"  # through PyAV (libx264); every other codec name is an OpenCV fourcc
CLIP_CODECS = ((H264, ".mp4"), ("avc1", ".mp4"), ("VP80", ".webm"), ("mp4v", ".mp4"))
BROWSER_PLAYS = (H264, "avc1", "VP80", "VP90")
H264_PRESET = "veryfast"


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """OpenCV's FFmpeg writer prints to the process's stderr from C++ when it picks a container tag
    ("tag ... is not supported ... fallback"), past its log level: silenced while a writer opens
    (a few milliseconds, once per file)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.lru_cache(maxsize=1)
def pyav_h264() -> bool:
    """Whether PyAV is installed with an H.264 encoder (libx264)."""
    try:
        import av

        av.codec.Codec("libx264", "w")
    except Exception:  # not installed, or a build without libx264
        return False
    return True


class PyAvWriter:
    """H.264 in MP4 through PyAV, with cv2.VideoWriter's ``isOpened`` / ``write`` / ``release``;
    failures are OSError."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        import av

        self._av = av
        w, h = size
        self._pad = (w % 2, h % 2)
        rate = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(25)
        self._out: Any = None
        try:
            self._out = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
            self._stream = self._out.add_stream("libx264", rate=rate, options={"preset": H264_PRESET, "crf": "23"})
            self._stream.width, self._stream.height = w + self._pad[0], h + self._pad[1]
            self._stream.pix_fmt = "yuv420p"
        except (av.error.FFmpegError, ValueError) as e:
            if self._out is not None:
                self._out.close()
            raise OSError(f"H.264 writer: {e}") from None
        self._n = 0
        self._broken = False

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoWriter's name
        return self._out is not None

    def write(self, img: np.ndarray) -> None:
        if any(self._pad):
            img = cv2.copyMakeBorder(img, 0, self._pad[1], 0, self._pad[0], cv2.BORDER_CONSTANT, value=(0, 0, 0))
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
        frame.pts = self._n
        self._n += 1
        if self._broken:
            raise OSError("H.264 writer: an earlier frame could not be written")
        try:
            for packet in self._stream.encode(frame):
                self._out.mux(packet)
        except (self._av.error.FFmpegError, OSError) as e:
            self._broken = True  # the encoder and the muxer disagree now: never flush or encode again
            raise OSError(f"H.264 writer: {e}") from None

    def release(self) -> None:
        if self._out is None:
            return
        out, self._out = self._out, None
        try:
            if not self._broken:  # flushing an encoder whose packets could not be written crashes libav
                for packet in self._stream.encode():
                    out.mux(packet)
        except (self._av.error.FFmpegError, OSError) as e:
            self._broken = True
            raise OSError(f"H.264 writer: {e}") from None
        finally:
            try:
                out.close()
            except (self._av.error.FFmpegError, OSError) as e:
                if not self._broken:
                    raise OSError(f"H.264 writer: {e}") from None


def open_writer(path: str | Path, codec: str, fps: float, size: tuple[int, int]) -> Any:
    """A writer of ``codec`` (:data:`H264`, or an OpenCV fourcc such as ``VP80``); check ``isOpened()``."""
    if codec == H264:
        return PyAvWriter(path, fps, size)
    with quiet_native_stderr():
        return cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)


def writes(folder: Path, codec: str, suffix: str) -> bool:
    """Whether ``codec`` writes a frame here (a 64×64 probe in ``folder``, removed after)."""
    if codec == H264 and not pyav_h264():
        return False
    probe = folder / f".codec-probe-{os.getpid()}{suffix}"
    ok = False
    try:
        w = open_writer(probe, codec, 25.0, (64, 64))
        ok = w.isOpened()
        if ok:
            w.write(np.zeros((64, 64, 3), np.uint8))
        w.release()
    except (OSError, cv2.error):
        ok = False
    finally:
        if probe.exists():
            probe.unlink()
    return ok


def pick_clip_codec(folder: Path) -> tuple[str, str]:
    """(codec, suffix): the first of :data:`CLIP_CODECS` that writes here; ("", "") when none does."""
    for codec, suffix in CLIP_CODECS:
        if writes(folder, codec, suffix):
            return codec, suffix
    return "", ""


def save_codecs(path: str) -> tuple[str, ...]:
    """The codecs ``--save path`` tries, in order, by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in (".mp4", ".m4v", ".mov"):
        return ((H264,) if pyav_h264() else ()) + ("avc1", "mp4v")
    if suffix == ".webm":
        return ("VP80",)
    return ("MJPG",)


def describe(codec: str) -> str:
    return {H264: "H.264 (PyAV, libx264)", "avc1": "H.264 (OpenCV)", "VP80": "VP8", "VP90": "VP9",
            "mp4v": "MPEG-4 part 2", "MJPG": "Motion JPEG"}.get(codec, codec or "none")


MP4V_NOTE = ("MPEG-4 part 2, which browsers do not play (this OpenCV writes no H.264); install PyAV for H.264: "
             "pip install av (or 'jrc-edge[box]')")
