"""SIGINT and SIGTERM stop ``runtime.detect`` cleanly, losing no result already produced: exit 130,
the JSONL complete up to the last processed frame (every line valid, frames contiguous), the summary
written (``interrupted``), and the --save video plays with exactly the processed frames in it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import runtime.annotate as annotate_module
from runtime.detect import StopSignals, main
from tests.helpers import detect_process
from tests.helpers.models import make_onnx

FRAMES = 4000


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("sig")
    clip = d / "long.avi"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for i in range(FRAMES):
        out.write(np.full((120, 160, 3), (i * 5) % 256, np.uint8))
    out.release()
    return {"model": make_onnx(d / "m.onnx"), "clip": clip}


@pytest.fixture(autouse=True)
def foreground_sigint():
    """These tests signal this very process: SIGINT at Python's default for each, whatever pytest
    inherited (started in the background, it has SIGINT ignored, which the runtime respects)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _video_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


@pytest.mark.parametrize("sig, save", [(signal.SIGINT, "a.avi"), (signal.SIGTERM, "a.mp4")], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_run_leaves_complete_outputs(setup, tmp_path, sig, save):
    jsonl, summary, saved = tmp_path / "o.jsonl", tmp_path / "s.json", tmp_path / save
    proc = detect_process("--engine", str(setup["model"]), "--source",
                             str(setup["clip"]), "--faces", "none", "--jsonl", str(jsonl), "--summary", str(summary),
                             "--save", str(saved), "--quiet")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and (
                not jsonl.exists() or jsonl.read_bytes().count(b"\n") < 20):
            time.sleep(0.02)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and [x for x in err.splitlines() if x.strip()] == [
        "jrc-detect: interrupted; results so far are written"]
    recs = [json.loads(x) for x in jsonl.read_text().splitlines()]  # every line is whole, valid JSON
    n = len(recs)
    assert 20 <= n < FRAMES  # stopped mid-run
    assert [r["frame"] for r in recs] == list(range(n))  # contiguous up to the last processed frame
    s = json.loads(summary.read_text())
    assert s["status"] == "interrupted" and s["exit_code"] == 130 and s["frames"] == n
    assert _video_frames(saved) == n  # the annotated video plays, with every processed frame


def test_a_signal_during_a_frame_waits_for_that_frame_to_be_written(setup, tmp_path, monkeypatch):
    """The signal arrives while frame 5 is being drawn, after its JSONL line and before its video
    frame: the run still writes that frame everywhere, then stops. JSONL, video and summary agree."""
    real, calls = annotate_module.annotate, []

    def annotate(r, threshold):
        calls.append(r.frame.index)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here, in the middle of the frame's outputs
        return real(r, threshold)

    monkeypatch.setattr(annotate_module, "annotate", annotate)
    code = main(["--engine", str(setup["model"]), "--source", str(setup["clip"]), "--faces", "none", "--quiet",
                 "--jsonl", str(tmp_path / "o.jsonl"), "--summary", str(tmp_path / "s.json"),
                 "--save", str(tmp_path / "a.avi")])
    assert code == 130
    n = len((tmp_path / "o.jsonl").read_text().splitlines())
    assert n == 5 and json.loads((tmp_path / "s.json").read_text())["frames"] == 5
    assert _video_frames(tmp_path / "a.avi") == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_a_background_jobs_ignored_sigint_stays_ignored():
    """``cmd &`` and ``nohup`` start a run with SIGINT ignored: the run must not take it back (a Ctrl-C
    meant for the shell's foreground job would stop it); SIGTERM still stops it cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the fixture puts back what was there
    s = StopSignals()
    s.install()
    try:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # ignored: nothing raised
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    finally:
        s.restore()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_stop_signals_defer_inside_a_frame_and_are_ignored_while_finishing():
    s = StopSignals()
    s.install()
    try:
        s.begin_frame()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # nothing raised: deferred
        with pytest.raises(KeyboardInterrupt):
            s.end_frame()
        s.pending, s.stopping, s.finishing = False, False, True
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # ignored while the results are written
        s.finishing = False  # a new run
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    finally:
        s.restore()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_second_signal_is_ignored_once_the_stop_is_raised():
    """SIGTERM (or SIGINT) then SIGINT: the stop is raised once; the second signal must not raise
    again in the middle of the shutdown (pipeline.stop joining its threads)."""
    s = StopSignals()
    s.install()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGINT)  # not raised: the stop is under way
        time.sleep(0.05)
        s.begin_frame()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        s.end_frame()  # nor deferred to the end of a frame
    finally:
        s.restore()


def test_second_signal_during_shutdown_exits_130_quietly_with_complete_outputs(setup, tmp_path):
    """Real processes: SIGTERM or SIGINT, then SIGINT 0-60 ms later. Every run exits 130 with the
    one 'interrupted' line (no traceback, no abort) and complete, agreeing outputs."""
    runs = []
    for k, (first, delay) in enumerate([(signal.SIGTERM, 0.0), (signal.SIGINT, 0.02), (signal.SIGTERM, 0.06)]):
        d = tmp_path / str(k)
        d.mkdir()
        proc = detect_process("--engine", str(setup["model"]), "--source",
                                 str(setup["clip"]), "--faces", "none", "--jsonl", str(d / "o.jsonl"), "--summary",
                                 str(d / "s.json"), "--save", str(d / "a.avi"), "--quiet")
        runs.append((proc, d, first, delay))
    try:
        for proc, d, first, delay in runs:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None and (
                    not (d / "o.jsonl").exists() or (d / "o.jsonl").read_bytes().count(b"\n") < 5):
                time.sleep(0.01)
            proc.send_signal(first)
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
        for proc, d, first, delay in runs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 130, (first, delay, err)
            assert [x for x in err.splitlines() if x.strip()] == ["jrc-detect: interrupted; results so far are written"]
            recs = [json.loads(x) for x in (d / "o.jsonl").read_text().splitlines()]
            n = len(recs)
            assert n >= 5 and [r["frame"] for r in recs] == list(range(n))
            s = json.loads((d / "s.json").read_text())
            assert s["status"] == "interrupted" and s["frames"] == n
            assert _video_frames(d / "a.avi") == n
    finally:
        for proc, *_ in runs:
            if proc.poll() is None:
                proc.kill()


def test_an_interrupt_before_the_outputs_checks_still_writes_the_summary(setup, tmp_path, monkeypatch, capsys):
    """Ctrl-C in the first moments (here: while the outputs are being checked) still leaves the
    summary the README promises, but never over an input."""
    import runtime.detect as detect

    def interrupted(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(detect, "_check_outputs", interrupted)
    summary = tmp_path / "s.json"
    args = ["--engine", str(setup["model"]), "--source", str(setup["clip"]), "--faces", "none", "--quiet"]
    assert main([*args, "--summary", str(summary)]) == 130
    s = json.loads(summary.read_text())
    assert s["status"] == "interrupted" and s["exit_code"] == 130
    before = setup["clip"].read_bytes()[:64]
    assert main([*args, "--summary", str(setup["clip"])]) == 130
    assert setup["clip"].read_bytes()[:64] == before  # the input was not overwritten
    capsys.readouterr()


def test_an_interrupted_box_says_its_cameras_were_interrupted(setup, tmp_path):
    jsonl, summary = tmp_path / "o.jsonl", tmp_path / "s.json"
    proc = detect_process("--engine", str(setup["model"]), "--source", f"door={setup['clip']}", "--source",
                          f"lobby={setup['clip']}", "--faces", "none", "--jsonl", str(jsonl), "--summary", str(summary),
                          "--quiet")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and (
                not jsonl.exists() or jsonl.read_bytes().count(b"\n") < 20):
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    s = json.loads(summary.read_text())
    assert s["status"] == "interrupted"
    assert [(c["camera"], c["status"]) for c in s["cameras"]] == [("door", "interrupted"), ("lobby", "interrupted")]
