"""The TensorRT side of ``export.engine``: decide the build for this release, then build.

:func:`plan_build` is pure logic (which network type, builder flags and INT8 mode this TensorRT
release needs for the requested precision and ONNX); :func:`build_serialized` drives the builder.
Both take the ``trt`` module as an argument and reach version-specific names only through the
feature-detecting helpers below (builder-only ones) or in :mod:`runtime.backends.trt_compat`
(shared with the runtime), so the tests run them against fakes of every supported release.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from export.onnx_io import OnnxInfo
from runtime.backends.trt_compat import (
    CudaDevice,
    log_level,
    parse_version,
    shared_logger,
    trt_version,
)
from runtime.errors import UserError
from runtime.fileio import replacing


# --- what this release's builder offers --------------------------------------------------------
def has_explicit_batch_flag(trt: Any) -> bool:
    """8.x needs EXPLICIT_BATCH for ONNX; 10.x ignores it (deprecated); 11 removed it."""
    return parse_version(trt_version(trt))[0] < 10 and hasattr(trt.NetworkDefinitionCreationFlag,
                                                                "EXPLICIT_BATCH")


def supports_strongly_typed(trt: Any) -> bool:
    return hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")


def network_flags(trt: Any, strongly_typed: bool = False) -> int:
    """Flags for ``builder.create_network`` on this release."""
    flags = 0
    if has_explicit_batch_flag(trt):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed:
        if not supports_strongly_typed(trt):
            raise UserError(f"TensorRT {trt_version(trt)} has no strongly typed networks (10.0+ does)")
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


STRONGLY_TYPED_FROM = (10, 12)  # "Weak typing APIs deprecated" (TensorRT 10.12.0 release notes); gone in 11


def prefers_strongly_typed(trt: Any) -> bool:
    """Build strongly typed networks (precision in the ONNX's types, no FP16/INT8 flags): the only kind
    on 11.x, and the one to use from 10.12, which deprecates weak typing. 8.5, 8.6 and 10.3 (JetPack
    5.1 to 6.2) keep the precision flags."""
    if not supports_strongly_typed(trt):
        return False
    return not supports_precision_flags(trt) or parse_version(trt_version(trt))[:2] >= STRONGLY_TYPED_FROM


def supports_precision_flags(trt: Any) -> bool:
    """BuilderFlag.FP16/INT8 exist (8.5 to 10.x). On 11 precision comes from the ONNX types."""
    return hasattr(trt.BuilderFlag, "FP16") and hasattr(trt.BuilderFlag, "INT8")


def has_calibrators(trt: Any) -> bool:
    """Implicit INT8 calibration (IInt8EntropyCalibrator2 + config.int8_calibrator): 8.5 to 10.x."""
    return hasattr(trt, "IInt8EntropyCalibrator2") and hasattr(trt.IBuilderConfig, "int8_calibrator")


def calibrators_deprecated(trt: Any) -> bool:
    """Calibrators still exist but are deprecated (10.1 and later)."""
    return has_calibrators(trt) and parse_version(trt_version(trt))[:2] >= (10, 1)


def supports_version_compatible(trt: Any) -> bool:
    return hasattr(trt.BuilderFlag, "VERSION_COMPATIBLE")


def supports_hardware_compatible(trt: Any) -> bool:
    return (hasattr(trt, "HardwareCompatibilityLevel")
            and hasattr(trt.IBuilderConfig, "hardware_compatibility_level"))


def supports_opt_level(trt: Any) -> bool:
    return hasattr(trt.IBuilderConfig, "builder_optimization_level")


def set_workspace(trt: Any, config: Any, nbytes: int) -> None:
    """Workspace limit: the memory-pool API exists from 8.4 on (max_workspace_size is 8.x only)."""
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(nbytes))



@dataclass(frozen=True)
class EngineOptions:
    """The build options of ``python -m export.engine`` (trtexec's names where they exist)."""

    precision: str = "fp16"
    batch: tuple[int, int, int] | None = None  # min, opt, max; None: from the ONNX / default
    workspace_mib: int | None = None
    timing_cache: Path | None = None
    dla_core: int | None = None
    gpu_fallback: bool = False
    version_compatible: bool = False
    hardware_compatible: bool = False
    opt_level: int | None = None
    calib_data: str | None = None
    calib_cache: Path | None = None
    calib_batch: int | None = None
    calib_size: int = 512
    verbose: bool = False


@dataclass(frozen=True)
class BuildPlan:
    """How to build on this release: network type, builder flags, INT8 mode, ONNX conversion."""

    strongly_typed: bool
    flags: tuple[str, ...]
    int8_mode: str | None = None  # "qdq" (explicit) or "calibrator" (implicit)
    convert_fp16: bool = False  # build from an FP16 copy of the ONNX (strongly typed FP16)
    notes: tuple[str, ...] = field(default=())


QUANTIZE_HINT = ("make a Q/DQ ONNX with python -m calibration.quantize --target trt and build "
                 "from it with --precision int8")
# The calibrator's ranges are TensorRT's own over --calib-data alone, and TensorRT may run any layer in INT8.
# With every layer in INT8 (symmetric ranges, a Q/DQ emulation in ONNX Runtime) the bundled model's scores
# moved by 0.17-0.19 on held-out pool faces; calibration.quantize keeps the early layers in FP16, widens the
# ranges to cover real faces and refuses an artifact outside its bounds (README, INT8).
CALIBRATOR_NOTE = ("the calibrator's INT8 ranges come from --calib-data alone and any layer may run in INT8, "
                   "which can move scores well past 0.05 (measured: up to 0.19 on the bundled model); for "
                   f"scores checked against fp32, {QUANTIZE_HINT}")
DEFAULT_PROFILE = (1, 4, 16)


def refuse_untakeable(info: OnnxInfo, p: str) -> None:
    """The ONNX no TensorRT release builds at precision ``p`` (a CPU-quantized INT8 model, Q/DQ nodes
    outside int8, an FP16 model outside fp16): checked by :mod:`export.engine_checks` before TensorRT is
    imported, and again here for callers that plan directly."""
    src = info.path
    if info.quant_target == "cpu":
        raise UserError(f"{src}: this INT8 ONNX was quantized for ONNX Runtime on the CPU (unsigned activations, "
                        "non-zero zero points), which TensorRT does not take; use the --target trt output "
                        "(detect.int8.onnx) of python -m calibration.quantize")
    if info.has_qdq and p != "int8":
        raise UserError(f"{src}: this ONNX holds Q/DQ (INT8) nodes; build it with --precision int8")
    if info.is_fp16 and p != "fp16" and not (info.has_qdq and p == "int8"):
        raise UserError(f"{src}: this is an FP16 ONNX; build it with --precision fp16, or pass the fp32 ONNX")


def plan_build(trt: Any, info: OnnxInfo, opts: EngineOptions) -> BuildPlan:
    """Choose the build for ``opts.precision`` on this TensorRT release (see ARCHITECTURE.md)."""
    p, src, ver = opts.precision, info.path, trt_version(trt)
    flags_ok = supports_precision_flags(trt)
    notes: list[str] = []
    refuse_untakeable(info, p)
    flags: list[str] = []
    strongly, int8_mode, convert = prefers_strongly_typed(trt), None, False
    typing_note = ("no FP16 builder flag" if not flags_ok else "weak typing deprecated (10.12+)")
    if p == "fp16":
        if not strongly:
            flags.append("FP16")
        elif not info.is_fp16:
            convert = True
            notes.append(f"TensorRT {ver}: {typing_note}: building a strongly typed network from an FP16 copy of "
                         "the ONNX (fp32 inputs and outputs kept)")
    elif p == "int8":
        if info.has_qdq:
            int8_mode = "qdq"
            if not strongly:
                flags += ["INT8", "FP16"]
            elif not info.is_fp16:  # strongly typed: every layer outside Q/DQ would run in fp32
                convert = True
                notes.append(f"TensorRT {ver}: {typing_note}: building a strongly typed network from a copy of the "
                             "Q/DQ ONNX whose layers outside Q/DQ are cast to fp16 (as the FP16 flag did)")
        elif not has_calibrators(trt):
            raise UserError(f"{src}: TensorRT {ver} has no INT8 calibrators, INT8 needs a Q/DQ ONNX; "
                            + QUANTIZE_HINT)
        else:
            cache_ok = opts.calib_cache is not None and Path(opts.calib_cache).is_file()
            if not opts.calib_data and not cache_ok:
                raise UserError(f"{src}: --precision int8 from a plain ONNX needs calibration crops "
                                f"(--calib-data DIR) or an existing --calib-cache; or {QUANTIZE_HINT}")
            int8_mode = "calibrator"
            strongly = False  # implicit INT8 (a calibrator) exists only in weakly typed networks
            flags += ["INT8", "FP16"]
            notes.append(CALIBRATOR_NOTE)
            if calibrators_deprecated(trt):
                notes.append(f"TensorRT {ver} deprecates calibrators; prefer a Q/DQ ONNX ({QUANTIZE_HINT})")
    elif p != "fp32":
        raise UserError(f"precision {p!r}: expected fp32, fp16 or int8")
    if opts.dla_core is not None:
        if p == "fp32":
            raise UserError("--dla: the DLA runs fp16 or int8 only; pass --precision fp16 or int8")
        if opts.gpu_fallback:
            flags.append("GPU_FALLBACK")
    elif opts.gpu_fallback:
        raise UserError("--gpu-fallback only applies with --dla CORE")
    if opts.version_compatible:
        if not supports_version_compatible(trt):
            raise UserError(f"--version-compatible needs TensorRT 8.6 or newer (this is {ver})")
        flags.append("VERSION_COMPATIBLE")
    if opts.hardware_compatible and not supports_hardware_compatible(trt):
        raise UserError(f"--hardware-compatible needs TensorRT 8.6 or newer (this is {ver})")
    if opts.opt_level is not None:
        if not supports_opt_level(trt):
            raise UserError(f"--opt-level needs TensorRT 8.6 or newer (this is {ver})")
        if not 0 <= opts.opt_level <= 5:
            raise UserError(f"--opt-level {opts.opt_level}: expected 0..5 (3 is TensorRT's default)")
    return BuildPlan(strongly, tuple(flags), int8_mode, convert, tuple(notes))


def resolve_profile(info: OnnxInfo, opts: EngineOptions) -> tuple[int, int, int]:
    """The batch profile: the ONNX's static batch, or --batch, or the default 1:4:16."""
    static = info.static_batch
    if static is not None:
        if opts.batch is not None and opts.batch != (static,) * 3:
            raise UserError(f"{info.path}: the ONNX has a static batch of {static}; drop --batch or "
                            f"pass --batch {static} (re-export with a dynamic batch for a range)")
        return (static,) * 3  # type: ignore[return-value]
    prof = opts.batch or DEFAULT_PROFILE
    if opts.dla_core is not None and len(set(prof)) != 1:
        raise UserError("--dla needs a static batch: pass --batch N (or export the ONNX with --batch N)")
    return prof


def profile_notes(profile: tuple[int, int, int]) -> list[str]:
    """What a user should know about this profile (a minimum above 1 costs padding)."""
    lo = profile[0]
    if lo <= 1:
        return []
    return [f"the profile's minimum batch is {lo}: TensorRT refuses smaller batches, so the runtime pads "
            f"partial batches with zero rows up to {lo} (computed, then dropped), as DeepStream's nvinfer does; "
            "Triton's dynamic batcher cannot (it sends batches from 1), so export.triton serves such an engine only "
            "with a static batch; use --batch 1:OPT:MAX where the model allows a dynamic batch"]


def check_device(opts: EngineOptions, device: CudaDevice, jetson: bool) -> None:
    """Refuse, before any builder call, options this device cannot build."""
    if not opts.hardware_compatible:
        return
    # NVIDIA: hardware compatibility is supported only for Ampere and later GPUs, and not on
    # NVIDIA DRIVE OS or JetPack (TensorRT Developer Guide, "Hardware Compatibility", 8.6+)
    if jetson:
        raise UserError("--hardware-compatible is not supported on Jetson (JetPack): build the engine "
                        "without it, on each kind of device that runs it")
    cc = tuple(int(x) for x in device.compute_capability.split(".")[:2])
    if cc < (8, 0):
        raise UserError(f"--hardware-compatible needs an Ampere or newer GPU (compute capability 8.0+); "
                        f"{device.name} is {device.compute_capability}: build without it")


def calibration_batch(opts: EngineOptions, profile: tuple[int, int, int]) -> int:
    """The INT8 calibration batch: --calib-batch (default: the profile's opt), kept within min..max."""
    return min(max(opts.calib_batch or profile[1], profile[0]), profile[2])


def _builder_flag(trt: Any, name: str) -> Any:
    """BuilderFlag by name, spelt out so the API test sees every flag the project sets."""
    flags: dict[str, Callable[[], Any]] = {
        "FP16": lambda: trt.BuilderFlag.FP16,
        "INT8": lambda: trt.BuilderFlag.INT8,
        "GPU_FALLBACK": lambda: trt.BuilderFlag.GPU_FALLBACK,
        "VERSION_COMPATIBLE": lambda: trt.BuilderFlag.VERSION_COMPATIBLE,
    }
    return flags[name]()


def _parse(trt: Any, network: Any, logger: Any, onnx_path: Path) -> Any:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise UserError(f"{onnx_path}: TensorRT's ONNX parser failed: {'; '.join(errors)[:300] or 'no detail'}; "
                        "re-export with python -m export.onnx (opset 17)")
    return parser


def _timing_cache(config: Any, path: Path | None) -> Any:
    """The timing cache at ``path``, or a new one where that file is missing, not a cache
    (``create_timing_cache`` returns None for truncated or foreign bytes) or from another GPU or
    release (``set_timing_cache`` returns False)."""
    if path is None:
        return None
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob) if blob else None
    if blob and cache is None:
        print(f"export.engine: note: {path} is not a TensorRT timing cache (truncated or foreign); "
              "starting a new one")
    elif cache is not None and not config.set_timing_cache(cache, False):
        print(f"export.engine: note: {path} is from another GPU or TensorRT release; starting a new one")
        cache = None
    if cache is None:
        cache = config.create_timing_cache(b"")
        if cache is None or not config.set_timing_cache(cache, False):
            print("export.engine: note: TensorRT could not make a timing cache; building without one")
            return None
    return cache


@dataclass(frozen=True)
class Built:
    """What the builder made: the serialized plan (IHostMemory) and the TensorRT type of each network
    input and output (``{"input": "FLOAT", "logit": "HALF"}``), which the engine's tensors keep."""

    plan: Any
    tensor_types: dict[str, str]


def network_tensor_types(network: Any) -> dict[str, str]:
    """name -> TensorRT DataType name of every network input and output (as parsed from the ONNX)."""
    tensors = [network.get_input(i) for i in range(network.num_inputs)]
    tensors += [network.get_output(i) for i in range(network.num_outputs)]
    return {str(t.name): str(getattr(t.dtype, "name", t.dtype)) for t in tensors}


def build_serialized(trt: Any, onnx_path: Path, input_name: str, input_dims: tuple[int, ...],
                     profile: tuple[int, int, int], plan: BuildPlan, opts: EngineOptions,
                     make_calibrator: Callable[[], Any] | None = None,
                     shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None) -> Built:
    """Parse the ONNX and build a serialized plan. ``input_dims``: C, H, W; ``shapes``: the input's
    whole min/opt/max shapes instead (dynamic H, W: the face detector's P-Net). TensorRT's messages
    go to the process's one logger (:func:`shared_logger`), verbose on this thread with ``--verbose``."""
    logger = shared_logger(trt)
    with log_level(logger, "VERBOSE" if opts.verbose else "WARNING"):
        builder = trt.Builder(logger)
        network = builder.create_network(network_flags(trt, plan.strongly_typed))
        parser = _parse(trt, network, logger, onnx_path)
        config = builder.create_builder_config()
        if opts.workspace_mib:
            set_workspace(trt, config, int(opts.workspace_mib) << 20)
        for name in plan.flags:
            config.set_flag(_builder_flag(trt, name))
        prof = builder.create_optimization_profile()
        lo, opt, hi = shapes or tuple((b,) + tuple(input_dims) for b in profile)
        prof.set_shape(input_name, lo, opt, hi)
        config.add_optimization_profile(prof)
        if opts.dla_core is not None:
            if builder.num_DLA_cores <= opts.dla_core:
                raise UserError(f"--dla {opts.dla_core}: this device has {builder.num_DLA_cores} DLA core(s)")
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = int(opts.dla_core)
        if opts.hardware_compatible:
            config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
        if opts.opt_level is not None:
            config.builder_optimization_level = int(opts.opt_level)
        if opts.verbose:
            config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        cache = _timing_cache(config, opts.timing_cache)
        calibrator = None
        if plan.int8_mode == "calibrator":
            if make_calibrator is None:
                raise UserError("INT8 calibration was planned but no calibrator was given")
            calibrator = make_calibrator()
            config.int8_calibrator = calibrator
            _calibration_profile(builder, config, input_name, (calibration_batch(opts, profile),) + tuple(input_dims))
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise UserError(f"{onnx_path}: TensorRT could not build the engine (see the log above); rerun "
                            "with --verbose, or try --workspace with more MiB")
        if cache is not None and opts.timing_cache is not None:
            with replacing(opts.timing_cache) as tmp:
                tmp.write_bytes(memoryview(config.get_timing_cache().serialize()))
        types = network_tensor_types(network)
        del parser, calibrator
    return Built(serialized, types)


def _calibration_profile(builder: Any, config: Any, input_name: str, shape: tuple[int, ...]) -> None:
    """The one fixed shape the calibrator feeds; TensorRT answers False to a profile it cannot use
    (then it would calibrate with the wrong batch or not at all)."""
    cal = builder.create_optimization_profile()
    cal.set_shape(input_name, shape, shape, shape)
    if not config.set_calibration_profile(cal):
        raise UserError(f"TensorRT refused the INT8 calibration profile {list(shape)} for input {input_name!r}; "
                        "pass a --calib-batch within the --batch profile, or build from a Q/DQ ONNX instead")
