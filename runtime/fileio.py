"""Writing result files without ever leaving half of one behind, or replacing what is not a file.

:func:`replacing` yields the path to write; on success the new file takes the target's place in
one ``os.replace``, so a reader sees the old file or the new one, never a mix, and an interrupted
write leaves the old one. A target that exists but is not a regular file (``/dev/null``, a FIFO, a
device) is written directly: renaming over it would swap a device node or a pipe for a regular file.
A symlink is followed: its target is replaced, the link stays. :func:`same_file` tells whether two
paths name one file (outputs are checked against inputs and each other with it).
:func:`make_folder` is the one rule of every tool for an output in a folder that does not exist
yet: the folder is created (a file where a folder should be is a one-line error).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from runtime.errors import UserError


def is_special(path: str | Path) -> bool:
    """True for an existing path that is neither a regular file nor a folder (device, FIFO, socket)."""
    p = Path(path)
    return p.exists() and not p.is_file() and not p.is_dir()


@contextlib.contextmanager
def replacing(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield where to write ``path``'s new content; it replaces ``path`` when the block succeeds.

    ``suffix`` is added to the temporary name (some writers pick the format from the extension).
    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    if is_special(target):
        yield target
        return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (str as UTF-8) to ``path`` through :func:`replacing`."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(payload)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same inode when both exist (hard links, symlinks,
    relative and absolute spellings), else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def make_folder(folder: str | Path, flag: str, path: str | Path | None = None) -> None:
    """Create ``folder`` (and its parents) for the output ``path`` given with ``flag``; a UserError
    in one line when a file stands where a folder should be or the folder cannot be made."""
    folder = Path(folder) if str(folder) else Path(".")
    shown = f"{flag} {path if path is not None else folder}"
    blocker = next((a for a in [folder, *folder.parents] if a.exists() and not a.is_dir()), None)
    if blocker is not None:
        raise UserError(f"{shown}: {blocker} is a file, not a folder; pass a path in a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{shown}: the folder {folder} could not be created ({e.strerror or e}); check the "
                        "permissions or choose another path") from None
