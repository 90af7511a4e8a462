"""The TensorRT backend's logic without a GPU: per-release fake tensorrt + numpy pycuda, and its
one-line errors (no TensorRT; TensorRT but no GPU) in subprocesses."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from export.engine import onnx_to_engine
from export.trt_build import EngineOptions
from runtime.backends import open_backend, trt_compat
from runtime.backends.tensorrt import TensorRTBackend
from runtime.errors import UserError
from runtime.meta import Meta, read_sidecar, write_sidecar
from tests.helpers import ROOT, TRT_API_DIR
from tests.helpers.fake_cuda import FakeCuda, has_cuda_driver, orin_device, write_crashing_tensorrt
from tests.helpers.models import tiny_onnx
from tests.helpers.trt_fakes import FakeTRT

HERE = orin_device()


@pytest.fixture(params=["8.5.3.1", "10.3.0", "11.4"])
def fakes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeTRT, FakeCuda]:
    cuda = FakeCuda()
    fake = FakeTRT(TRT_API_DIR / f"tensorrt-{request.param}.json", cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    monkeypatch.setitem(sys.modules, "pycuda", cuda.module)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda.driver)
    monkeypatch.setattr(trt_compat, "probe_cuda_device", lambda index=0, timeout=60.0: HERE)
    return fake, cuda


def _engine(tmp: Path, graph: str = "detect", static: int | None = None, **opts) -> Path:
    onnx = tiny_onnx(tmp / f"{graph}.onnx", graph=graph, batch=static)
    return onnx_to_engine(onnx, tmp / f"{graph}.engine", EngineOptions(precision="fp16", **opts))


def _x(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def test_infer_detect(fakes, tmp_path: Path) -> None:
    fake, cuda = fakes
    b = open_backend(_engine(tmp_path))
    assert isinstance(b, TensorRTBackend) and b.max_batch == 16 and b.meta.graph == "detect"
    x = _x(3)
    out = b.infer(x)
    assert set(out) == {"logit"} and out["logit"].shape == (3, 1) and out["logit"].dtype == np.float32
    np.testing.assert_allclose(out["logit"][:, 0], x.reshape(3, -1).mean(1), rtol=1e-5, atol=1e-7)
    out["logit"][:] = 7  # the caller owns the arrays
    np.testing.assert_allclose(b.infer(x[:1])["logit"][0, 0], x[0].mean(), rtol=1e-5, atol=1e-7)
    with pytest.raises(UserError, match="--reconstruct needs the full graph"):
        b.infer(x, reconstruct=True)
    with pytest.raises(ValueError, match="expected 1..16"):
        b.infer(_x(17))
    assert cuda.stack() == [] and cuda.driver_stack() == []  # nothing left pushed on this thread
    b.close()
    b.close()
    assert cuda.freed == set(cuda.memory) and cuda.driver_stack() == [] and cuda.retains == {0: 1}
    assert fake.deserialized == 1


def test_recon_only_when_asked(fakes, tmp_path: Path) -> None:
    fake, cuda = fakes
    with open_backend(_engine(tmp_path, "full", batch=(1, 2, 4))) as b:
        assert b.max_batch == 4
        recon_addr = int(b._dev["recon"])
        x = _x(2)
        out = b.infer(x)
        assert set(out) == {"logit"} and recon_addr not in cuda.dtoh
        out = b.infer(x, reconstruct=True)
        assert recon_addr in cuda.dtoh and out["recon"].shape == (2, 3, 32, 32)
        np.testing.assert_allclose(out["recon"], x / 2, rtol=1e-6)


def test_worker_thread_pushes_the_context(fakes, tmp_path: Path) -> None:
    _, cuda = fakes
    b = TensorRTBackend(str(_engine(tmp_path)))
    results, errors = [], []

    def work() -> None:
        try:
            for i in range(3):
                results.append(b.infer(_x(2, seed=i))["logit"])
            assert cuda.stack() == []
        except Exception as e:  # surfaced below
            errors.append(e)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert not errors and len(results) == 3
    np.testing.assert_allclose(results[2][:, 0], _x(2, seed=2).reshape(2, -1).mean(1), rtol=1e-5, atol=1e-7)
    b.close()


def test_static_batch_engine(fakes, tmp_path: Path) -> None:
    with TensorRTBackend(str(_engine(tmp_path, static=2))) as b:
        assert b.max_batch == 2 and b.infer(_x(2))["logit"].shape == (2, 1)


def _rewrite_sidecar(engine: Path, **changes) -> None:
    meta, raw = read_sidecar(engine)
    extra = {k: v for k, v in raw.items() if k not in Meta.__dataclass_fields__}
    write_sidecar(engine, meta.with_(**changes), extra)


def test_refuses_other_release_and_gpu_before_loading(fakes, tmp_path: Path, monkeypatch) -> None:
    fake, _ = fakes
    engine = _engine(tmp_path)
    _rewrite_sidecar(engine, tensorrt_version="8.4.9")
    with pytest.raises(UserError, match=r"built with TensorRT 8\.4\.9.*rebuild it here with: python -m export\.engine "
                                        r"--onnx .*detect\.onnx --precision fp16"):
        TensorRTBackend(str(engine))
    _rewrite_sidecar(engine, tensorrt_version=fake.version, device="NVIDIA GeForce RTX 3060", compute_capability="8.6")
    with pytest.raises(UserError, match="built for NVIDIA GeForce RTX 3060.*this is NVIDIA Jetson AGX Orin"):
        TensorRTBackend(str(engine))
    assert fake.deserialized == 0
    engine.write_bytes(engine.read_bytes() + b" ")
    with pytest.raises(UserError, match="does not match its sidecar"):
        TensorRTBackend(str(engine))


def test_version_compatible_plan_allows_host_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = FakeCuda()
    fake = FakeTRT(TRT_API_DIR / "tensorrt-10.13.0.35.json", cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    monkeypatch.setitem(sys.modules, "pycuda", cuda.module)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda.driver)
    monkeypatch.setattr(trt_compat, "probe_cuda_device", lambda index=0, timeout=60.0: HERE)
    engine = _engine(tmp_path, version_compatible=True, hardware_compatible=True)
    raw = read_sidecar(engine)[1]
    assert raw["version_compatible"] is True and raw["hardware_compatible"] == "AMPERE_PLUS"
    monkeypatch.setattr(trt_compat, "probe_cuda_device",
                        lambda index=0, timeout=60.0: trt_compat.CudaDevice(0, "NVIDIA H100", "9.0", 1 << 36))
    with TensorRTBackend(str(engine)) as b:  # another Ampere+ GPU: accepted
        assert b._runtime._state.get("engine_host_code_allowed") is True


# --- issue #15 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("batch,static", [((4, 4, 4), None), ((2, 4, 8), None), (None, 3)])
def test_partial_batch_is_padded_to_the_profile_minimum(fakes, tmp_path: Path, batch, static) -> None:
    """#15.1: TensorRT refuses shapes below the profile minimum (the fake's set_input_shape returns
    False, as the real one does); the backend pads with zero rows and returns the first n."""
    fake, cuda = fakes
    engine = _engine(tmp_path, static=static, **({"batch": batch} if batch else {}))
    with TensorRTBackend(str(engine)) as b:
        lo = batch[0] if batch else static
        assert b.min_batch == lo and b.describe()["min_batch"] == lo
        for n in sorted({1, lo - 1, lo, b.max_batch} - {0}):
            x = _x(n, seed=n)
            out = b.infer(x)["logit"]
            assert out.shape == (n, 1)
            np.testing.assert_allclose(out[:, 0], x.reshape(n, -1).mean(1), rtol=1e-5, atol=1e-7)
        ctx = b._context
        assert not ctx.set_input_shape("input", (lo - 1, 3, 32, 32)) or lo == 1  # the fake is strict


def test_full_graph_partial_batch_recon(fakes, tmp_path: Path) -> None:
    with TensorRTBackend(str(_engine(tmp_path, "full", batch=(2, 2, 2)))) as b:
        x = _x(1)
        out = b.infer(x, reconstruct=True)
        assert out["recon"].shape == (1, 3, 32, 32) and out["logit"].shape == (1, 1)
        np.testing.assert_allclose(out["recon"], x / 2, rtol=1e-6)


def test_open_close_leaks_no_stream(fakes, tmp_path: Path) -> None:
    """#15.4: pycuda destroys a stream in its own context; dropped after the context was detached,
    the destruction fails (swallowed) and the stream leaks: one per open/close."""
    _, cuda = fakes
    engine = _engine(tmp_path)
    for i in range(5):
        b = TensorRTBackend(str(engine))
        b.infer(_x(2, seed=i))
        assert len(cuda.live_streams()) == 1
        b.close()
        assert cuda.live_streams() == [] and cuda.leaked == []
        del b
        gc.collect()
    assert cuda.leaked == [] and cuda.freed == set(cuda.memory)


@pytest.mark.parametrize("core", [0, 1])
def test_dla_plan_loads_on_its_core(fakes, tmp_path: Path, core: int) -> None:
    """#15.5: a DLA plan deserializes only with IRuntime.DLA_core set to its core (default 0 on 8.x,
    -1 from 10.0); the backend sets it from the sidecar, as trtexec does, and pads partial batches."""
    fake, _ = fakes
    engine = _engine(tmp_path, dla_core=core, batch=(4, 4, 4))
    with TensorRTBackend(str(engine)) as b:
        assert b._runtime.DLA_core == core and b.min_batch == b.max_batch == 4
        x = _x(1)
        np.testing.assert_allclose(b.infer(x)["logit"][0, 0], x.mean(), rtol=1e-5, atol=1e-7)
    fake.dla_cores = core  # a device with fewer cores than the plan needs
    with pytest.raises(UserError, match=f"built for DLA core {core}, this device has {core} DLA core"):
        TensorRTBackend(str(engine))


def test_version_compatible_across_majors_per_nvidia(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """#15.8: a version-compatible plan from 10.3 loads on 11.x; one from 8.6 is refused there."""
    for built, running, ok in (("10.3.0", "11.4", True), ("8.6.1", "11.4", False)):
        cuda = FakeCuda()
        fake = FakeTRT(TRT_API_DIR / f"tensorrt-{built}.json", cuda)
        for name, mod in (("tensorrt", fake.module), ("pycuda", cuda.module), ("pycuda.driver", cuda.driver)):
            monkeypatch.setitem(sys.modules, name, mod)
        monkeypatch.setattr(trt_compat, "probe_cuda_device", lambda index=0, timeout=60.0: HERE)
        engine = _engine(tmp_path / built, version_compatible=True)
        run = FakeTRT(TRT_API_DIR / f"tensorrt-{running}.json", cuda)
        monkeypatch.setitem(sys.modules, "tensorrt", run.module)
        if ok:
            with TensorRTBackend(str(engine)) as b:
                assert b.infer(_x(1))["logit"].shape == (1, 1)
        else:
            with pytest.raises(UserError, match=f"built with TensorRT {built}.*version-compatible plans"):
                TensorRTBackend(str(engine))


def _open_in_subprocess(engine: Path, env: dict) -> subprocess.CompletedProcess:
    code = ("import sys\nfrom runtime.errors import run_cli\nfrom runtime.backends import open_backend\n"
            "run_cli(lambda: open_backend(sys.argv[1]).close(), 'jrc')\n")
    return subprocess.run([sys.executable, "-c", code, str(engine)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def _plain_engine(tmp: Path) -> Path:
    engine = tmp / "detect.fp16.engine"
    engine.write_bytes(b"not a real plan")
    write_sidecar(engine, Meta(graph="detect", outputs=("logit",), precision="fp16", tensorrt_version="10.3.0",
                               device="Orin", compute_capability="8.7", profile={"min": 1, "opt": 4, "max": 8}),
                  {"onnx": "detect.onnx", "build_command": "python -m export.engine --onnx detect.onnx "
                   "--precision fp16 --out detect.fp16.engine"})
    return engine


def test_without_tensorrt_one_line(tmp_path: Path) -> None:
    block = tmp_path / "block"
    block.mkdir()
    (block / "tensorrt.py").write_text("raise ModuleNotFoundError(\"No module named 'tensorrt'\", name='tensorrt')\n")
    p = _open_in_subprocess(_plain_engine(tmp_path), {**os.environ, "PYTHONPATH": str(block)})
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1, p.stderr
    assert lines[0].startswith("jrc: error: tensorrt is not installed") and "pip install tensorrt" in lines[0]


@pytest.mark.skipif(has_cuda_driver(), reason="this machine has an NVIDIA driver: the no-GPU path is not reachable")
def test_tensorrt_without_gpu_never_deserializes(tmp_path: Path) -> None:
    marker = tmp_path / "reached"
    env = {**os.environ, "PYTHONPATH": str(write_crashing_tensorrt(tmp_path / "site", marker))}
    p = _open_in_subprocess(_plain_engine(tmp_path), env)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1, p.stderr
    assert lines[0].startswith("jrc: error: ") and ("NVIDIA driver" in lines[0] or "CUDA device" in lines[0])
    assert not marker.exists()


def test_module_imports_without_tensorrt_or_pycuda() -> None:
    code = ("import sys\nfor m in ('tensorrt', 'pycuda', 'pycuda.driver', 'torch', 'onnx'):\n    sys.modules[m] = None\n"
            "import runtime.backends.tensorrt, runtime.backends.trt_compat, runtime.onnx_proto\nprint('ok')\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "ok", p.stderr


# --- issue #30 ----------------------------------------------------------------------------------
def _on_thread(fn) -> list:
    """Run ``fn`` on a new thread; returns what it raised (nothing: [])."""
    errors: list = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:  # surfaced by the caller
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return errors


def test_close_leaves_no_context_current_on_any_thread(fakes, tmp_path: Path) -> None:
    """#30.1: pycuda's detach() of a primary context that is not current pushes it and releases it
    (which pops nothing): every close left it current on the closing thread, and a close on another
    thread leaked the retain. One retained context per device, pushed and popped around use."""
    _, cuda = fakes
    engine = _engine(tmp_path)
    for _ in range(3):
        b = TensorRTBackend(str(engine))
        b.infer(_x(2))
        b.close()
        assert cuda.driver_stack() == [] and cuda.stack() == []
    b = TensorRTBackend(str(engine))  # opened here, used and closed on a worker thread
    stacks: list = []
    assert _on_thread(lambda: (b.infer(_x(1)), b.close(), stacks.append(list(cuda.driver_stack())))) == []
    assert stacks == [[]] and cuda.driver_stack() == []
    assert cuda.leaked == [] and cuda.retains == {0: 1}  # one retain for the process, none leaked
    assert len(cuda.contexts) == 1 and not cuda.contexts[0].detached


def test_face_graph_close_leaves_no_context_current(fakes, tmp_path: Path) -> None:
    from export.engine import faces_to_engines
    from runtime.backends.tensorrt import TensorRTGraph
    from runtime.faces_cnn import BUNDLED

    _, cuda = fakes
    faces_to_engines(BUNDLED, tmp_path, EngineOptions(precision="fp32"))
    g = TensorRTGraph(str(tmp_path / "rnet.engine"))
    assert _on_thread(g.close) == []
    assert cuda.driver_stack() == [] and cuda.leaked == [] and cuda.retains == {0: 1}


def test_failed_open_pops_the_context_even_when_freeing_fails(fakes, tmp_path: Path, monkeypatch) -> None:
    """#30.12: an __init__ failure must pop the context even when releasing what was allocated
    raises too (pycuda aborts the process at exit when its context stack is not empty)."""
    _, cuda = fakes
    engine = _engine(tmp_path)

    def broken_open(self, path, meta, raw) -> None:
        self._allocs.append(types.SimpleNamespace(free=lambda: (_ for _ in ()).throw(RuntimeError("free failed"))))
        raise UserError(f"{path}: broken")

    monkeypatch.setattr(TensorRTBackend, "_open", broken_open)
    with pytest.raises((UserError, RuntimeError)):
        TensorRTBackend(str(engine))
    assert cuda.stack() == [] and cuda.driver_stack() == []


def test_one_logger_for_every_builder_and_runtime(fakes, tmp_path: Path) -> None:
    """#30.6: TensorRT keeps one logger per process; a builder or runtime given another one makes
    TensorRT warn, and its messages go to the first logger. One shared logger, always."""
    fake, _ = fakes
    engine = _engine(tmp_path)
    with TensorRTBackend(str(engine)), TensorRTBackend(str(engine)):
        pass
    _engine(tmp_path / "again")
    assert fake.logger is trt_compat.shared_logger(fake.module) and fake.logger_warnings == []


def test_quiet_deserialize_silences_only_its_own_thread(fakes, tmp_path: Path, capfd) -> None:
    """#30.6: TensorRT's error lines for bytes that are not a plan are replaced by the one-line error,
    and the quiet level is this thread's: another thread's messages still show meanwhile."""
    fake, _ = fakes
    engine = _engine(tmp_path)
    meta, raw = read_sidecar(engine)
    engine.write_bytes(b"not a plan at all")  # the sidecar's sha256 follows: only TensorRT can tell
    write_sidecar(engine, meta, {k: v for k, v in raw.items() if k not in Meta.__dataclass_fields__
                                 and k != "plan_sha256"})
    with pytest.raises(UserError, match="could not load this plan"):
        TensorRTBackend(str(engine))
    assert "Magic tag" not in capfd.readouterr().err
    logger = trt_compat.shared_logger(fake.module)
    inside, release = threading.Event(), threading.Event()

    def quiet_thread() -> None:
        with trt_compat.log_level(logger, "INTERNAL_ERROR"):
            inside.set()
            release.wait(10)
            fake.log("ERROR", "quiet thread's error")

    t = threading.Thread(target=quiet_thread)
    t.start()
    inside.wait(10)
    fake.log("ERROR", "main thread's error")  # while the other thread is quiet
    release.set()
    t.join()
    err = capfd.readouterr().err
    assert "main thread's error" in err and "quiet thread's error" not in err


@pytest.mark.parametrize("graph", ["detect", "full"])
def test_fp16_io_engine_runs(fakes, tmp_path: Path, graph: str) -> None:
    """#30.16: engines whose I/O tensors are HALF (built from an FP16-I/O ONNX) are read and written
    in fp16 by the fake as by TensorRT; the backend feeds fp16 and returns float32."""
    fake, _ = fakes
    onnx = tiny_onnx(tmp_path / f"{graph}.fp16.onnx", graph=graph, io_type="float16")
    engine = onnx_to_engine(onnx, tmp_path / f"{graph}.fp16.engine", EngineOptions(precision="fp16"))
    with TensorRTBackend(str(engine)) as b:
        assert b._input.dtype == np.float16 and b._input.type_name == "HALF"
        x = _x(3)
        out = b.infer(x, reconstruct=graph == "full")
        assert out["logit"].dtype == np.float32
        want = x.astype(np.float16).astype(np.float32).reshape(3, -1).mean(1)
        np.testing.assert_allclose(out["logit"][:, 0], want, rtol=2e-3, atol=2e-3)
        if graph == "full":
            np.testing.assert_allclose(out["recon"], x.astype(np.float16) / 2, rtol=2e-3, atol=2e-3)


def test_non_float_input_is_refused(fakes, tmp_path: Path) -> None:
    """#30.11: float32 faces copied into a UINT8 (or INT8, INT32) binding with casting='unsafe' are
    truncated silently; such a plan is refused in one line when it is opened."""
    fake, cuda = fakes
    onnx = tiny_onnx(tmp_path / "u8.onnx", io_type="uint8")
    engine = onnx_to_engine(onnx, tmp_path / "u8.engine", EngineOptions(precision="fp32"))
    with pytest.raises(UserError, match=r"input 'input' is UINT8, expected FLOAT or HALF.*rebuild") as e:
        TensorRTBackend(str(engine))
    assert "\n" not in str(e.value) and cuda.stack() == [] and cuda.driver_stack() == []


def test_hardware_compatible_plan_refused_where_it_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """#30.13: TensorRT supports hardware compatibility on Ampere+ GPUs and not on JetPack, and plans
    are not portable across platforms: refused with the reason before anything deserializes."""
    cuda = FakeCuda()
    fake = FakeTRT(TRT_API_DIR / "tensorrt-10.13.0.35.json", cuda)
    for name, mod in (("tensorrt", fake.module), ("pycuda", cuda.module), ("pycuda.driver", cuda.driver)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(trt_compat, "probe_cuda_device",
                        lambda index=0, timeout=60.0: trt_compat.CudaDevice(0, "NVIDIA A100", "8.0", 1 << 36))
    engine = _engine(tmp_path, hardware_compatible=True)
    monkeypatch.setattr(trt_compat, "is_jetson", lambda: True)
    with pytest.raises(UserError, match=r"hardware-compatible \(AMPERE_PLUS\) plan.*not on JetPack") as e:
        TensorRTBackend(str(engine))
    assert "rebuild it here with: python -m export.engine" in str(e.value) and "--hardware-compatible" not in str(e.value)
    monkeypatch.setattr(trt_compat, "is_jetson", lambda: False)
    monkeypatch.setattr(trt_compat, "probe_cuda_device",
                        lambda index=0, timeout=60.0: trt_compat.CudaDevice(0, "Tesla T4", "7.5", 1 << 34))
    with pytest.raises(UserError, match=r"this is Tesla T4 \(7.5\) \(a hardware-compatible plan runs on Ampere"):
        TensorRTBackend(str(engine))
    _rewrite_sidecar(engine, compute_capability="8.0")
    meta, raw = read_sidecar(engine)
    write_sidecar(engine, meta, {**{k: v for k, v in raw.items() if k not in Meta.__dataclass_fields__},
                                 "platform": "windows-amd64"})
    with pytest.raises(UserError, match="built on windows-amd64, this is .*not portable across platforms"):
        TensorRTBackend(str(engine))
    assert fake.deserialized == 0
