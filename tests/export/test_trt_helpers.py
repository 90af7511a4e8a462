"""Unit tests for the TensorRT version helpers (runtime/backends/trt_compat.py, export/trt_build.py), run on
per-release fakes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from export import trt_build
from runtime.backends import trt_compat
from runtime.errors import UserError
from tests.helpers import ROOT, TRT_API_DIR
from tests.helpers.trt_fakes import FakeTRT

R85, R86, R103, R1013, R114 = (FakeTRT(TRT_API_DIR / f"tensorrt-{v}.json").module
                               for v in ("8.5.3.1", "8.6.1", "10.3.0", "10.13.0.35", "11.4"))
ALL = (R85, R86, R103, R1013, R114)


@pytest.mark.parametrize("text,want", [("8.5.2.2", (8, 5, 2)), ("10.3.0", (10, 3, 0)), ("11.4", (11, 4, 0)),
                                       ("10", (10, 0, 0)), (" 8.6.1.6 ", (8, 6, 1)), ("10.13.0.35", (10, 13, 0))])
def test_parse_version(text: str, want: tuple) -> None:
    assert trt_compat.parse_version(text) == want


def test_parse_version_rejects_garbage() -> None:
    with pytest.raises(UserError, match="not a version"):
        trt_compat.parse_version("dev")


def test_network_flags_per_generation() -> None:
    eb85 = 1 << int(R85.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    assert trt_build.network_flags(R85) == eb85 and trt_build.network_flags(R86) != 0
    assert trt_build.network_flags(R103) == 0 and trt_build.network_flags(R114) == 0  # 10: ignored, 11: removed
    st = 1 << int(R114.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert trt_build.network_flags(R114, strongly_typed=True) == st
    assert trt_build.network_flags(R103, strongly_typed=True) == 1 << int(R103.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    with pytest.raises(UserError, match="strongly typed"):
        trt_build.network_flags(R86, strongly_typed=True)


def test_feature_detection_matches_the_matrix() -> None:
    table = {m: (trt_build.supports_precision_flags(m), trt_build.has_calibrators(m), trt_build.calibrators_deprecated(m),
                 trt_build.supports_strongly_typed(m), trt_build.supports_version_compatible(m),
                 trt_build.supports_hardware_compatible(m), trt_build.supports_opt_level(m)) for m in ALL}
    assert table[R85] == (True, True, False, False, False, False, False)
    assert table[R86] == (True, True, False, False, True, True, True)
    assert table[R103] == (True, True, True, True, True, True, True)
    assert table[R1013] == (True, True, True, True, True, True, True)
    assert table[R114] == (False, False, False, True, True, True, True)


def test_too_old_release_is_refused() -> None:
    class Old:
        __version__ = "8.4.3.1"

    with pytest.raises(UserError, match="too old"):
        trt_compat.check_supported(Old)
    for m in ALL:
        trt_compat.check_supported(m)


@pytest.mark.parametrize("built,running,vc,ok", [
    ("10.3.0", "10.3.0", False, True), ("10.3.0.26", "10.3.0.30", False, True), ("10.3.0", "10.4.0", False, False),
    ("8.6.1", "8.6.2", False, False), ("8.6.1", "8.6.2", True, True), ("10.3.0", "10.13.0", True, True),
    ("10.13.0", "10.3.0", True, False),
    # #15.8: NVIDIA's matrix: version-compatible 8.6+ plans run on 9.x/10.x, 10.x plans on 11.x
    ("8.6.1", "10.3.0", True, True), ("8.6.1", "9.3.0", True, True), ("10.3.0", "11.4", True, True),
    ("10.13.0", "11.4", True, True), ("8.6.1", "11.4", True, False), ("8.5.3", "10.3.0", True, False),
    ("11.4", "10.13.0", True, False), ("10.3.0", "11.4", False, False)])
def test_versions_compatible(built: str, running: str, vc: bool, ok: bool) -> None:
    assert trt_compat.versions_compatible(built, running, vc) is ok


def test_devices_compatible() -> None:
    orin = trt_compat.CudaDevice(0, "Orin", "8.7", 0)
    a100 = trt_compat.CudaDevice(0, "NVIDIA A100-SXM4-40GB", "8.0", 0)
    assert trt_compat.devices_compatible("Orin", "8.7", orin)
    assert trt_compat.devices_compatible("NVIDIA Orin", "8.7", orin)  # vendor prefix is not a different GPU
    assert not trt_compat.devices_compatible("NVIDIA GeForce RTX 3060", "8.6", orin)
    assert not trt_compat.devices_compatible("NVIDIA A10", "8.6", trt_compat.CudaDevice(0, "NVIDIA A40", "8.6", 0))
    assert trt_compat.devices_compatible("NVIDIA GeForce RTX 3060", "8.6", a100, "AMPERE_PLUS")
    assert not trt_compat.devices_compatible("NVIDIA GeForce RTX 3060", "8.6",
                                       trt_compat.CudaDevice(0, "Tesla T4", "7.5", 0), "AMPERE_PLUS")
    assert trt_compat.devices_compatible("NVIDIA A10", "8.6", trt_compat.CudaDevice(0, "NVIDIA A40", "8.6", 0),
                                   "SAME_COMPUTE_CAPABILITY")


def test_mismatch_messages_name_the_rebuild_command() -> None:
    raw = {"tensorrt_version": "8.5.2.2", "device": "Orin", "compute_capability": "8.7",
           "build_command": "python -m export.engine --onnx detect.onnx --precision fp16 --out d.engine"}
    here = trt_compat.CudaDevice(0, "NVIDIA GeForce RTX 4090", "8.9", 0)
    with pytest.raises(UserError) as e:
        trt_compat.check_engine_matches("d.engine", raw, "10.3.0", here)
    msg = str(e.value)
    assert "8.5.2.2" in msg and "10.3.0" in msg and raw["build_command"] in msg and "\n" not in msg
    with pytest.raises(UserError, match="built for Orin.*RTX 4090.*rebuild it here with: python -m export.engine"):
        trt_compat.check_engine_matches("d.engine", raw, "8.5.2.2", here)
    trt_compat.check_engine_matches("d.engine", raw, "8.5.2.2", trt_compat.CudaDevice(0, "Orin", "8.7", 0))
    with pytest.raises(UserError, match="does not say which TensorRT"):
        trt_compat.check_engine_matches("d.engine", {}, "10.3.0", None)
    # a command that is not ours is never echoed back
    assert trt_compat.rebuild_command("d.engine", {"build_command": "rm -rf /", "onnx": "x.onnx"}).startswith(
        "python -m export.engine --onnx x.onnx")


@pytest.mark.parametrize("stdout,rc,match", [
    ('{"error": "no NVIDIA driver (libcuda.so.1 not found)"}\n', 0, "no NVIDIA driver"),
    ('{"error": "no CUDA device found"}', 0, "no CUDA device found"),
    ("", -11, "driver check failed"), ("garbage", 0, "driver check failed")])
def test_probe_errors_are_one_line(stdout: str, rc: int, match: str) -> None:
    with pytest.raises(UserError, match=match) as e:
        trt_compat.parse_probe(stdout, rc, 0)
    assert "\n" not in str(e.value)


def test_probe_result_parsed() -> None:
    d = trt_compat.parse_probe(json.dumps({"name": "Orin", "cc": "8.7", "memory": 123}) + "\n", 0, 0)
    assert d == trt_compat.CudaDevice(0, "Orin", "8.7", 123)


def test_probe_runs_here_without_crashing() -> None:
    """On this machine: either a real GPU, or a clean UserError (never a crash of this process)."""
    try:
        dev = trt_compat.probe_cuda_device(0)
    except UserError as e:
        assert "\n" not in str(e) and ("CUDA" in str(e) or "NVIDIA" in str(e))
    else:
        assert dev.name and "." in dev.compute_capability


def test_probe_survives_a_crashing_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trt_compat, "_PROBE", "import os; os.abort()")
    with pytest.raises(UserError, match="driver check failed"):
        trt_compat.probe_cuda_device(0)


def test_import_tensorrt_without_it_names_the_install(tmp_path: Path) -> None:
    block = tmp_path / "block"
    block.mkdir()
    (block / "tensorrt.py").write_text("raise ModuleNotFoundError(\"No module named 'tensorrt'\", name='tensorrt')\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from runtime.backends import trt_compat\n"
            "try:\n    trt_compat.import_tensorrt()\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    p = subprocess.run([sys.executable, "-c", code, str(block)], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert p.stdout.startswith("UserError tensorrt is not installed"), p.stdout + p.stderr
    assert "pip install tensorrt" in p.stdout and "JetPack" in p.stdout
