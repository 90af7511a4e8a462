"""``python -m calibration.threshold``: choose a model's operating threshold on real faces for a target
false-alarm rate, and write it into a copy of the model.

For a camera a verdict threshold is an operating point on real footage like its own, not a property
of training: the lowest threshold that calls at most a share X of these real faces fake
(``training.metrics.threshold_at_fpr``). The graph and weights of the copy are the model's; only its
metadata changes: ``threshold``, and ``training["threshold_rule"]`` with the target, the rate achieved,
the set it was chosen on and how many real items and faces it had, so every report (runtime.detect's
summary, training.evaluate, calibration.report, benchmarks.accuracy) can say what the number means.

``--data`` is any data spec (crops folder, manifest, ``synthetic[:N]``); only its real faces choose
the threshold (an unlabelled folder is taken as real faces), and when it also holds fakes their
detection rate at the threshold is reported. ``synthetic`` means the held-out faces, each item a
seeded colour/sharpness variant of its face (20 faces: a floor, not real footage).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import EXIT_USAGE, Parser, UserError, run_cli

PROG = "calibration.threshold"
RESOLVING_ITEMS = 10  # real items per false alarm the target allows, for a threshold that is not one face's score


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--onnx", required=True, help="the model (detect or full graph, with jrc_meta)")
    p.add_argument("--data", required=True, help="real faces like the camera's (crops folder, manifest or synthetic[:N])")
    p.add_argument("--fpr", type=float, default=0.01, help="target false-alarm rate on those real faces (default 0.01)")
    p.add_argument("--size", type=int, help="use at most N faces of --data (default: all; synthetic: 4000)")
    p.add_argument("--split", help="a manifest's split to use (default: its held-out one)")
    p.add_argument("--out", help="the new model (default: beside the model, <name>.fpr<X>.onnx)")
    p.add_argument("--json", help="also write the numbers as JSON")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads scoring the faces (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def default_out(model: Path, fpr: float) -> Path:
    return model.with_name(f"{model.stem}.fpr{fpr:g}{model.suffix}")


def choose(probs: np.ndarray, labels: np.ndarray | None, fpr: float) -> dict[str, Any]:
    """The threshold for ``fpr`` on the real items (label 0; all items when unlabelled), with what it
    achieves: the rate on those reals and, when there are fakes, the share of them called fake."""
    from training.metrics import roc_auc, threshold_at_fpr

    y = np.zeros(len(probs), np.int64) if labels is None else np.asarray(labels, np.int64)
    if not np.any(y == 0):
        raise ValueError("no real faces")
    t, achieved = threshold_at_fpr(probs, y, fpr)
    fake = probs[y == 1]
    return {"threshold": t, "achieved_fpr": achieved, "real_items": int(np.sum(y == 0)),
            "fake_items": int(fake.size), "detection_rate": float(np.mean(fake >= t)) if fake.size else None,
            "auc": roc_auc(probs, y) if fake.size else None}


def warn_too_few(real_items: int, fpr: float) -> None:
    """Warn when the real items are too few to resolve ``fpr``: with fewer than about 10 / fpr of them the
    threshold rests on the one or two highest-scoring faces, and the rate on new footage can be far off."""
    need = math.ceil(RESOLVING_ITEMS / fpr) if fpr > 0 else 0
    if real_items < need:
        print(f"{PROG}: warning: {real_items} real items cannot resolve a false-alarm rate of {fpr:g} (one item is "
              f"{1 / real_items:.2%} of them); the threshold rests on a few faces: use at least {need} real items",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if not (math.isfinite(a.fpr) and 0.0 <= a.fpr < 1.0):
        raise UserError(f"--fpr {a.fpr}: expected a false-alarm rate in [0, 1), e.g. 0.01", EXIT_USAGE)
    if a.size is not None and a.size < 1:
        raise UserError(f"--size {a.size}: must be at least 1", EXIT_USAGE)
    if a.threads < 1:
        raise UserError(f"--threads {a.threads}: must be at least 1", EXIT_USAGE)
    from calibration.report import predict, write_json
    from export.onnx_io import load_onnx, read_quant, require_meta, save_onnx, set_meta
    from runtime.fileio import same_file
    from training.calibration_set import load
    from training.dataspec import is_synthetic
    from training.outputs import deferred, note_replacing, output_file

    model_path = Path(a.onnx)
    out = Path(a.out) if a.out else default_out(model_path, a.fpr)
    notes = []
    for flag, path in (("--out", out), ("--json", a.json)):
        if path is None:
            continue
        if same_file(path, model_path) or (flag == "--json" and same_file(path, out)):
            raise UserError(f"{flag} {path}: would overwrite {'the model' if same_file(path, model_path) else '--out'}; "
                            "choose another path (the model is never changed in place)")
        output_file(path, flag)  # its folder is created when missing and must take files, before any scoring
        notes.append(note_replacing(PROG, path, " (an earlier result)", say=False))
    model = load_onnx(model_path)
    meta = require_meta(model, str(model_path))
    synthetic = is_synthetic(str(a.data))
    size = a.size if a.size is not None else (4000 if synthetic else None)
    faces = load(a.data, meta, size, held_out=True, progress=not a.quiet, split=a.split, vary=synthetic)
    deferred(*notes)()  # once the model and --data passed their checks: a bad input is the only line
    probs = predict(model_path, faces.inputs(), provider="cpu", threads=a.threads)
    try:
        found = choose(probs, faces.labels, a.fpr)
    except ValueError:
        raise UserError(f"--data {a.data}: no real faces to choose a threshold on; pass real faces "
                        "(a real/ folder, a manifest's label 0, or an unlabelled folder of real crops)") from None
    chosen_on = f"{faces.source}:{len(faces)} (held-out faces, varied)" if synthetic and ":" not in str(
        faces.source) else f"{faces.source} (held-out faces, varied)" if synthetic else str(faces.source)
    if a.split:
        chosen_on += f", split {a.split}"
    rule = {"rule": f"fpr:{a.fpr:g}", "target_fpr": a.fpr, "achieved_fpr": found["achieved_fpr"],
            "threshold": found["threshold"], "chosen_on": chosen_on,
            "split": a.split or "held-out",
            "real_items": found["real_items"], "chosen_by": PROG, "previous_threshold": meta.threshold}
    if faces.groups is not None:
        labels = faces.labels if faces.labels is not None else np.zeros(len(faces), np.int64)
        rule["real_faces"] = len({g for g, y in zip(faces.groups, labels) if y == 0})
    new = meta.with_(threshold=found["threshold"], training={**meta.training, "threshold_rule": rule})
    set_meta(model, new, read_quant(model))
    save_onnx(model, out)
    faces_note = f", {rule['real_faces']} faces" if "real_faces" in rule else ""
    line = (f"{PROG}: threshold {found['threshold']:.4f} (was {meta.threshold:.4f}) calls "
            f"{found['achieved_fpr']:.2%} of the {found['real_items']} real items{faces_note} of {chosen_on} fake "
            f"(target {a.fpr:g})")
    if found["detection_rate"] is not None:
        line += f"; {found['detection_rate']:.2%} of its {found['fake_items']} fakes are called fake (AUC {found['auc']:.3f})"
    print(line)
    warn_too_few(found["real_items"], a.fpr)
    if a.json:
        write_json(Path(a.json), {"tool": PROG, "model": str(model_path), "out": str(out), "rule": rule, **found})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
