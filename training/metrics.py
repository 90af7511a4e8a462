"""Detection metrics in plain numpy: ROC, AUC, AP, EER, accuracy, video-level aggregation.

Scores are probabilities of "fake" (label 1); a face is called fake when ``prob >= threshold``.
AUC, AP and the ROC follow scikit-learn's definitions (ties included), so numbers here match
what papers computed with it; the tests cross-check against scikit-learn. One-class inputs give
NaN and a note instead of an exception: a validation split of only real faces is a data problem
to report, not a crash in the middle of training.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from runtime.errors import UserError

__all__ = ["roc_curve", "roc_auc", "average_precision", "eer", "accuracy", "false_alarm_rate", "catch_rate",
           "threshold_at_fpr", "bootstrap_auc", "video_scores", "summary"]


def _check(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinity (did training diverge?)")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return s, y.astype(np.int64)


def _counts(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (false positives, true positives, thresholds) at each distinct score, high to low."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each run of equal scores
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    return fps.astype(np.float64), tps.astype(np.float64), s[last]


def roc_curve(scores: Any, labels: Any, drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) like ``sklearn.metrics.roc_curve``; the first threshold is +inf.

    With one class only, the undefined rate (fpr without reals, tpr without fakes) is NaN.
    """
    fps, tps, thr = _counts(scores, labels)
    if drop_intermediate and fps.size > 2:
        # keep only the corners: points where the curve changes direction
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps, tps, thr = np.r_[0.0, fps], np.r_[0.0, tps], np.r_[np.inf, thr]
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = fps / fps[-1] if fps[-1] > 0 else np.full_like(fps, np.nan)
        tpr = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    return fpr, tpr, thr


def _one_class(labels: np.ndarray) -> bool:
    return labels.size == 0 or labels.min() == labels.max()


def roc_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC (ties count half, as in scikit-learn); NaN when only one class is present."""
    _, y = _check(scores, labels)
    if _one_class(y):
        return math.nan
    fpr, tpr, _ = roc_curve(scores, labels, drop_intermediate=False)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision(scores: Any, labels: Any) -> float:
    """AP = Σ (Rₙ − Rₙ₋₁) Pₙ over distinct thresholds (scikit-learn's step-wise definition, no
    interpolation); NaN when there is no fake to find (or no sample at all)."""
    _, y = _check(scores, labels)
    if y.sum() == 0:
        return math.nan
    fps, tps, _ = _counts(scores, labels)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def eer(scores: Any, labels: Any) -> tuple[float, float]:
    """Equal error rate and its threshold: where the false positive rate equals the miss rate.

    The crossing is interpolated linearly along the ROC segment it falls on; the threshold is that
    of the nearer ROC point (so it is one of the scores). NaN, NaN with only one class.
    """
    _, y = _check(scores, labels)
    if _one_class(y):
        return math.nan, math.nan
    fpr, tpr, thr = roc_curve(scores, labels, drop_intermediate=False)
    gap = (1.0 - tpr) - fpr  # starts at 1 (everything real), ends at -1 (everything fake)
    i = int(np.flatnonzero(gap <= 0)[0])
    if gap[i] == 0:
        return float(fpr[i]), float(thr[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    rate = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    near = i if t >= 0.5 else i - 1
    threshold = thr[near] if np.isfinite(thr[near]) else thr[i]
    return float(rate), float(threshold)


def accuracy(scores: Any, labels: Any, threshold: float = 0.5) -> float:
    """Share of samples called right when "fake" means ``score >= threshold``; NaN with no samples."""
    s, y = _check(scores, labels)
    if s.size == 0:
        return math.nan
    return float(np.mean((s >= threshold).astype(np.int64) == y))


def false_alarm_rate(scores: Any, labels: Any, threshold: float) -> float:
    """Share of real samples (label 0) called fake (``score >= threshold``); NaN without reals.

    For a camera product this is the number that matters beside AUC: how often a real face raises
    an alarm at the threshold actually shipped."""
    s, y = _check(scores, labels)
    real = s[y == 0]
    return math.nan if real.size == 0 else float(np.mean(real >= threshold))


def catch_rate(scores: Any, labels: Any, threshold: float) -> float:
    """Share of fake samples (label 1) called fake (``score >= threshold``): the fakes caught at the
    threshold actually shipped (the true-positive rate there); NaN without fakes."""
    s, y = _check(scores, labels)
    fake = s[y == 1]
    return math.nan if fake.size == 0 else float(np.mean(fake >= threshold))


def threshold_at_fpr(scores: Any, labels: Any, fpr: float) -> tuple[float, float]:
    """The lowest threshold whose false-alarm rate on these reals is at most ``fpr``, and the rate
    it achieves there: (threshold, achieved rate). ``fpr`` in [0, 1]; ValueError without reals.

    At most ``floor(fpr · n_real)`` reals score at or above it; with 20 reals any ``fpr`` < 0.05
    means none may, so the threshold sits just above the highest real score.
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"target false-alarm rate {fpr}: expected 0..1")
    s, y = _check(scores, labels)
    real = np.sort(s[y == 0])[::-1]
    if real.size == 0:
        raise ValueError("no real samples: a false-alarm rate needs real faces")
    allowed = int(math.floor(fpr * real.size + 1e-9))
    if allowed >= real.size:
        t = 0.0
    else:
        t = float(min(1.0, np.nextafter(real[allowed], np.inf)))
    return t, float(np.mean(real >= t))


def bootstrap_auc(scores: Any, labels: Any, groups: Sequence[str] | None = None, n: int = 1000,
                  seed: int = 0) -> dict[str, float]:
    """Bootstrap standard error of the AUC: ``{"auc", "se", "lo", "hi", "n_boot"}`` (95 % percentile
    interval). With ``groups`` (face or video ids) whole groups are resampled (a cluster bootstrap):
    items of one face are not independent, and resampling items alone understates the error."""
    s, y = _check(scores, labels)
    auc = roc_auc(s, y)
    rng = np.random.default_rng(seed)
    if groups is None:
        members = [np.array([i]) for i in range(s.size)]
    else:
        g = np.asarray([str(v) for v in groups], dtype=object)
        if g.size != s.size:
            raise ValueError(f"{s.size} scores but {g.size} group ids")
        _, inv = np.unique(g.astype(str), return_inverse=True)
        members = [np.flatnonzero(inv == k) for k in range(int(inv.max()) + 1)] if inv.size else []
    stats = []
    for _ in range(int(n)):
        pick = rng.integers(0, len(members), size=len(members))
        idx = np.concatenate([members[k] for k in pick]) if len(members) else np.zeros(0, np.int64)
        yy = y[idx]
        if yy.size and yy.min() != yy.max():
            stats.append(roc_auc(s[idx], yy))
    if len(stats) < 2:
        return {"auc": auc, "se": math.nan, "lo": math.nan, "hi": math.nan, "n_boot": len(stats)}
    arr = np.asarray(stats)
    return {"auc": auc, "se": float(arr.std(ddof=1)), "lo": float(np.percentile(arr, 2.5)),
            "hi": float(np.percentile(arr, 97.5)), "n_boot": len(stats)}


def video_scores(probs: Any, labels: Any, videos: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One score per video: the mean of its frames' probabilities; its label is its frames' label.

    Videos come out in order of first appearance. A video whose frames disagree on the label is a
    manifest error (UserError naming it).
    """
    p, y = _check(probs, labels)
    vids = [str(v) for v in videos]
    if len(vids) != p.size:
        raise ValueError(f"{p.size} scores but {len(vids)} video ids")
    names, inverse = np.unique(np.asarray(vids, dtype=object).astype(str), return_inverse=True)
    inverse = inverse.reshape(-1)
    n = len(names)
    sums = np.bincount(inverse, weights=p, minlength=n)
    frames = np.bincount(inverse, minlength=n)
    fakes = np.bincount(inverse, weights=y, minlength=n)
    mixed = np.flatnonzero((fakes > 0) & (fakes < frames))
    if mixed.size:
        shown = ", ".join(repr(str(names[k])) for k in mixed[:3])
        raise UserError(f"video {shown}: holds both real and fake frames ({mixed.size} such videos); "
                        "give each video one label in the manifest, or distinct video ids")
    first = np.full(n, p.size, dtype=np.int64)
    np.minimum.at(first, inverse, np.arange(p.size))
    order = np.argsort(first, kind="mergesort")
    return (sums / frames)[order], (fakes > 0).astype(np.int64)[order], [str(names[k]) for k in order]


def _level(probs: np.ndarray, labels: np.ndarray, threshold: float, notes: list[str], what: str) -> dict[str, Any]:
    n_fake = int(labels.sum())
    n_real = int(labels.size - n_fake)
    if n_real == 0 or n_fake == 0:
        notes.append(f"{what}: only {'fake' if n_real == 0 else 'real'} samples ({labels.size}); "
                     "AUC, EER" + (" and AP" if n_fake == 0 else "") + " are undefined (NaN)")
    rate, at = eer(probs, labels)
    return {
        "auc": roc_auc(probs, labels),
        "eer": rate,
        "eer_threshold": at,
        "ap": average_precision(probs, labels),
        "acc": accuracy(probs, labels, threshold),
        "far": false_alarm_rate(probs, labels, threshold),  # false-alarm rate: reals called fake
        "n": int(labels.size),
        "n_real": n_real,
        "n_fake": n_fake,
    }


def summary(probs: Any, labels: Any, videos: Sequence[str] | None = None, threshold: float = 0.5) -> dict[str, Any]:
    """Frame- and video-level AUC / EER / AP / ACC / FAR (false-alarm rate) with counts, as one dict.

    ``{"threshold", "frame": {...}, "video": {...} or None, "notes": [...]}``; undefined values
    are NaN (a writer of strict JSON turns them into null) and ``notes`` says why.
    """
    p, y = _check(probs, labels)
    notes: list[str] = []
    out: dict[str, Any] = {"threshold": float(threshold), "frame": _level(p, y, threshold, notes, "frame level")}
    if videos is None:
        out["video"] = None
        notes.append("video level: no video ids given")
    else:
        vp, vy, _ = video_scores(p, y, videos)
        out["video"] = _level(vp, vy, threshold, notes, "video level")
    out["notes"] = notes
    return out
