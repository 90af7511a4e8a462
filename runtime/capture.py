"""Opening OpenCV captures without hanging or chattering: bounded in time, logs silenced, GStreamer
detected. Used by :mod:`runtime.sources` (and the CLI, which silences the logs before any video
opens)."""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Callable

import cv2

from runtime.errors import UserError
from runtime.media import decoder_refusal


def quiet_video_logs() -> None:
    """Silence OpenCV's and FFmpeg's own stderr chatter, so a failure is the CLI's one line.

    OpenCV's own ERROR lines go too ("Could not open codec", a failed writer's backends): every
    failure they describe is reported by the runtime in its one line. FFmpeg's level must be set
    before OpenCV first opens a video. Respects OPENCV_LOG_LEVEL / OPENCV_FFMPEG_LOGLEVEL when the
    user has set them.
    """
    if "OPENCV_LOG_LEVEL" not in os.environ and hasattr(cv2, "utils") and hasattr(cv2.utils, "logging"):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def timeouts(open_s: float, read_s: float) -> list[int]:
    return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_s * 1000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_s * 1000)]


def bounded(fn: Callable[[], cv2.VideoCapture], what: str, seconds: float) -> cv2.VideoCapture:
    """Run a capture opener in a helper thread so an unresponsive device cannot hang the run."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["cap"] = fn()
        except cv2.error as e:  # OpenCV refusing the address or file: said as such, not as a timeout
            box["error"] = e

    t = threading.Thread(target=run, daemon=True, name="source-open")
    t.start()
    t.join(seconds)
    if "error" in box:
        raise UserError(f"{what}: could not be opened: {decoder_refusal(box['error'])}")
    if t.is_alive() or "cap" not in box:
        raise UserError(f"{what}: did not open within {seconds:g} s; check that it is reachable "
                        "(address, network, camera connected)")
    return box["cap"]


def capture_opener(spec: str, kind: str, open_s: float, read_s: float) -> Callable[[], cv2.VideoCapture]:
    if kind == "camera":
        dev: int | str = int(spec) if spec.isdigit() else spec
        return lambda: cv2.VideoCapture(dev)
    if kind == "gstreamer":
        return lambda: cv2.VideoCapture(spec, cv2.CAP_GSTREAMER)
    return lambda: cv2.VideoCapture(spec, cv2.CAP_FFMPEG, timeouts(open_s, read_s))


def has_gstreamer() -> bool:
    info = cv2.getBuildInformation()
    m = re.search(r"GStreamer:\s*(\S+)", info)
    return bool(m) and m.group(1).upper() != "NO"
