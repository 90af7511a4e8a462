"""Is INT8 faster than fp32 on this CPU? Interleaved timed runs in ONNX Runtime.

Static INT8 in ONNX Runtime is not always faster: without VNNI the 8-bit kernels widen to 16 bits,
and every Q/DQ boundary costs a pass over the tensor, so on small edge networks it can lose to
fp32. The answer depends on the machine, so it is measured where the artifact will run: the
artifacts take turns (round-robin, the order rotating each round) so that a noisy, shared machine
slows them alike and their ratio holds (the median of per-round ratios is reported), and ONNX
Runtime's profiler says where each spends its time (int8 kernels, float kernels, Q/DQ conversions,
layout changes; :mod:`calibration.kernels`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from runtime import cpu


def _session(path: str | Path | bytes, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as the runtime runs it
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def session_from_bytes(model: bytes, threads: int = 0) -> Any:
    """A CPU session (all graph optimisations, as the runtime runs it) of an in-memory model."""
    return _session(model, threads)


def interleaved(runners: Sequence[tuple[str, Any]], rounds: int, warmup: int = 3) -> dict[str, list[float]]:
    """Time callables round-robin (order rotated every round); seconds per call, by name."""
    for _ in range(warmup):
        for _, fn in runners:
            fn()
    times: dict[str, list[float]] = {name: [] for name, _ in runners}
    for r in range(rounds):
        k = r % len(runners)
        for name, fn in list(runners[k:]) + list(runners[:k]):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def compare(artifacts: Sequence[tuple[str, str | Path]], input_name: str, size: int,
            batches: Sequence[int] = (1, 8), rounds: int = 30, threads: int = 0, seed: int = 0,
            kernel_runs: int = 10) -> dict[str, Any]:
    """Median latency per artifact and batch, each one's speed relative to the first (fp32), and
    where each spends its time (:mod:`calibration.kernels`; ``kernel_runs=0`` skips that)."""
    from calibration import kernels

    sessions = [(name, _session(path, threads)) for name, path in artifacts]
    rng = np.random.default_rng(seed)
    ref = artifacts[0][0]
    result: dict[str, Any] = {**cpu.describe(), "rounds": rounds, "threads": threads or "default",
                              "reference": ref, "batches": {}}
    for b in batches:
        x = rng.standard_normal((b, 3, size, size)).astype(np.float32)
        runners = [(name, (lambda s=s, x=x: s.run(None, {input_name: x}))) for name, s in sessions]
        times = interleaved(runners, rounds)
        med = {name: float(np.median(t)) for name, t in times.items()}
        # speedup: median over rounds of reference time / this time (> 1 = faster than the reference);
        # paired by round, so a machine busy for a while slows both sides of a ratio alike
        per = {}
        for name, (_, path) in zip(times, artifacts):
            ratio = float(np.median(np.asarray(times[ref]) / np.asarray(times[name])))
            split = kernels.profile(path, x, input_name, runs=kernel_runs, threads=threads) if kernel_runs else None
            per[name] = {"median_ms": 1e3 * med[name], "speedup": ratio,
                         **({"kernels": split.to_dict()} if split is not None else {})}
        result["batches"][str(b)] = per
    return result


def format_speed(result: dict[str, Any]) -> str:
    ref = result["reference"]
    masked = f", CPUID masked to {result['cpuid_mask']}" if result.get("cpuid_mask") else ""
    lines = [f"CPU speed ({result['cpu']}; VNNI: {'yes' if result['vnni'] else 'no'}{masked}; {result['rounds']} "
             "interleaved rounds, medians):"]
    for b, per in result["batches"].items():
        cells = ", ".join(f"{name} {v['median_ms']:.2f} ms ({v['speedup']:.2f}× {ref} speed)" for name, v in per.items())
        lines.append(f"  batch {b}: {cells}")
        for name, v in per.items():
            if "kernels" in v:
                lines.append(f"    {name} kernels: {format_kernels(v['kernels'])}")
    return "\n".join(lines)


def format_kernels(split: dict[str, Any]) -> str:
    """A kernel split stored by :meth:`calibration.kernels.KernelSplit.to_dict`, in one line."""
    from calibration.kernels import KernelSplit, format_split

    return format_split(KernelSplit(split.get("groups_ms", {}), split.get("ops_ms", {}), split.get("runs", 0)))


def verdict(result: dict[str, Any], name: str) -> str:
    """One line: is ``name`` faster than the reference at every measured batch?"""
    ratios = {b: per[name]["speedup"] for b, per in result["batches"].items()}
    faster = all(r > 1.0 for r in ratios.values())
    slower = all(r < 1.0 for r in ratios.values())
    what = "faster than" if faster else "slower than" if slower else "mixed against"
    detail = ", ".join(f"{r:.2f}× the speed at batch {b}" for b, r in ratios.items())
    return f"{name} is {what} {result['reference']} on this CPU ({detail})"
