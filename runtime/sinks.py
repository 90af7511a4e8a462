"""Where results go: JSON Lines per frame, a JSON summary, an annotated video, a window, the console.

Every sink is safe to stop at any moment: JSONL lines are flushed as written, the summary is
replaced atomically, and the video writer is released on close so the file plays.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from runtime.errors import UserError
from runtime.pipeline import Result

JSONL_SCHEMA = 1


def check_writable(path: str, flag: str) -> None:
    """Fail before the run starts if an output cannot be written (the folder must exist)."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise UserError(f"{flag} {path}: is a folder; pass a file name")
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UserError(f"{flag} {path}: not writable; check the permissions")


def _num(x: float | None, digits: int = 6) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), digits)


def frame_record(r: Result, ended: list[dict[str, Any]], threshold: float, dropped: int) -> dict[str, Any]:
    """One JSONL line (schema in the README)."""
    faces = []
    for f in r.faces:
        d = {"track": f.track, "box": [int(v) for v in f.box], "detected": f.detected,
             "face_score": _num(f.face_score, 4), "logit": _num(f.logit), "prob": _num(f.prob),
             "fake": bool(f.prob >= threshold)}
        if f.landmarks is not None:
            d["landmarks"] = [[round(float(v), 1) for v in p] for p in f.landmarks]
        if f.recon_error is not None:
            d["recon_error"] = _num(f.recon_error)
        faces.append(d)
    return {"schema": JSONL_SCHEMA, "source": r.frame.source, "frame": r.frame.index,
            "time": round(r.frame.time, 4), "no_face": not faces,
            "prob": _num(max(f.prob for f in r.faces)) if faces else None,
            "faces": faces, "tracks_ended": ended, "dropped": dropped}


class JsonlSink:
    """One JSON object per line, flushed per line; the file is created at the first line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._f: TextIO | None = None

    def write(self, record: dict[str, Any]) -> None:
        if self._f is None:
            self._f = open(self.path, "w", encoding="utf-8")
        self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def write_summary(path: str, summary: dict[str, Any]) -> None:
    """Write the summary atomically: a reader never sees half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# --- drawing ------------------------------------------------------------------------------
def score_color(prob: float) -> tuple[int, int, int]:
    """BGR from green (real, 0) through yellow to red (fake, 1)."""
    p = 0.0 if math.isnan(prob) else min(1.0, max(0.0, prob))
    return (0, int(round(255 * min(1.0, 2 * (1 - p)))), int(round(255 * min(1.0, 2 * p))))


def error_heatmap(err: np.ndarray, side: int, full_scale: float = 1.0) -> np.ndarray:
    """A reconstruction-error map (S×S, squared error) as a side×side BGR heat image.

    Fixed scale (RMS error ``full_scale`` in normalised units is the hottest colour) so maps
    of different faces and frames compare.
    """
    level = np.clip(np.sqrt(np.maximum(err, 0)) / full_scale, 0, 1)
    heat = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.resize(heat, (side, side), interpolation=cv2.INTER_LINEAR)


def annotate(r: Result, threshold: float) -> np.ndarray:
    """The frame with boxes coloured by score, labels, and error maps beside faces."""
    img = r.frame.image.copy()  # type: ignore[union-attr]
    h, w = img.shape[:2]
    thick = max(1, int(round(min(h, w) / 360)))
    scale = max(0.4, min(h, w) / 720)
    for f in r.faces:
        x, y, bw, bh = f.box
        color = score_color(f.prob)
        cv2.rectangle(img, (x, y), (x + bw, y + bh), color, thick)
        label = f"#{f.track} {'FAKE' if f.prob >= threshold else 'real'} {f.prob:.2f}"
        cv2.putText(img, label, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6, color, thick,
                    cv2.LINE_AA)
        if f.error_map is not None:
            side = max(16, min(bh, w // 3, h))
            left = x + bw + 4 if x + bw + 4 + side <= w else max(0, x - 4 - side)
            top = min(max(0, y), h - side)
            img[top: top + side, left: left + side] = error_heatmap(f.error_map, side)
            cv2.rectangle(img, (left, top), (left + side - 1, top + side - 1), color, 1)
    if not r.faces:
        cv2.putText(img, "no face", (10, int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8,
                    (200, 200, 200), thick, cv2.LINE_AA)
    return img


class VideoSink:
    """``--save out.mp4``: the annotated frames, at the source's rate; opened at the first frame."""

    def __init__(self, path: str, fps: float | None) -> None:
        self.path = path
        self.fps = fps if fps and fps > 0 else 25.0
        self._w: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, img: np.ndarray) -> None:
        if self._w is None:
            self._size = (img.shape[1], img.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.lower().endswith((".mp4", ".m4v", ".mov"))
                                              else "MJPG"))
            self._w = cv2.VideoWriter(self.path, fourcc, self.fps, self._size)
            if not self._w.isOpened():
                self._w = None
                raise UserError(f"--save {self.path}: OpenCV cannot write this video format; use .mp4 or .avi")
        if (img.shape[1], img.shape[0]) != self._size:  # folders of differently sized images
            img = cv2.resize(img, self._size, interpolation=cv2.INTER_AREA)
        self._w.write(img)

    def close(self) -> None:
        if self._w is not None:
            self._w.release()
            self._w = None


class ShowSink:
    """``--show``: a window; ``q`` or Esc ends the run."""

    def __init__(self, title: str = "jrc-detect") -> None:
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise UserError("--show needs an OpenCV with GUI support (this one is headless); install "
                            "opencv-python instead of opencv-python-headless, or use --save") from None

    def show(self, img: np.ndarray) -> bool:
        """Show a frame; False when the user asked to stop."""
        cv2.imshow(self.title, img)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


class Console:
    """The running status line on stderr: frames, FPS, latest score, drops."""

    def __init__(self, enabled: bool = True, every: float | None = None, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream = stream or sys.stderr
        self.tty = stream.isatty()
        self.every = every if every is not None else (0.5 if self.tty else 5.0)
        self.start = self._last = time.perf_counter()
        self._shown = False

    def update(self, frames: int, prob: float | None, dropped: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self._last < self.every and not force):
            return
        self._last = now
        fps = frames / max(now - self.start, 1e-9)
        score = "no face" if prob is None else f"p(fake) {prob:.2f}"
        line = f"frames {frames} | {fps:.1f} fps | {score} | dropped {dropped}"
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self.enabled and self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()
