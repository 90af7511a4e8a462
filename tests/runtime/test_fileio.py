"""runtime.fileio: result files are replaced whole, special files are written into, never renamed over."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from runtime.fileio import replacing, write_atomic


def test_replaces_whole_and_leaves_no_temporary(tmp_path: Path):
    p = tmp_path / "out.json"
    p.write_text("old")
    write_atomic(p, "new")
    assert p.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["out.json"]


def test_failed_write_keeps_the_old_file(tmp_path: Path):
    p = tmp_path / "out.json"
    p.write_text("old")
    with pytest.raises(RuntimeError), replacing(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk gone")
    assert p.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["out.json"]


def test_symlink_target_is_replaced_and_link_kept(tmp_path: Path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_device_node_is_written_not_replaced():
    write_atomic("/dev/null", "x" * 100)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_fifo_is_written_not_replaced(tmp_path: Path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    write_atomic(fifo, b"payload")
    reader.join(10)
    assert got == [b"payload"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_suffix_is_kept_for_writers_that_pick_a_format(tmp_path: Path):
    with replacing(tmp_path / "a.png", suffix=".png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"png")
    assert (tmp_path / "a.png").read_bytes() == b"png"
