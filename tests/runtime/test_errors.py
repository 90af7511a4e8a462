"""Bad input to ``python -m runtime.detect``: one line naming the input and the cause, a documented
exit code, no traceback, and nothing already written is damaged. Each case runs in a subprocess."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time

import cv2
import pytest

from tests.helpers import detect_process, run_module
from tests.helpers.media import gray_video
from tests.helpers.models import make_onnx


def check_error(res: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert res.returncode == code, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(err) == 1, res.stderr
    assert err[0].startswith("jrc-detect: error: ")
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    f = {"model": make_onnx(d / "m.onnx"), "bare": make_onnx(d / "bare.onnx", meta=False),
         "video": gray_video(d / "ok.mp4", [128] * 3)}
    good = f["model"].read_bytes()
    (d / "trunc.onnx").write_bytes(good[: len(good) // 2])
    (d / "zero.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("not a video\n" * 50)
    (d / "text.png").write_text("not an image\n")
    (d / "model.pt").write_bytes(b"x")
    (d / "empty").mkdir()
    f.update({k: d / v for k, v in (("trunc", "trunc.onnx"), ("zero", "zero.mp4"), ("text_mp4", "text.mp4"),
                                    ("text_png", "text.png"), ("pt", "model.pt"), ("empty", "empty"))})
    f["dir"] = d
    return f


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


CASES = [  # (name, engine key or path, source key or literal, extra args, exit code, words in the message)
    ("missing engine", "nope.onnx", "video", [], 1, ["nope.onnx", "no such file"]),
    ("unknown model type", "pt", "video", [], 1, ["model.pt", "unsupported model file type"]),
    ("truncated onnx", "trunc", "video", [], 1, ["trunc.onnx"]),
    ("onnx without metadata", "bare", "video", [], 1, ["bare.onnx", "--input-size --mean --std"]),
    ("missing source", "model", "nothing.mp4", [], 1, ["nothing.mp4", "no such file"]),
    ("empty folder", "model", "empty", [], 1, ["empty", "no images or videos"]),
    ("glob matching nothing", "model", "*.nomatch.mp4", [], 1, ["*.nomatch.mp4", "matches no"]),
    ("zero-byte video", "model", "zero", [], 1, ["zero.mp4", "empty"]),
    ("not a video", "model", "text_mp4", [], 1, ["text.mp4", "cannot be decoded"]),
    ("unsupported image", "model", "text_png", [], 1, ["text.png", "not a decodable image"]),
    ("camera that will not open", "model", "57", ["--timeout", "3"], 1, ["57", "could not be opened"]),
    ("reconstruct on a detect graph", "model", "video", ["--reconstruct"], 1, ["m.onnx", "full graph"]),
    ("provider not installed", "model", "video", ["--provider", "cuda"], 1, ["CUDAExecutionProvider"]),
    ("no GUI for --show", "model", "video", ["--show"], 1, ["--show", "GUI"]),
    # values out of range are a bad command line: exit 2, like argparse's own errors
    ("bad flag value", "model", "video", ["--stride", "0"], 2, ["--stride 0"]),
    ("bad scan interval", "model", "video", ["--scan-every", "0"], 2, ["--scan-every 0", "at least 1"]),
    ("max frames 0", "model", "video", ["--max-frames", "0"], 2, ["--max-frames 0", "at least 1"]),
    ("threshold above 1", "model", "video", ["--threshold", "1.5"], 2, ["--threshold 1.5", "probability"]),
    ("timeout nan with a URL", "model", "http://127.0.0.1:9/x.avi", ["--timeout", "nan"], 2, ["--timeout nan"]),
    ("an empty output path", "model", "video", ["--jsonl", ""], 2, ["--jsonl ''", "empty path"]),
    ("an empty event folder", "model", "video", ["--event-media", " "], 2, ["--event-media ' '", "empty path"]),
    ("stride on a live file", "model", "video", ["--stride", "2", "--live", "yes"], 2, ["--stride 2", "--live yes"]),
    ("output below a file", "model", "video", ["--jsonl", "{dir}/m.onnx/o.jsonl"], 1, ["--jsonl", "is a file, not a folder"]),
    ("onnx-only flag on an engine", "x.engine", "video", ["--provider", "cpu"], 2, ["--provider", ".onnx models only"]),
    ("face model missing", "model", "video", ["--face-model", "{dir}/yunet.onnx"], 1, ["yunet.onnx", "no such file"]),
    ("face model not YuNet", "model", "video", ["--face-model", "{dir}/m.onnx"], 1, ["m.onnx", "YuNet"]),
]


@pytest.mark.parametrize("name, engine, source, extra, code, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_an_exit_code(files, name, engine, source, extra, code, needles):
    eng = str(files.get(engine, files["dir"] / engine))
    src = files.get(source)
    src = str(src) if src is not None else (str(files["dir"] / source) if "*" in source else source)
    extra = [x.replace("{dir}", str(files["dir"])) for x in extra]
    res = run_module("runtime.detect", "--engine", eng, "--source", src, "--quiet", *extra, timeout=60)
    check_error(res, code, *needles)


def test_usage_errors_exit_2(files):
    res = run_module("runtime.detect", "--engine", str(files["model"]), "--source", "x", "--no-such-flag")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    res = run_module("runtime.detect", "--source", "x")
    assert res.returncode == 2 and "--engine" in res.stderr


def test_unreachable_and_stalled_urls_fail_within_the_timeout(files):
    res = run_module("runtime.detect", "--engine", str(files["model"]), "--source",
                     f"http://127.0.0.1:{_closed_port()}/x.mp4", "--timeout", "2", timeout=60)
    check_error(res, 1, "127.0.0.1", "could not be opened")
    server = socket.socket()  # accepts connections and never answers
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept())
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        t0 = time.monotonic()
        res = run_module("runtime.detect", "--engine", str(files["model"]), "--source",
                         f"rtsp://127.0.0.1:{server.getsockname()[1]}/live", "--timeout", "2", timeout=60)
        assert time.monotonic() - t0 < 20
        check_error(res, 1, "rtsp://127.0.0.1")
    finally:
        stop.set()
        t.join()
        server.close()


def test_summary_is_written_on_error_and_earlier_results_survive(files, tmp_path):
    jsonl = tmp_path / "o.jsonl"
    jsonl.write_text('{"earlier": true}\n')
    res = run_module("runtime.detect", "--engine", str(files["model"]), "--source", str(files["text_mp4"]),
                     "--jsonl", str(jsonl), "--summary", str(tmp_path / "s.json"))
    check_error(res, 1, "text.mp4")
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["status"] == "error" and s["exit_code"] == 1 and "text.mp4" in s["error"] and s["frames"] == 0
    assert jsonl.read_text() == '{"earlier": true}\n'  # nothing was processed, so nothing was touched


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_stop_cleanly_with_complete_outputs(files, tmp_path, sig):
    clip = gray_video(tmp_path / "long.mp4", [200] * 250, size=(96, 64))
    jsonl, summary, saved = tmp_path / "o.jsonl", tmp_path / "s.json", tmp_path / "a.mp4"
    proc = detect_process("--engine", str(files["model"]), "--source",
                             str(clip), "--faces", "none", "--live", "yes", "--jsonl", str(jsonl), "--summary",
                             str(summary), "--save", str(saved), "--quiet")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not jsonl.exists() or jsonl.read_text().count("\n") < 5):
        time.sleep(0.1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err
    recs = [json.loads(x) for x in jsonl.read_text().splitlines()]  # every line complete
    s = json.loads(summary.read_text())
    assert s["status"] == "interrupted" and s["exit_code"] == 130 and s["frames"] == len(recs) >= 5
    assert s["frames"] < 250
    cap = cv2.VideoCapture(str(saved))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == len(recs)  # the annotated video plays, every processed frame in it


@pytest.mark.parametrize("module, args", [
    ("runtime.detect", ["--engine", "{e}", "--source", "{e}"]),
    ("export.triton", ["--model", "{e}", "--out", "{d}/repo"]),
    ("export.deepstream", ["--engine", "{e}"]),
])
def test_a_missing_engine_says_how_engines_are_made_in_every_tool(tmp_path, module, args):
    engine = tmp_path / "detect.fp16.engine"
    r = run_module(module, *[a.format(e=engine, d=tmp_path) for a in args], timeout=120)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(err) == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{engine}: no such engine" in err[0] and "python -m export.engine --onnx" in err[0]


def test_threads_far_above_the_cores_are_capped_with_a_warning(files):
    """A unit file tuned on a bigger box still starts: --threads beyond 4x the usable cores is
    capped there (ONNX Runtime's threads would only wait for each other), and said once."""
    from runtime.pipeline import usable_cores

    res = run_module("runtime.detect", "--engine", str(files["model"]), "--source", str(files["video"]), "--quiet",
                     "--threads", "100000", timeout=120)
    assert res.returncode == 0, res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "--threads 100000" in lines[0] and f"using {4 * usable_cores()}" in lines[0]
