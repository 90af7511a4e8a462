"""Checks of a tool's output paths before its work starts (minutes of scoring or export must not end in
a traceback because the result cannot be written), the note a tool prints when it replaces an
earlier result, and the removal of the files an earlier result listed (:func:`remove_listed`).

:func:`writable_folder` applies ``runtime.fileio.make_folder``'s rule (a file in the way is an error)
without creating anything, and proves the folder takes files by creating (and removing) one there:
permissions alone do not tell (root, read-only mounts, ``/proc``). The writers create missing folders.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

from runtime.errors import UserError


def writable_folder(folder: str | Path, flag: str, path: str | Path | None = None) -> None:
    """Check, creating nothing, that ``folder`` (for the output ``path`` given with ``flag``) is a folder
    files can be written in, or can be made one (its writer creates it): a file in the way, or an
    existing folder above it that takes no files, is one line."""
    folder = Path(folder) if str(folder) else Path(".")
    shown = f"{flag} {path if path is not None else folder}"
    chain = [folder, *folder.parents]
    blocker = next((a for a in chain if a.exists() and not a.is_dir()), None)
    if blocker is not None:
        raise UserError(f"{shown}: {blocker} is a file, not a folder; pass a path in a folder")
    existing = next(a for a in chain if a.exists())
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-check-")
    except OSError as e:
        raise UserError(f"{shown}: nothing can be written in {existing} ({e.strerror or e}); check the permissions "
                        "or choose another path") from None
    os.close(fd)
    os.unlink(probe)


def output_file(path: str | Path, flag: str) -> Path:
    """A file output: not a folder, in a folder that can be written."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{flag} {p}: is a folder; name a file")
    writable_folder(p.expanduser().parent, flag, p)
    return p


def files_in(out: Path, paths: list[Path], flag: str = "--out") -> list[Path]:
    """An output folder's files, checked before any work: ``out`` takes files and none of ``paths``
    (the files the tool writes there) is a folder. Returns ``paths``."""
    writable_folder(out, flag)
    for p in paths:
        if p.is_dir():
            raise UserError(f"{flag} {out}: {p} is a folder; remove it or choose another {flag}")
    return paths


def note_replacing(prog: str, path: str | Path, what: str = "", say: bool = True) -> Callable[[], None]:
    """Say on stderr that ``path`` (an earlier result) is about to be replaced; ``what`` adds why it matters.

    Now, or with ``say=False`` when the returned function is called: once every input passed its checks,
    right before the work or the write, so a bad input is the run's only line (the output checks
    themselves stay early, before any work)."""

    def note() -> None:
        if Path(path).exists():
            print(f"{prog}: note: replacing {path}{what}", file=sys.stderr)

    if say:
        note()
        return _nothing
    return note


def deferred(*notes: Callable[[], None]) -> Callable[[], None]:
    """One function that says ``notes`` (functions such as :func:`note_replacing` returns with
    ``say=False``) in order, each once: a tool may reach the point where they are said on more than one
    path."""
    pending = list(notes)

    def say() -> None:
        while pending:
            pending.pop(0)()

    return say


def _nothing() -> None:
    pass


def listed_inside(root: str | Path, rels: list[str], suffix: str) -> list[Path]:
    """The paths ``rels`` (relative to ``root``, as an earlier result's record lists them) that name an
    existing ``suffix`` file, or a link, inside ``root``: no ``..`` out of it, no folder on the way that
    leads out of it (a link's target is never followed). Other names are left out."""
    found = []
    for rel in rels:
        path = Path(os.path.normpath(Path(root) / rel))
        if (_within(path.parent, root, also_root=True) and path.suffix.lower() == suffix
                and (path.is_symlink() or path.is_file())):
            found.append(path)
    return found


def _within(folder: str | Path, root: str | Path, also_root: bool = False) -> bool:
    """Whether ``folder``, its links followed, is below ``root`` (or is ``root``, with ``also_root``)."""
    folder, root = os.path.realpath(folder), os.path.realpath(root)
    return (also_root and folder == root) or folder.startswith(root.rstrip(os.sep) + os.sep)


def remove_listed(root: str | Path, paths: list[Path]) -> int:
    """Remove ``paths`` (from :func:`listed_inside`: a link itself, never its target) and the folders
    below ``root`` this leaves empty. Returns how many were removed."""
    removed = 0
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise UserError(f"{path}: cannot be removed ({e.strerror or e}); check the permissions") from None
        removed += 1
        folder = Path(os.path.realpath(path.parent))
        while _within(folder, root) and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    return removed
