"""Hostile and broken files must never crash the detector or damage earlier results: each is refused
with one line naming the file, a non-zero exit and no traceback, and the outputs of an earlier run
(--jsonl, --save) are left as they were; the --summary is either left alone or replaced, atomically,
by a complete summary of the failed run.

``runtime.detect.main`` runs in-process (an escaping exception would fail the test as surely as a
traceback in a subprocess); a few cases also go through ``python -m runtime.detect``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.detect import main
from runtime.meta import write_sidecar
from tests.helpers import run_module
from tests.helpers.models import make_external_onnx, make_onnx, tiny_meta

EARLIER = {"jsonl": b'{"earlier": "run"}\n', "summary": b'{"earlier": "summary"}\n', "save": b"earlier video bytes"}


def _mp4(path: Path, frames: int = 30) -> Path:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    for i in range(frames):
        out.write(np.full((48, 64, 3), 4 * i, np.uint8))
    out.release()
    return path


def _avi(path: Path, frames: int = 30) -> Path:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(frames):
        out.write(np.full((48, 64, 3), 4 * i, np.uint8))
    out.release()
    return path


def _external(folder: Path, location: str) -> Path:
    """Our tiny model with its weights in an external file, then pointed at ``location``."""
    def point(t):
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    return make_external_onnx(folder, point)


def _engine(folder: Path, name: str, plan: bytes, sidecar: str | None = "match") -> Path:
    path = folder / name
    path.write_bytes(plan)
    if sidecar == "match":
        write_sidecar(path, tiny_meta().with_(tensorrt_version="10.3.0", device="NVIDIA Jetson AGX Orin",
                                              compute_capability="8.7"))
    elif sidecar is not None:
        (folder / (name + ".json")).write_text(sidecar)
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    f = {"model": make_onnx(d / "m.onnx"), "image": d / "ok.png", "dir": d}
    cv2.imwrite(str(f["image"]), np.full((40, 40, 3), 200, np.uint8))
    # --- sources
    (d / "zero.mp4").write_bytes(b"")
    mp4 = _mp4(d / "full.mp4").read_bytes()
    (d / "cut.mp4").write_bytes(mp4[: len(mp4) // 2])  # mp4v writes its index last: nothing opens
    avi = _avi(d / "full.avi").read_bytes()
    (d / "cut.avi").write_bytes(avi[:4000])  # the header and no whole frame
    (d / "png.mp4").write_bytes(f["image"].read_bytes())
    (d / "text.jpg").write_text("just some text, not a JPEG\n")
    (d / "video.png").write_bytes(avi)
    (d / "empty").mkdir()
    (d / "broken").mkdir()
    (d / "broken" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (d / "broken" / "b.avi").write_bytes(avi[:300])
    # --- models
    good = f["model"].read_bytes()
    (d / "trunc.onnx").write_bytes(good[: len(good) // 2])
    (d / "outside").mkdir()
    (d / "secret.bin").write_bytes(np.ones(64, np.float32).tobytes())
    _external(d / "outside", "../secret.bin")
    (d / "absolute").mkdir()
    _external(d / "absolute", str(d / "secret.bin"))
    junk = os.urandom(4096)
    _engine(d, "noside.engine", junk, sidecar=None)
    _engine(d, "side.engine", junk)
    _engine(d, "hash.engine", junk)
    (d / "hash.engine").write_bytes(junk[::-1])  # the plan changed after its sidecar was written
    _engine(d, "sidejson.engine", junk, sidecar="{this is not JSON")
    _engine(d, "sidenest.engine", junk, sidecar="[" * 50_000)
    _engine(d, "sidehuge.engine", junk, sidecar=json.dumps({"encoder": "edge", "pad": "x" * 200_000}))
    _engine(d, "sidetype.engine", junk, sidecar=json.dumps({"input_size": "large", "plan_sha256": "0"}))
    make_onnx(d / "metajson.onnx", meta_text="{this is not JSON")
    make_onnx(d / "metanest.onnx", meta_text="[" * 50_000)
    make_onnx(d / "metahuge.onnx", meta_text=json.dumps({"encoder": "edge", "pad": "x" * 200_000}))
    make_onnx(d / "metatype.onnx", meta_text=json.dumps({"input_size": [1, 2], "mean": "grey"}))
    return f


CASES = [  # (id, --engine, --source, words the one error line must hold)
    ("zero-byte video", "m.onnx", "zero.mp4", ["zero.mp4", "empty"]),
    ("truncated mp4 (no index)", "m.onnx", "cut.mp4", ["cut.mp4", "cannot be decoded"]),
    ("truncated avi (no frame)", "m.onnx", "cut.avi", ["cut.avi"]),
    ("png named .mp4", "m.onnx", "png.mp4", ["png.mp4", "PNG image", "rename"]),
    ("text named .jpg", "m.onnx", "text.jpg", ["text.jpg", "not a decodable image"]),
    ("video named .png", "m.onnx", "video.png", ["video.png", "AVI video", "rename"]),
    ("empty folder", "m.onnx", "empty", ["empty", "no images or videos"]),
    ("glob matching nothing", "m.onnx", "nothing-*.mp4", ["nothing-*.mp4", "matches no"]),
    ("folder of broken files", "m.onnx", "broken", ["broken", "none of its 2 files"]),
    ("truncated onnx", "trunc.onnx", "ok.png", ["trunc.onnx"]),
    ("external data outside the folder", "outside/ext.onnx", "ok.png", ["ext.onnx", "outside the model's folder"]),
    ("external data at an absolute path", "absolute/ext.onnx", "ok.png", ["ext.onnx", "outside the model's folder"]),
    ("engine, not a plan, no sidecar", "noside.engine", "ok.png", ["noside.engine", "no sidecar"]),
    ("engine, not a plan, with sidecar", "side.engine", "ok.png", []),  # no TensorRT here / rejected plan
    ("sidecar sha256 mismatch", "hash.engine", "ok.png", ["hash.engine", "sha256", "does not match"]),
    ("sidecar not JSON", "sidejson.engine", "ok.png", ["sidejson.engine.json", "not valid JSON"]),
    ("sidecar nested 50000 deep", "sidenest.engine", "ok.png", ["sidenest.engine.json", "not valid JSON"]),
    ("sidecar oversized", "sidehuge.engine", "ok.png", ["sidehuge.engine.json", "more than"]),
    ("sidecar wrong types", "sidetype.engine", "ok.png", ["sidetype.engine.json", "input_size"]),
    ("onnx metadata not JSON", "metajson.onnx", "ok.png", ["metajson.onnx", "not valid JSON"]),
    ("onnx metadata nested 50000 deep", "metanest.onnx", "ok.png", ["metanest.onnx", "not valid JSON"]),
    ("onnx metadata oversized", "metahuge.onnx", "ok.png", ["metahuge.onnx", "more than"]),
    ("onnx metadata wrong types", "metatype.onnx", "ok.png", ["metatype.onnx", "input_size"]),
]


def _earlier_outputs(tmp: Path) -> dict[str, Path]:
    paths = {"jsonl": tmp / "o.jsonl", "summary": tmp / "s.json", "save": tmp / "a.avi"}
    for k, p in paths.items():
        p.write_bytes(EARLIER[k])
    return paths


def _check_outputs_intact(paths: dict[str, Path]) -> None:
    assert paths["jsonl"].read_bytes() == EARLIER["jsonl"]
    assert paths["save"].read_bytes() == EARLIER["save"]
    text = paths["summary"].read_bytes()
    if text != EARLIER["summary"]:  # replaced by the failed run's own summary, complete
        s = json.loads(text)
        assert s["status"] == "error" and s["exit_code"] != 0 and s.get("frames", 0) == 0 and s["error"]
    assert not list(paths["summary"].parent.glob("*.tmp*"))


def one_error_line(err: str, *needles: str) -> str:
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip() and ": warning: " not in x]
    assert len(lines) == 1, err
    assert lines[0].startswith("jrc-detect: error: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.mark.parametrize("name, engine, source, needles", CASES, ids=[c[0] for c in CASES])
def test_hostile_file_one_line_nonzero_nothing_damaged(bad, tmp_path, capsys, name, engine, source, needles):
    d = bad["dir"]
    out = _earlier_outputs(tmp_path)
    code = main(["--engine", str(d / engine), "--source", str(d / source), "--quiet", "--jsonl", str(out["jsonl"]),
                 "--summary", str(out["summary"]), "--save", str(out["save"])])
    assert code == 1
    one_error_line(capsys.readouterr().err, *needles)
    _check_outputs_intact(out)


@pytest.mark.parametrize("engine, source", [("metanest.onnx", "ok.png"), ("m.onnx", "png.mp4"),
                                            ("outside/ext.onnx", "ok.png")])
def test_hostile_files_through_the_cli(bad, tmp_path, engine, source):
    d = bad["dir"]
    out = _earlier_outputs(tmp_path)
    res = run_module("runtime.detect", "--engine", d / engine, "--source", d / source, "--quiet",
                     "--jsonl", out["jsonl"], "--summary", out["summary"], "--save", out["save"], timeout=120)
    assert res.returncode == 1, res.stderr
    one_error_line(res.stderr, Path(engine).name if engine != "m.onnx" else source)
    _check_outputs_intact(out)


def test_external_data_outside_is_never_opened(tmp_path):
    """The refusal comes before anything reads the data: a FIFO as the target would block any reader."""
    (tmp_path / "model").mkdir()
    os.mkfifo(tmp_path / "secret.bin")  # opening it for reading blocks until a writer comes: a test hang
    path = _external(tmp_path / "model", "../secret.bin")
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.full((20, 20, 3), 9, np.uint8))
    res = run_module("runtime.detect", "--engine", path, "--source", img, "--quiet", timeout=60)
    assert res.returncode == 1
    one_error_line(res.stderr, "outside the model's folder")


def test_non_plan_with_a_matching_sidecar_is_one_line_when_tensorrt_rejects_it(tmp_path, monkeypatch):
    """Where TensorRT is present: ``deserialize_cuda_engine`` returns None for bytes that are not a
    plan; that must become the one-line error with the rebuild command (fake TensorRT 10.3)."""
    import sys

    from runtime.backends import open_backend
    from runtime.backends import trt_compat as _trt
    from runtime.errors import UserError
    from tests.helpers import TRT_API_DIR
    from tests.helpers.fake_cuda import FakeCuda, orin_device
    from tests.helpers.trt_fakes import FakeTRT

    cuda = FakeCuda()
    fake = FakeTRT(TRT_API_DIR / "tensorrt-10.3.0.json", cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    monkeypatch.setitem(sys.modules, "pycuda", cuda.module)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda.driver)
    monkeypatch.setattr(_trt, "probe_cuda_device", lambda index=0, timeout=60.0: orin_device())
    levels = []

    def deserialize(rt, blob):  # what TensorRT does with bytes that are not a plan, after logging an error
        levels.append(rt._args[0].level())  # this thread's level on the logger the runtime was made with
        return None

    monkeypatch.setattr(fake, "b_Runtime_deserialize_cuda_engine", deserialize)
    path = _engine(tmp_path, "junk.engine", os.urandom(2048))
    with pytest.raises(UserError) as e:
        open_backend(path)
    assert levels == [_trt.SEVERITY["INTERNAL_ERROR"]]  # TensorRT's own error line is not printed beside ours
    msg = str(e.value)
    assert "\n" not in msg and "junk.engine" in msg and "could not load this plan" in msg
    assert "python -m export.engine" in msg
