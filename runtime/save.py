"""What ``--save`` writes: one annotated video, one annotated image, or a folder of them.

- ``--save out.mp4`` / ``out.avi`` / ``out.webm``: every processed frame into one video (:class:`runtime.sinks.VideoSink`).
- ``--save out.png`` (``.jpg``, ``.jpeg``, ``.bmp``, ``.tif``, ``.tiff``, ``.webp``): the annotated
  image of a source that is one image (a file, or a folder or glob holding one image and no video).
- ``--save DIR/`` (an existing folder, a name ending in ``/``, or a name without a suffix): one
  annotated image per input image, named as the input (its path below a source folder, so
  sub-folders are kept; its file name for a glob or a file), in the input's format where OpenCV
  writes it (PNG otherwise), and one annotated ``.mp4`` per input video. Live sources write one
  video: give a ``.mp4``, ``.avi`` or ``.webm`` name.

Anything else (``.mkv``, ``.gif``, an image name for several frames, a folder for a camera) is
refused before the run in one line that says what is supported; an output that would overwrite an
input is refused too.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import UserError
from runtime.media import ANIMATION_EXTS, IMAGE_EXTS, VIDEO_EXTS

VIDEO_SUFFIXES = (".mp4", ".avi", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SUPPORTED = "a .mp4, .avi or .webm video, an image name (.png, .jpg) for one input image, or a folder (DIR/) for one " \
            "annotated image per input image"


def save_kind(path: str) -> str:
    """``video``, ``image`` or ``folder`` for a ``--save`` path; UserError for an unsupported suffix."""
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir() or str(path).endswith(("/", os.sep)) or (not suffix and not p.exists()):
        return "folder"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    raise UserError(f"--save {path}: {suffix or 'a file without a suffix'} is not an output --save writes; "
                    f"pass {SUPPORTED}")


def source_files(spec: str) -> list[str] | None:
    """The files a file source reads (a file, a folder's or a glob's media), None for a live source."""
    from runtime.source_specs import folder_media, is_glob, live_kind, media_files

    spec = str(spec).strip()
    if live_kind(spec) is not None:
        return None
    if os.path.isdir(spec):
        return folder_media(spec)
    if is_glob(spec):
        return media_files(sorted(glob.glob(spec, recursive=True)))
    return [spec]


def _base(spec: str) -> str | None:
    """The folder whose relative paths name the outputs: a source folder; None otherwise."""
    return spec if os.path.isdir(spec) else None


def targets(spec: str, folder: str, files: list[str]) -> dict[str, str]:
    """Input file → the annotated file written for it in ``folder`` (images keep their format where
    OpenCV writes it, videos and animated GIFs become ``.mp4``); names that would collide get ``-<n>``."""
    base = _base(spec)
    out: dict[str, str] = {}
    used: set[str] = set()
    for n, f in enumerate(files):
        rel = Path(os.path.relpath(f, base)) if base else Path(Path(f).name)
        suffix = rel.suffix.lower()
        if suffix in VIDEO_EXTS or suffix in ANIMATION_EXTS:  # frame after frame: a video, not one image
            rel = rel.with_suffix(".mp4")
        elif suffix not in IMAGE_SUFFIXES:
            rel = rel.with_suffix(".png")
        name = str(Path(folder) / rel)
        if name in used:
            name = str(Path(folder) / rel.with_name(f"{rel.stem}-{n}{rel.suffix}"))
        used.add(name)
        out[f] = name
    return out


def check_save(path: str, spec: str) -> None:
    """Before the run: the ``--save`` path fits the source, and writes no input."""
    kind = save_kind(path)
    if kind == "video":
        return
    files = source_files(spec)
    if files is None:
        raise UserError(f"--save {path}: a live source ({spec}) is saved as one video; pass a .mp4, .avi or .webm name")
    if kind == "image":
        if len(files) != 1 or Path(files[0]).suffix.lower() not in IMAGE_EXTS:
            raise UserError(f"--save {path}: one image name, but {spec} holds {len(files)} file(s)"
                            f"{'' if len(files) != 1 else ' (a video)'}; pass a folder (--save DIR/) for one "
                            "annotated image per input image, or a .mp4/.avi/.webm name for one video")
        return
    base = _base(spec)
    if base is not None and os.path.commonpath([os.path.realpath(path), os.path.realpath(base)]) == \
            os.path.realpath(base):
        raise UserError(f"--save {path}: inside the source folder {spec}; the annotated images would be read as "
                        "inputs by a later run, choose a folder outside it")
    inputs = {os.path.realpath(f): f for f in files}
    for out in targets(spec, path, files).values():
        if os.path.realpath(out) in inputs:
            raise UserError(f"--save {path}: would write {out} over the input {inputs[os.path.realpath(out)]}; "
                            "choose a folder outside the source")


class ImagesSink:
    """``--save`` as images: one annotated image per input image (and a video per input video) in a
    folder, or the one image of a one-image source at the given name."""

    def __init__(self, path: str, spec: str, fps: float | None) -> None:
        self.path, self.spec, self.fps = path, spec, fps
        self.kind = save_kind(path)
        files = source_files(spec) or []
        self._targets = targets(spec, path, files) if self.kind == "folder" else {}
        self._video: Any = None
        self._video_for: str | None = None
        self.written = 0

    def write(self, img: np.ndarray, frame: Any = None) -> None:
        from runtime.sinks import VideoSink

        source = getattr(frame, "source", None)
        out = self.path if self.kind == "image" else self._targets.get(source) or self._fallback(source)
        if Path(out).suffix.lower() in VIDEO_SUFFIXES:  # a video of a folder source: its own annotated video
            if self._video_for != out:
                self._close_video()
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                self._video, self._video_for = VideoSink(out, self.fps), out
            self._video.write(img)
            return
        self._close_video()
        _write_image(out, img)
        self.written += 1

    def _fallback(self, source: str | None) -> str:
        return str(Path(self.path) / (Path(source or f"frame{self.written}").stem + ".png"))

    def _close_video(self) -> None:
        if self._video is not None:
            self._video.close()
            self._video, self._video_for = None, None

    def close(self) -> None:
        self._close_video()


def _write_image(path: str, img: np.ndarray) -> None:
    import cv2

    from runtime.fileio import replacing
    from runtime.sinks import write_failed

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(Path(path).suffix.lower(), img)
        if not ok:
            raise OSError(f"OpenCV could not encode {Path(path).suffix}")
        with replacing(path) as tmp, open(tmp, "wb") as f:
            f.write(buf.tobytes())
    except OSError as e:
        raise write_failed("--save", path, e) from None


def open_save(path: str, spec: str, fps: float | None) -> Any:
    """The sink for ``--save path``: a video for .mp4/.avi/.webm, images otherwise (see the module doc)."""
    from runtime.sinks import VideoSink

    return VideoSink(path, fps) if save_kind(path) == "video" else ImagesSink(path, spec, fps)
