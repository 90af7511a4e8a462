"""A training run's folder (``--out``): one run writes it at a time, and a run never replaces what
another run, or a later state of its own run, left there.

The rules (checked before any data is read):

- The folder is created when missing; a file where it should be, or one that cannot be written, is
  one line.
- One process writes it: :func:`lock` takes an exclusive, non-blocking ``flock`` on ``OUT/.train.lock``
  for the whole run. The kernel drops it when the process ends, however it ends, so a run that died
  never blocks the next. A run writing the folder now is named before its files are judged.
- A new run needs a folder without a run in it (``last.pt``, ``best.pt``, ``metrics.jsonl`` with a line): a
  run that stopped before its first epoch finished saved nothing, and its folder takes the rerun.
- ``--resume CKPT`` continues in the checkpoint's own folder (the default ``--out``). Resuming into
  another ``--out`` is allowed only when that folder holds no run: it then starts its own files.
- In its own folder, a checkpoint older than ``OUT/last.pt`` (``--resume OUT/best.pt`` after later
  epochs) would replace the later state; it is refused unless ``--rewind`` says so, and then the
  later epochs' lines are cut from ``metrics.jsonl``, ``last.pt`` becomes the checkpoint, and a ``best.pt``
  of a later epoch goes too: the checkpoint replaces it when it is its run's best, else it is removed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from runtime.errors import UserError
from runtime.fileio import make_folder, replacing, same_file, write_atomic

LOCK_NAME = ".train.lock"
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl")  # what a run leaves in its folder


def prepare(out: Path) -> None:
    """Create ``out`` (``--out``) or say in one line why it cannot hold a run."""
    from training.outputs import writable_folder

    writable_folder(out, "--out")
    make_folder(out, "--out")


def lock(out: Path) -> int | None:
    """Hold ``OUT/.train.lock`` exclusively for this process (returns its descriptor, for :func:`unlock`);
    another run holding it is one line. None where ``flock`` does not exist (not POSIX)."""
    try:
        import fcntl
    except ImportError:
        return None
    path = out / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create its lock file {path} ({e.strerror or e}); check the "
                        "permissions or choose another --out") from None
    _take(fd, out, fcntl)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def check_free(out: Path) -> None:
    """Say, creating nothing, that another run is writing ``out`` now (its lock is held): checked
    before the folder's files, which that run is changing, are judged."""
    try:
        import fcntl
        fd = os.open(out / LOCK_NAME, os.O_RDONLY)
    except (ImportError, OSError):
        return  # no lock file (or no flock): no run holds it
    _take(fd, out, fcntl)
    os.close(fd)  # free: let it go again


def _take(fd: int, out: Path, fcntl: Any) -> None:
    """Lock ``fd`` exclusively, or close it and name the run that holds it in one line."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise UserError(f"--out {out}: another training run{who} is writing to this folder; wait for it to end "
                        "or choose another --out") from None


def unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock


def holds_run(out: Path) -> list[str]:
    """The run files in ``out`` (empty when it holds no run). An empty ``metrics.jsonl`` beside no
    checkpoint is no run: earlier versions created it before the first epoch, which may never have
    finished."""
    found = [name for name in RUN_FILES if (out / name).exists()]
    log = out / "metrics.jsonl"
    if found == ["metrics.jsonl"] and log.is_file() and log.stat().st_size == 0:
        return []
    return found


def check_new(out: Path) -> None:
    """A new run needs a folder without a run in it."""
    found = holds_run(out)
    if found:
        raise UserError(f"--out {out}: holds {', '.join(found)} from an earlier run; continue it with --resume "
                        f"{out / 'last.pt'} or choose another --out")


def check_resume(out: Path, ckpt: str | Path, blob: dict[str, Any], rewind: bool) -> int | None:
    """Whether ``--resume ckpt`` may write into ``out``. Returns the epoch of a later ``OUT/last.pt`` that
    ``--rewind`` discards (None when nothing is discarded)."""
    ckpt = Path(ckpt)
    if not same_file(out, ckpt.resolve().parent):
        found = holds_run(out)
        if found:
            raise UserError(f"--out {out}: holds another run ({', '.join(found)}), not the run of --resume {ckpt}; "
                            f"leave --out out to continue in {ckpt.resolve().parent}, or choose an --out without a run")
        return None
    last = out / "last.pt"
    if not last.exists() or same_file(last, ckpt):
        return None
    from training.checkpoint import read_checkpoint

    try:
        later = read_checkpoint(last).get("epoch")
    except UserError as e:
        if rewind:
            return -1
        raise UserError(f"--resume {ckpt}: {last} cannot be read to compare ({e}); pass --rewind to replace it "
                        "with this checkpoint's state") from None
    done = blob.get("epoch")
    if not isinstance(later, int) or not isinstance(done, int) or later <= done:
        return None
    if not rewind:
        raise UserError(f"--resume {ckpt}: it is at epoch {done}, but {last} is at epoch {later}; resuming would "
                        f"replace epochs {done + 1}..{later}: continue with --resume {last}, or pass --rewind to "
                        f"discard them")
    return later


def rewind(out: Path, ckpt: str | Path, epoch: int, best_epoch: int) -> str:
    """Make ``out`` the state of ``ckpt`` (epoch ``epoch``, its run's best so far ``best_epoch``):
    ``last.pt`` its copy, ``metrics.jsonl`` without the lines of later epochs, no ``best.pt`` of a later
    epoch. Returns what became of ``best.pt`` ('' when it was kept)."""
    best = _rewind_best(out, ckpt, epoch, best_epoch)
    with replacing(out / "last.pt") as tmp:
        shutil.copyfile(ckpt, tmp)
    _cut_log(out / "metrics.jsonl", epoch)
    return best


def best_epoch_of(folder: Path) -> int | None:
    """The epoch ``folder/best.pt`` holds (None when there is none, or it cannot be read)."""
    from training.checkpoint import read_checkpoint

    if not (folder / "best.pt").is_file():
        return None
    try:
        epoch = read_checkpoint(folder / "best.pt").get("epoch")
    except UserError:
        return None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def _rewind_best(out: Path, ckpt: str | Path, epoch: int, best_epoch: int) -> str:
    """A ``best.pt`` of an epoch after ``epoch`` is replaced by ``ckpt`` when that is the best, else removed."""
    best = out / "best.pt"
    held = best_epoch_of(out)
    if held is None or held <= epoch or same_file(best, ckpt):
        return ""
    if best_epoch == epoch:
        with replacing(best) as tmp:
            shutil.copyfile(ckpt, tmp)
        return f"{best} (epoch {held}) replaced by this checkpoint, the best at epoch {epoch}"
    best.unlink()
    return f"{best} (epoch {held}) removed; the best epoch so far, {best_epoch}, has no checkpoint here"


def _cut_log(log: Path, epoch: int) -> None:
    """``metrics.jsonl`` without the lines of epochs after ``epoch``."""
    if not log.is_file():
        return
    kept = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            e = json.loads(line).get("epoch")
        except (ValueError, AttributeError):
            e = None
        if not (isinstance(e, int) and e > epoch):
            kept.append(line + "\n")
    write_atomic(log, "".join(kept))
