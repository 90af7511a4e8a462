"""The kernel split of ``benchmarks.latency``: where each ONNX model spends its time on the CPU.

For every ``.onnx`` artifact run by ONNX Runtime on the CPU, and every batch size, a separate
profiled session (same threads, all graph optimisations) runs the model a few times after the
timed rounds; :mod:`calibration.kernels` splits the kernel time into int8 kernels, float kernels,
Q/DQ conversions and layout changes. A user sees why an INT8 model is (or is not) faster: the
share in int8 kernels, and what the conversions and layout changes cost.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

RUNS = 10  # profiled runs per artifact and batch (after 3 warm-up runs)


def applies(runner: Any) -> bool:
    """An ONNX model on ONNX Runtime's CPU provider (the profiler's split is for those)."""
    spec = runner.spec
    return spec.kind == "runtime" and spec.provider == "cpu" and str(spec.path).lower().endswith(".onnx")


def measure(runners: Sequence[Any], batches: Sequence[int], make_input: Any, seed: int = 0,
            runs: int = RUNS) -> list[dict[str, Any]]:
    """One row per (artifact, batch): the split as milliseconds per batch by group and top operators."""
    from calibration.kernels import profile

    rows = []
    for r in runners:
        if not applies(r):
            continue
        for b in batches:
            if r.max_batch < b:
                continue
            x = np.asarray(make_input(r.meta, b, seed), np.float32)
            split = profile(r.spec.path, x, r.meta.input_name, runs=runs, threads=r.spec.threads or 0)
            rows.append({"label": r.label, "batch": b, **split.to_dict()})
    return rows


def lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The printed block: a heading, then one line per artifact and batch."""
    if not rows:
        return []
    from calibration.speed import format_kernels

    out = [f"\nkernel split (ONNX Runtime profiler, median of {rows[0].get('runs', RUNS)} runs, ms per batch; "
           "int8 = integer kernels, Q/DQ = conversions, layout = transposes/reorders):"]
    for row in rows:
        out.append(f"  {row['label']:<28} batch {row['batch']:>3}: {format_kernels(row)}")
    return out
