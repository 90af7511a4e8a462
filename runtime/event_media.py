"""An event's pictures on disk: the snapshot at its peak (box drawn), the face crop, and a short clip.

Files go to ``FOLDER/<camera>/<event id>.jpg``, ``.face.jpg`` and ``.webm``/``.mp4``. Clips hold
``clip_s`` seconds before the event opened (a per-camera ring of recent frames, scaled to at most
640 px wide: about 35 MB a camera for 2 s of 25 fps), the event, and ``clip_s`` seconds after it
closed, at most ``clip_max_s`` in all. They are encoded by one background thread fed through a
bounded buffer, so the frame loop never waits on an encoder: frames it could not take are dropped
and counted. The codec is one browsers play where it can be written (:mod:`runtime.video_writer`):
H.264 .mp4 (PyAV), else VP8 .webm (the pip OpenCV); else MPEG-4 part 2 .mp4, which browsers do not
play (a note says so once). A clip is written as ``<id>.writing.<suffix>`` and renamed when whole,
so a file under its final name always plays. The folder is kept within ``budget_bytes``: after each
file is written, the oldest event files are deleted until it fits. Only files this box writes count and
are ever deleted (``<camera>/<camera>-<time>-<track>`` with one of the suffixes above, of this run or
an earlier one): whatever else lies in the folder is left alone. Never deleted: a clip being written,
and the files of the event just written (a budget smaller than one event is warned about once).
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.annotate import score_color
from runtime.preprocess import square_box
from runtime.video_writer import MP4V_NOTE, describe, open_writer, pick_clip_codec

CLIP_WIDTH = 640
CLIP_BUFFER = 256  # frames waiting for the encoder; past it frames are dropped (counted)
MEDIA_SUFFIXES = (".jpg", ".mp4", ".webm")
WRITING = ".writing"  # a clip being written is <id>.writing.<suffix>, renamed to <id>.<suffix> when whole
# an event's file: <camera>/<event id><kind><suffix>, the id as runtime.events makes it (camera-time-track)
OWN_FILE = re.compile(r"(?P<camera>[A-Za-z][A-Za-z0-9_-]{0,63})-\d{8}T\d{9}-\d+(\.face|\.writing)?"
                      r"\.(jpg|mp4|webm)")


def _small(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    if w <= CLIP_WIDTH:
        return image
    size = (CLIP_WIDTH, max(2, int(round(h * CLIP_WIDTH / w)) // 2 * 2))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def snapshot_jpeg(image: np.ndarray, box: list[int], prob: float, threshold: float) -> bytes:
    """The frame with the event's face boxed and labelled, as JPEG."""
    img = image.copy()
    x, y, w, h = box
    color = score_color(prob)
    thick = max(2, int(round(min(img.shape[:2]) / 300)))
    cv2.rectangle(img, (x, y), (x + w, y + h), color, thick)
    label = f"{'FAKE' if prob >= threshold else 'real'} {prob:.2f}"
    cv2.putText(img, label, (x, max(14, y - 8)), cv2.FONT_HERSHEY_SIMPLEX, max(0.5, min(img.shape[:2]) / 900),
                color, thick, cv2.LINE_AA)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def crop_jpeg(image: np.ndarray, box: list[int], margin: float = 0.2) -> bytes:
    x, y, w, h = square_box(tuple(box), margin)  # type: ignore[arg-type]
    H, W = image.shape[:2]
    crop = image[max(0, y): min(H, y + h), max(0, x): min(W, x + w)]
    if crop.size == 0:
        crop = image
    return cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


class _Clip:
    def __init__(self, event_id: str, path: Path, fps: float, frames_total: int) -> None:
        self.id, self.path, self.fps = event_id, path, fps
        self.partial = path.with_name(f"{path.stem}{WRITING}{path.suffix}")  # renamed to path when whole
        self.left = frames_total  # frames it may still take (clip_max_s)
        self.after: int | None = None  # frames still to take once its event has closed
        self.writer: Any = None
        self.failed = False  # a frame could not be written: the clip is given up
        self.size: tuple[int, int] | None = None


class EventMedia:
    """Snapshots, crops and clips of events in ``folder`` (None: snapshots are only encoded, for sinks)."""

    def __init__(self, folder: str | None, clip_s: float = 0.0, clip_max_s: float = 60.0,
                 budget_bytes: int = 1 << 30, fps: dict[str, float | None] | None = None) -> None:
        self.folder = Path(folder) if folder else None
        self.clip_s = max(0.0, float(clip_s)) if self.folder is not None else 0.0
        self.clip_max_s = max(self.clip_s, float(clip_max_s))
        self.budget = int(budget_bytes)
        self.fps = {k: (v if v and v > 0 else 25.0) for k, v in (fps or {}).items()}
        self.dropped_frames = 0
        self.deleted = 0
        self._warned_budget = False
        self.codec, self.suffix = "", ""
        self._pre: dict[str, deque[np.ndarray]] = {}
        self._clips: dict[str, list[_Clip]] = {}  # open clips per camera
        self._busy: set[Path] = set()  # files being written: never deleted for the budget
        self._cond = threading.Condition()
        self._work: deque[tuple[str, Any, Any]] = deque()
        self._frames_waiting = 0
        self._thread: threading.Thread | None = None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            if self.clip_s > 0:
                self.codec, self.suffix = pick_clip_codec(self.folder)
                if self.codec == "mp4v":
                    print(f"jrc-detect: note: event clips are {MP4V_NOTE}", file=sys.stderr)
                elif not self.codec:
                    print("jrc-detect: warning: this OpenCV writes no video format; event clips are off",
                          file=sys.stderr)
                    self.clip_s = 0.0
            if self.clip_s > 0:
                self._thread = threading.Thread(target=self._encode, name="jrc-clips", daemon=True)
                self._thread.start()

    # --- snapshots ----------------------------------------------------------------------
    def snapshot(self, ev: Any) -> None:
        """Encode the event's peak frame (and its face) and, with a folder, write both."""
        s = ev.s
        if s.peak_image is None or s.peak_box is None:
            return
        ev.jpeg = snapshot_jpeg(s.peak_image, s.peak_box, s.peak, ev.threshold)
        if self.folder is None:
            return
        folder = self.folder / ev.camera
        shot, crop = folder / f"{ev.id}.jpg", folder / f"{ev.id}.face.jpg"
        try:
            folder.mkdir(exist_ok=True)
            shot.write_bytes(ev.jpeg)
            crop.write_bytes(crop_jpeg(s.peak_image, s.peak_box))
        except OSError as e:
            print(f"jrc-detect: warning: {shot}: could not be written ({e.strerror or e})", file=sys.stderr)
            return
        ev.snapshot, ev.crop = str(shot), str(crop)
        self._enforce_budget(keep={shot, crop})

    # --- clips --------------------------------------------------------------------------
    def feed(self, camera: str, r: Any) -> None:
        """Every frame of ``camera``: into its pre-roll, and into its open clips."""
        if self.clip_s <= 0 or r.frame.image is None:
            return
        small = _small(r.frame.image)
        fps = self.fps.get(camera, 25.0)
        pre = self._pre.get(camera)
        if pre is None:
            pre = self._pre[camera] = deque(maxlen=max(1, int(round(self.clip_s * fps))))
        pre.append(small)
        for clip in list(self._clips.get(camera, [])):
            self._send(clip, small)
            if clip.after is not None:
                clip.after -= 1
            if clip.left <= 0 or (clip.after is not None and clip.after <= 0):
                self._finish(camera, clip)

    def start_clip(self, ev: Any) -> None:
        if self.clip_s <= 0 or self.folder is None:
            return
        fps = self.fps.get(ev.camera, 25.0)
        folder = self.folder / ev.camera
        try:
            folder.mkdir(exist_ok=True)
        except OSError as e:
            print(f"jrc-detect: warning: {folder}: no clip for event {ev.id} ({e.strerror or e})", file=sys.stderr)
            return
        clip = _Clip(ev.id, folder / f"{ev.id}{self.suffix}", fps, int(self.clip_max_s * fps))
        self._busy.add(clip.partial)
        self._clips.setdefault(ev.camera, []).append(clip)
        for img in self._pre.get(ev.camera, ()):
            self._send(clip, img)
        ev.clip = str(clip.path)

    def end_clip(self, ev: Any) -> None:
        for clip in self._clips.get(ev.camera, []):
            if clip.id == ev.id and clip.after is None:
                clip.after = max(1, int(round(self.clip_s * clip.fps)))
                if ev.end_reason in ("camera_ended", "shutdown"):
                    self._finish(ev.camera, clip)  # no frames will follow

    def _finish(self, camera: str, clip: _Clip) -> None:
        clips = self._clips.get(camera, [])
        if clip in clips:
            clips.remove(clip)
            self._submit("close", clip, None)

    def _send(self, clip: _Clip, img: np.ndarray) -> None:
        clip.left -= 1
        with self._cond:
            if self._frames_waiting >= CLIP_BUFFER:
                self.dropped_frames += 1
                return
            self._frames_waiting += 1
        self._submit("frame", clip, img)

    def _submit(self, what: str, clip: _Clip, img: Any) -> None:
        with self._cond:
            self._work.append((what, clip, img))
            self._cond.notify()

    def _encode(self) -> None:
        while True:
            with self._cond:
                while not self._work:
                    self._cond.wait()
                what, clip, img = self._work.popleft()
                if what == "frame":
                    self._frames_waiting -= 1
            if what == "stop":
                return
            try:
                if what == "frame" and not clip.failed:
                    if clip.writer is None:  # opened at its first frame, at that frame's size
                        clip.size = (img.shape[1], img.shape[0])
                        clip.writer = open_writer(clip.partial, self.codec, clip.fps, clip.size)
                    if (img.shape[1], img.shape[0]) != clip.size:
                        img = cv2.resize(img, clip.size)
                    clip.writer.write(img)
                elif what == "close":
                    self._close_clip(clip)
            except (cv2.error, OSError) as e:  # a clip that cannot be written is given up, the run goes on
                print(f"jrc-detect: warning: {clip.path}: {e}", file=sys.stderr)
                clip.failed = True
                if what == "close":
                    self._discard(clip)

    def _close_clip(self, clip: _Clip) -> None:
        """Finish the file and give it its final name (a failed clip's partial file is removed)."""
        if clip.writer is not None:
            writer, clip.writer = clip.writer, None
            writer.release()
            if not clip.failed:
                os.replace(clip.partial, clip.path)
        self._discard(clip)
        self._enforce_budget(keep={clip.path})

    def _discard(self, clip: _Clip) -> None:
        if clip.failed:
            try:
                os.unlink(clip.partial)
            except OSError:
                pass
        self._busy.discard(clip.partial)

    def close(self) -> None:
        """Finish every clip being written (what they hold so far), then stop the encoder."""
        for camera in list(self._clips):
            for clip in list(self._clips[camera]):
                self._finish(camera, clip)
        if self._thread is not None:
            with self._cond:
                self._work.append(("stop", None, None))
                self._cond.notify()
            self._thread.join(30.0)
            self._thread = None

    # --- the disk budget ----------------------------------------------------------------
    def _own_files(self) -> list[Path]:
        """The event files in the folder, this run's and earlier runs' (nothing else is ever touched)."""
        found: list[Path] = []
        try:
            cameras = [d for d in self.folder.iterdir() if d.is_dir()] if self.folder is not None else []
        except OSError:
            return found
        for d in cameras:
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                m = OWN_FILE.fullmatch(name)
                if m and m["camera"] == d.name:
                    found.append(d / name)
        return found

    def _enforce_budget(self, keep: frozenset[Path] | set[Path] = frozenset()) -> None:
        """Delete the oldest event files until the folder's event files fit the budget, but never one
        being written or one in ``keep`` (the event just written)."""
        if self.folder is None:
            return
        files = []
        for p in self._own_files():
            if p in self._busy:
                continue
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files) + sum(_size(p) for p in self._busy)
        for _, size, p in sorted(files):
            if total <= self.budget:
                break
            if p in keep:
                continue
            try:
                os.unlink(p)
                total -= size
                self.deleted += 1
            except OSError:
                pass
        if total > self.budget and not self._warned_budget:
            self._warned_budget = True
            print(f"jrc-detect: warning: --event-media {self.folder}: one event's files take more than the budget "
                  f"of {self.budget / 2**20:.3g} MB; the newest event is kept, raise --event-budget", file=sys.stderr)

    def report(self) -> dict[str, Any]:
        return {"folder": str(self.folder) if self.folder else None, "codec": self.codec or None,
                "codec_name": describe(self.codec) if self.codec else None,
                "clip_frames_dropped": self.dropped_frames, "files_deleted_for_budget": self.deleted}


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0
