"""What a ``--source`` string names: a live kind, a file, a folder or a glob, and the media files
it reads. Shared by :mod:`runtime.sources` (opening) and ``runtime.detect`` (outputs must never be
inputs: :func:`reads`)."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from runtime.media import MEDIA_EXTS

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(spec: str) -> bool:
    """Whether ``spec`` starts with a URL scheme (``rtsp://``, ``http://``, ...)."""
    return bool(_URL.match(spec))


def media_files(paths: list[str]) -> list[str]:
    """The image and video files among ``paths``, each file once: two names of one file (a
    symlink, a hard link, a recursive glob going round a symlink loop) are read once."""
    seen: set[tuple[int, int]] = set()
    out = []
    for p in paths:
        if Path(p).suffix.lower() not in MEDIA_EXTS or not os.path.isfile(p):
            continue
        st = os.stat(p)
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            out.append(p)
    return out


def folder_files(folder: str) -> list[str]:
    """Every file name below ``folder`` at any depth, in path order (sub-folders are read as
    ``training.extract`` writes them: ``crops/real/<video>/0001.png``). Symlinked folders are not
    entered, so a link loop cannot repeat files."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files)]
    return found


def folder_media(folder: str) -> list[str]:
    """The image and video files below ``folder`` at any depth, in path order (:func:`folder_files`)."""
    return media_files(folder_files(folder))


def not_media(paths: list[str]) -> list[str]:
    """The files among ``paths`` that a folder or glob source does not read for their suffix;
    hidden files (``.DS_Store``, editors' ``.swp``) are left out, as listings leave them out."""
    return [p for p in paths if Path(p).suffix.lower() not in MEDIA_EXTS and not Path(p).name.startswith(".")
            and os.path.isfile(p)]


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` (existing or not) lies in ``folder`` or below it."""
    parent = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    top = os.path.realpath(folder)
    return os.path.commonpath([parent, top]) == top


def is_glob(spec: str) -> bool:
    return not os.path.exists(spec) and any(c in spec for c in "*?[")


def live_kind(spec: str) -> str | None:
    """camera, gstreamer or url for a live spec; None for a file, folder or glob."""
    if spec.isdigit() or spec.startswith("/dev/video"):
        return "camera"
    if os.path.exists(spec):  # a file whose name holds a '!' or '://' is still that file
        return None
    if "!" in spec:
        return "gstreamer"
    if _URL.match(spec):
        return "url"
    return None


def reads(spec: str, path: str) -> bool:
    """Whether the file source ``spec`` reads ``path``, or would read it if it were written there:
    the same file (any spelling, symlink or hard link), a media file inside a source folder, or
    a media file matching a source glob. Live sources read no local file."""
    from runtime.fileio import same_file

    spec = str(spec).strip()
    if not spec or live_kind(spec) is not None:
        return False
    if os.path.isfile(spec):
        return same_file(spec, path)
    media = Path(path).suffix.lower() in MEDIA_EXTS
    if os.path.isdir(spec):
        if media and inside(path, spec):
            return True
        return any(same_file(c, path) for c in folder_media(spec))
    if is_glob(spec):
        if media and glob_matches(spec, path):
            return True
        return any(same_file(c, path) for c in media_files(sorted(glob.glob(spec, recursive=True))))
    return False


def glob_matches(pattern: str, path: str) -> bool:
    """Whether ``path`` (existing or not) would match the glob ``pattern``: its folder holds a
    match of the pattern's folder part, and its name matches the pattern's last part."""
    import fnmatch

    head, tail = os.path.split(pattern)
    if not fnmatch.fnmatch(os.path.basename(path), tail):
        return False
    folders = glob.glob(head, recursive=True) if any(c in head for c in "*?[") else [head or "."]
    parent = os.path.dirname(os.path.abspath(path))
    return any(os.path.isdir(f) and os.path.samefile(f, parent) for f in folders)
