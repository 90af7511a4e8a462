"""``python -m benchmarks.camera``: how a model holds up along the camera's trip.

Scores checkpoints (``--ckpt``) or runtime models (``--engine``: ONNX, engines, peers such as the
converted MesoNet) on the real-face pool's test people (``--data pool``; ``selfblend:FOLDER`` for
your own), real faces against forgeries of ``--families``, under each step of the camera's trip
(``training.camera``) on its own, then all of them, then none: AUC, its bootstrap standard error
over people, the false-alarm rate on the real faces at the model's own threshold and the share
of fakes caught there. Read a model trained with a step beside one trained without it to see
what that augmentation buys (``docs/experiments.md``, "Real faces").

Every condition scores the same faces and forgeries (seeded by ``--test-seed``); only the
camera differs. Timings do not belong here.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report
from runtime.errors import Parser, UserError, run_cli

PROG = "benchmarks.camera"


def conditions() -> dict[str, Any]:
    """Condition name → CameraConfig: none, each step alone (its probability 1), all (the default)."""
    from training.camera import DEFAULT, OFF

    return {"clean": OFF, "scale 50-200 px": replace(OFF, face_px=DEFAULT.face_px),
            "dim light": replace(OFF, p_dim=1.0), "sensor noise": replace(OFF, face_px=DEFAULT.face_px, p_noise=1.0),
            "blur": replace(OFF, p_blur=1.0), "jpeg 35-90": replace(OFF, p_compress=1.0, p_h264=0.0),
            "h264 crf 20-40": replace(OFF, p_compress=1.0, p_h264=1.0), "framing jitter": replace(OFF, p_jitter=1.0),
            "all (training's trip)": DEFAULT}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--ckpt", nargs="+", default=[], metavar="PATH", help="checkpoints (.pt) to score")
    p.add_argument("--engine", nargs="+", default=[], metavar="PATH", help="runtime models (.onnx, .engine) to score")
    p.add_argument("--data", default="pool", help="real faces: pool (its test people) or selfblend:FOLDER")
    p.add_argument("--families", default="sbi", help="forgery families of the fakes (comma-separated or 'all')")
    p.add_argument("--items", type=int, default=2000, help="items per condition, half real (default: %(default)s)")
    p.add_argument("--test-seed", type=int, default=2024, help="seed of the test faces' forgeries and camera views (default: %(default)s)")
    p.add_argument("--boot", type=int, default=500, help="bootstrap resamples over people")
    p.add_argument("--threads", type=int, default=1, help="inference threads (default: %(default)s)")
    p.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    return p


def test_crops(data: str, families: tuple[str, ...], n: int, meta: Any, cfg: Any,
               seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` crops of the spec's held-out people under one camera config: (crops, labels, people)."""
    from training.blend_set import FrameFaceSet
    from training.dataspec import open_items, parse_generated, split_for, synthetic_spec

    g = parse_generated(data)
    if g is None or g.base == "synthetic":
        raise UserError(f"--data {data}: expected pool or selfblend:FOLDER (real faces in their frames)")
    spec = synthetic_spec(n, families, like=data)
    items = open_items(spec, meta, split_for(spec, "evaluate"))
    assert isinstance(items, FrameFaceSet)
    items.camera = cfg
    crops = np.stack([items.crop(i, np.random.default_rng([seed, 11, i]), vary=False) for i in range(len(items))])
    return crops, np.asarray(items.labels, np.int64), list(items.videos)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if not a.ckpt and not a.engine:
        raise UserError("name at least one model: --ckpt PATH or --engine PATH")
    report.check_positive(items=a.items, boot=a.boot)
    report.check_writable(a.json, "--json", [("--ckpt", p) for p in a.ckpt] + [("--engine", p) for p in a.engine])
    from benchmarks.families import fold_metrics, open_model
    from runtime.backends import artifact_file
    from training.checkpoint import checkpoint_file
    from training.forgeries import parse_families

    try:
        families = parse_families(a.families)
    except ValueError as e:
        raise UserError(f"--families: {e}") from None
    models = [(p, "ckpt") for p in a.ckpt] + [(p, "engine") for p in a.engine]
    for path, kind in models:
        (checkpoint_file if kind == "ckpt" else artifact_file)(path)
    conds = conditions()
    rows: list[dict[str, Any]] = []
    sets: dict[Any, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    for path, kind in models:
        infer, meta, close = open_model(path, kind, a.threads)
        try:
            for name, cfg in conds.items():
                key = (name, meta.input_size, meta.face_margin, meta.face_align)
                if key not in sets:
                    sets[key] = test_crops(a.data, families, a.items, meta, cfg, a.test_seed)
                crops, labels, people = sets[key]
                m = fold_metrics(infer(crops), labels, people, meta.threshold, a.boot)
                rows.append({"model": str(path), "condition": name, **m})
                print(f"camera: {Path(path).name}, {name}: AUC {m['auc']:.3f} (se {m['se_faces']:.3f}), "
                      f"FAR {m['far']:.3f}, caught {m['tpr']:.3f} at {meta.threshold:.3f}", file=sys.stderr, flush=True)
        finally:
            close()
    cols = [("model", "model"), ("condition", "condition"), ("auc", "AUC"), ("se_faces", "SE(people)"),
            ("far", "FAR"), ("tpr", "caught")]
    print(report.table(rows, cols, digits=3))
    if a.json:
        report.write_json(a.json, {**report.envelope(PROG, argv, vars(a)), "rows": rows})
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
