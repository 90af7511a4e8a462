"""Peak memory of one runner, measured in a fresh child process.

Timing runs every artifact in one process (interleaved), where memory cannot be told apart, so
memory is measured separately: a child imports the libraries the runner needs, records its
resident set (RSS), opens the runner, runs each batch size a few times and records the peak RSS
(Linux ``VmHWM``, reset with ``/proc/self/clear_refs`` where allowed; ``ru_maxrss`` otherwise).
Peak RSS − baseline = what the model, the session, its arenas and the I/O buffers cost in host
memory. For TensorRT the device memory in use is read before and after (``cudaMemGetInfo``), which
includes the engine's activations and the backend's buffers.

Internal entry point: ``python -m benchmarks.memory SPEC_JSON BATCHES`` prints one JSON object.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

MB = 1024.0 * 1024.0


def _status_kb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb / 1024.0
    return _maxrss_mb()


def _maxrss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / MB if sys.platform == "darwin" else r / 1024.0


def reset_peak() -> bool:
    """Reset the peak-RSS counter to the current RSS (Linux ≥ 4.0); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    kb = _status_kb("VmHWM")
    return kb / 1024.0 if kb is not None else _maxrss_mb()


def _gpu_used_mb() -> tuple[float | None, Any]:
    """Device memory in use (MB) on GPU 0, through its primary context (retained once per process,
    never detached: see :func:`trt_compat.primary_context`); (None, None) without."""
    try:
        import pycuda.driver as cuda
    except ImportError:
        return None, None
    from runtime.backends.trt_compat import primary_context

    try:
        ctx = primary_context(cuda, 0)
        ctx.push()
        try:
            free, total = cuda.mem_get_info()
        finally:
            ctx.pop()
    except (cuda.Error, RuntimeError):  # no usable device: not measurable here
        return None, None
    return (total - free) / MB, ctx


def _gpu_used_again(ctx: Any) -> float | None:
    if ctx is None:
        return None
    import pycuda.driver as cuda

    ctx.push()
    try:
        free, total = cuda.mem_get_info()
    finally:
        ctx.pop()
    return (total - free) / MB


def measure(spec_dict: dict[str, Any], batches: list[int], calls: int = 3) -> dict[str, Any]:
    """In this process: open the runner, run every batch, report memory per batch (ascending)."""
    from benchmarks.runners import Spec, make_input, open_runner

    spec = Spec(**spec_dict)
    is_engine = spec.kind == "runtime" and not spec.path.lower().endswith(".onnx")
    if spec.kind == "torch":
        import torch  # noqa: F401 - library code is not the model's memory

        import training.model  # noqa: F401
    elif is_engine:
        import tensorrt  # noqa: F401
    else:
        import onnxruntime  # noqa: F401
    gpu0, ctx = _gpu_used_mb() if is_engine else (None, None)
    base = rss_mb()
    exact = reset_peak()
    runner = open_runner(spec)
    out: dict[str, Any] = {"baseline_rss_mb": round(base, 1), "peak_exact": exact, "batches": {}}
    try:
        for b in sorted(batches):
            if b > runner.max_batch:
                continue
            fn = runner.bind(make_input(runner.meta, b))
            for _ in range(calls):
                fn()
            row = {"rss_peak_delta_mb": round(max(0.0, peak_mb() - base), 1)}
            if is_engine:
                used = _gpu_used_again(ctx)
                if used is not None and gpu0 is not None:
                    row["device_delta_mb"] = round(used - gpu0, 1)
            out["batches"][str(b)] = row
    finally:
        runner.close()
    return out


def measure_in_child(spec_dict: dict[str, Any], batches: list[int], timeout: float = 600) -> dict[str, Any]:
    """Run :func:`measure` in a fresh interpreter; on failure, ``{"error": ...}``."""
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "benchmarks.memory", json.dumps(spec_dict), ",".join(map(str, batches))]
    try:
        p = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"memory measurement timed out after {timeout:g} s"}
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:300]}
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "unreadable output from the memory child"}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m benchmarks.memory SPEC_JSON BATCHES (internal; used by benchmarks.latency)",
              file=sys.stderr)
        return 2
    spec = json.loads(args[0])
    batches = [int(b) for b in args[1].split(",") if b]
    print(json.dumps(measure(spec, batches)))
    return 0


if __name__ == "__main__":
    from runtime.errors import run_cli

    run_cli(main, "benchmarks.memory")
