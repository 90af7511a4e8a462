"""training.train: a short synthetic run learns, checkpoints round-trip, resume continues, DDP runs.

The recipe below was picked by experiment: three epochs of the edge encoder at 64 px on
self-blended forgeries of the offline faces, without augmentation, validated on 20 faces training
never saw. One thread: on a busy 2-core machine PyTorch's default of two threads is many times slower.
"""

from __future__ import annotations

import json
import math

import pytest

from tests.helpers import ROOT, has_module, run_in_process, run_module

pytestmark = pytest.mark.skipif(not has_module("torch"), reason="needs the train extra (torch)")

EPOCHS = 3
SEED = 2
VAL = "synthetic:200"  # the 20 held-out faces, each real once and with 5 forgeries
RECIPE = ["--data", "synthetic:1600", "--val", VAL, "--encoder", "edge", "--input-size", "64",
          "--downsample", "max", "--epochs", str(EPOCHS), "--batch-size", "32", "--lr", "3e-3", "--lambda", "0.1",
          "--no-augment", "--warmup", "0.1", "--threshold", "eer", "--workers", "0", "--threads", "1",
          "--seed", str(SEED)]
# Measured with this recipe (AMD EPYC, AVX2; deterministic on one CPU, not across CPUs), seeds 0-3:
# best val AUC 0.616, 0.603, 0.719, 0.607; a held-out face's forgery scored above the face itself in
# 76, 66, 85, 75 % of pairs (chance 0.5 for both); last training BCE 0.677, 0.674, 0.657, 0.686.
# Seed 2 has the widest margin on every bound. With four epochs (25 % more CPU) seeds 0-4 gave
# 0.56-0.68, 60-85 %, 0.64-0.69 here and 0.62-0.67, 72-83 %, 0.655-0.687 on an AVX-512 CPU (seeds 0-3).
MIN_VAL_AUC = 0.55
MIN_PAIR_WINS = 0.62
# Below chance (ln 2 = 0.693). Since training varies the faces' colour and sharpness
# (training.sample_faces.vary_face) the net can no longer memorise its real faces pixel for pixel,
# so short runs end at 0.64-0.69 where they used to end below 0.5; a tighter bound (0.675) failed
# seed 0 at four epochs on the AVX-512 CPU.
MAX_LAST_BCE = math.log(2)


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.slow
@pytest.mark.long
def test_short_synthetic_run(tmp_path):
    """One training run (about 100 s of CPU), three checks on it. One test, not three sharing a module
    fixture: pytest-xdist runs a module fixture once per worker, and its grouping mark has no effect
    with pytest 9.2 (pytest-dev/pytest-xdist#1386), so the run was trained twice per test run."""
    out = tmp_path / "run"
    r = run_module("training.train", *RECIPE, "--out", out, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    _check_learns(out, r)
    _check_held_out_forgeries_score_above_their_faces(out)
    _check_checkpoints_load_weights_only_with_metadata(out, r)


def _check_learns(out, r):
    lines = _lines(r.stdout)
    assert [d["epoch"] for d in lines] == list(range(1, EPOCHS + 1))
    assert lines[-1]["loss"] < lines[0]["loss"] and lines[-1]["bce"] < lines[0]["bce"]
    best = max(d["val_auc"] for d in lines)
    assert best >= MIN_VAL_AUC, lines
    assert lines[-1]["bce"] < MAX_LAST_BCE, lines
    for d in lines:
        assert {"loss", "bce", "recon", "lr", "val_auc", "val_eer", "val_ap", "val_acc", "seconds"} <= set(d)
    # the same lines are in OUT/metrics.jsonl
    assert _lines((out / "metrics.jsonl").read_text()) == lines


def _check_held_out_forgeries_score_above_their_faces(out):
    """Per held-out face: is each of its forgeries scored above the real face? (100 pairs)"""
    import numpy as np
    import torch

    from training.checkpoint import load_model
    from training.data import open_dataset

    net, meta = load_model(out / "best.pt")
    ds = open_dataset(VAL, meta, train=False, split="val")
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        p = torch.sigmoid(net(x)).reshape(-1).numpy()
    y, faces = np.array(ds.labels), np.array(ds.videos)
    wins = [p[(faces == f) & (y == 1)] > p[(faces == f) & (y == 0)][0] for f in sorted(set(faces))]
    assert len(wins) == 20
    assert np.mean(np.concatenate(wins)) >= MIN_PAIR_WINS


def _check_checkpoints_load_weights_only_with_metadata(out, r):
    import torch

    from runtime.meta import Meta
    from training.checkpoint import load_model

    lines = _lines(r.stdout)
    best_epoch = max(lines, key=lambda d: d["val_auc"])["epoch"]
    for name in ("last.pt", "best.pt"):
        blob = torch.load(out / name, map_location="cpu", weights_only=True)
        meta = Meta.from_dict(blob["meta"], source=name)
        assert meta.encoder == "edge" and meta.input_size == 64 and meta.graph == "checkpoint"
        t = meta.training
        assert t["data"] == "synthetic:1600" and t["val"] == VAL and t["epochs"] == EPOCHS and t["lambda"] == 0.1 and t["seed"] == SEED
        assert t["best_epoch"] == best_epoch
        assert t["best_val_auc"] == pytest.approx(max(d["val_auc"] for d in lines))
        assert blob["epoch"] == (EPOCHS if name == "last.pt" else best_epoch)
        # --threshold eer: the validation EER point of the best epoch, in both checkpoints
        assert t["threshold"] == "eer"
        assert meta.threshold == pytest.approx(next(d for d in lines if d["epoch"] == best_epoch)["val_eer_threshold"])
    net, meta = load_model(out / "best.pt")
    state = torch.load(out / "best.pt", weights_only=True)["model"]
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    with torch.no_grad():
        logit, recon = net.forward_full(torch.zeros(2, 3, 64, 64))
    assert logit.shape == (2, 1) and recon.shape == (2, 3, 64, 64)


def test_resume_continues_from_saved_epoch(tmp_path):
    import torch

    out = tmp_path / "run"
    tiny = ["--data", "synthetic:32", "--val", "synthetic:8", "--input-size", "32", "--batch-size", "4",
            "--workers", "0", "--threads", "1"]
    r = run_module("training.train", *tiny, "--epochs", "1", "--out", out, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    before = torch.load(out / "last.pt", weights_only=True)
    # the stored settings are the defaults: only --resume and the new --epochs are needed
    r = run_module("training.train", "--resume", out / "last.pt", "--epochs", "2", "--threads", "1", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [d["epoch"] for d in _lines(r.stdout)] == [2]
    assert [d["epoch"] for d in _lines((out / "metrics.jsonl").read_text())] == [1, 2]
    after = torch.load(out / "last.pt", weights_only=True)
    assert after["epoch"] == 2 and after["meta"]["training"]["epochs"] == 2
    assert after["meta"]["training"]["data"] == "synthetic:32" and after["args"]["input_size"] == 32

    def steps(blob):
        return max(int(s["step"]) for s in blob["optimizer"]["state"].values())

    assert steps(before) == 8 and steps(after) == 16  # Adam's state went on from the saved one
    assert after["scheduler"]["last_epoch"] == 16
    # nothing left to train (the stored --epochs, or fewer): one line saying how to continue, nothing written
    mtime = (out / "last.pt").stat().st_mtime_ns
    for more in ([], ["--epochs", "1"]):  # in this process: a fresh one would pay torch's import to print a line
        r = run_in_process("training.train", "--resume", out / "last.pt", "--threads", "1", *more)
        assert r.returncode == 1 and _lines(r.stdout) == [], r.stderr[-3000:]
        epochs = more[-1] if more else "2"
        assert r.stderr.strip().splitlines() == [
            f"training.train: error: --resume {out / 'last.pt'}: the run already has 2 epochs, so --epochs {epochs} "
            "leaves none to train; to continue it, pass --epochs N with N > 2 (e.g. --epochs 3)"]
    assert (out / "last.pt").stat().st_mtime_ns == mtime
    # a resume must keep the network's shape
    r = run_in_process("training.train", "--resume", out / "last.pt", "--input-size", "64", "--epochs", "3")
    assert r.returncode == 1 and "same --encoder/--input-size" in r.stderr
    r = run_in_process("training.train", "--resume", out / "last.pt", "--edge-style", "minimal", "--epochs", "3")
    assert r.returncode == 1 and "has style 'v3', not --edge-style minimal" in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_lambda_zero_ablation_and_amp_on_cpu(tmp_path):
    out = tmp_path / "abl"
    r = run_module("training.train", "--data", "synthetic:16", "--input-size", "32", "--epochs", "1",
                   "--batch-size", "4", "--lambda", "0", "--amp", "--device", "cpu", "--workers", "0",
                   "--threads", "1", "--out", out, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "--amp needs CUDA" in r.stderr
    (line,) = _lines(r.stdout)
    assert line["recon"] == 0 and line["loss"] == pytest.approx(line["bce"])
    assert math.isfinite(line["bce"]) and (out / "last.pt").is_file()


def test_edge_style_is_built_and_recorded(tmp_path):
    """--edge-style minimal builds the minimal network and records it in the checkpoint's metadata,
    so export and the runtime rebuild the same one; only the edge encoder has the option."""
    from training.run import _meta_and_model
    from training.train import _parse

    args, _ = _parse(["--synthetic", "--input-size", "32", "--edge-style", "minimal", "--out", str(tmp_path / "m")])
    meta, net = _meta_and_model(args, None)
    assert meta.model["style"] == "minimal" and net.config()["style"] == "minimal"
    assert not any(k.startswith("backbone.") and ".fc1." in k for k in net.state_dict())  # no squeeze-excitation
    args, _ = _parse(["--synthetic", "--input-size", "32", "--out", str(tmp_path / "v")])
    assert _meta_and_model(args, None)[0].model["style"] == "v3"
    r = run_in_process("training.train", "--synthetic", "--encoder", "xception", "--edge-style", "minimal",
                       "--out", tmp_path / "x")
    assert r.returncode == 2 and "--edge-style minimal: only the edge encoder" in r.stderr


@pytest.mark.slow
def test_ddp_with_torchrun_on_cpu(tmp_path):
    """Two processes (gloo): only rank 0 writes; loss parts are averaged over both."""
    import os
    import subprocess
    import sys

    import torch

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "training.train", "--data", "synthetic:32", "--val", "synthetic:8", "--input-size", "32", "--epochs",
           "2", "--batch-size", "4", "--workers", "0", "--threads", "1", "--out", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    lines = _lines(r.stdout)
    assert [d["epoch"] for d in lines] == [1, 2]  # printed once (rank 0), not per process
    assert _lines((out / "metrics.jsonl").read_text()) == lines
    blob = torch.load(out / "last.pt", weights_only=True)
    assert blob["meta"]["training"]["world_size"] == 2 and blob["epoch"] == 2
    assert not any(k.startswith("module.") for k in blob["model"])  # saved unwrapped


def test_user_errors(tmp_path):
    r = run_module("training.train", "--synthetic", "--data", "x", "--out", tmp_path / "a")
    assert r.returncode == 2 and r.stderr.startswith("training.train: error:") and "exactly one" in r.stderr
    r = run_module("training.train", "--synthetic", "--epochs", "0")
    assert r.returncode == 2 and "--epochs" in r.stderr
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "last.pt").write_bytes(b"")
    r = run_module("training.train", "--synthetic", "--out", tmp_path / "b")
    assert r.returncode == 1 and "--resume" in r.stderr
    for bad in ("1.5", "best"):
        r = run_module("training.train", "--synthetic", "--threshold", bad, "--out", tmp_path / "c")
        assert r.returncode == 2 and "--threshold" in r.stderr and "eer" in r.stderr
    r = run_module("training.train", "--resume", tmp_path / "nothing.pt")
    assert r.returncode == 1 and "not found" in r.stderr
    assert all(line.count("\n") == 0 for line in (r.stderr.strip(),))


# --- the loop's pieces ----------------------------------------------------------------------
def test_loss_parts():
    import torch

    from training.loop import jrc_loss

    logit = torch.tensor([[0.0], [2.0]])
    y = torch.tensor([0.0, 1.0])
    x = torch.zeros(2, 3, 4, 4)
    recon = torch.stack([torch.full((3, 4, 4), 1.0), torch.full((3, 4, 4), 3.0)])
    bce = (math.log(2) + math.log(1 + math.exp(-2))) / 2
    total, b, rec = jrc_loss(logit, recon, x, y, lam=0.5, kind="mse")
    assert b.item() == pytest.approx(bce) and rec.item() == pytest.approx((1 + 9) / 2)
    assert total.item() == pytest.approx(bce + 0.5 * 5)
    _, _, rec = jrc_loss(logit, recon, x, y, lam=0.5, kind="l1")
    assert rec.item() == pytest.approx(2.0)
    _, _, rec = jrc_loss(logit, recon, x, y, lam=0.5, kind="mse", real_only=True)
    assert rec.item() == pytest.approx(1.0)  # only the real sample (label 0) counts
    recon.requires_grad_(True)
    total, _, rec = jrc_loss(logit, recon, x, torch.ones(2), lam=0.5, kind="mse", real_only=True)
    assert rec.item() == 0.0 and total.requires_grad  # no real face: a zero term, still in the graph (DDP)


def test_cosine_schedule_with_warmup():
    import torch

    from training.loop import cosine_schedule

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = cosine_schedule(opt, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1 / 3) and lrs[1] == pytest.approx(2 / 3) and lrs[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] < 0.05
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)


def test_video_ids_split_shared_face_ids_by_label():
    from training.loop import video_ids

    assert video_ids([0, 1, 0, 1], ["a", "a", "b", "c"]) == ["real/a", "fake/a", "b", "c"]


def _crops(root, real, fake):
    import cv2
    import numpy as np

    for label, names in (("real", real), ("fake", fake)):
        for name in names:
            (root / label / name).mkdir(parents=True)
            for k in range(2):
                cv2.imwrite(str(root / label / name / f"{k}.png"), np.full((24, 24, 3), 60 + 40 * k, np.uint8))
    return root


def test_a_validation_set_without_both_classes_is_refused_before_training(tmp_path):
    """--threshold eer and best.pt need validation AUC: a validation set that cannot have it (the
    automatic split of one video per class, a --val of fakes only) is one line, before any epoch."""
    one_each = _crops(tmp_path / "one", ["lfw"], ["lfw"])
    fakes = _crops(tmp_path / "fakes", [], ["x", "y"])
    common = ["--input-size", "32", "--encoder", "plain", "--epochs", "1", "--batch-size", "2", "--workers", "0",
              "--threshold", "eer"]
    r = run_in_process("training.train", "--data", one_each, "--out", tmp_path / "a", *common)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "--val" in r.stderr and "real" in r.stderr, r.stderr
    r = run_in_process("training.train", "--data", one_each, "--val", fakes, "--out", tmp_path / "b", *common)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "0 real and 4 fake" in r.stderr and "both" in r.stderr
    assert not (tmp_path / "a" / "last.pt").exists() and not (tmp_path / "b" / "last.pt").exists()


def test_a_threshold_rule_without_a_point_is_recorded_and_said_as_a_fallback(capsys):
    from types import SimpleNamespace

    from training.report import threshold_rule_line
    from training.run import _fallback

    run = SimpleNamespace(args=SimpleNamespace(threshold="eer", val="v", data="d"), rule=None,
                          meta=SimpleNamespace(threshold=0.5))
    _fallback(run, 1)
    _fallback(run, 2)
    assert run.rule == {"rule": "eer", "fallback": True, "threshold": 0.5, "chosen_on": "v", "epoch": 2}
    assert capsys.readouterr().err.count("warning: --threshold eer") == 1  # said once
    assert "a fallback: rule 'eer' found no point" in threshold_rule_line(run.rule, 0.5)
    line = threshold_rule_line({"rule": "eer", "threshold": 0.43, "chosen_on": "v", "real_items": 5}, 0.43)
    assert line == "threshold 0.43: chosen at the equal-error point on v (5 real items)"
