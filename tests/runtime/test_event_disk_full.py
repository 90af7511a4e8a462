"""A camera box whose event folder fills up while clips are being written goes on: each clip that
cannot be written is given up with a warning, the run ends normally and writes its summary.

The full disk is a real one: a 300 KB tmpfs (needs root and mount(2), skipped elsewhere), almost
filled before the run, so H.264 clips fail mid-write. Flushing the encoder of such a clip once
crashed libav (segmentation fault, no summary, events lost).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT, run_module

BUNDLED = ROOT / "runtime" / "assets" / "jrc_edge_detect.onnx"


@pytest.fixture
def full_disk(tmp_path):
    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount to make a small tmpfs (a real full disk)")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        (mnt / "filler").write_bytes(b"\0" * 250_000)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_event_folder_gives_up_clips_and_the_run_goes_on(full_disk, tmp_path):
    pytest.importorskip("av")
    from benchmarks.demo import make_clip

    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames_per_segment=40)
    p = run_module("runtime.detect", "--engine", BUNDLED, "--source", f"door={clip}", "--source", f"lobby={clip}",
                   "--events", tmp_path / "ev.jsonl", "--event-media", full_disk / "m", "--event-clip", "2",
                   "--threshold", "0.5", "--summary", tmp_path / "s.json", "--quiet", timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "could not be written" in p.stderr or "No space left" in p.stderr  # the disk was full
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["status"] == "ok" and {c["camera"] for c in summary["cameras"]} == {"door", "lobby"}
    events = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    opened = {e["event"]["id"] for e in events if e["type"] == "open"}
    closed = {e["event"]["id"] for e in events if e["type"] == "close"}
    assert opened and opened == closed  # every event opened was closed and written
    leftovers = [f for f in (full_disk / "m").rglob("*") if ".writing." in f.name]
    assert leftovers == []  # partial clips are removed


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
