"""Which layers of the CPU INT8 model run in int8: chosen by measurement on this CPU.

On ONNX Runtime's CPU kernels int8 pays where dot products dominate (1×1 and full convolutions
with many input channels: 2-3.5× the float speed measured on an AVX-512 VNNI EPYC) and not where
they do not: depthwise convolutions (no reduction to speed up), a 3-channel stem convolution
(too shallow for the integer kernels), and the per-element work of hard-swish and
squeeze-excitation, which the float kernels fuse into the convolution and the int8 graph pays
as separate passes. Early, high-resolution layers of an edge network are mostly of that kind, and
they are also where 8-bit rounding hurts the output most, so the plan is a cut: every layer
before a cut tensor stays float, every layer after it runs in int8 (and the classifier head, a
pair of small Gemms on a pooled vector, stays float: it costs about 1 % of the time and its
quantization sits right before the logit).

:func:`cut_points` lists the tensors that separate the graph (every path from input to output
passes through them); :func:`candidates` picks up to ``n`` of them spread over the network's
multiply-accumulates; :func:`choose` builds each candidate, measures its speed against the float
model (interleaved rounds at each batch size, :func:`quiet_ratio`), its agreement with it on the
calibration faces (max |Δprob|) and its AUC change on labelled check faces (the calibration faces
when they are labelled, else the synthetic training-split faces; never the held-out ones the
report scores), and keeps the fastest one within both bounds (among plans within 3 % of the
fastest, the one with more float layers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

SPEED_TIE = 0.03  # plans this close to the fastest count as equally fast: prefer the more accurate
QUIET = 0.25  # the quantile of each side's times a speed ratio is taken from (see quiet_ratio)


@dataclass
class Candidate:
    """One plan: the float layers before ``cut`` (``"input"``: none) and what was measured."""

    cut: str
    float_nodes: list[str]
    macs_float: float = 0.0  # share of the network's multiply-accumulates left in float
    speedup: dict[str, float] = field(default_factory=dict)  # batch -> float time / int8 time
    max_dprob: float = math.nan  # on the calibration faces
    mean_dprob: float = math.nan
    swaps: float = math.nan  # share of face pairs whose order (by p(fake)) int8 reverses
    d_auc: float = math.nan  # AUC change on the labelled check faces (positive = worse)

    @property
    def score(self) -> float:
        vals = [v for v in self.speedup.values() if v > 0 and math.isfinite(v)]
        return float(np.exp(np.mean(np.log(vals)))) if vals else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"cut": self.cut, "float_layers": len(self.float_nodes), "macs_float": round(self.macs_float, 4),
                "speedup": {k: round(v, 3) for k, v in self.speedup.items()},
                "max_dprob_calibration": _round(self.max_dprob), "mean_dprob_calibration": _round(self.mean_dprob),
                "swapped_pairs_calibration": _round(self.swaps), "d_auc_check": _round(self.d_auc)}


def _round(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 5)


def _shapes(model: Any) -> dict[str, list[int]]:
    out = {}
    for v in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in v.type.tensor_type.shape.dim]
        out[v.name] = dims
    return out


def node_macs(model: Any) -> dict[str, float]:
    """Multiply-accumulates per image of each Conv/Gemm (from weight shapes and inferred output
    shapes; 0 where a shape is unknown) — the cost model for spreading the cut candidates."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    shapes = _shapes(model)
    macs: dict[str, float] = {}
    for n in model.graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul", "ConvTranspose") or len(n.input) < 2 or n.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        out = shapes.get(n.output[0], [])
        spatial = float(np.prod(out[2:])) if len(out) > 2 else 1.0
        if n.op_type == "Conv":
            macs[n.name] = float(w.size) * spatial
        else:
            macs[n.name] = float(w.size)
    return macs


def cut_points(model: Any) -> list[tuple[int, str]]:
    """(index of the producing node, tensor) for every tensor that alone carries the activations
    from the nodes before it to the nodes after it; ``(-1, input)`` first."""
    graph = model.graph
    consts = {i.name for i in graph.initializer}
    last_use: dict[str, int] = {}
    for i, n in enumerate(graph.node):
        for t in n.input:
            if t:
                last_use[t] = i
    inputs = [i.name for i in graph.input if i.name not in consts]
    live = {t for t in inputs if t in last_use}
    cuts = [(-1, inputs[0])] if len(inputs) == 1 else []
    for i, n in enumerate(graph.node):
        live = {t for t in live if last_use.get(t, -1) > i}
        live |= {o for o in n.output if o and last_use.get(o, -1) > i}
        const_like = {t for t in live if t in consts}
        rest = live - const_like
        if len(rest) == 1 and n.output and next(iter(rest)) in n.output and i < len(graph.node) - 1:
            cuts.append((i, next(iter(rest))))
    return cuts


def candidates(model: Any, n: int = 8, always_float: Iterable[str] = ()) -> list[Candidate]:
    """Up to ``n`` cut plans spread over the multiply-accumulates (0 %, then evenly up to the last
    cut with any int8 layer after it), each with the names of its float nodes."""
    macs = node_macs(model)
    total = sum(macs.values()) or 1.0
    names = [node.name for node in model.graph.node]
    cum, before = 0.0, []
    for node in model.graph.node:
        before.append(cum)
        cum += macs.get(node.name, 0.0)
    cuts = cut_points(model)
    keep = list(always_float)
    weighted_after = _weighted_after(model, set(keep))
    useful = [(i, t) for i, t in cuts if weighted_after[i + 1] > 0]
    if not useful:
        return [Candidate("input", keep)]
    shares = [(before[i + 1] / total if i + 1 < len(before) else 1.0) for i, _ in useful]
    chosen: list[int] = []
    for target in np.linspace(0.0, max(shares), max(1, n)):
        j = int(np.argmin([abs(s - target) for s in shares]))
        if j not in chosen:
            chosen.append(j)
    out = []
    for j in sorted(chosen):
        i, t = useful[j]
        out.append(Candidate("input" if i < 0 else t, list(dict.fromkeys(names[:i + 1] + keep)), shares[j]))
    return out


def _weighted_after(model: Any, always_float: set[str]) -> list[int]:
    """For each node index i, how many weighted layers that may run in int8 are at index ≥ i."""
    inits = {i.name for i in model.graph.initializer}
    flags = [int(n.op_type in ("Conv", "Gemm") and len(n.input) > 1 and n.input[1] in inits
                 and n.name not in always_float) for n in model.graph.node]
    out = [0] * (len(flags) + 1)
    for i in range(len(flags) - 1, -1, -1):
        out[i] = out[i + 1] + flags[i]
    return out


def head_layers(model: Any) -> list[str]:
    """The weighted layers after the last convolution (the classifier head), found from the graph."""
    from calibration.qdq import first_and_head

    return [n for n in first_and_head(model)["head"]
            if next(x for x in model.graph.node if x.name == n).op_type != "Conv"]


def agreement(ref: np.ndarray, got: np.ndarray) -> tuple[float, float, float]:
    """max |Δprob|, mean |Δprob| and the share of pairs of faces whose order int8 reverses, between
    two sets of logits. The AUC is the share of (fake, real) pairs in the right order, so the
    reversed share bounds how far any labelling of these faces can move it; it needs no labels."""
    p = 1.0 / (1.0 + np.exp(-np.clip(ref, -60, 60)))
    q = 1.0 / (1.0 + np.exp(-np.clip(got, -60, 60)))
    d = np.abs(p - q)
    if d.size < 2:
        return float(d.max(initial=0.0)), float(d.mean()) if d.size else 0.0, 0.0
    i, j = np.triu_indices(len(ref), 1)
    a, b = np.sign(ref[i] - ref[j]), np.sign(got[i] - got[j])
    swaps = float(np.mean((a * b) < 0))
    return float(d.max()), float(d.mean()), swaps


def choose(cands: Sequence[Candidate], build: Callable[[Candidate], bytes], reference: bytes, x_calib: np.ndarray,
           input_name: str, size: int, batches: Sequence[int] = (1, 8), rounds: int = 30, threads: int = 1,
           max_dprob: float = 0.025, max_auc_drop: float = 0.0025,
           check: tuple[np.ndarray, np.ndarray] | None = None,
           progress: Callable[[str], None] | None = None) -> tuple[Candidate, bytes]:
    """Measure every candidate (speed against ``reference`` at each batch, max |Δprob| on
    ``x_calib``, the AUC change on the labelled ``check`` faces (inputs, labels) when given) and
    return the chosen one with its serialized model."""
    from calibration.speed import interleaved, session_from_bytes
    from training.metrics import roc_auc

    ref_sess = session_from_bytes(reference, threads)
    ref_logits = _logits(ref_sess, input_name, x_calib)
    ref_auc = roc_auc(_logits(ref_sess, input_name, check[0]), check[1]) if check is not None else math.nan
    built: dict[str, bytes] = {}
    rng = np.random.default_rng(0)
    inputs = {b: rng.standard_normal((b, 3, size, size)).astype(np.float32) for b in batches}
    for c in cands:
        if progress:
            progress(f"cpu plan: cut {c.cut} ({100 * c.macs_float:.0f}% of MACs float)")
        built[c.cut] = build(c)
        sess = session_from_bytes(built[c.cut], threads)
        c.max_dprob, c.mean_dprob, c.swaps = agreement(ref_logits, _logits(sess, input_name, x_calib))
        c.d_auc = ref_auc - roc_auc(_logits(sess, input_name, check[0]), check[1]) if check is not None else 0.0
        for b, x in inputs.items():
            times = interleaved([("fp32", lambda x=x: ref_sess.run(None, {input_name: x})),
                                 ("int8", lambda x=x, s=sess: s.run(None, {input_name: x}))], rounds, warmup=3)
            c.speedup[str(b)] = quiet_ratio(times["fp32"], times["int8"])
    best = pick(cands, max_dprob, max_auc_drop)
    return best, built[best.cut]


def quiet_ratio(a: Sequence[float], b: Sequence[float], q: float = QUIET) -> float:
    """a/b from the quick end of each side's times: other jobs on a shared machine only ever add
    time, in bursts that can outlast a round, so a low quantile estimates each side's undisturbed
    speed better than the median of per-round ratios does."""
    return float(np.quantile(np.asarray(a, np.float64), q) / np.quantile(np.asarray(b, np.float64), q))


def pick(cands: Sequence[Candidate], max_dprob: float, max_auc_drop: float = 1.0) -> Candidate:
    """The fastest candidate within the agreement bounds (ties within ``SPEED_TIE``: more float);
    when none is within them, the most accurate one."""
    def off(c: Candidate) -> float:
        return max(c.max_dprob / max_dprob, abs(c.d_auc) / max_auc_drop)

    ok = [c for c in cands if off(c) <= 1.0 and math.isfinite(c.score)]
    if not ok:
        return min(cands, key=lambda c: (off(c), -c.macs_float))
    fastest = max(c.score for c in ok)
    near = [c for c in ok if c.score >= fastest * (1.0 - SPEED_TIE)]
    return max(near, key=lambda c: c.macs_float)


def _logits(sess: Any, input_name: str, x: np.ndarray, batch: int = 32) -> np.ndarray:
    out = [sess.run(None, {input_name: x[i:i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(out).reshape(len(x), -1)[:, 0].astype(np.float64)


def format_candidates(cands: Sequence[Candidate], chosen: Candidate) -> str:
    """One line per plan: its cut, MACs in float, the speeds and checks measured ("-": not measured;
    a column nobody measured, such as the trt plan's speeds, is left out)."""
    batches = list(dict.fromkeys(b for c in cands for b in c.speedup))
    with_auc = any(math.isfinite(c.d_auc) for c in cands)
    head = f"{'cut (float before it)':<44} {'MACs float':>10} " + " ".join(f"{'b' + b + ' speed':>9}" for b in batches) \
        + f" {'max|Δp| calib':>13}" + (f" {'ΔAUC check':>10}" if with_auc else "")
    lines = [head]
    for c in cands:
        name = c.cut if len(c.cut) <= 44 else "…" + c.cut[-43:]
        mark = " ←" if c is chosen else ""
        dprob = f"{c.max_dprob:>13.4f}" if math.isfinite(c.max_dprob) else f"{'-':>13}"
        auc = (f" {c.d_auc:>+10.4f}" if math.isfinite(c.d_auc) else f" {'-':>10}") if with_auc else ""
        lines.append(f"{name:<44} {100 * c.macs_float:>9.0f}% " + " ".join(f"{c.speedup.get(b, math.nan):>8.2f}×" for b in batches)
                     + f" {dprob}{auc}{mark}")
    return "\n".join(lines)


def keep_for(model: Any, cut: str, always_float: Iterable[str] = ()) -> list[str]:
    """The float nodes of the plan that cuts at tensor ``cut`` (``"input"``: none)."""
    names = [n.name for n in model.graph.node]
    if cut == "input":
        return list(always_float)
    idx = next((i for i, n in enumerate(model.graph.node) if cut in n.output), None)
    if idx is None:
        raise KeyError(cut)
    return list(dict.fromkeys(names[:idx + 1] + list(always_float)))

