"""The face detector's networks through export.engine and the TensorRT graph runner, without a GPU:
per-release fakes built from trt-api/ check every TensorRT name used; the fake "device" runs the
ONNX with ONNX Runtime so the whole data path (profiles, buffers, copies) is exercised."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.engine import FACE_PROFILES, faces_to_engines, onnx_to_engine
from export.trt_build import EngineOptions
from runtime.errors import UserError
from runtime.faces_cnn import BUNDLED, MtcnnFaceDetector
from runtime.meta import FACE_NETS, sha256_file
from tests.helpers import TRT_API_DIR
from tests.helpers.trt_fakes import FakeTRT, install_trt_fakes

REL = {v: TRT_API_DIR / f"tensorrt-{v}.json" for v in ("8.5.3.1", "8.6.1", "10.3.0", "11.4")}


def _fakes(monkeypatch: pytest.MonkeyPatch, release: str) -> FakeTRT:
    return install_trt_fakes(monkeypatch, release)


def _run_with_onnxruntime(fake: FakeTRT, folder: Path) -> None:
    """Make the fake execution context compute each network with ONNX Runtime on the bundled ONNX."""
    import onnxruntime as ort

    sessions = {n: ort.InferenceSession(str(folder / f"{n}.onnx"), providers=["CPUExecutionProvider"])
                for n in FACE_NETS}
    results: dict[int, dict[str, np.ndarray]] = {}

    def net_of(ctx):
        return "pnet" if len(ctx.engine_.plan["outputs"]) == 2 and ctx.engine_.plan["profile"][0][2] == 12 else (
            "rnet" if len(ctx.engine_.plan["outputs"]) == 2 else "onet")

    def outputs(ctx):
        (name, shape), = ctx.shapes.items()
        key = id(ctx)
        if key not in results or results[key]["__shape"] != shape:
            x = fake.cuda.read(ctx.addr[name], shape, np.float32) if name in ctx.addr else np.zeros(shape, np.float32)
            sess = sessions[net_of(ctx)]
            got = sess.run(None, {"input": x})
            results[key] = {o.name: v for o, v in zip(sess.get_outputs(), got)} | {"__shape": shape}
        return results[key]

    def get_shape(ctx, name):
        # shapes follow the input set last: computed as the network computes them
        return tuple(outputs(ctx)[name].shape)

    def execute(ctx, stream):
        fake.cuda.require_context()
        if not isinstance(stream, int):
            raise TypeError("execute_async_v3 takes the stream's int handle")

        def run() -> None:  # enqueued like the real call: after the queued input copy, before the reads
            results.pop(id(ctx), None)  # recompute from the input now in device memory
            for name, value in outputs(ctx).items():
                if name != "__shape":
                    fake.cuda.write(ctx.addr[name], value.astype(np.float32))

        fake.cuda.stream_for(stream).enqueue(run)
        return True

    fake.b_IExecutionContext_get_tensor_shape = get_shape
    fake.b_IExecutionContext_execute_async_v3 = execute


@pytest.mark.parametrize("release", ["8.5.3.1", "10.3.0", "11.4"])
def test_face_networks_build_with_their_profiles_and_sidecars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              release: str) -> None:
    fake = _fakes(monkeypatch, release)
    built = faces_to_engines(BUNDLED, tmp_path, EngineOptions(precision="fp16"))
    assert [p.name for p in built] == ["pnet.engine", "rnet.engine", "onet.engine"]
    for net, plan_path in zip(FACE_NETS, built):
        plan = json.loads(plan_path.read_bytes())
        assert [tuple(s) for s in plan["profile"]] == list(FACE_PROFILES[net])
        side = json.loads(plan_path.with_name(plan_path.name + ".json").read_text())
        assert side["kind"] == "face_detector" and side["net"] == net and side["tensorrt_version"] == fake.version
        assert side["plan_sha256"] == sha256_file(plan_path) and side["precision"] == "fp16"
        assert side["source_sha256"] == sha256_file(BUNDLED / f"{net}.onnx")
        assert side["build_command"].startswith("python -m export.engine --onnx ")
    # one network on its own, through the classifier's entry point
    out = onnx_to_engine(BUNDLED / "rnet.onnx", tmp_path / "one" / "rnet.engine", EngineOptions(precision="fp32"))
    assert json.loads(out.with_name("rnet.engine.json").read_text())["net"] == "rnet"


def test_face_networks_refuse_int8_and_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fakes(monkeypatch, "10.3.0")
    with pytest.raises(UserError, match="fp32 or fp16"):
        faces_to_engines(BUNDLED, tmp_path, EngineOptions(precision="int8"))
    with pytest.raises(UserError, match="fp32 or fp16"):
        onnx_to_engine(BUNDLED / "pnet.onnx", tmp_path / "p.engine", EngineOptions(batch=(1, 2, 4)))
    with pytest.raises(UserError, match="pnet.onnx missing"):
        faces_to_engines(tmp_path, None, EngineOptions())


def test_face_networks_check_the_device_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """#30.7: --hardware-compatible on a Jetson is refused in one line before any builder call, as for
    the classifier, not a generic build failure."""
    from runtime.backends import trt_compat

    fake = _fakes(monkeypatch, "10.3.0")
    fake.jetson = True
    monkeypatch.setattr(trt_compat, "is_jetson", lambda: True)
    with pytest.raises(UserError, match="not supported on Jetson") as e:
        faces_to_engines(BUNDLED, tmp_path, EngineOptions(precision="fp16", hardware_compatible=True))
    assert "--workspace" not in str(e.value) and fake.built == []


@pytest.mark.parametrize("release", ["8.6.1", "10.3.0"])
def test_the_detector_runs_on_engines_like_on_onnx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   release: str) -> None:
    import cv2
    from skimage import data

    fake = _fakes(monkeypatch, release)
    faces_to_engines(BUNDLED, tmp_path, EngineOptions(precision="fp32"))
    _run_with_onnxruntime(fake, BUNDLED)
    frame = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    on_engines = MtcnnFaceDetector(tmp_path, suffix=".engine")
    want = MtcnnFaceDetector().detect(frame)
    got = on_engines.detect(frame)
    assert [tuple(b) for b in got] == [tuple(b) for b in want] and len(got) == 1
    assert np.allclose(got[0].landmarks, want[0].landmarks, atol=1e-3)
    assert on_engines.describe()["backend"] == "tensorrt"
    assert on_engines.refine(frame, want[0])  # the tracked-frame path (O-Net at batch 1)
    on_engines.close()
    assert fake.cuda.freed  # device buffers released


def test_face_folder_is_checked_whole_before_the_first_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder missing onet.onnx, or an --out that takes no files, builds nothing (not pnet, then an error)."""
    fake = _fakes(monkeypatch, "10.3.0")
    folder = tmp_path / "mtcnn"
    folder.mkdir()
    for net in ("pnet", "rnet"):
        (folder / f"{net}.onnx").write_bytes((BUNDLED / f"{net}.onnx").read_bytes())
    with pytest.raises(UserError, match="onet.onnx missing"):
        faces_to_engines(folder, None, EngineOptions(precision="fp32"))
    (folder / "onet.onnx").write_bytes((BUNDLED / "onet.onnx").read_bytes())
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        faces_to_engines(folder, blocker / "engines", EngineOptions(precision="fp32"))
    (tmp_path / "out" / "onet.engine").mkdir(parents=True)
    with pytest.raises(UserError, match="onet.engine is a folder"):
        faces_to_engines(folder, tmp_path / "out", EngineOptions(precision="fp32"))
    assert not list(tmp_path.rglob("*.engine.json")) and not fake.configs
