"""Evaluation output: the console table (one row per dataset), strict JSON, and ROC curve PNGs."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

_COLS = ("auc", "eer", "ap", "acc", "far")


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf by None (strict JSON has no NaN) and numpy scalars by Python numbers."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def file_stem(name: str) -> str:
    """A dataset name as a safe file-name part: ``roc_<stem>.png``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "data"


def _num(v: Any) -> str:
    return "    n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:7.4f}"


def format_table(results: Sequence[tuple[str, dict[str, Any]]], threshold: float) -> str:
    """Rows = datasets, frame-level then video-level AUC / EER / AP / ACC / FAR; ACC and FAR (the
    false-alarm rate: share of real items called fake, ``p >= threshold``) at ``threshold``."""
    width = max([7] + [len(name) for name, _ in results])
    metric_head = " ".join(f"{c.upper():>7}" for c in _COLS)
    head = f"{'dataset':<{width}}  {'frames':>6} {metric_head} | {'videos':>6} {metric_head}"
    lines = [f"frame level | video level (video score = mean frame probability); ACC and FAR (false-alarm rate: "
             f"real items called fake, p >= {threshold:g}) at threshold {threshold:g}",
             head, "-" * len(head)]
    for name, s in results:
        f, v = s["frame"], s.get("video")
        left = f"{name:<{width}}  {f['n']:>6} " + " ".join(_num(f.get(c)) for c in _COLS)
        right = (f"{v['n']:>6} " + " ".join(_num(v.get(c)) for c in _COLS)) if v else f"{'-':>6}"
        lines.append(f"{left} | {right}")
    return "\n".join(lines)


def threshold_rule_line(rule: Any, threshold: float | None = None) -> str | None:
    """One line naming how a model's threshold was chosen (``meta.training["threshold_rule"]``, written
    by ``training.train --threshold fpr:X|eer`` and ``calibration.threshold``; a rule that found no
    point is named as a fallback), or None when the metadata records no rule. ``threshold``
    is the one a tool applied; when it is not the rule's, the line says so."""
    if not isinstance(rule, dict) or not rule:
        return None
    target = rule.get("target_fpr")
    chosen = rule.get("threshold")
    line = (f"threshold {chosen:g}" if isinstance(chosen, (int, float)) else "the metadata threshold") + ": "
    if rule.get("fallback"):  # training.train could not apply its rule: say so, never as if it had
        line += f"a fallback: rule {rule.get('rule')!r} found no point"
    elif isinstance(target, (int, float)):
        line += f"chosen for a false-alarm rate of at most {target:g}"
    elif rule.get("rule") == "eer":
        line += "chosen at the equal-error point"
    else:
        line += f"chosen by rule {rule.get('rule')!r}"
    if rule.get("chosen_on"):
        counts = [f"{rule[k]} {w}" for k, w in (("real_items", "real items"), ("real_faces", "faces"))
                  if rule.get(k) is not None]
        line += f" on {rule['chosen_on']}" + (f" ({', '.join(counts)})" if counts else "")
    if isinstance(rule.get("achieved_fpr"), (int, float)):
        line += f", achieved {rule['achieved_fpr']:.4g} there"
    if isinstance(chosen, (int, float)) and threshold is not None and not math.isclose(chosen, threshold):
        line += f"; the numbers here are at {threshold:g}, not at it"
    return line


def write_roc_png(path: str | Path, curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]], title: str) -> Path:
    """One ROC plot: ``curves`` are (label, fpr, tpr, auc); curves with NaN rates are skipped."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.8), dpi=100)
    try:
        ax.plot([0, 1], [0, 1], ls="--", lw=1, color="0.6", label="chance")
        for label, fpr, tpr, auc in curves:
            if np.all(np.isfinite(fpr)) and np.all(np.isfinite(tpr)):
                ax.plot(fpr, tpr, lw=1.8, drawstyle="default", label=f"{label} (AUC {auc:.3f})")
        ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="false positive rate (real called fake)",
               ylabel="true positive rate (fake caught)", title=title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
