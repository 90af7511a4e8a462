"""First-GPU check of the TensorRT path: ``python -m benchmarks.gpu_check`` (or ``make gpu-check``).

One command for the first session on a machine with an NVIDIA GPU and TensorRT: it builds engines
from an ONNX (default: the bundled model) and checks what the CPU-only tests can only simulate:

- fp32 / fp16 / int8 engines at the batch profiles 1:4:8, 4:4:4 and 2:4:8, each run at n = 1
  (a partial batch, padded up to the profile minimum) and n = max, compared with ONNX Runtime on
  the CPU (logits relative to their scale, and probabilities) and, where Polygraphy is installed,
  through Polygraphy's comparator;
- open / infer on a worker thread / close 50 times while watching free device memory, and no CUDA
  context left current (asked from the driver, cuCtxGetCurrent) after any close;
- a garbage timing cache (the build must start a fresh one);
- a version-compatible plan (8.6+), loaded through the backend and through Polygraphy;
- an INT8 rebuild from the calibration cache alone (TensorRT 8.5 - 10.x);
- an engine built from an FP16-I/O ONNX, run by the backend and loaded by its Triton config (the
  TensorRT backend's checks replayed on the engine: data types, dims, instance kind);
- a DeepStream config whose engine file is removed: nvinfer (where DeepStream is installed) must
  rebuild it from ``onnx-file`` in the config's precision;
- on a Jetson: a DLA engine, run by the backend, its Triton config (the DLA core as a secondary
  device) and its DeepStream nvinfer config.

It prints one table (PASS / FAIL / SKIP per line) and writes the same as JSON (``--json``);
it exits 1 when a line fails. Without TensorRT, or without a GPU, it exits 1 with one line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from runtime.backends import trt_compat
from runtime.errors import Parser, UserError, run_cli

PROG = "benchmarks.gpu_check"
DEFAULT_ONNX = Path(__file__).resolve().parent.parent / "runtime" / "assets" / "jrc_edge_detect.onnx"
PROFILES = ((1, 4, 8), (4, 4, 4), (2, 4, 8))
PRECISIONS = ("fp32", "fp16", "int8")
# (max |Δlogit| relative to the reference's logit scale, max |Δ probability of fake|) vs ONNX Runtime:
# relative, so a model with large logits is not failed for an fp16 rounding that moves no verdict
TOLERANCE = {"fp32": (1e-3, 1e-3), "fp16": (2e-2, 1e-2), "int8": (0.1, 0.05)}
LEAK_LOOPS = 50
LEAK_SLACK = 16 << 20  # free device memory may drift this much over the loops


class Skip(Exception):
    """The check does not apply here (the message says why)."""


@dataclass
class Result:
    name: str
    status: str  # PASS, FAIL or SKIP
    detail: str
    seconds: float


@dataclass
class Setup:
    """What the checks run against. ``reference`` maps a batch to ONNX Runtime's logits."""

    onnx: Path
    out: Path
    trt: Any
    device: trt_compat.CudaDevice
    reference: Callable[[np.ndarray], np.ndarray]
    input_size: int
    jetson: bool = False
    quick: bool = False
    calib_data: str = "synthetic:64"


# --- helpers ---------------------------------------------------------------------------------
def ort_reference(onnx: Path) -> Callable[[np.ndarray], np.ndarray]:
    """ONNX Runtime on the CPU: the reference every engine is compared with."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(["logit"], {name: x})[0]


def batch(setup: Setup, n: int, seed: int = 0) -> np.ndarray:
    s = setup.input_size
    return np.random.default_rng(seed).standard_normal((n, 3, s, s)).astype(np.float32)


def build(setup: Setup, name: str, **options: Any) -> Path:
    from export.engine import onnx_to_engine
    from export.trt_build import EngineOptions

    return onnx_to_engine(options.pop("onnx", setup.onnx), setup.out / f"{name}.engine", EngineOptions(**options))


def int8_options(setup: Setup, name: str) -> dict[str, Any]:
    """INT8 the way this release takes it: the calibrator (8.5-10.x) or a Q/DQ ONNX (11)."""
    from export.trt_build import has_calibrators

    if has_calibrators(setup.trt):
        return {"calib_data": setup.calib_data, "calib_cache": setup.out / f"{name}.calib"}
    qdq = setup.out / "detect.int8.onnx"
    if not qdq.is_file():
        import subprocess
        import sys

        subprocess.run([sys.executable, "-m", "calibration.quantize", "--onnx", str(setup.onnx), "--data",
                        setup.calib_data, "--target", "trt", "--no-speed", "--out", str(qdq)], check=True)
    return {"onnx": qdq}


def disagreement(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """(max |Δlogit| / the reference's logit scale (at least 1), max |Δ sigmoid|) of two logit arrays."""
    got64, want64 = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(1.0, float(np.max(np.abs(want64))))
    prob = np.abs(1.0 / (1.0 + np.exp(-got64)) - 1.0 / (1.0 + np.exp(-want64)))
    return float(np.max(np.abs(got64 - want64))) / scale, float(np.max(prob))


def compare(setup: Setup, engine: Path, precision: str, sizes: list[int]) -> str:
    """Run the engine through the backend at each n; logits within the tolerance of ORT's, relative
    to the logit scale, and probabilities within theirs."""
    from runtime.backends.tensorrt import TensorRTBackend

    worst_rel = worst_prob = 0.0
    with TensorRTBackend(str(engine)) as b:
        for n in sizes:
            x = batch(setup, n, seed=n)
            got, want = b.infer(x)["logit"], setup.reference(x)
            if got.shape != (n, 1):
                raise AssertionError(f"n={n}: logit shape {got.shape}")
            rel, prob = disagreement(got, want)
            worst_rel, worst_prob = max(worst_rel, rel), max(worst_prob, prob)
    rel_tol, prob_tol = TOLERANCE[precision]
    if worst_rel > rel_tol or worst_prob > prob_tol:
        raise AssertionError(f"max |Δlogit|/scale {worst_rel:.3g} (tolerance {rel_tol}), max |Δp| {worst_prob:.3g} "
                             f"(tolerance {prob_tol}) vs ONNX Runtime")
    return f"n={','.join(map(str, sizes))}: max |Δlogit|/scale {worst_rel:.2g}, |Δp| {worst_prob:.2g} vs ONNX Runtime"


def polygraphy_compare(setup: Setup, engine: Path, precision: str, n: int, version_compatible: bool = False) -> str:
    """The same comparison through Polygraphy's runners and comparator (an independent loader)."""
    try:
        from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner
        from polygraphy.comparator import Comparator, CompareFunc
    except ImportError:
        raise Skip("polygraphy is not installed (pip install polygraphy)") from None
    trt = setup.trt
    runtime = trt.Runtime(trt_compat.shared_logger(trt))  # TensorRT keeps one logger per process
    if version_compatible:
        trt_compat.allow_host_code(runtime)
    try:
        loader = EngineFromBytes(engine.read_bytes(), runtime=runtime)
    except TypeError:
        raise Skip("this Polygraphy cannot take a runtime (needed for version-compatible plans); upgrade it") from None
    feed = [{"input": batch(setup, n, seed=7)}]
    tol = TOLERANCE[precision][0]
    results = Comparator.run([TrtRunner(loader), OnnxrtRunner(SessionFromOnnx(str(setup.onnx)))], data_loader=feed)
    ok = Comparator.compare_accuracy(results, compare_func=CompareFunc.simple(atol=tol, rtol=tol))
    if not bool(ok):
        raise AssertionError(f"Polygraphy: outputs differ beyond atol=rtol={tol}")
    return f"Polygraphy n={n}: within atol=rtol={tol}"


def polygraphy_or_note(setup: Setup, engine: Path, precision: str, n: int, version_compatible: bool = False) -> str:
    try:
        return polygraphy_compare(setup, engine, precision, n, version_compatible)
    except Skip as e:
        return f"Polygraphy skipped: {e}"


def free_device_memory(cuda: Any, ctx: Any) -> int:
    """Free device memory, asked inside the device's primary context (pushed only for the query)."""
    ctx.push()
    try:
        return int(cuda.mem_get_info()[0])
    finally:
        ctx.pop()


# --- the checks ------------------------------------------------------------------------------
def check_matrix(setup: Setup) -> list[tuple[str, Callable[[], str]]]:
    """fp32/fp16/int8 × profiles: build, n = 1 and n = max through the backend and Polygraphy."""
    checks = []
    profiles = PROFILES[:1] if setup.quick else PROFILES
    for precision in PRECISIONS:
        for prof in profiles:
            tag = f"{precision} {':'.join(map(str, prof))}"
            name = f"detect.{precision}.b{'-'.join(map(str, prof))}"

            def one(precision: str = precision, prof: tuple = prof, name: str = name) -> str:
                extra = int8_options(setup, name) if precision == "int8" else {}
                engine = build(setup, name, precision=precision, batch=prof, **extra)
                detail = compare(setup, engine, precision, sorted({1, prof[2]}))
                return f"{detail}; {polygraphy_or_note(setup, engine, precision, prof[0])}"

            checks.append((f"build+infer {tag}", one))
    return checks


def current_cuda_context() -> int:
    """The CUDA driver's current context on this thread (0: none), asked from libcuda itself:
    pycuda's ``Context.get_current()`` reads pycuda's own stack, which does not show a context left
    current on the driver's stack (what a ``detach()`` after use does)."""
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        raise Skip("libcuda not found")
    handle = ctypes.c_void_p()
    code = lib.cuCtxGetCurrent(ctypes.byref(handle))
    if code:
        raise AssertionError(f"cuCtxGetCurrent failed (CUDA error {code})")
    return int(handle.value or 0)


def check_open_close(setup: Setup) -> str:
    """Open, infer on a worker thread, close: LEAK_LOOPS times; free device memory must not sink and
    no CUDA context may stay current on this thread after a close."""
    from runtime.backends.tensorrt import TensorRTBackend

    engine = build(setup, "detect.fp16.loop", precision="fp16", batch=(1, 4, 8))
    cuda = trt_compat.import_pycuda()
    ctx = trt_compat.primary_context(cuda, 0)  # the backend's own context, retained once per process
    free = []
    for i in range(LEAK_LOOPS):
        b = TensorRTBackend(str(engine))
        errors: list[BaseException] = []
        t = threading.Thread(target=_infer_or_record, args=(b, batch(setup, 3, seed=i), errors))
        t.start()
        t.join()
        b.close()
        if errors:
            raise AssertionError(f"loop {i}: {type(errors[0]).__name__}: {errors[0]}")
        if current_cuda_context():
            raise AssertionError(f"loop {i}: a CUDA context is still current on this thread after close()")
        free.append(free_device_memory(cuda, ctx))
    drift = free[0] - min(free)
    if drift > LEAK_SLACK:
        raise AssertionError(f"free device memory fell {drift / 2**20:.1f} MiB over {LEAK_LOOPS} loops")
    return f"{LEAK_LOOPS} loops; free device memory drift {drift / 2**20:.2f} MiB; no context left current"


def check_context_after_close(setup: Setup) -> str:
    """close() leaves no CUDA context current: on the thread that opened the backend, and on a
    worker thread that used and closed it."""
    from runtime.backends.tensorrt import TensorRTBackend

    engine = build(setup, "detect.fp16.ctx", precision="fp16", batch=(1, 4, 8))
    before = current_cuda_context()
    b = TensorRTBackend(str(engine))
    b.infer(batch(setup, 2))
    b.close()
    if current_cuda_context() != before:
        raise AssertionError("a CUDA context is current on the main thread after close()")
    b = TensorRTBackend(str(engine))
    seen: list[Any] = []

    def work() -> None:
        try:
            b.infer(batch(setup, 1))
            b.close()
            seen.append(current_cuda_context())
        except BaseException as e:  # reported below
            seen.append(e)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    if seen != [0]:
        raise AssertionError(f"worker thread after close(): {seen[0]!r} (expected no current context)")
    if current_cuda_context() != before:
        raise AssertionError("a CUDA context is current on the main thread after a worker's close()")
    return "none current after close() on the opening thread or on a worker thread"


def _infer_or_record(b: Any, x: np.ndarray, errors: list) -> None:
    try:
        b.infer(x)
    except BaseException as e:  # reported by the caller's thread
        errors.append(e)


def check_garbage_timing_cache(setup: Setup) -> str:
    cache = setup.out / "garbage.timing.cache"
    cache.write_bytes(b"\x00not a timing cache" * 8)
    build(setup, "detect.fp32.cache", precision="fp32", batch=(1, 4, 8), timing_cache=cache)
    if cache.read_bytes().startswith(b"\x00not a timing cache"):
        raise AssertionError("the garbage timing cache was not replaced")
    build(setup, "detect.fp32.cache2", precision="fp32", batch=(1, 4, 8), timing_cache=cache)  # reused
    return f"built, then rebuilt with the new cache ({cache.stat().st_size} bytes)"


def check_version_compatible(setup: Setup) -> str:
    from export.trt_build import supports_version_compatible

    if not supports_version_compatible(setup.trt):
        raise Skip(f"TensorRT {trt_compat.trt_version(setup.trt)} has no version-compatible plans (8.6+)")
    engine = build(setup, "detect.fp32.vc", precision="fp32", batch=(1, 4, 8), version_compatible=True)
    detail = compare(setup, engine, "fp32", [1, 8])
    return f"{detail}; {polygraphy_or_note(setup, engine, 'fp32', 2, version_compatible=True)}"


def check_int8_from_cache(setup: Setup) -> str:
    from export.trt_build import has_calibrators

    if not has_calibrators(setup.trt):
        raise Skip(f"TensorRT {trt_compat.trt_version(setup.trt)} has no calibrators (INT8 is Q/DQ only)")
    cache = setup.out / "detect.int8.cal.calib"
    build(setup, "detect.int8.cal", precision="int8", batch=(1, 4, 8), calib_data=setup.calib_data, calib_cache=cache)
    if not cache.is_file():
        raise AssertionError("calibration wrote no cache")
    engine = build(setup, "detect.int8.fromcache", precision="int8", batch=(1, 4, 8), calib_cache=cache)
    return "rebuilt from the cache alone; " + compare(setup, engine, "int8", [1, 8])


def plan_loader(setup: Setup, engine: Path) -> Callable[[int], Any]:
    """load(dla_core) as Triton's TensorRT backend does it on this GPU: a runtime with DLA_core set
    only for a KIND_NVDLA secondary device, the plan deserialized, its I/O tensors (None: refused)."""
    trt = setup.trt

    def load(core: int) -> Any:
        ctx = trt_compat.primary_context(trt_compat.import_pycuda(), 0)
        ctx.push()
        try:
            logger = trt_compat.shared_logger(trt)
            runtime = trt.Runtime(logger)
            if core != -1:
                runtime.DLA_core = core
            with trt_compat.log_level(logger, "INTERNAL_ERROR"):
                engine_obj = runtime.deserialize_cuda_engine(engine.read_bytes())
            tensors = None if engine_obj is None else trt_compat.io_tensors(trt, engine_obj)
            del engine_obj, runtime  # freed inside the context
            return tensors
        finally:
            ctx.pop()

    return load


def dla_cores(setup: Setup) -> int:
    return int(setup.trt.Runtime(trt_compat.shared_logger(setup.trt)).num_DLA_cores)


def triton_loads(setup: Setup, engine: Path, name: str) -> str:
    """Write the engine's Triton entry and put it through the TensorRT backend's load-time checks."""
    from export.triton import export_repository
    from export.triton_check import DATA_TYPES, check_plan_config, parse_config

    folder = export_repository(engine, setup.out / "triton", name=name)
    cfg = parse_config((folder / "config.pbtxt").read_text(), str(folder / "config.pbtxt"))
    core = check_plan_config(cfg, plan_loader(setup, engine), dla_cores(setup))
    types = sorted({DATA_TYPES[t.data_type] for t in [*cfg.input, *cfg.output]})
    return f"Triton config loads ({'/'.join(types)}{f', DLA core {core}' if core >= 0 else ''})"


def check_fp16_io(setup: Setup) -> str:
    """An engine built from an ONNX with fp16 inputs and outputs: HALF bindings, fed and read by the
    backend, and a Triton config whose data_type is TYPE_FP16 (the backend refuses a mismatch)."""
    from export.fp16 import convert_file

    half = convert_file(setup.onnx, setup.out / "detect.fp16io.onnx", fp16_io=True)
    engine = build(setup, "detect.fp16io", onnx=half, precision="fp16", batch=(1, 4, 8))
    return f"{compare(setup, engine, 'fp16', [1, 8])}; {triton_loads(setup, engine, 'jrc_fp16io')}"


def check_dla(setup: Setup) -> str:
    if not setup.jetson:
        raise Skip("not a Jetson (no DLA)")
    from export.deepstream import export_config

    engine = build(setup, "detect.fp16.dla0", precision="fp16", batch=(4, 4, 4), dla_core=0, gpu_fallback=True)
    detail = compare(setup, engine, "fp16", [1, 4])
    triton = triton_loads(setup, engine, "jrc_dla")
    cfg = export_config(engine, out=setup.out / "deepstream" / "sgie.txt")
    prop = nvinfer_properties(cfg)
    if (prop.get("enable-dla"), prop.get("use-dla-core")) != ("1", "0"):
        raise AssertionError(f"{cfg}: no enable-dla=1 / use-dla-core=0")
    if not (cfg.parent / prop["model-engine-file"]).resolve() == engine.resolve():
        raise AssertionError(f"{cfg}: model-engine-file {prop['model-engine-file']} does not lead to {engine}")
    return f"{detail}; {triton}; nvinfer config {cfg}"


def nvinfer_properties(cfg: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in cfg.read_text().splitlines() if "=" in line and not line.startswith("#"))


NVINFER_MODES = {"0": "fp32", "1": "int8", "2": "fp16"}  # network-mode -> the name nvinfer gives a rebuilt engine


def deepstream_tools() -> tuple[str, str] | None:
    """(gst-launch-1.0, gst-inspect-1.0) where DeepStream's nvinfer plugin is installed, else None."""
    launch, inspect = shutil.which("gst-launch-1.0"), shutil.which("gst-inspect-1.0")
    if not launch or not inspect:
        return None
    ok = subprocess.run([inspect, "nvinfer"], capture_output=True, timeout=120).returncode == 0
    return (launch, inspect) if ok else None


def run_pipeline(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def check_deepstream_rebuild(setup: Setup) -> str:
    """nvinfer rebuilds a removed engine from the config's onnx-file, in the config's precision (an INT8
    config without int8-calib-file comes back FP16): fp16, and int8 where calibrators exist."""
    from export.deepstream import export_config
    from export.trt_build import has_calibrators

    tools = deepstream_tools()
    if tools is None:
        raise Skip("DeepStream is not installed (gst-inspect-1.0 nvinfer): run this on a DeepStream machine")
    folder = setup.out / "deepstream_rebuild"
    folder.mkdir(parents=True, exist_ok=True)
    onnx = folder / "detect.onnx"  # nvinfer writes the engine it builds beside the ONNX: not in the repository
    shutil.copyfile(setup.onnx, onnx)
    done = []
    for precision in ["fp16"] + (["int8"] if has_calibrators(setup.trt) else []):
        extra = {"calib_data": setup.calib_data, "calib_cache": folder / "detect.int8.calib"} if precision == "int8" else {}
        engine = build(setup, f"deepstream_rebuild/detect.{precision}", onnx=onnx, precision=precision,
                       batch=(1, 4, 8), **extra)
        cfg = export_config(engine, out=folder / f"sgie.{precision}.txt")
        prop = nvinfer_properties(cfg)
        engine.unlink()
        source = (cfg.parent / prop["onnx-file"]).resolve()
        want = Path(f"{source}_b{prop['batch-size']}_gpu{prop['gpu-id']}_{NVINFER_MODES[prop['network-mode']]}.engine")
        for old in source.parent.glob(source.name + "_b*.engine"):
            old.unlink()
        p = run_pipeline([tools[0], "-q", "videotestsrc", "num-buffers=2", "!",
                          "video/x-raw,width=320,height=240,format=NV12", "!", "nvvideoconvert", "!",
                          "video/x-raw(memory:NVMM),format=NV12", "!", "m.sink_0", "nvstreammux", "name=m",
                          "batch-size=1", "width=320", "height=240", "!", "nvinfer", f"config-file-path={cfg}", "!",
                          "fakesink"], timeout=900)
        if p.returncode != 0:
            tail = (p.stderr or p.stdout or "").strip().splitlines()[-1:] or ["no output"]
            raise AssertionError(f"{precision}: gst-launch exited {p.returncode}: {tail[0][:200]}")
        if not want.is_file():
            built = sorted(x.name for x in source.parent.glob(source.name + "_b*.engine"))
            raise AssertionError(f"{precision}: nvinfer did not build {want.name} from onnx-file"
                                 + (f" (it built {built[0]})" if built else ""))
        done.append(want.name)
    return f"engine files removed; nvinfer rebuilt {', '.join(done)} from onnx-file"


def check_list(setup: Setup) -> list[tuple[str, Callable[[], str]]]:
    return [*check_matrix(setup),
            (f"open/infer on a thread/close ×{LEAK_LOOPS}", lambda: check_open_close(setup)),
            ("close() leaves no CUDA context current", lambda: check_context_after_close(setup)),
            ("garbage timing cache", lambda: check_garbage_timing_cache(setup)),
            ("version-compatible plan", lambda: check_version_compatible(setup)),
            ("int8 rebuild from calibration cache", lambda: check_int8_from_cache(setup)),
            ("FP16-I/O engine + Triton config", lambda: check_fp16_io(setup)),
            ("DeepStream rebuilds a removed engine", lambda: check_deepstream_rebuild(setup)),
            ("DLA engine + Triton + nvinfer config", lambda: check_dla(setup))]


def run_checks(checks: list[tuple[str, Callable[[], str]]], progress: bool = True) -> list[Result]:
    """Run each check; an exception fails its line only (its first line is the detail)."""
    results = []
    for name, fn in checks:
        t0 = time.perf_counter()
        try:
            status, detail = "PASS", fn()
        except Skip as e:
            status, detail = "SKIP", str(e)
        except Exception as e:  # any failure is one FAIL line; the table must still come out
            status = "FAIL"
            detail = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
            if progress:
                traceback.print_exc()
        results.append(Result(name, status, detail, round(time.perf_counter() - t0, 2)))
        if progress:
            print(f"{PROG}: {status} {name}", flush=True)
    return results


# --- report ----------------------------------------------------------------------------------
def render_table(results: list[Result]) -> str:
    w = max([len(r.name) for r in results] + [5])
    lines = [f"{'check':<{w}}  result  {'s':>7}  detail", "-" * (w + 40)]
    lines += [f"{r.name:<{w}}  {r.status:<6}  {r.seconds:7.1f}  {r.detail}" for r in results]
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    lines.append(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    return "\n".join(lines)


def write_json(path: Path, results: list[Result], environment: dict[str, Any]) -> Path:
    from runtime.fileio import write_atomic

    doc = {"environment": environment, "results": [asdict(r) for r in results],
           "passed": all(r.status != "FAIL" for r in results)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(doc, indent=2) + "\n")
    return path


def environment(setup: Setup) -> dict[str, Any]:
    d = setup.device
    return {"tensorrt": trt_compat.trt_version(setup.trt), "device": d.name, "compute_capability": d.compute_capability,
            "device_memory": d.total_memory, "jetson": setup.jetson, "onnx": str(setup.onnx)}


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog=PROG, description="Check the TensorRT path on this GPU: builds, "
                                 "partial batches, leaks, caches, version-compatible plans, DLA.")
    ap.add_argument("--onnx", type=Path, default=DEFAULT_ONNX, help="detect ONNX (default: the bundled model)")
    ap.add_argument("--out", type=Path, default=Path("runs/gpu_check"), help="folder for engines and the report")
    ap.add_argument("--json", type=Path, help="report file (default: OUT/gpu_check.json)")
    ap.add_argument("--calib-data", default="synthetic:64", help="INT8 calibration data (default synthetic:64)")
    ap.add_argument("--quick", action="store_true", help="one profile (1:4:8) instead of three")
    a = ap.parse_args(argv)
    from benchmarks.report import check_writable

    check_writable(str(a.json) if a.json else None, "--json", [("--onnx", str(a.onnx))])
    trt = trt_compat.import_tensorrt()  # one line and exit 1 without TensorRT
    device = trt_compat.probe_cuda_device(0)  # ... or without a usable GPU
    trt_compat.import_pycuda()
    from export.onnx_io import inspect_onnx

    info = inspect_onnx(a.onnx)
    if info.meta is None:
        raise UserError(f"{a.onnx}: no jrc metadata; export it with python -m export.onnx")
    a.out.mkdir(parents=True, exist_ok=True)
    setup = Setup(a.onnx, a.out, trt, device, ort_reference(a.onnx), info.meta.input_size,
                  trt_compat.is_jetson(), a.quick, a.calib_data)
    results = run_checks(check_list(setup))
    print(render_table(results))
    path = write_json(a.json or a.out / "gpu_check.json", results, environment(setup))
    print(f"{PROG}: wrote {path}")
    return 1 if any(r.status == "FAIL" for r in results) else 0


if __name__ == "__main__":
    run_cli(main, PROG)
