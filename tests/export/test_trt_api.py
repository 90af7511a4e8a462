"""Every tensorrt name the project touches exists in each release it claims (no TensorRT needed).

Two checks against ``trt-api/*.json``:
- static: every ``trt.X`` / ``trt.X.Y`` written in the project's sources exists in some release,
  and one missing from a release is declared in ``trt_compat.VERSION_GATED`` with exactly the releases
  that have it (the claims themselves are checked against the lists too);
- dynamic: per release, the build (every precision and option that release supports) and the run
  path (engine load, inference with and without reconstruction) go end to end against a fake
  ``tensorrt`` made from that release's list, which raises AttributeError for any absent name,
  including instance methods and assignments the static scan cannot see.
"""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from export import trt_build
from export.onnx_io import inspect_onnx
from export.trt_build import EngineOptions, build_serialized, plan_build, resolve_profile
from runtime.backends import trt_compat
from runtime.errors import UserError
from tests.helpers import ROOT, TRT_API_DIR
from tests.helpers.fake_cuda import FakeCuda
from tests.helpers.models import tiny_onnx
from tests.helpers.trt_fakes import FakeTRT, api_files, api_ids

PATTERN = re.compile(r"(?<![\w.])trt\.([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?")
SOURCE_DIRS = ("runtime", "export", "calibration", "benchmarks", "training")
RELEASES = {p.stem: json.loads(p.read_text()) for p in api_files()}


def _release_version(d: dict) -> tuple[int, int, int]:
    return trt_compat.parse_version(d["__version__"])


def _exists(name: str, top: dict) -> bool:
    cls, _, member = name.partition(".")
    if cls not in top:
        return False
    return not member or (isinstance(top[cls], list) and member in top[cls])


def _claimed(rng: str) -> set[str]:
    lo, _, hi = rng.partition("-")
    lo_v = tuple(int(x) for x in lo.split("."))
    hi_v = tuple(int(x) for x in hi.split("."))
    return {r for r, d in RELEASES.items()
            if _release_version(d)[:len(lo_v)] >= lo_v and _release_version(d)[:len(hi_v)] <= hi_v}


def source_names() -> dict[str, set[str]]:
    """name -> files using it, for every trt.X[.Y] written in the project's code."""
    found: dict[str, set[str]] = {}
    for d in SOURCE_DIRS:
        for f in sorted((ROOT / d).rglob("*.py")):
            for m in PATTERN.finditer(f.read_text()):
                if m.group(1).startswith("__") or (m.group(2) or "").startswith("__"):
                    continue  # Python's own machinery (__version__, ILogger.__init__), not API names
                name = m.group(1) + (f".{m.group(2)}" if m.group(2) else "")
                found.setdefault(name, set()).add(str(f.relative_to(ROOT)))
    return found


def test_the_lists_cover_every_generation() -> None:
    majors = {_release_version(d)[:2] for d in RELEASES.values()}
    assert {(8, 5), (8, 6), (11, 4)} <= majors and any(m[0] == 10 for m in majors)


def test_static_names_exist_or_are_gated_correctly() -> None:
    names = source_names()
    assert "BuilderFlag.FP16" in names and "TensorIOMode.INPUT" in names  # the scan sees the code
    problems = []
    for name, files in sorted(names.items()):
        present = {r for r, d in RELEASES.items() if _exists(name, d["top"])}
        if not present:
            problems.append(f"trt.{name} ({', '.join(sorted(files))}) exists in no TensorRT release")
        elif present != set(RELEASES):
            gate = trt_compat.VERSION_GATED.get(name)
            if gate is None:
                problems.append(f"trt.{name} ({', '.join(sorted(files))}) is missing from "
                                f"{sorted(set(RELEASES) - present)} and not in VERSION_GATED")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(trt_compat.VERSION_GATED))
def test_gate_claims_match_the_lists(name: str) -> None:
    present = {r for r, d in RELEASES.items() if _exists(name, d["top"])}
    assert present == _claimed(trt_compat.VERSION_GATED[name]), (name, sorted(present))


# --- dynamic: run the code against each release ----------------------------------------------
def _install(monkeypatch: pytest.MonkeyPatch, fake: FakeTRT, cuda: FakeCuda) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    monkeypatch.setitem(sys.modules, "pycuda", cuda.module)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda.driver)
    monkeypatch.setattr(trt_compat, "probe_cuda_device",
                        lambda index=0, timeout=60.0: trt_compat.CudaDevice(index, "NVIDIA Orin (fake)", "8.7", 1 << 33))
    cal = types.ModuleType("export.trt_calibrator")
    cal.make_calibrator = lambda trt, *a, **k: trt.IInt8EntropyCalibrator2()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "export.trt_calibrator", cal)


def exercise(api: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTRT:
    """Everything the project does with tensorrt, on one release's fake."""
    from export.engine import onnx_to_engine
    from runtime.backends.tensorrt import TensorRTBackend

    cuda = FakeCuda()
    fake = FakeTRT(api, cuda)
    trt = fake.module
    _install(monkeypatch, fake, cuda)
    assert trt_compat.import_tensorrt() is trt
    trt_build.network_flags(trt)
    if trt_build.supports_strongly_typed(trt):
        trt_build.network_flags(trt, strongly_typed=True)
    plain = tiny_onnx(tmp / "detect.onnx")
    qdq = tiny_onnx(tmp / "detect.int8.onnx", qdq=True)
    full = tiny_onnx(tmp / "full.onnx", graph="full")
    newer = trt_build.supports_opt_level(trt)
    runs = [("fp32", plain, {}), ("fp16", plain, {"workspace_mib": 256, "verbose": True}),
            ("int8", qdq, {"timing_cache": tmp / "t.cache"}),
            ("fp16", plain, {"dla_core": 0, "gpu_fallback": True, "batch": (2, 2, 2)})]
    if trt_build.has_calibrators(trt):
        runs.append(("int8", plain, {"calib_data": "synthetic", "calib_cache": tmp / "c.cache"}))
    if newer:
        runs.append(("fp16", plain, {"version_compatible": True, "hardware_compatible": True, "opt_level": 4}))
    for precision, onnx, extra in runs:
        opts = EngineOptions(precision=precision, **extra)
        info = inspect_onnx(onnx)
        plan = plan_build(trt, info, opts)
        src = onnx
        if plan.convert_fp16:
            from export.fp16 import convert_file

            src = convert_file(onnx, tmp / "conv.fp16.onnx")
        build_serialized(trt, src, "input", (3, 32, 32), resolve_profile(info, opts), plan, opts,
                         (lambda: trt.IInt8EntropyCalibrator2()) if plan.int8_mode == "calibrator" else None)
    for onnx, opts in ((full, EngineOptions(precision="fp16", batch=(1, 2, 4))),
                       (plain, EngineOptions(precision="fp32", version_compatible=newer))):
        engine = onnx_to_engine(onnx, tmp / f"{onnx.stem}.engine", opts)
        with TensorRTBackend(str(engine)) as b:
            x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
            out = b.infer(x, reconstruct=b.meta.has_recon)
            np.testing.assert_allclose(out["logit"][:, 0], x.reshape(2, -1).mean(1), rtol=1e-5, atol=1e-6)
            b.describe()
    return fake


@pytest.mark.parametrize("api", api_files(), ids=api_ids())
def test_build_and_run_use_only_names_of_the_release(api: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fake = exercise(api, tmp_path, monkeypatch)  # an absent name raises AttributeError in here
    used = fake.used
    for name in used:
        assert _exists(name, fake.top), name
    core = {"Builder.build_serialized_network", "OnnxParser.parse_from_file", "IBuilderConfig.set_memory_pool_limit",
            "IOptimizationProfile.set_shape", "Runtime.deserialize_cuda_engine", "ICudaEngine.get_tensor_name",
            "IExecutionContext.set_input_shape", "IExecutionContext.set_tensor_address",
            "IExecutionContext.execute_async_v3", "ITimingCache.serialize", "IBuilderConfig.DLA_core"}
    assert core <= used, sorted(core - used)
    v = trt_compat.parse_version(fake.version)
    assert ("NetworkDefinitionCreationFlag.EXPLICIT_BATCH" in used) == (v[0] < 10)
    assert ("BuilderFlag.FP16" in used) == (v[0] < 11)
    assert ("NetworkDefinitionCreationFlag.STRONGLY_TYPED" in used) == (v[0] >= 10)
    assert ("IBuilderConfig.int8_calibrator" in used) == (v[0] < 11)
    assert ("IBuilderConfig.builder_optimization_level" in used) == (v[:2] >= (8, 6))


def test_calibrator_free_release_refuses_plain_int8(tmp_path: Path) -> None:
    trt = FakeTRT(TRT_API_DIR / "tensorrt-11.4.json").module
    assert not trt_build.has_calibrators(trt)
    info = inspect_onnx(tiny_onnx(tmp_path / "d.onnx"))
    with pytest.raises(UserError, match="Q/DQ"):
        plan_build(trt, info, EngineOptions(precision="int8", calib_data="synthetic"))
