"""The TensorRT implicit calibrator without TensorRT: cache keys, batches, API names, TensorRT 11."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from export import trt_calibrator as tc
from runtime.errors import UserError
from runtime.meta import Meta
from runtime.preprocess import to_input
from tests.helpers import ROOT, TRT_API_DIR
from training.calibration_set import CalibrationSet

CALIBRATOR_RELEASES = ("tensorrt-8.5.3.1.json", "tensorrt-8.6.1.json", "tensorrt-10.3.0.json",
                       "tensorrt-10.13.0.35.json")
META = Meta(input_size=16, graph="detect", outputs=("logit",))


def fake_trt(release: str) -> types.ModuleType:
    """A stand-in ``tensorrt`` module with the public names of one release (plain classes)."""
    api = json.loads((TRT_API_DIR / release).read_text())
    mod = types.ModuleType("tensorrt")
    mod.__version__ = api["__version__"] or release[len("tensorrt-"):-len(".json")]
    for name, members in api["top"].items():
        if isinstance(members, list):
            setattr(mod, name, type(name, (), {m: None for m in members if m != "__init__"}))
    return mod


def calib_set(seed: int = 0, n: int = 12) -> CalibrationSet:
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    return CalibrationSet(crops, np.arange(n) % 2, META, f"random{seed}")


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    p = tmp_path / "detect.onnx"
    p.write_bytes(b"not really onnx, only hashed")
    return p


@pytest.fixture
def fake_pycuda(monkeypatch: pytest.MonkeyPatch) -> list:
    """pycuda.driver replaced by a recorder: mem_alloc gives a fake pointer, memcpy_htod copies."""
    copies: list = []

    class Buffer:
        def __init__(self, nbytes: int) -> None:
            self.nbytes = nbytes
            self.freed = False

        def __int__(self) -> int:
            return 0xC0FFEE

        def free(self) -> None:
            self.freed = True

    driver = types.ModuleType("pycuda.driver")
    driver.mem_alloc = Buffer
    driver.memcpy_htod = lambda dst, src: copies.append(np.array(src, copy=True))
    pkg = types.ModuleType("pycuda")
    pkg.driver = driver
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    return copies


def test_calibrator_derives_from_the_release_base_class(onnx_file: Path, tmp_path: Path) -> None:
    trt = fake_trt("tensorrt-10.3.0.json")
    ent = tc.make_calibrator(trt, onnx_file, calib_set(), META, tmp_path / "c.cache", batch_size=4)
    mm = tc.make_calibrator(trt, onnx_file, calib_set(), META, tmp_path / "m.cache", batch_size=4, method="minmax")
    assert isinstance(ent, trt.IInt8EntropyCalibrator2) and not isinstance(ent, trt.IInt8MinMaxCalibrator)
    assert isinstance(mm, trt.IInt8MinMaxCalibrator)
    assert ent.get_batch_size() == 4
    with pytest.raises(UserError, match="calibrators offer"):
        tc.make_calibrator(trt, onnx_file, calib_set(), META, tmp_path / "x.cache", method="percentile")


def test_batches_are_runtime_preprocessing_through_one_device_buffer(onnx_file: Path, tmp_path: Path,
                                                                     fake_pycuda: list) -> None:
    data = calib_set(n=11)  # 2 full batches of 4; the remainder is dropped (TensorRT needs full batches)
    cal = tc.make_calibrator(fake_trt("tensorrt-8.5.3.1.json"), onnx_file, data, META, tmp_path / "c.cache", 4)
    pointers = [cal.get_batch(["input"]), cal.get_batch(["input"]), cal.get_batch(["input"])]
    assert pointers[:2] == [[0xC0FFEE], [0xC0FFEE]] and pointers[2] is None
    assert cal.batches_fed == 2 and len(fake_pycuda) == 2
    for i, sent in enumerate(fake_pycuda):
        want = to_input(data.crops[4 * i: 4 * i + 4], META)
        assert sent.dtype == np.float32 and sent.tobytes() == want.tobytes()
    buffer = cal._device
    cal.free()
    assert buffer.freed


def test_cache_bytes_are_tensorrts_and_the_key_is_checked(onnx_file: Path, tmp_path: Path) -> None:
    trt = fake_trt("tensorrt-10.13.0.35.json")
    cache = tmp_path / "detect.calib"
    raw = b"TRT-100-EntropyCalibration2\ninput: 3c010a14\n\x00\xff binary tail"
    first = tc.make_calibrator(trt, onnx_file, calib_set(), META, cache, 4)
    assert first.read_calibration_cache() is None  # nothing yet: TensorRT calibrates
    first.write_calibration_cache(memoryview(raw))
    assert cache.read_bytes() == raw  # untouched: no header in front of TensorRT's bytes
    key = json.loads(tc.sidecar(cache).read_text())
    assert key["onnx_sha256"] and key["data_sha256"] == calib_set().data_sha256
    assert key["preprocess"]["input_size"] == 16 and key["method"] == "entropy"

    same = tc.make_calibrator(trt, onnx_file, calib_set(), META, cache, 4)
    assert same.read_calibration_cache() == raw

    other_data = tc.make_calibrator(trt, onnx_file, calib_set(seed=1), META, cache, 4)
    assert other_data.read_calibration_cache() is None
    assert tc.make_calibrator(trt, onnx_file, calib_set(), META, cache, 2).read_calibration_cache() is None
    assert tc.make_calibrator(trt, onnx_file, calib_set(), META, cache, 4,
                              method="minmax").read_calibration_cache() is None
    onnx_file.write_bytes(b"a re-exported model")
    assert tc.make_calibrator(trt, onnx_file, calib_set(), META, cache, 4).read_calibration_cache() is None


def test_preprocessing_change_invalidates(onnx_file: Path, tmp_path: Path) -> None:
    trt = fake_trt("tensorrt-10.3.0.json")
    cache = tmp_path / "c.calib"
    tc.make_calibrator(trt, onnx_file, calib_set(), META, cache, 4).write_calibration_cache(b"abc")
    meta2 = META.with_(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    data2 = CalibrationSet(calib_set().crops, calib_set().labels, meta2, "random0")
    assert tc.make_calibrator(trt, onnx_file, data2, meta2, cache, 4).read_calibration_cache() is None
    with pytest.raises(UserError, match="preprocessed for"):
        tc.make_calibrator(trt, onnx_file, data2, META, cache, 4)


def test_stale_cache_is_refused_with_strict_and_replaced_without(onnx_file: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    trt = fake_trt("tensorrt-8.6.1.json")
    cache = tmp_path / "c.calib"
    tc.make_calibrator(trt, onnx_file, calib_set(), META, cache, 4).write_calibration_cache(b"old")
    with pytest.raises(UserError, match="stale .*data_sha256"):
        tc.make_calibrator(trt, onnx_file, calib_set(seed=2), META, cache, 4, strict=True)
    cal = tc.make_calibrator(trt, onnx_file, calib_set(seed=2), META, cache, 4)
    assert "stale" in capsys.readouterr().err
    assert cal.read_calibration_cache() is None
    cal.write_calibration_cache(b"new")
    assert cal.read_calibration_cache() == b"new"
    # a cache whose bytes were replaced behind the sidecar's back is stale too
    cache.write_bytes(b"tampered")
    assert cal.read_calibration_cache() is None
    # as is one without a sidecar (unknown origin)
    cal.write_calibration_cache(b"new")
    tc.sidecar(cache).unlink()
    assert cal.read_calibration_cache() is None


def test_cache_only_mode_needs_a_matching_key(onnx_file: Path, tmp_path: Path) -> None:
    trt = fake_trt("tensorrt-10.3.0.json")
    cache = tmp_path / "c.calib"
    with pytest.raises(UserError, match="--calib-data"):
        tc.make_calibrator(trt, onnx_file, None, META, cache, 4)
    tc.make_calibrator(trt, onnx_file, calib_set(), META, cache, 4).write_calibration_cache(b"bytes")
    cal = tc.make_calibrator(trt, onnx_file, None, META, cache, 4)
    assert cal.read_calibration_cache() == b"bytes" and cal.get_batch(["input"]) is None
    with pytest.raises(UserError, match="stale"):
        tc.make_calibrator(trt, onnx_file, None, META, cache, 8)


@pytest.mark.parametrize("release", CALIBRATOR_RELEASES)
def test_trt_names_used_exist_in_every_calibrator_release(release: str) -> None:
    """Every TensorRT name the calibrator touches exists in 8.5, 8.6 and 10.x."""
    api = json.loads((TRT_API_DIR / release).read_text())["top"]
    trt = fake_trt(release)
    for method, base in tc.BASES.items():
        assert base in api, f"{base} missing in {release}"
        cls = tc._calibrator_class(trt, method)
        overridden = {n for n in vars(cls) if not n.startswith("_")} - {"free"}
        assert overridden <= set(api[base]), f"{sorted(overridden - set(api[base]))} not in {base} of {release}"
        assert {"get_batch", "get_batch_size", "read_calibration_cache", "write_calibration_cache"} <= overridden


def test_module_imports_on_tensorrt_11_and_says_what_to_do_instead(tmp_path: Path) -> None:
    api = json.loads((TRT_API_DIR / "tensorrt-11.4.json").read_text())["top"]
    assert not any(name.startswith("IInt8") for name in api)  # the premise: no calibrators in 11
    code = f"""
import sys, types, json
api = json.load(open({str(TRT_API_DIR / 'tensorrt-11.4.json')!r}))
trt = types.ModuleType("tensorrt"); trt.__version__ = "11.4.0"
for name, members in api["top"].items():
    if isinstance(members, list):
        setattr(trt, name, type(name, (), {{}}))
sys.modules["tensorrt"] = trt
for blocked in ("pycuda", "pycuda.driver", "torch", "onnxruntime"):
    sys.modules[blocked] = None
import export.trt_calibrator as tc
from runtime.errors import UserError
from runtime.meta import Meta
try:
    tc.make_calibrator(trt, "x.onnx", None, Meta(), "x.calib")
except UserError as e:
    print("USERERROR", e)
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "USERERROR" in r.stdout and "calibration.quantize --target trt" in r.stdout
    assert "TensorRT 11.4.0 has no IInt8EntropyCalibrator2" in r.stdout


def test_packages_import_and_help_without_heavy_libraries() -> None:
    code = """
import sys
for blocked in ("tensorrt", "pycuda", "pycuda.driver", "torch", "onnxruntime", "onnx"):
    sys.modules[blocked] = None
import calibration, export.trt_calibrator, calibration.quantize, calibration.report
import training.dataspec, training.calibration_set, calibration.qdq, calibration.sensitivity, calibration.speed
from calibration.quantize import build_parser
build_parser().format_help()
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
