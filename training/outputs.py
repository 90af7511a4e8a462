"""Checks of a tool's output paths before its work starts (minutes of scoring or export must not end in
a traceback because the result cannot be written), and the note a tool prints when it replaces an
earlier result.

``runtime.fileio.make_folder`` creates a missing folder; :func:`writable_folder` also proves it can
be written by creating (and removing) a file in it: permissions alone do not tell (root, read-only
mounts, ``/proc``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from runtime.errors import UserError
from runtime.fileio import make_folder


def writable_folder(folder: str | Path, flag: str, path: str | Path | None = None) -> None:
    """Create ``folder`` for the output ``path`` given with ``flag`` and check that files can be written in it."""
    folder = Path(folder) if str(folder) else Path(".")
    make_folder(folder, flag, path)
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
    except OSError as e:
        shown = f"{flag} {path if path is not None else folder}"
        raise UserError(f"{shown}: nothing can be written in {folder} ({e.strerror or e}); check the permissions "
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


def note_replacing(prog: str, path: str | Path, what: str = "") -> None:
    """Say on stderr that ``path`` (an earlier result) is about to be replaced; ``what`` adds why it matters."""
    if Path(path).exists():
        print(f"{prog}: note: replacing {path}{what}", file=sys.stderr)
