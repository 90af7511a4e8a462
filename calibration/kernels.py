"""Where ONNX Runtime spends an inference: its profiler's kernel times, split by kind.

ONNX Runtime rewrites a Q/DQ model into integer kernels (QLinearConv, QLinearAdd, QGemm, …)
wherever its patterns match, and runs the rest in float between DequantizeLinear and
QuantizeLinear nodes. Whether an INT8 model pays on a CPU depends on that split, so it is measured
rather than guessed: a session with ``enable_profiling`` runs the model a number of times and every
kernel's time is put in one of four groups:

- ``int8``: integer kernels (``QLinear*``, ``QGemm``, ``*Integer*``) and other kernels on 8-bit
  tensors (MaxPool, Flatten, … whose output is uint8/int8);
- ``qdq``: QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear — conversions;
- ``layout``: layout changes (Transpose, ONNX Runtime's NCHWc ReorderInput/ReorderOutput), which
  ONNX Runtime adds where its int8 kernels (channels last) meet its float kernels (NCHWc);
- ``float``: everything else (float Conv, Gemm, elementwise ops).

:func:`profile` returns the median time per inference of each group and of each operator type;
:func:`format_split` prints it in one line.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

GROUPS = ("int8", "float", "qdq", "layout")
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
LAYOUT_OPS = {"Transpose", "ReorderInput", "ReorderOutput"}
INTEGER_TYPES = ("uint8", "int8")


@dataclass
class KernelSplit:
    """Median milliseconds per inference by group and by operator type (of one model and batch)."""

    groups: dict[str, float] = field(default_factory=dict)
    ops: dict[str, float] = field(default_factory=dict)
    runs: int = 0

    @property
    def total(self) -> float:
        return float(sum(self.groups.values()))

    def share(self, group: str) -> float:
        return self.groups.get(group, 0.0) / self.total if self.total > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"groups_ms": {k: round(v, 4) for k, v in self.groups.items()},
                "ops_ms": {k: round(v, 4) for k, v in sorted(self.ops.items(), key=lambda kv: -kv[1])},
                "runs": self.runs}


def group_of(op: str, output_types: str) -> str:
    """The group of one kernel from its operator type and the element type of its output."""
    if op in QDQ_OPS:
        return "qdq"
    if op in LAYOUT_OPS:
        return "layout"
    if op.startswith("QLinear") or op in ("QGemm", "QAttention") or "Integer" in op:
        return "int8"
    if any(t in output_types for t in INTEGER_TYPES) and "float" not in output_types:
        return "int8"  # MaxPool, Flatten… on 8-bit data
    return "float"


def split_events(events: list[dict[str, Any]], skip: int = 0) -> KernelSplit:
    """A :class:`KernelSplit` from ONNX Runtime profiler events (the JSON it writes).

    Node events are assigned to the run (``model_run`` event) whose time span holds them; the first
    ``skip`` runs (warm-up) are dropped, and of the rest the quicker half (other jobs on a shared
    machine only ever add time); the median over those is taken per group and per operator type.
    """
    spans = sorted((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0.0))) for e in events
                   if e.get("cat") == "Session" and e.get("name") == "model_run")
    per_run: list[dict[str, dict[str, float]]] = [{"groups": {}, "ops": {}} for _ in spans]
    starts = [a for a, _ in spans]
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        ts = float(e.get("ts", 0.0))
        i = int(np.searchsorted(starts, ts, side="right")) - 1
        if i < 0 or ts > spans[i][1]:
            continue
        args = e.get("args", {})
        op = str(args.get("op_name", "?"))
        group = group_of(op, str(args.get("output_type_shape", "")))
        ms = float(e.get("dur", 0.0)) / 1000.0
        run = per_run[i]
        run["groups"][group] = run["groups"].get(group, 0.0) + ms
        run["ops"][op] = run["ops"].get(op, 0.0) + ms
    runs = per_run[skip:]
    if not runs:
        return KernelSplit()
    totals = [sum(r["groups"].values()) for r in runs]
    runs = [r for r, t in zip(runs, totals) if t <= float(np.median(totals))]  # the quicker half
    groups = {g: float(np.median([r["groups"].get(g, 0.0) for r in runs])) for g in GROUPS}
    names = {op for r in runs for op in r["ops"]}
    ops = {op: float(np.median([r["ops"].get(op, 0.0) for r in runs])) for op in names}
    return KernelSplit(groups, ops, len(runs))


def profile(path: str | Path, x: np.ndarray, input_name: str, runs: int = 20, warmup: int = 3,
            threads: int = 0) -> KernelSplit:
    """Run ``path`` on ``x`` ``warmup + runs`` times with ONNX Runtime's profiler on (CPU, all
    graph optimisations, as the runtime runs it) and split the kernel time of the last ``runs``.
    The profile file is written to a temporary folder and deleted."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="jrc-profile-") as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "profile")
        if threads:
            opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        for _ in range(warmup + runs):
            sess.run(None, {input_name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    return split_events(events, skip=warmup)


def format_split(split: KernelSplit, top: int = 4) -> str:
    """``int8 0.61 ms (58%), float 0.30 (28%), Q/DQ 0.02 (2%), layout 0.12 (12%); top: QLinearConv 0.5, …``"""
    if split.total <= 0:
        return "no kernel times (profiler returned nothing)"
    names = {"int8": "int8", "float": "float", "qdq": "Q/DQ", "layout": "layout"}
    parts = [f"{names[g]} {split.groups.get(g, 0.0):.3f} ms ({100 * split.share(g):.0f}%)" for g in GROUPS]
    tops = sorted(split.ops.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(parts) + "; top: " + ", ".join(f"{op} {ms:.3f}" for op, ms in tops)
