"""Training on real faces: the pool spec end to end, and --init (a new run from a checkpoint's
weights) onto a folder of the user's own faces (selfblend:FOLDER)."""

from __future__ import annotations

import cv2
import pytest

from tests.helpers import has_module, run_in_process, run_module
from training.face_pool import pool_faces

pytestmark = pytest.mark.skipif(not has_module("torch"), reason="needs the train extra (torch)")
TINY = ["--input-size", "32", "--batch-size", "4", "--epochs", "1", "--workers", "0", "--threads", "1"]


@pytest.mark.slow
def test_pool_run_then_init_on_own_faces(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("JRC_CACHE_DIR", "")
    first = tmp_path / "first"
    r = run_module("training.train", "--data", "pool:16:ramp=2", "--val", "pool:8", *TINY, "--out", first, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    blob = torch.load(first / "last.pt", weights_only=True)
    assert blob["meta"]["training"]["data"] == "pool:16:ramp=2" and blob["meta"]["training"]["families"] == ["sbi"]

    own = tmp_path / "site"
    for i, f in enumerate(pool_faces("test")[:6]):
        (own / f"person{i}").mkdir(parents=True)
        cv2.imwrite(str(own / f"person{i}" / "frame.jpg"), f.image)
    second = tmp_path / "second"
    # no --encoder/--input-size: the starting checkpoint's network; a learning rate too small to move it
    r = run_module("training.train", "--data", f"selfblend:{own}:16", "--init", first / "last.pt", "--lr", "1e-12",
                   "--batch-size", "4", "--epochs", "1", "--workers", "0", "--threads", "1", "--out", second,
                   timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    after = torch.load(second / "last.pt", weights_only=True)
    assert after["meta"]["input_size"] == 32 and after["args"]["init"] == str(first / "last.pt")
    moved = [k for k, v in blob["model"].items() if v.is_floating_point() and "running" not in k
             and not torch.allclose(v, after["model"][k], atol=1e-6)]
    assert moved == []  # every weight started where the first run ended

    r = run_in_process("training.train", "--data", "pool:16", "--init", first / "last.pt", "--input-size", "64",
                       "--out", tmp_path / "third")
    assert r.returncode == 1 and "--init" in r.stderr and "at 32" in r.stderr
