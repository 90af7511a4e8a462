"""Where results go: JSON Lines per frame, a JSON summary, an annotated video, a window, the console.

Every sink is safe to stop at any moment: JSONL lines are flushed as written, the summary is
replaced atomically (written directly into a device or FIFO, never renamed over it), and the video
writer is released on close so the file plays. Every JSON written is strict: NaN and infinities
become ``null``. A write that fails (disk full, permissions, read-only file system) is one
:class:`UserError` naming the output; what was written before it stays.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from runtime.errors import UserError
from runtime.fileio import is_special, make_folder, write_atomic
from runtime.pipeline import Result

JSONL_SCHEMA = 1


def check_writable(path: str, flag: str, folder: bool = False) -> None:
    """Fail before the run starts if an output cannot be written: its folder is created when missing
    (the rule of every tool, :func:`runtime.fileio.make_folder`) and must be writable, and the path
    must not be a folder unless ``folder`` (a ``--save`` folder of annotated images,
    :func:`runtime.save.save_kind`), which is then created itself. ``--save`` must be a regular file
    (a video is written with seeks; a device or FIFO would be replaced or fail at the end)."""
    p = Path(path)
    if folder:
        make_folder(p, flag, path)
        if not os.access(p, os.W_OK | os.X_OK):
            raise UserError(f"{flag} {path}: not writable (permissions or a read-only file system); check the "
                            "permissions or choose another path")
        return
    if p.is_dir() or str(path).endswith(os.sep):
        raise UserError(f"{flag} {path}: is a folder; pass a file name")
    folder = p.parent if str(p.parent) else Path(".")
    make_folder(folder, flag, path)
    if flag == "--save" and is_special(p):
        raise UserError(f"{flag} {path}: not a regular file (a device, FIFO or socket); a video is written "
                        "with seeks, pass a file name ending in .mp4 or .avi")
    special = p.exists() and is_special(p)  # written in place: its folder need not be writable
    if (not special and not os.access(folder, os.W_OK | os.X_OK)) or (p.exists() and not os.access(p, os.W_OK)):
        raise UserError(f"{flag} {path}: not writable (permissions or a read-only file system); check the "
                        "permissions or choose another path")


def write_failed(flag: str, path: str, e: OSError) -> UserError:
    """The one-line error for an output that could not be written (ENOSPC, EACCES, EROFS, ...)."""
    return UserError(f"{flag} {path}: could not be written ({e.strerror or e}); free space, fix the permissions "
                     "or choose another path; what was written before is kept")


def finite(x: Any) -> Any:
    """``x`` with every NaN and infinity (also in nested dicts and lists, numpy scalars) as None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    if isinstance(x, np.generic):
        return finite(x.item())
    return x


def to_json(obj: Any, indent: int | None = None) -> str:
    """Strict JSON (RFC 8259): NaN and ±inf are written as null, never as NaN/Infinity tokens."""
    return json.dumps(finite(obj), indent=indent, separators=None if indent else (",", ":"), allow_nan=False)


def _num(x: float | None, digits: int = 6) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), digits)


def frame_record(r: Result, ended: list[dict[str, Any]], threshold: float, dropped: int) -> dict[str, Any]:
    """One JSONL line (schema in the README)."""
    faces = []
    for f in r.faces:
        d = {"track": f.track, "box": [int(v) for v in f.box], "detected": f.detected,
             "scored": bool(getattr(f, "scored", True)), "face_score": _num(f.face_score, 4),
             "logit": _num(f.logit), "prob": _num(f.prob), "fake": bool(f.prob >= threshold)}
        if f.landmarks is not None:
            d["landmarks"] = [[round(float(v), 1) for v in p] for p in f.landmarks]
        if f.recon_error is not None:
            d["recon_error"] = _num(f.recon_error)
        if getattr(f, "recent", None) is not None:
            d["recent"] = f.recent
        faces.append(d)
    rec = {"schema": JSONL_SCHEMA, "camera": r.camera, "source": r.frame.source, "frame": r.frame.index,
           "time": round(r.frame.time, 4), "no_face": not faces,
           "prob": _frame_prob(r.faces) if faces else None,
           "faces": faces, "tracks_ended": ended, "dropped": dropped}
    if getattr(r, "recent", None) is not None:
        rec["recent"] = r.recent
    return rec


def _frame_prob(faces: list[Any]) -> float | None:
    """A frame's probability: its most suspicious face among those with a finite score (None if none)."""
    finite = [f.prob for f in faces if math.isfinite(f.prob)]
    return _num(max(finite)) if finite else None


@dataclass(frozen=True)
class Rotation:
    """JSONL files of a box that runs for months: start a new file when the current one has
    ``max_bytes`` or is ``max_age_s`` old; the previous ones are kept as ``FILE.1`` (newest) to
    ``FILE.<keep>``, older ones deleted."""

    max_bytes: int | None = None
    max_age_s: float | None = None
    keep: int = 10


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


class JsonlSink:
    """One JSON object per line, flushed per line; the file is created at the first line (an
    existing ``--events`` or rotated file is continued, see :meth:`_open`), and rotated by size or
    age when ``rotate`` says so."""

    def __init__(self, path: str, flag: str = "--jsonl", rotate: Rotation | None = None) -> None:
        self.path = path
        self.flag = flag
        self.rotate = rotate if rotate is not None and (rotate.max_bytes or rotate.max_age_s) else None
        self._f: TextIO | None = None
        self._size = 0
        self._opened = 0.0
        self._opened_once = False
        self.rotations = 0

    def write(self, record: dict[str, Any]) -> None:
        line = to_json(record) + "\n"
        try:
            if self._f is not None and self._due(len(line.encode("utf-8"))):
                self._rotate()
            if self._f is None:
                self._open()
            self._f.write(line)
            self._f.flush()
            self._size += len(line.encode("utf-8"))
        except OSError as e:
            raise write_failed(self.flag, self.path, e) from None

    def _open(self) -> None:
        """A new file, or at the run's start the existing one continued: an event log (``--events``)
        and a rotated output are a box's history, which a restart must not wipe; a plain ``--jsonl``
        is one run's frames and starts empty."""
        keep = not self._opened_once and (self.flag == "--events" or self.rotate is not None)
        size = 0
        if keep and os.path.isfile(self.path):
            size = os.path.getsize(self.path)
        self._f = open(self.path, "a" if size else "w", encoding="utf-8")
        if size and not _ends_with_newline(self.path):  # a line cut short by a crash stays its own line
            self._f.write("\n")
            size += 1
        self._opened_once = True
        self._size, self._opened = size, time.monotonic()

    def _due(self, incoming: int) -> bool:
        r = self.rotate
        if r is None or self._size == 0:
            return False
        return bool((r.max_bytes and self._size + incoming > r.max_bytes)
                    or (r.max_age_s and time.monotonic() - self._opened >= r.max_age_s))

    def _rotate(self) -> None:
        """FILE → FILE.1, FILE.1 → FILE.2, ...; the oldest past ``keep`` is deleted."""
        assert self.rotate is not None and self._f is not None
        self._f.close()
        self._f = None
        keep = max(1, self.rotate.keep)
        old = Path(f"{self.path}.{keep}")
        if old.exists():
            old.unlink()
        for i in range(keep - 1, 0, -1):
            p = Path(f"{self.path}.{i}")
            if p.exists():
                os.replace(p, f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")
        self.rotations += 1

    def close(self) -> None:
        """Close the file; every line was flushed as written, so a failing close (the line whose
        write failed, still buffered) loses nothing that was reported written."""
        if self._f is not None:
            f, self._f = self._f, None
            try:
                f.close()
            except OSError:
                pass


class EventsFile:
    """``--events FILE``: one JSON line per event message (open / update / close)."""

    name = "events"

    def __init__(self, path: str, rotate: Rotation | None = None) -> None:
        self._jsonl = JsonlSink(path, "--events", rotate)
        self.written = 0

    def publish(self, message: dict[str, Any]) -> None:
        from runtime.events import public

        self._jsonl.write(public(message))
        self.written += 1

    def close(self) -> None:
        self._jsonl.close()

    def report(self) -> dict[str, Any]:
        return {"path": self._jsonl.path, "written": self.written, "rotations": self._jsonl.rotations}


def write_summary(path: str, summary: dict[str, Any]) -> None:
    """Write the summary atomically (a reader never sees half a file), as strict JSON."""
    try:
        write_atomic(path, to_json(summary, indent=2) + "\n")
    except OSError as e:
        raise write_failed("--summary", path, e) from None


class VideoSink:
    """``--save out.mp4``: the annotated frames, at the source's rate; opened at the first frame.
    ``.mp4`` is H.264 where PyAV is installed (browsers play it), else what OpenCV writes
    (:mod:`runtime.video_writer`); ``.webm`` VP8; ``.avi`` Motion JPEG."""

    def __init__(self, path: str, fps: float | None) -> None:
        self.path = path
        self.fps = fps if fps and fps > 0 else 25.0
        self._w: Any = None
        self._size: tuple[int, int] | None = None
        self.codec = ""

    def write(self, img: np.ndarray, frame: Any = None) -> None:
        """Append an annotated frame (``frame``: its source frame, unused: one video for all)."""
        if self._w is None:
            self._size = (img.shape[1], img.shape[0])
            self._w = self._open()
        if (img.shape[1], img.shape[0]) != self._size:  # folders of differently sized images
            img = cv2.resize(img, self._size, interpolation=cv2.INTER_AREA)
        try:
            self._w.write(img)
        except OSError as e:
            raise write_failed("--save", self.path, e) from None

    def _open(self) -> Any:
        """The first of the suffix's codecs that opens at the first frame's size."""
        from runtime.video_writer import H264, MP4V_NOTE, open_writer, save_codecs

        assert self._size is not None
        codecs = save_codecs(self.path)
        if max(self._size) > (MAX_VIDEO_SIDE if codecs[-1] == "MJPG" else MP4_MAX_SIDE) or min(self._size) < (
                1 if codecs[-1] == "MJPG" else 2):  # past the JPEG limit OpenCV's MJPEG encoder crashes
            raise self._size_error(codecs[-1])
        for codec in codecs:
            try:
                w = open_writer(self.path, codec, self.fps, self._size)
            except OSError as e:
                if codec == H264:
                    continue  # the next codec says what is wrong
                raise write_failed("--save", self.path, e) from None
            if w.isOpened():
                self.codec = codec
                if codec == "mp4v":
                    print(f"jrc-detect: note: --save {self.path} is {MP4V_NOTE}", file=sys.stderr)
                return w
        if _writer_works(self.path, cv2.VideoWriter_fourcc(*codecs[-1])):
            raise self._size_error(codecs[-1])
        raise UserError(f"--save {self.path}: OpenCV cannot write this video format here; use .mp4 or .avi")

    def _size_error(self, codec: str) -> UserError:
        from runtime.video_writer import describe

        w, h = self._size or (0, 0)
        return UserError(f"--save {self.path}: the {describe(codec)} encoder cannot take {w}×{h} frames (the first "
                         f"frame's size; .mp4 and .webm need 2-{MP4_MAX_SIDE} px a side, .avi 1-{MAX_VIDEO_SIDE}); "
                         "save as .avi, or resize the input")

    def close(self) -> None:
        if self._w is not None:
            w, self._w = self._w, None
            try:
                w.release()
            except OSError as e:
                raise write_failed("--save", self.path, e) from None

    def report(self) -> dict[str, Any]:
        from runtime.video_writer import BROWSER_PLAYS, describe

        return {"path": self.path, "codec": self.codec or None, "codec_name": describe(self.codec),
                "plays_in_browsers": self.codec in BROWSER_PLAYS}


MP4_MAX_SIDE = 8191  # MPEG-4 part 2 (mp4v): 13-bit sizes; kept for H.264 and VP8 too
MAX_VIDEO_SIDE = 65535  # JPEG (MJPEG in .avi): 16-bit sizes


def _writer_works(path: str, fourcc: int) -> bool:
    """Whether OpenCV writes this format at all (a 64×64 probe beside ``path``): tells a frame size
    the encoder refuses from a format this OpenCV cannot write."""
    p = Path(path)
    probe = p.with_name(f".{p.stem}.{os.getpid()}.probe{p.suffix}")
    try:
        w = cv2.VideoWriter(str(probe), fourcc, 25.0, (64, 64))
        ok = w.isOpened()
        w.release()
        return ok
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


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


def print_verdicts(summary: dict[str, Any], limit: int = 20) -> None:
    """One line per source on stdout (the first ``limit``), then the overall line for several."""
    sources = summary.get("sources", [])
    for s in sources[:limit]:
        print(verdict_line(s["source"], s, summary["threshold"], s.get("dropped", 0)))
    if summary.get("sources_total", 0) > limit:
        print(f"... {summary['sources_total'] - limit} more sources (see --summary / --jsonl)")
    if summary.get("sources_total", 0) > 1:
        print(verdict_line("overall", summary, summary["threshold"]))


def verdict_line(name: str, s: dict[str, Any], threshold: float, dropped: int = 0) -> str:
    """A source's (or the run's) verdict in one line, from its summary entry; ``dropped``: frames a
    live source skipped, said beside the verdict that rests on the others."""
    skipped = (f"; {dropped} frame(s) dropped (live source: the verdict rests on the {s['frames']} processed; "
               "--live no reads every frame of a file)") if dropped else ""
    if s["verdict"] == "no_face":
        return f"{name}: no face found in {s['frames']} frame(s){skipped}"
    if s["prob"] is None:  # faces, but none scored with a finite logit
        return (f"{name}: UNSCORED, {s['faces']} face(s) without a finite logit or not confirmed as faces (see "
                f"nonfinite_logits, faces_unscored){skipped}")
    tracks = s.get("tracks")
    ntracks = tracks if isinstance(tracks, int) else s.get("tracks_total")
    return (f"{name}: {s['verdict'].upper()}  p(fake) {s['prob']:.3f} (threshold {threshold:.2f}) over "
            f"{s['frames_with_face']} frame(s) with a face, {s['frames_without_face']} without, "
            f"{ntracks} track(s){skipped}")
