"""training.train's run folder and stops: a resume never writes over another run or a later state of its
own, one run writes a folder at a time, outputs and values are checked before the data is read, and a
run that stops (a signal, a loss gone non-finite) keeps the last finished epoch and says how to go on.

Tiny runs: the plain encoder at 32 px on 24 generated crops, one thread."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, has_module, run_in_process, run_module

pytestmark = pytest.mark.skipif(not has_module("torch"), reason="needs the train extra (torch)")

TINY = ["--encoder", "plain", "--input-size", "32", "--batch-size", "4", "--workers", "0", "--threads", "1"]


def _crops(root, labels=("real", "fake")):
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for label in labels:
        for v in range(4):
            (root / label / f"v{v}").mkdir(parents=True)
            for k in range(3):
                cv2.imwrite(str(root / label / f"v{v}" / f"{k}.png"), rng.integers(0, 255, (32, 32, 3), np.uint8))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _crops(tmp_path_factory.mktemp("crops"))


def _epochs(path) -> list[int]:
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()]


def _epoch_of(path) -> int:
    import torch

    return torch.load(path, weights_only=True)["epoch"]


def _snapshot(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _one_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def test_a_resume_writes_only_its_own_run_and_never_over_a_later_state(data, tmp_path):
    a = tmp_path / "a"
    r = run_module("training.train", "--data", data, *TINY, "--epochs", "1", "--out", a)
    assert r.returncode == 0, r.stderr[-3000:]
    shutil.copy(a / "last.pt", a / "epoch1.pt")
    r = run_module("training.train", "--resume", a / "last.pt", "--epochs", "2", "--threads", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _epoch_of(a / "last.pt") == 2 and _epochs(a / "metrics.jsonl") == [1, 2]

    # another run's folder is never written
    other = tmp_path / "other"
    other.mkdir()
    for name in ("last.pt", "best.pt", "metrics.jsonl"):
        (other / name).write_bytes(b"another run's " + name.encode())
    before = _snapshot(other)
    r = run_in_process("training.train", "--resume", a / "last.pt", "--epochs", "3", "--out", other)
    assert r.returncode == 1 and "holds another run" in _one_line(r) and "leave --out out" in r.stderr
    assert _snapshot(other) == before

    # an older state of the same run does not replace the later one unless asked to
    mtime = (a / "last.pt").stat().st_mtime_ns
    r = run_in_process("training.train", "--resume", a / "epoch1.pt", "--epochs", "3")
    line = _one_line(r)
    assert r.returncode == 1 and "epoch 1" in line and "is at epoch 2" in line and "--rewind" in line
    assert (a / "last.pt").stat().st_mtime_ns == mtime and _epochs(a / "metrics.jsonl") == [1, 2]
    shutil.copy(a / "last.pt", a / "best.pt")  # the discarded epoch 2 was the best
    r = run_module("training.train", "--resume", a / "epoch1.pt", "--epochs", "2", "--rewind", "--threads", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "--rewind: epochs 2..2" in r.stderr and "discarded" in r.stderr
    assert f"{a / 'best.pt'} (epoch 2) replaced by this checkpoint, the best at epoch 1" in r.stderr
    assert _epochs(a / "metrics.jsonl") == [1, 2] and _epoch_of(a / "last.pt") == 2
    _check_best_named(r.stderr)

    # into a folder without a run: it starts its own files, and the best checkpoint named is real
    new = tmp_path / "new"
    r = run_module("training.train", "--resume", a / "last.pt", "--epochs", "3", "--out", new, "--threads", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _epochs(new / "metrics.jsonl") == [3] and _epoch_of(new / "last.pt") == 3
    _check_best_named(r.stderr)


def _check_best_named(stderr: str) -> None:
    """The run's last line names a best.pt that exists and holds the epoch it says."""
    done = stderr.strip().splitlines()[-1]
    best_epoch = int(done.split(" at epoch ")[1].split()[0])
    named = done.split(" -> ")[1].split(";")[0]
    assert os.path.isfile(named), done
    assert _epoch_of(named) == best_epoch, done


@pytest.mark.parametrize("best_epoch,held,after", [(3, 4, 3), (2, 4, None), (2, 2, 2)])
def test_a_rewind_keeps_no_best_checkpoint_of_a_discarded_epoch(tmp_path, best_epoch, held, after):
    """Rewinding to epoch 3 (its run's best so far: ``best_epoch``) with a best.pt of epoch ``held``:
    a later one is replaced by the checkpoint when that is the best, else removed; an earlier one stays."""
    import torch

    from training.run_folder import rewind

    for name, epoch in (("ep3.pt", 3), ("last.pt", 5), ("best.pt", held)):
        torch.save({"model": {}, "meta": {}, "epoch": epoch}, tmp_path / name)
    (tmp_path / "metrics.jsonl").write_text("".join(f'{{"epoch": {e}}}\n' for e in range(1, 6)))
    said = rewind(tmp_path, tmp_path / "ep3.pt", 3, best_epoch)
    assert _epoch_of(tmp_path / "last.pt") == 3 and _epochs(tmp_path / "metrics.jsonl") == [1, 2, 3]
    if after is None:
        assert not (tmp_path / "best.pt").exists()
        assert said == f"{tmp_path / 'best.pt'} (epoch 4) removed; the best epoch so far, 2, has no checkpoint here"
    else:
        assert _epoch_of(tmp_path / "best.pt") == after
        assert said == ("" if after == held else f"{tmp_path / 'best.pt'} (epoch 4) replaced by this checkpoint, "
                        "the best at epoch 3")


def test_a_new_run_refuses_a_folder_with_any_run_file(data, tmp_path):
    for name in ("last.pt", "best.pt", "metrics.jsonl"):
        out = tmp_path / name
        out.mkdir()
        (out / name).write_text("earlier")
        r = run_in_process("training.train", "--data", data, *TINY, "--out", out)
        assert r.returncode == 1 and f"holds {name} from an earlier run" in _one_line(r)
        assert (out / name).read_text() == "earlier"


def test_an_empty_metrics_log_without_checkpoints_is_no_run(tmp_path):
    """Earlier versions created an empty OUT/metrics.jsonl before epoch 1: such a folder takes a new run."""
    from training.run_folder import holds_run

    (tmp_path / "metrics.jsonl").write_text("")
    assert holds_run(tmp_path) == []
    (tmp_path / "best.pt").write_text("earlier")
    assert holds_run(tmp_path) == ["best.pt", "metrics.jsonl"]


def test_one_run_writes_a_folder_at_a_time_and_a_dead_one_blocks_nothing(data, tmp_path):
    from training.run_folder import lock, unlock

    out = tmp_path / "run"
    out.mkdir()
    fd = lock(out)
    try:
        r = run_in_process("training.train", "--data", data, *TINY, "--epochs", "1", "--out", out)
    finally:
        unlock(fd)
    assert r.returncode == 1 and f"another training run (pid {os.getpid()})" in _one_line(r)
    assert not (out / "metrics.jsonl").exists()
    # a holder that dies without letting go: the kernel drops its lock
    code = f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); from training.run_folder import lock; " \
           f"lock(__import__('pathlib').Path({str(out)!r})); print('locked', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(Exception, match="another training run"):
        lock(out)
    holder.kill()
    holder.wait()
    unlock(lock(out))


def test_a_folder_another_run_is_writing_now_names_that_run_not_its_files(data, tmp_path):
    from training.run_folder import lock, unlock

    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_text("the other run's epoch")
    (out / "metrics.jsonl").write_text('{"epoch": 1}\n')
    before = _snapshot(out)
    fd = lock(out)
    try:
        r = run_in_process("training.train", "--data", data, *TINY, "--epochs", "1", "--out", out)
    finally:
        unlock(fd)
    assert r.returncode == 1 and f"another training run (pid {os.getpid()}) is writing" in _one_line(r)
    before[".train.lock"] = f"{os.getpid()}\n".encode()
    assert _snapshot(out) == before


@pytest.mark.parametrize("where", ["file", "file/sub", "/proc/jrc-no-such-folder"])
def test_a_bad_out_is_one_line_before_the_data_is_read(tmp_path, where):
    (tmp_path / "file").write_text("not a folder")
    out = where if where.startswith("/") else tmp_path / where
    r = run_in_process("training.train", "--data", tmp_path / "no-such-data", *TINY, "--out", out)
    assert r.returncode == 1 and _one_line(r).startswith(f"training.train: error: --out {out}:")


@pytest.mark.parametrize("flag,value", [("--lr", "nan"), ("--lr", "inf"), ("--weight-decay", "nan"),
                                        ("--lambda", "nan"), ("--lambda", "inf"), ("--warmup", "inf"),
                                        ("--epochs", "0"), ("--batch-size", "0"), ("--input-size", "0"),
                                        ("--threshold", "1.5")])
def test_bad_values_are_usage_errors(tmp_path, flag, value):
    r = run_in_process("training.train", "--synthetic", flag, value, "--out", tmp_path / "x")
    assert r.returncode == 2 and _one_line(r).startswith(f"training.train: error: {flag} {value}:")
    assert not (tmp_path / "x").exists()


def test_a_non_finite_loss_stops_with_the_epoch_and_what_to_do(data, tmp_path):
    r = run_in_process("training.train", "--data", data, *TINY, "--epochs", "2", "--lr", "1e10",
                       "--out", tmp_path / "run")
    line = r.stderr.strip().splitlines()[-1]  # after the run's first line and progress
    assert "Traceback" not in r.stderr and line.startswith("training.train: error: epoch 1:"), r.stderr
    assert r.returncode == 1 and "epoch 1: the loss became nan" in line and "lower --lr" in line, line
    assert "nothing was saved" in line and not (tmp_path / "run" / "last.pt").exists()
    # nothing was saved, so the folder takes the rerun the line asks for
    r = run_module("training.train", "--data", data, *TINY, "--epochs", "1", "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _epochs(tmp_path / "run" / "metrics.jsonl") == [1] and _epoch_of(tmp_path / "run" / "last.pt") == 1


def test_training_data_of_one_class_is_refused(data, tmp_path):
    reals = _crops(tmp_path / "reals", labels=("real",))
    r = run_in_process("training.train", "--data", reals, "--val", data, *TINY, "--out", tmp_path / "run")
    line = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 1 and line.startswith(f"training.train: error: --data {reals}: the training set"), r.stderr
    assert "12 real and 0 fake" in line and "needs both" in line and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_at_an_epoch_boundary_with_how_to_resume(data, tmp_path, sig):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "training.train", "--data", str(data), *TINY, "--epochs", "500",
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    last = err.strip().splitlines()[-1]
    kept = _epoch_of(out / "last.pt")
    assert last == (f"training.train: interrupted; {out / 'last.pt'} keeps epoch {kept}: resume with --resume "
                    f"{out / 'last.pt'}")
    assert _epochs(out / "metrics.jsonl") == list(range(1, kept + 1))


def test_a_signal_before_the_first_epoch_finished_leaves_a_folder_that_takes_the_rerun(data, tmp_path):
    out = tmp_path / "run"
    slow = ["--data", "synthetic:2000", "--val", "synthetic:32", "--input-size", "32", "--batch-size", "2",
            "--workers", "0", "--threads", "1", "--epochs", "1", "--out", str(out)]  # epoch 1: 1000 steps
    proc = subprocess.Popen([sys.executable, "-m", "training.train", *slow], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # the run's first line: the epochs start now
        if "epochs 1..1" in line:
            break
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == (
        "training.train: interrupted before the first epoch finished; nothing to resume, run the command again")
    assert not (out / "last.pt").exists()
    r = run_module("training.train", "--data", data, *TINY, "--epochs", "1", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _epochs(out / "metrics.jsonl") == [1]
