"""Statistics for benchmarks that must hold on a noisy, shared machine.

Timings on a busy machine drift: another process starts, the CPU clock steps down, a cache
goes cold. Two artifacts timed one after the other see different machines, and the ratio of
their medians reflects the drift as much as the artifacts. So artifacts are *interleaved*: each
round runs every artifact once, in an order that changes from round to round (rotated, or
shuffled as randomised blocks), and a ratio is the median of the per-round ratios, with a
distribution-free confidence interval (order statistics of the binomial). Warm-up rounds run
the same schedule untimed, and a drift check says when the warm-up was probably too short.

Everything here is plain numpy and takes an injectable clock, so it is tested on synthetic
timings.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

PERCENTILES = (50, 90, 99)
ORDERS = ("rotate", "shuffle", "blocked")  # blocked = all of one, then the next (see schedule)


def percentile(samples: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-th percentile (linear interpolation, numpy's default); NaN for no samples."""
    a = np.asarray(samples, np.float64).reshape(-1)
    return float(np.percentile(a, q)) if a.size else math.nan


def summarize(seconds: Sequence[float] | np.ndarray, batch: int = 1) -> dict[str, Any]:
    """Latency percentiles in ms and throughput (items/s at the median) of one artifact's runs."""
    a = np.asarray(seconds, np.float64).reshape(-1)
    if not a.size:
        return {"n": 0}
    ms = a * 1000.0
    d: dict[str, Any] = {"n": int(a.size)}
    for q in PERCENTILES:
        d[f"p{q}_ms"] = round(percentile(ms, q), 4)
    d["mean_ms"] = round(float(ms.mean()), 4)
    d["min_ms"] = round(float(ms.min()), 4)
    d["max_ms"] = round(float(ms.max()), 4)
    lo, hi = median_ci(ms)
    d["p50_ci_ms"] = [round(lo, 4), round(hi, 4)]
    d["throughput"] = round(throughput(batch, float(np.median(a))), 3)
    return d


def throughput(batch: int, seconds: float) -> float:
    """Items per second when one call of ``batch`` items takes ``seconds``."""
    return batch / seconds if seconds > 0 else math.inf


# --- confidence intervals ------------------------------------------------------------------
def median_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median: order statistics (j, n−j+1) with
    P(Binomial(n, ½) < j) ≤ (1 − confidence)/2. With too few values for that coverage the
    interval is the whole range (and it is NaN for none)."""
    v = np.sort(np.asarray(values, np.float64).reshape(-1))
    n = v.size
    if n == 0:
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2.0
    denom, cum, j = 1 << n, 0, 0  # j = order statistics cut from each end
    for cut in range((n - 1) // 2 + 1):
        cum += math.comb(n, cut)  # exact P(Binomial(n, 1/2) <= cut) = cum / 2^n
        if cum / denom > alpha:
            break
        j = cut  # [v[cut], v[n-1-cut]] covers the median with probability 1 - 2·cum/2^n
    return float(v[j]), float(v[n - 1 - j])


@dataclass(frozen=True)
class Ratio:
    """Median of per-round ratios (numerator / denominator) and its confidence interval."""

    median: float
    low: float
    high: float
    rounds: int
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def percent(self) -> str:
        """As an overhead: ``+1.2% [−0.4, +2.9]``."""
        def p(x: float) -> str:
            return f"{(x - 1.0) * 100:+.1f}"
        return f"{p(self.median)}% [{p(self.low)}, {p(self.high)}]"

    def times(self) -> str:
        """As a factor: ``3.41× [3.30, 3.52]``."""
        return f"{self.median:.2f}× [{self.low:.2f}, {self.high:.2f}]"


def ratio(numerator: Sequence[float] | np.ndarray, denominator: Sequence[float] | np.ndarray,
          confidence: float = 0.95) -> Ratio:
    """numerator/denominator from paired, per-round samples (same round = same machine state)."""
    a = np.asarray(numerator, np.float64).reshape(-1)
    b = np.asarray(denominator, np.float64).reshape(-1)
    if a.size != b.size:
        raise ValueError(f"paired samples of different lengths ({a.size} and {b.size})")
    ok = (b > 0) & np.isfinite(a) & np.isfinite(b)
    r = a[ok] / b[ok]
    if not r.size:
        return Ratio(math.nan, math.nan, math.nan, 0, confidence)
    lo, hi = median_ci(r, confidence)
    return Ratio(float(np.median(r)), lo, hi, int(r.size), confidence)


# --- scheduling and timing -----------------------------------------------------------------
def schedule(names: Sequence[str], rounds: int, order: str = "shuffle", seed: int = 0) -> list[list[str]]:
    """The order of calls: one list per round, each a permutation of ``names``.

    ``rotate``: round r starts at name r mod k (each name takes each position equally often);
    ``shuffle``: a fresh random permutation per round (randomised blocks), reproducible by seed;
    ``blocked``: not interleaved at all (one round per name, every run of it) — for showing what
    interleaving protects against, or for calls that disturb each other when alternated (batch 1
    and batch 8 of one ONNX Runtime session, call by call: batch 1 measured ~13 % slower); the
    caller then alternates at a coarser level. :func:`run_interleaved` handles it.
    """
    names = list(names)
    if order not in ORDERS:
        raise ValueError(f"order {order!r}, expected one of {ORDERS}")
    if order == "rotate":
        k = len(names) or 1
        return [names[r % k:] + names[:r % k] for r in range(rounds)]
    if order == "shuffle":
        rng = random.Random(seed)
        out = []
        for _ in range(rounds):
            perm = names[:]
            rng.shuffle(perm)
            out.append(perm)
        return out
    return [[n] * rounds for n in names]


def run_interleaved(tasks: Mapping[str, Callable[[], Any]], runs: int, warmup: int = 5, order: str = "shuffle",
                    seed: int = 0, clock: Callable[[], float] = time.perf_counter,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Time each task ``runs`` times, interleaved; returns seconds per call by name, in round order
    (index r of every array was measured in round r, so arrays pair up for :func:`ratio`).

    ``warmup`` untimed rounds of the same kind come first (first calls allocate, compile, fill
    caches). ``progress(done, total)`` is called after every round.
    """
    if runs < 1:
        raise ValueError(f"runs {runs}, expected at least 1")
    names = list(tasks)
    for row in schedule(names, warmup, "rotate" if order == "blocked" else order, seed + 1):
        for name in row:
            tasks[name]()
    out = {name: np.empty(runs, np.float64) for name in names}
    if order == "blocked":
        for i, name in enumerate(names):
            fn = tasks[name]
            for r in range(runs):
                t0 = clock()
                fn()
                out[name][r] = clock() - t0
            if progress:
                progress(i + 1, len(names))
        return out
    for r, row in enumerate(schedule(names, runs, order, seed)):
        for name in row:
            fn = tasks[name]
            t0 = clock()
            fn()
            out[name][r] = clock() - t0
        if progress:
            progress(r + 1, runs)
    return out


def warmup_drift(seconds: Sequence[float] | np.ndarray, head: float = 0.1) -> float:
    """Median of the first ``head`` fraction of runs over the median of the rest.

    Well above 1 (say > 1.2) means the artifact was still warming up when timing began: raise
    ``--warmup``. NaN when there are too few runs to tell.
    """
    a = np.asarray(seconds, np.float64).reshape(-1)
    k = int(round(a.size * head))
    if k < 3 or a.size - k < 3:
        return math.nan
    rest = float(np.median(a[k:]))
    return float(np.median(a[:k])) / rest if rest > 0 else math.nan


WARMUP_SUSPECT = 1.2  # warmup_drift above this: say so in the report
