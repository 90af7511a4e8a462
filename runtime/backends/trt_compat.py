"""TensorRT across releases: import, versions, engine I/O, CUDA device and engine/device checks.

Used by the runtime's TensorRT backend and by ``export`` (engine build, INT8 calibrator).
Supported: TensorRT 8.5 (JetPack 5.1), 8.6 (JetPack 6.0), 10.x (JetPack 6.1/6.2, desktop) and
11.x (desktop); see ``ARCHITECTURE.md``. Differences between those releases are decided by
feature detection on the imported module (``hasattr``) in small named helpers, so callers never
compare version numbers; the helpers only the builder needs live beside it in
:mod:`export.trt_build`. Nothing here imports tensorrt at module level: the ``trt`` module is
passed in, which is also what lets the tests run these helpers against per-release fakes built
from ``trt-api/*.json``.

:data:`VERSION_GATED` lists every tensorrt ``Class.member`` name the project uses (build or run)
that is missing from some supported release, and in which releases it exists; a test checks that
claim against the API lists and that the code only reaches such names behind the helper that
gates them.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from runtime.errors import UserError, missing_dependency

MIN_VERSION = (8, 5)
# names used by the project that do not exist in every supported release -> where they exist
VERSION_GATED: dict[str, str] = {
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH": "8.5-10",
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED": "10-11",
    "BuilderFlag.FP16": "8.5-10",
    "BuilderFlag.INT8": "8.5-10",
    "BuilderFlag.VERSION_COMPATIBLE": "8.6-11",
    "HardwareCompatibilityLevel.AMPERE_PLUS": "8.6-11",
    "IBuilderConfig.builder_optimization_level": "8.6-11",
    "IBuilderConfig.hardware_compatibility_level": "8.6-11",
    "IBuilderConfig.int8_calibrator": "8.5-10",
    "IBuilderConfig.set_calibration_profile": "8.5-10",
    "IInt8EntropyCalibrator2": "8.5-10",
    "IInt8MinMaxCalibrator": "8.5-10",
    "Runtime.engine_host_code_allowed": "8.6-11",
}


# --- import and versions ---------------------------------------------------------------------
def is_jetson() -> bool:
    """A Jetson (L4T) board: TensorRT comes with JetPack there, not from pip."""
    return Path("/etc/nv_tegra_release").exists() or (
        platform.machine() == "aarch64" and "tegra" in platform.release().lower())


def engine_platform() -> str:
    """Where plans are built and run: "Serialized engines are not portable across platforms" (TensorRT
    support matrix), hardware-compatible ones included; a Jetson is its own platform (JetPack)."""
    return f"{platform.system().lower()}-{platform.machine().lower()}" + ("-jetson" if is_jetson() else "")


def install_hint(what: str = "tensorrt") -> str:
    """How to get TensorRT (and pycuda) on this kind of machine."""
    if is_jetson():
        return (f"on a Jetson {what} comes with JetPack up to 6.2 (sudo apt install nvidia-jetpack; TensorRT "
                "11.4 on JetPack 7.2 from NVIDIA's TensorRT SBSA packages), then pip install pycuda")
    return ("pip install tensorrt pycuda (or pip install 'jrc-edge[tensorrt]'); "
            "on a Jetson it comes with JetPack instead")


def import_tensorrt() -> Any:
    """The tensorrt module, or a one-line UserError naming what is missing and how to get it."""
    try:
        import tensorrt as trt
    except ImportError as e:
        if getattr(e, "name", None) not in (None, "tensorrt"):
            raise UserError(f"tensorrt is installed but does not import ({e}); "
                            f"reinstall it: {install_hint()}") from None
        raise missing_dependency("tensorrt", "tensorrt", how=install_hint()) from None
    except OSError as e:  # the wheel is there but libnvinfer is not loadable
        raise UserError(f"tensorrt is installed but its libraries do not load ({e}); "
                        f"reinstall it: {install_hint()}") from None
    check_supported(trt)
    return trt


def import_pycuda() -> Any:
    """pycuda.driver, or a one-line UserError saying how to install it."""
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise missing_dependency("pycuda", "tensorrt", how="pip install pycuda (needs the CUDA "
                                 "toolkit headers; on a Jetson they come with JetPack)") from None
    return cuda


def parse_version(text: str) -> tuple[int, int, int]:
    """'10.3.0.26' -> (10, 3, 0); missing parts are 0. UserError for something that is not one."""
    m = re.match(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text))
    if not m:
        raise UserError(f"TensorRT version {text!r} is not a version number")
    return tuple(int(g or 0) for g in m.groups())  # type: ignore[return-value]


def trt_version(trt: Any) -> str:
    return str(trt.__version__)


def check_supported(trt: Any) -> None:
    """Refuse releases older than the oldest this project is written for."""
    v = parse_version(trt_version(trt))
    if v[:2] < MIN_VERSION:
        raise UserError(f"TensorRT {trt_version(trt)} is too old: this project needs 8.5 or newer "
                        f"(JetPack 5.1+); {install_hint()}")


# --- the CUDA context -------------------------------------------------------------------------
_CONTEXTS: dict[int, tuple[Any, Any]] = {}  # device index -> (pycuda.driver, its retained primary context)
_CONTEXTS_LOCK = threading.Lock()


def primary_context(cuda: Any, index: int = 0) -> Any:
    """Device ``index``'s primary CUDA context, retained once for the whole process and never
    released: callers push it around their CUDA work and pop it afterwards, on any thread.

    Never ``detach()`` it: pycuda's detach of a context that is not current pushes it and then
    calls ``cuDevicePrimaryCtxRelease``, which "does not pop the context from the stack in any
    circumstances", so every detach would leave a stale context current on that thread (on device
    N ≠ 0, later CUDA work there runs on the wrong device), and a detach from another thread than
    the retaining one does nothing at all (the retain leaks)."""
    with _CONTEXTS_LOCK:
        held = _CONTEXTS.get(int(index))
        if held is None or held[0] is not cuda:  # first use (or, in tests, another pycuda)
            cuda.init()
            held = (cuda, cuda.Device(int(index)).retain_primary_context())
            _CONTEXTS[int(index)] = held
        return held[1]


# --- the logger -------------------------------------------------------------------------------
SEVERITY = {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4}  # ILogger::Severity
_LOGGER: list[tuple[Any, Any]] = []  # [(tensorrt module, its one logger)]
_LOGGER_LOCK = threading.Lock()


def shared_logger(trt: Any) -> Any:
    """The process's one TensorRT logger, for every builder, runtime and parser.

    TensorRT keeps the logger as a singleton: "multiple instances of IRuntime and/or IBuilder must
    all use the same logger" (ILogger, TensorRT 8.0+ API docs); a second one draws a warning, and a
    severity set on a per-runtime logger does not govern the messages that go to the first. What one
    call wants quieter or louder is set per thread with :func:`log_level`."""
    with _LOGGER_LOCK:
        if not _LOGGER or _LOGGER[0][0] is not trt:  # first use (or, in tests, another tensorrt)
            _LOGGER[:] = [(trt, _logger_class(trt)())]
        return _LOGGER[0][1]


def _logger_class(trt: Any) -> type:
    """An ILogger that prints each message at or above the calling thread's level (WARNING by default)."""
    names = {v: k for k, v in SEVERITY.items()}

    class ThreadLevelLogger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # pybind11: the base must be initialised explicitly
            self.local = threading.local()

        def level(self) -> int:
            return getattr(self.local, "level", SEVERITY["WARNING"])

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= self.level():
                print(f"[TensorRT] {names.get(int(severity), severity)}: {msg}", file=sys.stderr, flush=True)

    return ThreadLevelLogger


@contextmanager
def log_level(logger: Any, level: str) -> Iterator[None]:
    """Show TensorRT's messages down to ``level`` (a :data:`SEVERITY` name) on this thread only."""
    before = getattr(logger.local, "level", None)
    logger.local.level = SEVERITY[level]
    try:
        yield
    finally:
        if before is None:
            del logger.local.level
        else:
            logger.local.level = before


# --- loading ---------------------------------------------------------------------------------
def allow_host_code(runtime: Any) -> None:
    """Version-compatible plans embed a lean runtime that must be allowed to run (8.6+)."""
    if hasattr(runtime, "engine_host_code_allowed"):
        runtime.engine_host_code_allowed = True


def set_dla_core(runtime: Any, core: Any, path: str | Path = "engine") -> None:
    """Point the runtime at the DLA core a plan was built for, before deserializing it (trtexec
    does the same). ``IRuntime.DLA_core`` defaults to -1 ("DLA not used"; IRuntime::setDLACore in
    the 8.5.3 and 10.x API docs), so without this a DLA plan does not load."""
    if core is None:
        return
    core = int(core)
    cores = int(runtime.num_DLA_cores)
    if not 0 <= core < cores:
        raise UserError(f"{path}: built for DLA core {core}, this device has {cores} DLA core(s); "
                        "rebuild it here with export.engine --dla CORE (or without --dla for the GPU)")
    runtime.DLA_core = core


# --- running ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorInfo:
    """One engine I/O tensor, from the name-based API that exists from 8.5 to 11."""

    name: str
    is_input: bool
    dtype: Any  # numpy dtype; None for a type numpy has no name for (BF16, FP8, INT4...)
    shape: tuple[int, ...]  # -1 for dynamic axes
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None  # inputs: min/opt/max
    type_name: str = "FLOAT"  # TensorRT's DataType name (FLOAT, HALF, INT8, ...)


def io_tensors(trt: Any, engine: Any, profile: int = 0) -> list[TensorInfo]:
    """The engine's inputs and outputs with dtype, shape and (inputs) the profile's shapes."""

    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        prof = None
        if is_input:
            prof = tuple(tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, profile))
        dtype = engine.get_tensor_dtype(name)
        out.append(TensorInfo(name, is_input, _numpy_dtype(trt, dtype), shape, prof,  # type: ignore[arg-type]
                              str(getattr(dtype, "name", dtype))))
    return out


def _numpy_dtype(trt: Any, dtype: Any) -> Any:
    """numpy's dtype for a TensorRT DataType, or None where numpy has none (``trt.nptype`` raises)."""
    import numpy as np

    try:
        return np.dtype(trt.nptype(dtype))
    except (TypeError, KeyError, ValueError):
        return None


# --- devices ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CudaDevice:
    index: int
    name: str
    compute_capability: str  # "8.7"
    total_memory: int


# Run in a child process: a broken driver or a missing device then cannot take this process down.
# The driver API through ctypes needs nothing installed beyond the NVIDIA driver itself.
_PROBE = r"""
import ctypes, json, sys
idx = int(sys.argv[1])
def done(**kw):
    print(json.dumps(kw)); sys.exit(0)
lib = None
for n in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
    try:
        lib = ctypes.CDLL(n); break
    except OSError:
        pass
if lib is None:
    done(error="no NVIDIA driver (libcuda.so.1 not found)")
def err(code):
    s = ctypes.c_char_p()
    lib.cuGetErrorString(code, ctypes.byref(s))
    return f"CUDA error {code}: {(s.value or b'?').decode()}"
r = lib.cuInit(0)
if r:
    done(error="no usable CUDA device (cuInit failed, " + err(r) + ")")
n = ctypes.c_int()
r = lib.cuDeviceGetCount(ctypes.byref(n))
if r or n.value == 0:
    done(error="no CUDA device found")
if idx >= n.value:
    done(error=f"CUDA device {idx} requested but only {n.value} present")
dev = ctypes.c_int()
lib.cuDeviceGet(ctypes.byref(dev), idx)
name = ctypes.create_string_buffer(256)
lib.cuDeviceGetName(name, 256, dev)
major, minor, mem = ctypes.c_int(), ctypes.c_int(), ctypes.c_size_t()
lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)
lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)
lib.cuDeviceTotalMem_v2(ctypes.byref(mem), dev)
done(name=name.value.decode(errors="replace"), cc=f"{major.value}.{minor.value}", memory=mem.value)
"""


def parse_probe(stdout: str, returncode: int, index: int) -> CudaDevice:
    """Turn the probe's output into a device or a one-line UserError."""
    line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    try:
        d = json.loads(line) if line else {}
    except ValueError:
        d = {}
    if returncode != 0 or not d:
        raise UserError(f"no usable CUDA device: the CUDA driver check failed (exit {returncode}); "
                        "check the NVIDIA driver with nvidia-smi (tegrastats on a Jetson)")
    if "error" in d:
        raise UserError(f"{d['error']}: TensorRT needs an NVIDIA GPU with a working driver; run on a "
                        "machine with one, or use the ONNX model with ONNX Runtime on the CPU")
    return CudaDevice(index, str(d["name"]), str(d["cc"]), int(d.get("memory", 0)))


def probe_cuda_device(index: int = 0, timeout: float = 60.0) -> CudaDevice:
    """Check that CUDA device ``index`` is usable, without risking this process."""
    try:
        p = subprocess.run([sys.executable, "-c", _PROBE, str(int(index))], capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"no usable CUDA device: the driver did not answer within {timeout:.0f} s; "
                        "check the NVIDIA driver with nvidia-smi") from None
    return parse_probe(p.stdout, p.returncode, index)


# --- engine compatibility ---------------------------------------------------------------------
def _gpu_name(name: str | None) -> str:
    return " ".join(str(name or "").lower().replace("nvidia", " ").split())


# Version-compatible plans across major versions, as NVIDIA documents them: "engines built with
# TensorRT 8 work with TensorRT 9 and TensorRT 10 runtimes" and "version compatibility is supported
# from version 8.6" (TensorRT 10.x Developer Guide, Advanced Topics > Version Compatibility,
# docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/advanced.html); "engines built with
# TensorRT 10 work with TensorRT 11" (TensorRT 11.x, Inference Library > Engine Compatibility,
# docs.nvidia.com/deeplearning/tensorrt/11.1.0/inference-library/engine-compatibility.html). Within a
# major version any later release runs them. Nothing documents 8.x -> 11.x, so it is refused.
CROSS_MAJOR_COMPATIBLE = {(8, 9), (8, 10), (10, 11)}
VERSION_COMPATIBLE_SINCE = (8, 6)


def versions_compatible(built: str, running: str, version_compatible: bool = False) -> bool:
    """Plans run on the TensorRT release that built them; version-compatible ones (built with 8.6+)
    on any later release of the same major version, and across the major steps NVIDIA lists."""
    b, r = parse_version(built), parse_version(running)
    if not version_compatible:
        return b == r
    if b[:2] < VERSION_COMPATIBLE_SINCE or r < b:
        return False
    return b[0] == r[0] or (b[0], r[0]) in CROSS_MAJOR_COMPATIBLE


def devices_compatible(built_name: str | None, built_cc: str | None, device: CudaDevice,
                       hardware_compatible: str | None = None) -> bool:
    """Same GPU model; hardware-compatible plans (AMPERE_PLUS) on any GPU of compute capability 8.0+."""
    cc = tuple(int(x) for x in device.compute_capability.split("."))
    if hardware_compatible == "AMPERE_PLUS":
        return cc >= (8, 0)
    if hardware_compatible == "SAME_COMPUTE_CAPABILITY":
        return device.compute_capability == built_cc
    return device.compute_capability == built_cc and _gpu_name(built_name) == _gpu_name(device.name)


def rebuild_command(engine: str | Path, raw: dict[str, Any]) -> str:
    """The command that rebuilds this engine on the current machine (recorded at build time)."""
    cmd = raw.get("build_command")
    if isinstance(cmd, str) and cmd.startswith("python -m export.engine"):
        return cmd
    return (f"python -m export.engine --onnx {raw.get('onnx') or 'detect.onnx'} "
            f"--precision {raw.get('precision', 'fp16')} --out {engine}")


def check_engine_matches(engine: str | Path, raw: dict[str, Any], running_version: str,
                         device: CudaDevice | None) -> None:
    """Refuse a plan built for another TensorRT release, platform or GPU, or a hardware-compatible plan
    on a Jetson, before anything deserializes it, saying why and how to rebuild."""
    built = raw.get("tensorrt_version")
    fix = f"rebuild it here with: {rebuild_command(engine, raw)}"
    if not built:
        raise UserError(f"{engine}: its sidecar does not say which TensorRT built it; {fix}")
    if not versions_compatible(str(built), running_version, bool(raw.get("version_compatible"))):
        why = ("version-compatible plans run on the same or a later release of the same major version, "
               "or 8.6+ on 9.x/10.x and 10.x on 11.x" if raw.get("version_compatible") else
               "plans only run on the release that built them")
        raise UserError(f"{engine}: built with TensorRT {built}, this machine has {running_version} "
                        f"({why}); {fix}")
    hardware = raw.get("hardware_compatible")
    if hardware and is_jetson():
        fix_here = fix.replace(" --hardware-compatible", "")
        raise UserError(f"{engine}: a hardware-compatible ({hardware}) plan, and TensorRT supports hardware "
                        f"compatibility only on Ampere+ GPUs, not on JetPack; {fix_here}")
    built_on, here = raw.get("platform"), engine_platform()
    if built_on and built_on != here:
        raise UserError(f"{engine}: built on {built_on}, this is {here}: TensorRT plans are not portable across "
                        f"platforms (hardware-compatible ones neither); {fix}")
    if device is None:
        return
    if not devices_compatible(raw.get("device"), raw.get("compute_capability"), device, hardware):
        why = (" (a hardware-compatible plan runs on Ampere or newer GPUs, compute capability 8.0+)"
               if hardware == "AMPERE_PLUS" else "")
        raise UserError(f"{engine}: built for {raw.get('device')} (compute capability "
                        f"{raw.get('compute_capability')}), this is {device.name} "
                        f"({device.compute_capability}){why}; {fix}")
