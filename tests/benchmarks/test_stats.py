"""benchmarks.stats on synthetic timings: percentiles, interleaving, ratios, warm-up."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks import stats


class FakeMachine:
    """A virtual clock: each task advances it by its cost × the machine's load at that moment.

    ``load(t)`` models a noisy, shared machine (another job starts half-way, say); tasks can have
    a slow first few calls (warm-up).
    """

    def __init__(self, load=lambda t: 1.0) -> None:
        self.t = 0.0
        self.load = load

    def clock(self) -> float:
        return self.t

    def task(self, cost: float, cold_calls: int = 0, cold_factor: float = 1.0):
        calls = {"n": 0}

        def run() -> None:
            calls["n"] += 1
            factor = cold_factor if calls["n"] <= cold_calls else 1.0
            self.t += cost * factor * self.load(self.t)

        run.calls = calls  # type: ignore[attr-defined]
        return run


def test_percentiles_match_definition():
    ms = np.arange(1, 101, dtype=float)  # 1..100 ms
    d = stats.summarize(ms / 1000.0, batch=4)
    assert d["n"] == 100
    assert d["p50_ms"] == pytest.approx(50.5)
    assert d["p90_ms"] == pytest.approx(90.1)
    assert d["p99_ms"] == pytest.approx(99.01)
    assert d["min_ms"] == 1.0 and d["max_ms"] == 100.0
    assert d["throughput"] == pytest.approx(4 / 0.0505, rel=1e-4)  # items per second at the median
    lo, hi = d["p50_ci_ms"]
    assert lo < 50.5 < hi and hi - lo < 25
    assert stats.summarize([]) == {"n": 0}
    assert math.isnan(stats.percentile([], 50))


def test_median_ci_covers_the_median_and_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    misses = 0
    for _ in range(200):
        lo, hi = stats.median_ci(rng.exponential(1.0, 41))
        misses += not (lo <= math.log(2) <= hi)  # true median of Exp(1)
    assert misses <= 20  # nominal 95 %: about 10 misses expected in 200
    small = stats.median_ci(rng.normal(size=30))
    large = stats.median_ci(rng.normal(size=3000))
    assert (large[1] - large[0]) < (small[1] - small[0]) / 5
    ten = np.arange(10.0)  # textbook: n = 10 gives (x_(2), x_(9)), coverage 97.9 %
    assert stats.median_ci(ten[::-1]) == (1.0, 8.0)
    assert stats.median_ci(np.arange(100.0)) == (39.0, 60.0)  # ranks 40 and 61 for n = 100
    assert stats.median_ci([3.0, 1.0]) == (1.0, 3.0)  # too few for 95 %: the whole range
    assert all(math.isnan(v) for v in stats.median_ci([]))


def test_schedule_orders():
    names = ["a", "b", "c"]
    rot = stats.schedule(names, 6, "rotate")
    assert rot[0] == ["a", "b", "c"] and rot[1] == ["b", "c", "a"] and rot[3] == rot[0]
    for pos in range(3):  # every name takes every position equally often
        assert sorted(r[pos] for r in rot) == ["a", "a", "b", "b", "c", "c"]
    shuf = stats.schedule(names, 50, "shuffle", seed=1)
    assert all(sorted(r) == names for r in shuf)
    assert len({tuple(r) for r in shuf}) > 3  # orders vary
    assert shuf == stats.schedule(names, 50, "shuffle", seed=1)  # reproducible
    assert shuf != stats.schedule(names, 50, "shuffle", seed=2)
    with pytest.raises(ValueError):
        stats.schedule(names, 3, "random")


def test_interleaving_keeps_the_ratio_on_a_drifting_machine():
    """The machine gets 3× slower half-way (another job starts). Interleaved, the ratio of a task
    that costs 2 to one that costs 1 stays 2; timed one after the other it does not."""
    def run(order: str) -> stats.Ratio:
        m = FakeMachine(load=lambda t: 1.0 if t < 150.0 else 3.0)
        times = stats.run_interleaved({"slow": m.task(2.0), "fast": m.task(1.0)}, runs=100, warmup=0,
                                      order=order, clock=m.clock)
        assert times["slow"].shape == times["fast"].shape == (100,)
        return stats.ratio(times["slow"], times["fast"])

    for order in ("rotate", "shuffle"):
        r = run(order)
        assert r.median == pytest.approx(2.0, rel=0.01), order
        assert r.rounds >= 99
    blocked = stats.schedule(["slow", "fast"], 3, "blocked")
    assert blocked == [["slow"] * 3, ["fast"] * 3]
    naive = run("blocked")  # all slow runs first (fast machine), then all fast runs (slowed down)
    assert abs(naive.median - 2.0) > 0.5


def test_ratio_is_robust_to_spikes_and_reports_an_interval():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.9, 1.1, 200)  # per-round machine state, shared by both
    a, b = 1.5 * base, 1.0 * base.copy()
    a[rng.choice(200, 15, replace=False)] *= 10  # a few rounds where something interrupted A
    r = stats.ratio(a, b)
    assert r.median == pytest.approx(1.5, rel=1e-9)
    assert r.low <= r.median <= r.high
    assert r.percent().startswith("+50.0%")
    assert r.times().startswith("1.50×")
    assert np.mean(a) / np.mean(b) > 2.0  # what the naive ratio of means would have said
    with pytest.raises(ValueError):
        stats.ratio([1.0, 2.0], [1.0])
    assert math.isnan(stats.ratio([1.0], [0.0]).median)
    d = r.to_dict()
    assert d["rounds"] == 200 and d["median"] == pytest.approx(1.5)


def test_warmup_rounds_are_discarded_and_drift_is_flagged():
    m = FakeMachine()
    cold = m.task(1.0, cold_calls=5, cold_factor=20.0)
    times = stats.run_interleaved({"x": cold}, runs=50, warmup=5, clock=m.clock)
    assert cold.calls["n"] == 55
    assert times["x"].max() == pytest.approx(1.0)  # no cold call was timed
    assert stats.warmup_drift(times["x"]) == pytest.approx(1.0)

    m = FakeMachine()
    cold = m.task(1.0, cold_calls=8, cold_factor=5.0)
    times = stats.run_interleaved({"x": cold}, runs=50, warmup=0, clock=m.clock)
    assert times["x"][:8].min() == pytest.approx(5.0)
    assert stats.warmup_drift(times["x"], head=0.16) > stats.WARMUP_SUSPECT
    assert math.isnan(stats.warmup_drift([1.0, 2.0]))


def test_progress_and_bad_arguments():
    m = FakeMachine()
    seen = []
    stats.run_interleaved({"a": m.task(1.0), "b": m.task(1.0)}, runs=4, warmup=1, clock=m.clock,
                          progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    with pytest.raises(ValueError):
        stats.run_interleaved({"a": m.task(1.0)}, runs=0)
    assert stats.throughput(8, 0.004) == pytest.approx(2000.0)
