"""Accuracy report: every artifact against fp32 on a held-out labelled set.

``python -m calibration.report --fp32 detect.onnx [--artifact NAME=PATH ...] --eval-data D``

Each artifact (``.onnx`` in ONNX Runtime on CPU, ``.engine`` in TensorRT) is run through the
runtime's own backend (``runtime.backends.open_backend``) on the same preprocessed faces, so the
numbers are what a deployment computes. Per artifact: AUC, ACC and FAR (false-alarm rate: share of
the real faces called fake) at the fp32 model's metadata threshold, EER, and agreement with fp32:
max |Δprob| and decision flips (faces whose verdict changes). When the metadata records how the
threshold was chosen (``training["threshold_rule"]``), a line under the table names it.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from runtime import cpu
from runtime.errors import EXIT_USAGE, Parser, UserError, run_cli


@dataclass
class Row:
    name: str
    path: str
    auc: float
    acc: float
    eer: float
    d_auc: float  # fp32 AUC − this AUC (positive = worse)
    max_dprob: float
    mean_dprob: float
    flips: int
    samples: int
    far: float = math.nan  # false-alarm rate: share of real faces with prob >= threshold
    threshold: float = math.nan  # the threshold of ACC, FAR and flips (the fp32 metadata threshold)
    threshold_rule: dict[str, Any] | None = None  # how that threshold was chosen, from the fp32 metadata

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def predict(path: str | Path, x: np.ndarray, **options: Any) -> np.ndarray:
    """Probabilities of fake for NCHW inputs ``x``, through the runtime's backend for ``path``."""
    from runtime.backends import open_backend

    out = []
    with open_backend(path, **options) as backend:
        step = max(1, backend.max_batch)
        for i in range(0, len(x), step):
            out.append(backend.infer(x[i:i + step])["logit"][:, 0])
    logits = np.concatenate(out).astype(np.float64)
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))


def score(name: str, path: str, probs: np.ndarray, labels: np.ndarray, ref: np.ndarray | None,
          ref_auc: float, threshold: float, threshold_rule: dict[str, Any] | None = None) -> Row:
    from training.metrics import accuracy, eer, false_alarm_rate, roc_auc

    auc = roc_auc(probs, labels)
    d = np.abs(probs - ref) if ref is not None else np.zeros_like(probs)
    flips = int(np.sum((probs >= threshold) != (ref >= threshold))) if ref is not None else 0
    return Row(name, str(path), auc, accuracy(probs, labels, threshold), eer(probs, labels)[0],
               (ref_auc - auc) if ref is not None else 0.0, float(d.max(initial=0.0)), float(d.mean()) if len(d) else 0.0,
               flips, len(probs), far=false_alarm_rate(probs, labels, threshold), threshold=float(threshold),
               threshold_rule=threshold_rule or None)


def evaluate(artifacts: Sequence[tuple[str, str | Path]], evalset: Any, threshold: float | None = None) -> list[Row]:
    """Rows for ``artifacts`` (the first is the fp32 reference) on a labelled CalibrationSet."""
    x = evalset.inputs()
    labels = evalset.labels
    thr = evalset.meta.threshold if threshold is None else threshold
    rule = (getattr(evalset.meta, "training", None) or {}).get("threshold_rule")
    rows: list[Row] = []
    ref, ref_auc = None, math.nan
    for name, path in artifacts:
        probs = predict(path, x)
        row = score(name, str(path), probs, labels, ref, ref_auc, thr, rule if isinstance(rule, dict) else None)
        if ref is None:
            ref, ref_auc = probs, row.auc
        rows.append(row)
    return rows


def format_table(rows: Sequence[Row], threshold_source: str = "the fp32 model's metadata threshold") -> str:
    """The table, then what FAR means at which threshold (``threshold_source`` names where it came
    from: ``evaluate`` uses the metadata's unless given another), and the threshold's rule if recorded."""
    from training.report import threshold_rule_line

    thr = rows[0].threshold if rows else math.nan
    far_head = f"FAR@{thr:g}" if math.isfinite(thr) else "FAR"
    head = (f"{'artifact':<10} {'AUC':>7} {'ΔAUC':>8} {'ACC':>7} {far_head:>8} {'EER':>7} {'max|Δprob|':>10} "
            f"{'flips':>7}  file")
    lines = [head, "-" * len(head)]
    for r in rows:
        flips = f"{r.flips}/{r.samples}"
        far = "n/a" if math.isnan(r.far) else f"{r.far:.4f}"
        lines.append(f"{r.name:<10} {r.auc:>7.4f} {r.d_auc:>+8.4f} {r.acc:>7.4f} {far:>8} {r.eer:>7.4f} "
                     f"{r.max_dprob:>10.5f} {flips:>7}  {Path(r.path).name}")
    if rows:
        lines.append(f"FAR@{thr:g}: false-alarm rate, the share of real faces with p(fake) >= {thr:g} "
                     f"({threshold_source}; ACC and flips use it too)")
        rule = threshold_rule_line(rows[0].threshold_rule, thr)
        if rule:
            lines.append(rule)
    return "\n".join(lines)


def violations(rows: Sequence[Row], max_auc_drop: float, max_dprob: float | None = None) -> list[Row]:
    """Rows (other than the reference) whose AUC dropped by more than ``max_auc_drop`` or, when
    given, whose probabilities moved by more than ``max_dprob`` on some face. NaN counts as a violation."""
    return [r for r in rows[1:]
            if not (r.d_auc <= max_auc_drop) or (max_dprob is not None and not (r.max_dprob <= max_dprob))]


def failure_message(bad: Sequence[Row], rows: Sequence[Row], max_auc_drop: float,
                    max_dprob: float | None = None) -> str:
    ref = rows[0]
    parts = "; ".join(f"{r.name} AUC {r.auc:.4f} vs fp32 {ref.auc:.4f} (ΔAUC {r.d_auc:+.4f}, max |Δprob| "
                      f"{r.max_dprob:.4f}, {r.flips}/{r.samples} flips)" for r in bad)
    bounds = (f"the bound is --max-auc-drop {max_auc_drop}" if max_dprob is None else
              f"the bounds are --max-auc-drop {max_auc_drop} and --max-dprob {max_dprob:g}")
    return (f"accuracy check failed: {parts}; {bounds}: keep sensitive layers "
            "in float (--keep-float auto), try --method percentile or minmax, or calibrate on more "
            "representative data (--calib-size)")


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Written whole (a reader sees the old report or the new one); the folder is created when missing."""
    from runtime.fileio import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return path


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m calibration.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--fp32", required=True, help="the fp32 ONNX (the reference)")
    p.add_argument("--artifact", action="append", default=[], metavar="NAME=PATH",
                   help="an artifact to compare (.onnx or .engine), e.g. int8-trt=detect.int8.onnx; repeatable")
    p.add_argument("--eval-data", default="synthetic",
                   help="held-out labelled set: crops folder (real/, fake/), manifest, videos, or 'synthetic' "
                        "(its validation faces)")
    p.add_argument("--eval-size", type=int, default=200, help="samples from --eval-data (default 200)")
    p.add_argument("--max-auc-drop", type=float, default=None, help="exit 1 when an artifact's ΔAUC exceeds it")
    p.add_argument("--max-dprob", type=float, default=None,
                   help="exit 1 when an artifact's max |Δprob| against fp32 exceeds it (with --max-auc-drop)")
    p.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of the --eval-data sample (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _artifacts(fp32: str, items: list[str]) -> list[tuple[str, str]]:
    """("fp32", --fp32) then each --artifact NAME=PATH, checked before any face is read."""
    artifacts: list[tuple[str, str]] = [("fp32", fp32)]
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--artifact {item!r}: expected NAME=PATH, e.g. int8-trt=detect.int8.onnx", EXIT_USAGE)
        if name in dict(artifacts):
            raise UserError(f"--artifact {item!r}: the name {name!r} is given twice; name each artifact once",
                            EXIT_USAGE)
        if not Path(path).is_file():
            raise UserError(f"--artifact {item!r}: {path} not found; pass an .onnx or an .engine (with its sidecar)")
        artifacts.append((name, path))
    return artifacts


def _check_args(args: argparse.Namespace) -> None:
    if args.eval_size < 2:
        raise UserError(f"--eval-size {args.eval_size}: must be at least 2 (an AUC needs both labels)", EXIT_USAGE)
    if args.max_auc_drop is not None and not 0 <= args.max_auc_drop <= 1:
        raise UserError(f"--max-auc-drop {args.max_auc_drop}: expected an AUC difference in 0..1", EXIT_USAGE)
    if args.max_dprob is not None:
        if not 0 < args.max_dprob <= 1:
            raise UserError(f"--max-dprob {args.max_dprob}: expected a probability difference in (0, 1]", EXIT_USAGE)
        if args.max_auc_drop is None:
            raise UserError(f"--max-dprob {args.max_dprob}: only checked with --max-auc-drop; pass both "
                            "(e.g. --max-auc-drop 0.005)", EXIT_USAGE)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_args(args)
    from calibration.outputs import check_outputs
    from export.onnx_io import file_meta
    from training.calibration_set import load

    meta = file_meta(Path(args.fp32))
    artifacts = _artifacts(args.fp32, args.artifact)
    say_replacing = check_outputs("calibration.report", [("--json", args.json)],
                                  [("--fp32" if n == "fp32" else f"--artifact {n}", p) for n, p in artifacts]
                                  + [("--eval-data", args.eval_data)], say=False)
    evalset = load(args.eval_data, meta, args.eval_size, seed=args.seed, held_out=True, need_labels=True,
                   progress=not args.quiet)
    say_replacing()  # once --eval-data is read: a bad input is the run's only line
    rows = evaluate(artifacts, evalset)
    print(f"evaluation set: {evalset.source} ({len(evalset)} faces, {int(evalset.labels.sum())} fake)")
    print(format_table(rows))
    if args.json:
        write_json(Path(args.json), {"eval": {"source": evalset.source, "samples": len(evalset),
                                              **evalset.cache_key()}, "rows": [r.to_dict() for r in rows],
                                     "machine": cpu.describe()})
    if args.max_auc_drop is not None:
        bad = violations(rows, args.max_auc_drop, args.max_dprob)
        if bad:
            raise UserError(failure_message(bad, rows, args.max_auc_drop, args.max_dprob))
    return 0


if __name__ == "__main__":
    run_cli(main, "calibration.report")
