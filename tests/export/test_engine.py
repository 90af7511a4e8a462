"""export.engine without TensorRT hardware: build decisions per release, the plan + sidecar it
writes (through per-release fakes), and its one-line errors in a subprocess."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

from export.engine import default_output, fp16_onnx_path, onnx_to_engine, parse_batch
from export.onnx_io import QUANT_KEY, inspect_onnx, load_onnx
from export.trt_build import EngineOptions, check_device, plan_build, resolve_profile
from runtime.backends import trt_compat
from runtime.errors import UserError
from runtime.meta import read_sidecar, sha256_file
from tests.helpers import TRT_API_DIR, run_module
from tests.helpers.fake_cuda import has_cuda_driver, write_crashing_tensorrt
from tests.helpers.models import tiny_onnx
from tests.helpers.trt_fakes import FakeTRT, install_trt_fakes

REL = {v: TRT_API_DIR / f"tensorrt-{v}.json" for v in ("8.5.3.1", "8.6.1", "10.3.0", "10.13.0.35", "11.4")}


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("onnx")
    from export.fp16 import convert_file

    files = {"plain": tiny_onnx(d / "detect.onnx"), "qdq": tiny_onnx(d / "detect.int8.onnx", qdq=True),
             "static": tiny_onnx(d / "static.onnx", batch=2), "full": tiny_onnx(d / "full.onnx", graph="full")}
    files["half"] = convert_file(files["plain"], d / "detect.fp16.onnx")
    files["qdq_half"] = convert_file(files["qdq"], d / "detect.int8.fp16.onnx")
    cpu = load_onnx(files["qdq"])  # as calibration.quantize --target cpu marks its output
    prop = cpu.metadata_props.add()
    prop.key, prop.value = QUANT_KEY, json.dumps({"target": "cpu"})
    files["qdq_cpu"] = d / "detect.int8-cpu.onnx"
    files["qdq_cpu"].write_bytes(cpu.SerializeToString())
    return files


def test_parse_batch() -> None:
    assert parse_batch("4") == (4, 4, 4) and parse_batch("1:4:16") == (1, 4, 16)
    for bad in ("0", "4:2:8", "1:2", "a:b:c", "1:4:16:32"):
        with pytest.raises(UserError, match="--batch"):
            parse_batch(bad)


def test_output_names(tmp_path: Path) -> None:
    assert default_output(Path("m/detect.onnx"), "fp16") == Path("m/detect.fp16.engine")
    assert default_output(Path("detect.int8.onnx"), "int8") == Path("detect.int8.engine")
    assert fp16_onnx_path(Path("full.onnx"), Path("full.engine")) == Path("full.fp16.onnx")
    assert fp16_onnx_path(Path("d.onnx"), Path("d.fp16.engine")) == Path("d.fp16.onnx")
    assert fp16_onnx_path(Path("d.fp16.onnx"), Path("d.fp16.engine")) == Path("d.fp16.built.fp16.onnx")


@pytest.mark.parametrize("release,precision,kind,want", [
    ("8.5.3.1", "fp16", "plain", (False, ("FP16",), None, False)),
    ("8.5.3.1", "int8", "qdq", (False, ("INT8", "FP16"), "qdq", False)),
    ("8.5.3.1", "int8", "plain", (False, ("INT8", "FP16"), "calibrator", False)),
    ("10.3.0", "fp32", "plain", (False, (), None, False)),
    ("10.3.0", "fp16", "plain", (False, ("FP16",), None, False)),
    ("10.3.0", "int8", "qdq", (False, ("INT8", "FP16"), "qdq", False)),
    ("10.3.0", "int8", "plain", (False, ("INT8", "FP16"), "calibrator", False)),
    # 10.12+ deprecates weak typing (#30.8): strongly typed as on 11, except for the calibrator
    ("10.13.0.35", "fp32", "plain", (True, (), None, False)),
    ("10.13.0.35", "fp16", "plain", (True, (), None, True)),
    ("10.13.0.35", "int8", "qdq", (True, (), "qdq", True)),
    ("10.13.0.35", "int8", "plain", (False, ("INT8", "FP16"), "calibrator", False)),
    ("11.4", "fp32", "plain", (True, (), None, False)),
    ("11.4", "fp16", "plain", (True, (), None, True)),
    ("11.4", "fp16", "half", (True, (), None, False)),
    ("11.4", "int8", "qdq", (True, (), "qdq", True)),  # #30.9: the float part cast to fp16
    ("11.4", "int8", "qdq_half", (True, (), "qdq", False)),
    ("10.3.0", "int8", "qdq_half", (False, ("INT8", "FP16"), "qdq", False)),
])
def test_plan_per_release(onnx_files: dict, release: str, precision: str, kind: str, want: tuple) -> None:
    trt = FakeTRT(REL[release]).module
    plan = plan_build(trt, inspect_onnx(onnx_files[kind]),
                      EngineOptions(precision=precision, calib_data="synthetic"))
    assert (plan.strongly_typed, plan.flags, plan.int8_mode, plan.convert_fp16) == want
    if plan.int8_mode == "calibrator":  # every release that has one says what its ranges do not guard
        assert any("from --calib-data alone" in n and "calibration.quantize --target trt" in n for n in plan.notes)
    else:
        assert not any("--calib-data alone" in n for n in plan.notes)
    if release == "10.3.0" and plan.int8_mode == "calibrator":
        assert any("deprecates calibrators" in n for n in plan.notes)


@pytest.mark.parametrize("release,kind,opts,match", [
    ("11.4", "plain", {"precision": "int8", "calib_data": "x"}, "no INT8 calibrators.*calibration.quantize"),
    ("10.3.0", "plain", {"precision": "int8"}, "--calib-data"),
    ("10.3.0", "qdq", {"precision": "fp16"}, "Q/DQ.*--precision int8"),
    ("10.3.0", "half", {"precision": "fp32"}, "FP16 ONNX"),
    ("10.3.0", "plain", {"precision": "fp32", "dla_core": 0}, "DLA runs fp16 or int8"),
    ("10.3.0", "plain", {"precision": "fp16", "gpu_fallback": True}, "--gpu-fallback only"),
    ("8.5.3.1", "plain", {"version_compatible": True}, "8.6 or newer"),
    ("8.5.3.1", "plain", {"hardware_compatible": True}, "8.6 or newer"),
    ("8.5.3.1", "plain", {"opt_level": 3}, "8.6 or newer"),
    ("10.3.0", "plain", {"opt_level": 7}, "0..5"),
    ("10.3.0", "qdq_cpu", {"precision": "int8"}, "ONNX Runtime on the CPU.*--target trt"),
])
def test_plan_refusals(onnx_files: dict, release: str, kind: str, opts: dict, match: str) -> None:
    trt = FakeTRT(REL[release]).module
    with pytest.raises(UserError, match=match):
        plan_build(trt, inspect_onnx(onnx_files[kind]), EngineOptions(**opts))


def test_existing_calibration_cache_is_enough(onnx_files: dict, tmp_path: Path) -> None:
    cache = tmp_path / "c.calib"
    cache.write_bytes(b"TRT-8500-EntropyCalibration2\n")
    plan = plan_build(FakeTRT(REL["8.6.1"]).module, inspect_onnx(onnx_files["plain"]),
                      EngineOptions(precision="int8", calib_cache=cache))
    assert plan.int8_mode == "calibrator"


def test_profiles(onnx_files: dict) -> None:
    dyn, static = inspect_onnx(onnx_files["plain"]), inspect_onnx(onnx_files["static"])
    assert resolve_profile(dyn, EngineOptions()) == (1, 4, 16)
    assert resolve_profile(dyn, EngineOptions(batch=(2, 8, 32))) == (2, 8, 32)
    assert resolve_profile(static, EngineOptions()) == (2, 2, 2)
    with pytest.raises(UserError, match="static batch of 2"):
        resolve_profile(static, EngineOptions(batch=(1, 4, 8)))
    with pytest.raises(UserError, match="--dla needs a static batch"):
        resolve_profile(dyn, EngineOptions(dla_core=0, precision="fp16"))


def _fakes(monkeypatch: pytest.MonkeyPatch, release: str) -> FakeTRT:
    return install_trt_fakes(monkeypatch, release)


@pytest.mark.parametrize("release", ["8.5.3.1", "10.3.0", "11.4"])
def test_engine_and_sidecar(onnx_files: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release: str) -> None:
    fake = _fakes(monkeypatch, release)
    out = tmp_path / "detect.fp16.engine"
    cache = tmp_path / "timing.cache"
    opts = EngineOptions(precision="fp16", batch=(1, 2, 8), timing_cache=cache, workspace_mib=512)
    assert onnx_to_engine(onnx_files["plain"], out, opts) == out
    plan = json.loads(out.read_bytes())  # the fake's "plan": what the builder was asked to do
    assert plan["profile"] == [[1, 3, 32, 32], [2, 3, 32, 32], [8, 3, 32, 32]]
    eb = 1 << int(fake.module.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if release.startswith("8") else 0
    st = 1 << int(fake.module.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if release == "11.4" else 0
    assert plan["network_flags"] == eb | st
    assert plan["flags"] == ([] if release == "11.4" else ["FP16"])
    assert fake.configs[-1].pools == {"WORKSPACE": 512 << 20}
    meta, raw = read_sidecar(out)  # also verifies plan_sha256
    assert (meta.precision, meta.tensorrt_version, meta.device, meta.compute_capability) == (
        "fp16", fake.version, "NVIDIA GeForce RTX 4090", "8.9")
    assert meta.profile == {"min": 1, "opt": 2, "max": 8}
    assert meta.source_sha256 == sha256_file(onnx_files["plain"])
    assert raw["build_command"].startswith("python -m export.engine --onnx ") and "--batch 1:2:8" in raw["build_command"]
    assert cache.read_bytes() == fake.timing_blob()  # written back after the build
    if release == "11.4":  # strongly typed FP16: built from an FP16 copy with fp32 I/O
        half = inspect_onnx(tmp_path / "detect.fp16.onnx")
        assert half.is_fp16 and half.input_type == 1 and set(half.output_types.values()) == {1}


def test_int8_calibrator_gets_what_it_needs(onnx_files: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fakes(monkeypatch, "8.5.3.1")
    calls = []
    cal = types.ModuleType("export.trt_calibrator")

    def make_calibrator(trt, onnx_path, data, meta, cache_path, batch_size, calib_size, method="entropy"):
        fake.cuda.require_context()  # the calibrator's pycuda copies need a current context
        calls.append((trt, onnx_path, data, meta.input_size, cache_path, batch_size, calib_size, method))
        return trt.IInt8EntropyCalibrator2()

    cal.make_calibrator = make_calibrator
    monkeypatch.setitem(sys.modules, "export.trt_calibrator", cal)
    out = tmp_path / "d.int8.engine"
    onnx_to_engine(onnx_files["plain"], out, EngineOptions(precision="int8", calib_data="crops/", batch=(1, 4, 8),
                                                           calib_size=64))
    assert calls == [(fake.module, str(onnx_files["plain"]), "crops/", 32, str(tmp_path / "d.int8.calib"), 4, 64,
                      "entropy")]
    cfg = fake.configs[-1]
    assert "int8_calibrator" in cfg._state and cfg.flags_set == ["INT8", "FP16"]
    # popped after the build and nothing left current (#30.1: a detach() left the context current)
    assert fake.cuda.stack() == [] and fake.cuda.driver_stack() == [] and fake.cuda.retains == {0: 1}
    assert read_sidecar(out)[1]["int8_mode"] == "calibrator"


def test_parser_errors_and_missing_metadata(onnx_files: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fakes(monkeypatch, "10.3.0")
    fake.parse_ok = False
    with pytest.raises(UserError, match="ONNX parser failed: Unsupported node FakeOp"):
        onnx_to_engine(onnx_files["plain"], tmp_path / "x.engine", EngineOptions(precision="fp16"))
    assert not (tmp_path / "x.engine").exists()
    bare = load_onnx(onnx_files["plain"])
    del bare.metadata_props[:]
    import onnx

    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(UserError, match="no jrc metadata"):
        onnx_to_engine(tmp_path / "bare.onnx", tmp_path / "y.engine")


def _one_line_error(p, prog: str) -> str:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1, p.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def test_cli_without_tensorrt(onnx_files: dict, tmp_path: Path) -> None:
    block = tmp_path / "block"
    block.mkdir()
    (block / "tensorrt.py").write_text("raise ModuleNotFoundError(\"No module named 'tensorrt'\", name='tensorrt')\n")
    env = {**os.environ, "PYTHONPATH": str(block)}
    p = run_module("export.engine", "--onnx", onnx_files["plain"], "--precision", "fp16", env=env, timeout=120)
    line = _one_line_error(p, "export.engine")
    assert "tensorrt is not installed" in line and "pip install tensorrt" in line and "JetPack" in line


@pytest.mark.skipif(has_cuda_driver(), reason="this machine has an NVIDIA driver: the no-GPU path is not reachable")
def test_cli_with_tensorrt_but_no_gpu_never_builds(onnx_files: dict, tmp_path: Path) -> None:
    marker = tmp_path / "reached"
    env = {**os.environ, "PYTHONPATH": str(write_crashing_tensorrt(tmp_path / "site", marker))}
    out = tmp_path / "d.engine"
    p = run_module("export.engine", "--onnx", onnx_files["plain"], "--out", out, env=env, timeout=120)
    line = _one_line_error(p, "export.engine")
    assert "NVIDIA driver" in line or "CUDA device" in line
    assert not marker.exists() and not out.exists()


def test_cli_help_and_bad_input(tmp_path: Path) -> None:
    p = run_module("export.engine", "--help", timeout=60)
    assert p.returncode == 0 and "--precision" in p.stdout and "--timing-cache" in p.stdout
    p = run_module("export.engine", "--onnx", tmp_path / "missing.onnx", timeout=60)
    assert "missing.onnx: ONNX model not found" in _one_line_error(p, "export.engine")
    p = run_module("export.engine", "--onnx", tmp_path / "x.onnx", "--batch", "8:4:2", timeout=60)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "--batch '8:4:2'" in lines[0], p.stderr  # a bad command line


def _no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt raises ImportError


def _refusal(argv: list, match: str, code: int = 1) -> None:
    from export.engine import main

    with pytest.raises(UserError, match=match) as e:
        main([str(a) for a in argv])
    assert e.value.exit_code == code, str(e.value)


def test_inputs_are_refused_before_tensorrt_is_needed(onnx_files: dict, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Without TensorRT a wrong input is said first, not 'tensorrt is not installed' (which, once it is
    installed, would only then reveal the input was never usable)."""
    _no_tensorrt(monkeypatch)
    _refusal(["--onnx", onnx_files["qdq_cpu"], "--precision", "int8"], "quantized for ONNX Runtime on the CPU")
    _refusal(["--onnx", onnx_files["plain"], "--precision", "int8"], "needs calibration crops")
    _refusal(["--onnx", onnx_files["qdq"], "--precision", "fp16"], "Q/DQ .INT8. nodes")
    _refusal(["--onnx", onnx_files["half"], "--precision", "fp32"], "this is an FP16 ONNX")
    _refusal(["--onnx", onnx_files["plain"], "--precision", "fp32", "--dla", "0"], "DLA runs fp16 or int8", 2)
    _refusal(["--onnx", onnx_files["plain"], "--gpu-fallback"], "only applies with --dla", 2)
    _refusal(["--onnx", onnx_files["plain"], "--opt-level", "9"], "expected 0..5", 2)
    _refusal(["--onnx", onnx_files["plain"], "--workspace", "0"], "positive number of MiB", 2)
    _refusal(["--onnx", onnx_files["plain"], "--calib-size", "0"], "at least 1", 2)
    _refusal(["--onnx", onnx_files["plain"]], "tensorrt is not installed")  # a good input: now TensorRT is missing


def test_outputs_are_checked_before_tensorrt_and_never_overwrite_the_onnx(onnx_files: dict, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _no_tensorrt(monkeypatch)
    src = tmp_path / "detect.onnx"
    src.write_bytes(onnx_files["plain"].read_bytes())
    before = src.read_bytes()
    _refusal(["--onnx", src, "--out", src], "--out .*the same file as --onnx", 2)
    _refusal(["--onnx", src, "--timing-cache", src], "--timing-cache .*the same file as --onnx", 2)
    _refusal(["--onnx", src, "--precision", "int8", "--calib-data", "synthetic", "--calib-cache", src],
             "--calib-cache .*the same file as --onnx", 2)
    _refusal(["--onnx", src, "--out", tmp_path / "e.engine", "--timing-cache", tmp_path / "e.engine.json"],
             "--timing-cache .*the same file as --out", 2)
    assert src.read_bytes() == before
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _refusal(["--onnx", src, "--out", blocker / "d.engine"], "is a file, not a folder")
    (tmp_path / "dir.engine").mkdir()
    _refusal(["--onnx", src, "--out", tmp_path / "dir.engine"], "is a folder; name a file")
    _refusal(["--onnx", src, "--out", "/proc/jrc-x/d.engine"], "nothing can be written in /proc")


def test_replacing_an_engine_is_said(onnx_files: dict, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    _fakes(monkeypatch, "10.3.0")
    out = tmp_path / "d.fp16.engine"
    onnx_to_engine(onnx_files["plain"], out, EngineOptions(precision="fp16"))
    assert "replacing" not in capsys.readouterr().err
    onnx_to_engine(onnx_files["plain"], out, EngineOptions(precision="fp16"))
    assert f"note: replacing {out} and its sidecar d.fp16.engine.json" in capsys.readouterr().err


# --- issue #15 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("release", ["8.5.3.1", "10.3.0", "11.4"])
def test_garbage_timing_cache_starts_fresh_with_a_note(onnx_files: dict, tmp_path: Path, capsys,
                                                        monkeypatch: pytest.MonkeyPatch, release: str) -> None:
    """#15.6: create_timing_cache returns None for a truncated or foreign file; set_timing_cache(None)
    would be a TypeError. The build goes on with a new cache and says so in one line."""
    fake = _fakes(monkeypatch, release)
    cache = tmp_path / "timing.cache"
    cache.write_bytes(fake.timing_blob()[:7])  # truncated
    onnx_to_engine(onnx_files["plain"], tmp_path / "a.engine", EngineOptions(precision="fp32", timing_cache=cache))
    notes = [ln for ln in capsys.readouterr().out.splitlines() if "timing cache" in ln]
    assert len(notes) == 1 and "not a TensorRT timing cache" in notes[0] and "starting a new one" in notes[0]
    assert cache.read_bytes() == fake.timing_blob()  # replaced by a valid one
    cache.write_bytes(fake.timing_blob("7.0.0"))  # another release's cache: set_timing_cache says False
    onnx_to_engine(onnx_files["plain"], tmp_path / "b.engine", EngineOptions(precision="fp32", timing_cache=cache))
    assert "from another GPU or TensorRT release" in capsys.readouterr().out
    assert cache.read_bytes() == fake.timing_blob()


def test_build_failure_is_one_line(onnx_files: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fakes(monkeypatch, "10.3.0")
    fake.build_ok = False  # build_serialized_network returns None after TensorRT logged why
    with pytest.raises(UserError, match="could not build the engine"):
        onnx_to_engine(onnx_files["plain"], tmp_path / "x.engine", EngineOptions(precision="fp16"))
    assert not (tmp_path / "x.engine").exists()


def test_min_batch_above_one_is_noted_at_build(onnx_files: dict, tmp_path: Path, capsys,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """#15.1: a profile minimum above 1 (or a static batch) means padding; the build says so."""
    _fakes(monkeypatch, "10.3.0")
    onnx_to_engine(onnx_files["plain"], tmp_path / "a.engine", EngineOptions(precision="fp16", batch=(4, 4, 4)))
    out = capsys.readouterr().out
    assert "minimum batch is 4" in out and "pads" in out
    # #30.14: nvinfer raises a smaller batch to the profile minimum itself; only Triton cannot
    assert "as DeepStream's nvinfer does" in out and "Triton's dynamic batcher cannot" in out
    onnx_to_engine(onnx_files["plain"], tmp_path / "b.engine", EngineOptions(precision="fp16", batch=(1, 4, 8)))
    assert "minimum batch" not in capsys.readouterr().out


@pytest.mark.parametrize("jetson,cc,match", [(True, "8.7", "not supported on Jetson"),
                                             (False, "7.5", "compute capability 8.0")])
def test_hardware_compatible_refused_where_it_cannot_build(onnx_files: dict, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, jetson: bool, cc: str,
                                                           match: str) -> None:
    """#15.8: AMPERE_PLUS is not supported on JetPack and needs 8.0+: one line before the builder,
    not a failed build with a hint about --workspace."""
    fake = _fakes(monkeypatch, "10.3.0")
    fake.jetson, fake.device_cc = jetson, tuple(int(x) for x in cc.split("."))
    monkeypatch.setattr(trt_compat, "is_jetson", lambda: jetson)
    monkeypatch.setattr(trt_compat, "probe_cuda_device",
                        lambda index=0, timeout=60.0: trt_compat.CudaDevice(0, "GPU", cc, 1 << 33))
    with pytest.raises(UserError, match=match) as e:
        onnx_to_engine(onnx_files["plain"], tmp_path / "x.engine", EngineOptions(precision="fp16",
                                                                                 hardware_compatible=True))
    assert "--workspace" not in str(e.value) and fake.built == []
    check_device(EngineOptions(hardware_compatible=True), trt_compat.CudaDevice(0, "A100", "8.0", 1), False)


def test_dla_engine_is_static_and_records_its_core(onnx_files: dict, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fakes(monkeypatch, "10.3.0")
    out = onnx_to_engine(onnx_files["plain"], tmp_path / "d.engine", EngineOptions(precision="fp16", dla_core=1,
                                                                                   batch=(4, 4, 4)))
    assert fake.built[-1]["dla_core"] == 1 and read_sidecar(out)[1]["dla_core"] == 1
    assert "--dla 1" in read_sidecar(out)[1]["build_command"]


def test_refused_calibration_profile_is_an_error(onnx_files: dict, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """#30.10: set_calibration_profile answers False for a profile TensorRT cannot use; the build
    must stop there, not calibrate with something else."""
    fake = _fakes(monkeypatch, "10.3.0")
    cal = types.ModuleType("export.trt_calibrator")
    cal.make_calibrator = lambda trt, *a, **k: trt.IInt8EntropyCalibrator2()
    monkeypatch.setitem(sys.modules, "export.trt_calibrator", cal)
    opts = EngineOptions(precision="int8", calib_data="crops/", batch=(1, 4, 8))
    onnx_to_engine(onnx_files["plain"], tmp_path / "ok.engine", opts)
    assert "calibration_profile" in vars(fake.configs[-1])
    fake.calibration_profile_ok = False
    with pytest.raises(UserError, match=r"refused the INT8 calibration profile \[4, 3, 32, 32\]"):
        onnx_to_engine(onnx_files["plain"], tmp_path / "x.engine", opts)
    assert not (tmp_path / "x.engine").exists() and len(fake.built) == 1


@pytest.mark.parametrize("release", ["8.5.3.1", "10.3.0", "11.4"])
def test_sidecar_records_what_was_built(onnx_files: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        release: str) -> None:
    """#30.3/#30.5: each I/O tensor's TensorRT type (Triton's data_type must match it), the ONNX
    TensorRT actually parsed (on 11 the FP16 copy, not the fp32 source) and the platform."""
    _fakes(monkeypatch, release)
    out = onnx_to_engine(onnx_files["plain"], tmp_path / "d.fp16.engine", EngineOptions(precision="fp16"))
    raw = read_sidecar(out)[1]
    assert raw["tensor_types"] == {"input": "FLOAT", "logit": "FLOAT"} and raw["platform"] == trt_compat.engine_platform()
    assert raw["onnx"] == str(onnx_files["plain"])
    built = Path(raw["built_from"])
    assert built == (tmp_path / "d.fp16.onnx" if release == "11.4" else onnx_files["plain"])
    assert raw["built_from_sha256"] == sha256_file(built)
    half = tiny_onnx(tmp_path / "h.onnx", io_type="float16", graph="full")
    out = onnx_to_engine(half, tmp_path / "h.engine", EngineOptions(precision="fp16"))
    assert read_sidecar(out)[1]["tensor_types"] == {"input": "HALF", "logit": "HALF", "recon": "HALF"}


def test_calibrator_engine_records_its_cache(onnx_files: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fakes(monkeypatch, "8.6.1")
    cal = types.ModuleType("export.trt_calibrator")
    cal.make_calibrator = lambda trt, *a, **k: trt.IInt8EntropyCalibrator2()
    monkeypatch.setitem(sys.modules, "export.trt_calibrator", cal)
    out = onnx_to_engine(onnx_files["plain"], tmp_path / "d.int8.engine", EngineOptions(precision="int8",
                                                                                      calib_data="crops/"))
    assert read_sidecar(out)[1]["calib_cache"] == str(tmp_path / "d.int8.calib")
    out = onnx_to_engine(onnx_files["qdq"], tmp_path / "q.int8.engine", EngineOptions(precision="int8"))
    assert read_sidecar(out)[1]["calib_cache"] is None


def test_int8_on_strongly_typed_releases_builds_the_float_part_in_fp16(onnx_files: dict, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """#30.9: strongly typed, TensorRT runs every layer in its ONNX type, so a Q/DQ ONNX left every
    layer without Q/DQ in fp32 on 11 (and 10.12+). The build parses a copy whose float part is fp16
    (opset 19 Q/DQ with fp16 scales), which computes what the fp32 Q/DQ graph does."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    for release in ("10.13.0.35", "11.4"):
        fake = _fakes(monkeypatch, release)
        out = onnx_to_engine(onnx_files["qdq"], tmp_path / release / "d.int8.engine", EngineOptions(precision="int8"))
        raw = read_sidecar(out)[1]
        built = Path(raw["built_from"])
        assert built != onnx_files["qdq"] and fake.built[-1]["flags"] == [] and raw["strongly_typed"]
        assert fake.built[-1]["types"] == {"input": "FLOAT", "logit": "FLOAT"}  # fp32 I/O kept
    m = onnx.load(str(built))
    assert {o.version for o in m.opset_import if o.domain in ("", "ai.onnx")} == {19}
    kinds = {onnx.TensorProto.DataType.Name(t.data_type) for t in m.graph.initializer}
    assert kinds == {"FLOAT16", "INT8"}  # scales, biases and weights fp16; zero points int8
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(built), run(onnx_files["qdq"]), atol=5e-3)
