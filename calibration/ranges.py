"""Activation ranges from the calibration faces: one inference pass, then any method.

Every float activation of the (preprocessed) model is made a graph output and run on the
calibration batches; per tensor we keep its min, max and a histogram of |x| (2048 bins to start,
widened with equal-width bins when a later batch goes beyond them, merged in pairs when they
exceed :data:`MAX_BINS`). From that:

- ``minmax``: [min, max];
- ``percentile``: ±the given percentile of |x|, clipped to [min, max];
- ``mse``: ±the threshold with the least expected squared error of uint8 rounding plus clipping;
- ``entropy``: ±the threshold that minimises the KL divergence between the |x| distribution and
  its 128-level quantized version (TensorRT's entropy calibration, GTC 2017 "8-bit inference with
  TensorRT"; the bin of exact zeros is levelled with its neighbour, as NVIDIA's PyTorch
  quantization toolkit does, so a ReLU's zeros do not decide the threshold), clipped to [min, max].

Outputs of bounded ops and the graph outputs always keep their min-max range
(:func:`full_range_tensors`).

Why not ONNX Runtime's own entropy calibrator: through ``quantize_static`` it runs with 128
histogram bins and 128 quantized bins, which leaves one candidate threshold, i.e. min-max. One pass
also serves every target and the per-layer sensitivity variants without recalibrating.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

BINS = 2048
MAX_BINS = 8192
ENTROPY_LEVELS = 128  # positive int8 levels
ENTROPY_STEP = 16  # candidate thresholds every 16 bins (TensorRT-like result, ~16× faster)


@dataclass
class TensorStats:
    """min, max and a histogram of |x| over equal-width bins starting at 0."""

    lo: float = math.inf
    hi: float = -math.inf
    width: float = 0.0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float32).ravel()
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
        a = np.abs(x)
        amax = float(a.max())
        if self.width == 0.0:
            if amax == 0.0:
                return  # all zeros so far: nothing to bin yet (min/max recorded)
            self.width = amax / BINS
            self.hist = np.zeros(BINS, np.int64)
        need = int(amax / self.width) + 1
        while need > MAX_BINS:  # coarsen: merge neighbouring bins in pairs
            h = self.hist if len(self.hist) % 2 == 0 else np.append(self.hist, 0)
            self.hist = h.reshape(-1, 2).sum(1)
            self.width *= 2.0
            need = int(amax / self.width) + 1
        if need > len(self.hist):
            self.hist = np.concatenate([self.hist, np.zeros(need - len(self.hist), np.int64)])
        idx = np.minimum((a / self.width).astype(np.int64), len(self.hist) - 1)
        self.hist += np.bincount(idx, minlength=len(self.hist))

    def clip(self, t: float) -> tuple[float, float]:
        return max(-t, self.lo), min(t, self.hi)

    def minmax(self) -> tuple[float, float]:
        return self.lo, self.hi

    def percentile(self, pct: float) -> tuple[float, float]:
        if self.width == 0.0:
            return self.minmax()
        cdf = np.cumsum(self.hist) / self.hist.sum()
        i = int(np.searchsorted(cdf, pct / 100.0))
        return self.clip((i + 1) * self.width)

    def entropy(self, levels: int = ENTROPY_LEVELS, step: int = ENTROPY_STEP) -> tuple[float, float]:
        if self.width == 0.0:
            return self.minmax()
        hist = self.hist.astype(np.float64)
        hist[0] = hist[1]  # the spike of exact zeros (ReLU) would dominate the divergence
        n = int(np.flatnonzero(hist)[-1]) + 1  # ignore empty bins above the max
        if n <= levels:
            return self.minmax()
        best, best_i = math.inf, n
        for i in list(range(levels, n, step)) + [n]:
            kl = _kl_clipped(hist, i, levels)
            if kl <= best:  # ties: the wider range
                best, best_i = kl, i
        return self.clip(best_i * self.width)

    def mse(self, levels: int = 255, step: int = ENTROPY_STEP) -> tuple[float, float]:
        """The clip that minimises the expected squared error of uint8 quantization: values above
        the threshold lose their excess, values below it the rounding noise step²/12."""
        if self.width == 0.0:
            return self.minmax()
        hist = self.hist.astype(np.float64)
        n = int(np.flatnonzero(hist)[-1]) + 1
        centres = (np.arange(n) + 0.5) * self.width
        best, best_t = math.inf, n * self.width
        for i in list(range(max(1, n // 64), n, max(1, step // 4))) + [n]:
            t = i * self.width
            below = min(max(-self.lo, 0.0), t)  # the part of the range under zero (0 for a ReLU output)
            q_step = (t + below) / levels
            inside = hist[:i].sum()
            over = np.clip(centres[i:] - t, 0.0, None)
            err = float(inside * q_step * q_step / 12.0 + np.sum(hist[i:n] * over * over))
            if err < best:
                best, best_t = err, t
        return self.clip(best_t)


def _kl_clipped(hist: np.ndarray, i: int, levels: int) -> float:
    """KL(P‖Q): P = the first ``i`` bins with everything beyond folded into the last one; Q = those
    bins quantized to ``levels`` levels and spread back over their non-empty bins."""
    sliced = hist[:i]
    p = sliced.copy()
    p[-1] += hist[i:].sum()
    group = (np.arange(i) * levels) // i
    nonzero = sliced > 0
    sums = np.bincount(group, weights=sliced, minlength=levels)
    counts = np.bincount(group, weights=nonzero.astype(np.float64), minlength=levels)
    q = np.where(nonzero, sums[group] / np.maximum(counts[group], 1.0), 0.0)
    p /= p.sum()
    total = q.sum()
    if total == 0:
        return math.inf
    q /= total
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / np.maximum(q[m], 1e-12))))


BOUNDED_OPS = ("HardSigmoid", "Sigmoid", "Tanh", "Softmax", "Clip")


def full_range_tensors(model: Any) -> list[str]:
    """Tensors whose range must not be clipped: the graph outputs (clipping a logit changes the
    verdict) and outputs of ops that are bounded already (a hard-sigmoid gate piles up at 0 and 1,
    and a divergence-based clip of it switches squeeze-excite gates off)."""
    names = [o.name for o in model.graph.output]
    names += [o for n in model.graph.node if n.op_type in BOUNDED_OPS for o in n.output]
    return names


def activation_names(model: Any) -> list[str]:
    """Float tensors that flow between nodes (graph input and node outputs), in graph order."""
    from onnx import TensorProto

    inits = {i.name for i in model.graph.initializer}
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    names = [i.name for i in model.graph.input if i.name not in inits]
    for node in model.graph.node:
        names += [o for o in node.output if o and types.get(o) == TensorProto.FLOAT]
    return list(dict.fromkeys(names))


def collect(model_path: Path, calib: Any, batch_size: int = 16,
            progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None) -> dict[str, TensorStats]:
    """Run the calibration set through ``model_path`` with every activation exposed; their stats."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    names = activation_names(model)
    have = {o.name for o in model.graph.output}
    for name in names:
        if name not in have:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    input_name = calib.meta.input_name
    stats = {n: TensorStats() for n in names}
    batches = calib.batches(batch_size)
    steps = math.ceil(len(calib) / batch_size)
    for x in (progress(batches, steps) if progress else batches):
        outs = sess.run(names, {input_name: x})
        for n, v in zip(names, outs):
            stats[n].add(v)
    return stats


def ranges(stats: dict[str, TensorStats], method: str, percentile: float = 99.99,
           full_range: Iterable[str] = ()) -> dict[str, tuple[float, float]]:
    """(rmin, rmax) per tensor for ``method``; tensors never seen (no finite value) are left out.

    ``full_range`` tensors (:func:`full_range_tensors`) always get their min-max range.
    """
    out = {}
    full = set(full_range)
    for name, s in stats.items():
        if not math.isfinite(s.lo):
            continue
        if method == "minmax" or name in full:
            out[name] = s.minmax()
        elif method == "percentile":
            out[name] = s.percentile(percentile)
        elif method == "entropy":
            out[name] = s.entropy()
        elif method == "mse":
            out[name] = s.mse()
        else:
            raise ValueError(f"calibration method {method!r}")
    return out


def cover(base: dict[str, tuple[float, float]], extra: dict[str, tuple[float, float]]
          ) -> tuple[dict[str, tuple[float, float]], int]:
    """Each of ``base``'s ranges widened to cover ``extra``'s range of the same tensor, and how many
    were widened. A calibration set narrower than the faces a camera shows (grey faces, one light,
    one camera) gives ranges that clip those faces; covering a second, real-face set's ranges bounds
    that clipping whatever the first set was, at the price of a coarser step where it widens."""
    out, widened = {}, 0
    for name, (lo, hi) in base.items():
        if name in extra:
            lo2, hi2 = min(lo, extra[name][0]), max(hi, extra[name][1])
            widened += (lo2, hi2) != (lo, hi)
            lo, hi = lo2, hi2
        out[name] = (lo, hi)
    return out, widened


def widen(tensor_ranges: dict[str, tuple[float, float]], factor: float, fixed: Iterable[str] = ()
          ) -> dict[str, tuple[float, float]]:
    """Each range scaled by ``factor`` about zero (a ReLU's 0 stays 0), except the ``fixed`` tensors
    (:func:`full_range_tensors`: bounded ops and the logit, whose range is known). Headroom for faces
    unlike the calibration ones: ×2 spends one bit of the 8 on values calibration never saw."""
    keep = set(fixed)
    return {n: r if n in keep else (r[0] * factor, r[1] * factor) for n, r in tensor_ranges.items()}
