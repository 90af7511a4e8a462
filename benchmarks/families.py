"""``python -m benchmarks.families``: the leave-one-family-out (LOFO) protocol over forgery families.

For each forgery family F of ``--families`` (``training.forgeries``), each seed and each λ: train on
the synthetic forgeries of every family but F (``training.train``, validation and model selection
on the held-out faces with the same families), then score the best checkpoint on family F alone,
on the held-out faces, which training never saw, whatever the family. The question is the one the
FF++ cross-manipulation protocol asks: does a detector catch a kind of forgery it was not
trained on?

The test set of a fold is ``--test-items`` items of the held-out faces (``training.dataspec``'s
``val`` split, ~20 % of face ids): each real item a different colour/sharpness variant of its face,
each fake a fresh forgery, all seeded by ``--test-seed`` (independent of the training seeds). Per
fold it reports AUC, its bootstrap standard error resampling items (``se_items``) and resampling
whole faces (``se_faces``, the honest one: items of one face are not independent, and the 101
offline faces leave ~20 for testing), and the false-alarm rate on the test reals at the
checkpoint's stored threshold. The table gives mean ± sd over seeds per λ and, with two λ, the
paired difference (first λ − second) per seed. ``--train-on A,B`` runs the cross-family protocol
instead: train once on A and B only, and test that model on each other family. ``--ckpt PATH``
and ``--engine PATH`` train nothing: they score existing checkpoints, or ONNX models and engines
through the runtime's backends (the bundled model, yours), on every family's test set, marking the
families each was trained on (``meta.training["families"]``). The test faces are
held out from any model trained on ``synthetic`` data; a model trained on other crops may have seen
them only if its crops include scikit-image's faces. Timings and AUCs belong here and in docs, never
in pass/fail tests.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks import report
from runtime.errors import Parser, UserError, run_cli

PROG = "benchmarks.families"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--families", default="all", help="families in the protocol (comma-separated or 'all')")
    p.add_argument("--data", default="synthetic", metavar="BASE",
                   help="real faces the forgeries are made of: synthetic (the offline sample faces), pool (the "
                        "bundled real-face pool: training on its train people, tests on its test people, every "
                        "face through the camera's trip; pool:camera=off for clean faces) or selfblend:FOLDER "
                        "(default: %(default)s)")
    p.add_argument("--folds", help="held-out families to run (default: every one of --families)")
    p.add_argument("--train-on", metavar="FAMILIES",
                   help="cross-family mode instead of leave-one-out: train once (per seed and λ) on these families "
                        "only and test on each other family of --families")
    p.add_argument("--ckpt", nargs="+", metavar="PATH",
                   help="train nothing: score these checkpoints (.pt) on the test set of every family of --families")
    p.add_argument("--engine", nargs="+", metavar="PATH",
                   help="train nothing: score these models (.onnx, .engine) with the runtime, like --ckpt")
    p.add_argument("--seeds", default="0,1,2,3,4", help="training seeds, comma-separated (paired across λ)")
    p.add_argument("--lambdas", default="0.1,0", help="reconstruction weights to compare, comma-separated")
    p.add_argument("--encoder", default="edge", help="training.train --encoder of each run (default edge)")
    p.add_argument("--input-size", type=int, default=64, help="crop side in pixels (default 64)")
    p.add_argument("--downsample", choices=("stride", "max"), default="max", help="edge encoder only")
    p.add_argument("--items", type=int, default=1600, help="training items per run (synthetic:N)")
    p.add_argument("--val-items", type=int, default=400, help="validation items (model selection)")
    p.add_argument("--test-items", type=int, default=4000,
                   help="test items of the held-out family (4000: item-bootstrap SE of the AUC about 0.01)")
    p.add_argument("--test-seed", type=int, default=12345, help="seed of the held-out family's test forgeries")
    p.add_argument("--epochs", type=int, default=16, help="training.train --epochs of each run (default 16)")
    p.add_argument("--batch-size", type=int, default=32, help="training.train --batch-size (default 32)")
    p.add_argument("--lr", type=float, default=3e-3, help="training.train --lr (default 3e-3)")
    p.add_argument("--warmup", type=float, default=0.1, help="training.train --warmup (default 0.1)")
    p.add_argument("--threshold", default="fpr:0.05", help="training.train --threshold for each run")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--out", default="runs/families", help="run folders and families.json go here")
    p.add_argument("--json", metavar="PATH", help="report JSON (default OUT/families-<encoder><size>.json)")
    return p


def folds(families: Sequence[str], held_out: Sequence[str] | None = None,
          train_on: Sequence[str] | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """(held-out family, training families) per fold: train on all but one, test on that one; with
    ``train_on``, train on those families only and test on each other one (one training serves all)."""
    if len(families) < 2:
        raise UserError(f"--families {','.join(families)}: leaving one out needs at least two families")
    if train_on:
        rest = [f for f in families if f not in train_on]
        if not rest:
            raise UserError(f"--train-on {','.join(train_on)}: no family of --families is left to test on")
    want = list(held_out) if held_out else [f for f in families if not train_on or f not in train_on]
    bad = [f for f in want if f not in families or (train_on and f in train_on)]
    if bad:
        raise UserError(f"--folds {','.join(bad)}: not among --families {','.join(families)}"
                        + (f" less --train-on {','.join(train_on)}" if train_on else ""))
    return [(f, tuple(train_on) if train_on else tuple(g for g in families if g != f)) for f in want]


def run_name(held_out: str, train_fams: Sequence[str], cross: bool) -> str:
    """The run folder of a fold: ``minus-F`` (leave-one-out), ``on-A+B`` (cross-family: one per training set)."""
    return f"on-{'+'.join(train_fams)}" if cross else f"minus-{held_out}"


def test_set(family: str, n: int, meta: Any, seed: int,
             data: str = "synthetic") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` test crops of one family on the held-out faces of ``data``: (uint8 N×S×S×3, labels, face ids).

    Real items are seeded colour/sharpness variants of their face (and, for the pool, camera
    views), so a real face is not one image repeated; fakes are drawn from the same variants."""
    from runtime.preprocess import resize_square
    from training.dataspec import open_items, split_for, synthetic_spec

    items = open_items(synthetic_spec(n, (family,), like=data), meta, split=split_for(data, "evaluate"))
    crops = [resize_square(items.crop(i, np.random.default_rng([seed, 7, i]), vary=True), meta.input_size)
             for i in range(len(items))]
    return np.stack(crops), np.asarray(items.labels, np.int64), list(items.videos)


def score(ckpt: Path, crops: np.ndarray, threads: int) -> tuple[np.ndarray, Any]:
    """p(fake) of the checkpoint's detect path for each crop, and its metadata."""
    from benchmarks.runners import load_reference

    net, meta = load_reference(str(ckpt), max(1, threads))
    return predict(net, meta, crops), meta


def predict(net: Any, meta: Any, crops: np.ndarray) -> np.ndarray:
    """p(fake) of ``net``'s detect path for each crop (uint8 N×S×S×3), in batches of 128."""
    import torch

    from runtime.preprocess import to_input

    out = [np.zeros(0, np.float32)]
    with torch.no_grad():
        for i in range(0, len(crops), 128):
            x = np.concatenate([to_input(c, meta) for c in crops[i:i + 128]])
            out.append(torch.sigmoid(net(torch.from_numpy(x))).reshape(-1).numpy())
    return np.concatenate(out).astype(np.float64)


def fold_metrics(probs: np.ndarray, labels: np.ndarray, faces: list[str], threshold: float,
                 boot: int) -> dict[str, Any]:
    from training.metrics import bootstrap_auc, false_alarm_rate, roc_auc

    items = bootstrap_auc(probs, labels, None, boot, seed=1)
    by_face = bootstrap_auc(probs, labels, faces, boot, seed=2)
    return {"auc": roc_auc(probs, labels), "se_items": items["se"], "se_faces": by_face["se"],
            "far": false_alarm_rate(probs, labels, threshold), "threshold": threshold,
            "tpr": float(np.mean(probs[labels == 1] >= threshold)), "n": int(labels.size),
            "faces": len(set(faces))}


def train_argv(a: argparse.Namespace, train_fams: Sequence[str], lam: float, seed: int, out: Path) -> list[str]:
    from training.dataspec import synthetic_spec

    argv = ["--data", synthetic_spec(a.items, train_fams, like=a.data),
            "--val", synthetic_spec(a.val_items, train_fams, like=a.data),
            "--encoder", a.encoder, "--input-size", str(a.input_size), "--epochs", str(a.epochs),
            "--batch-size", str(a.batch_size), "--lr", str(a.lr), "--lambda", str(lam), "--warmup", str(a.warmup),
            "--threshold", a.threshold, "--workers", "0", "--threads", str(a.threads), "--seed", str(seed),
            "--out", str(out)]
    if a.encoder == "edge":
        argv += ["--downsample", a.downsample]
    return argv


def summarise(runs: list[dict[str, Any]], lambdas: Sequence[float]) -> list[dict[str, Any]]:
    """One row per held-out family: AUC mean ± sd over seeds per λ, FAR, the paired difference and in
    how many pairs the first λ was ahead; with several folds, a last row pools every (fold, seed)."""
    folds = list(dict.fromkeys(r["held_out"] for r in runs))
    rows = [_summary_row(fam, [r for r in runs if r["held_out"] == fam], lambdas) for fam in folds]
    if len(folds) > 1:
        rows.append(_summary_row(f"all {len(folds)} folds", runs, lambdas))
    return rows


def _summary_row(name: str, runs: list[dict[str, Any]], lambdas: Sequence[float]) -> dict[str, Any]:
    row: dict[str, Any] = {"held_out": name}
    by = {lam: {(r["held_out"], r["seed"]): r for r in runs if r["lambda"] == lam} for lam in lambdas}
    for lam in lambdas:
        aucs = [r["auc"] for r in by[lam].values()]
        row[f"auc_{lam:g}"] = _mean_sd(aucs)
        row[f"far_{lam:g}"] = float(np.mean([r["far"] for r in by[lam].values()])) if aucs else math.nan
        row[f"se_faces_{lam:g}"] = float(np.mean([r["se_faces"] for r in by[lam].values()])) if aucs else math.nan
        row[f"seeds_{lam:g}"] = len(aucs)
    if len(lambdas) == 2:
        a, b = lambdas
        common = [k for k in by[a] if k in by[b]]  # run order: folds, then seeds
        diffs = [by[a][s]["auc"] - by[b][s]["auc"] for s in common]
        row["paired_diff"] = _mean_sd(diffs)
        row["paired_diffs"] = diffs
        row["ahead"] = f"{sum(d > 0 for d in diffs)}/{len(diffs)}"
    return row


def _mean_sd(v: Sequence[float]) -> str:
    if not v:
        return "n/a"
    sd = float(np.std(v, ddof=1)) if len(v) > 1 else math.nan
    return f"{np.mean(v):.3f} ± {sd:.3f}" if math.isfinite(sd) else f"{np.mean(v):.3f}"


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    from training.forgeries import parse_families

    try:
        families = parse_families(a.families)
        held = parse_families(a.folds) if a.folds else None
        train_on = parse_families(a.train_on) if a.train_on else None
    except ValueError as e:
        raise UserError(str(e)) from None
    report.check_writable(a.json, "--json", [("--ckpt", p) for p in a.ckpt or []] + [("--engine", p) for p in a.engine or []])
    if a.ckpt or a.engine:
        return score_models(a, argv, families)
    seeds = report.parse_list(a.seeds, int, "--seeds")
    lambdas = report.parse_list(a.lambdas, float, "--lambdas")
    report.check_positive(items=a.items, val_items=a.val_items, test_items=a.test_items, epochs=a.epochs,
                          boot=a.boot)
    from training import train
    from training.model import default_meta

    out = Path(a.out)
    meta = default_meta(a.encoder, a.input_size)
    runs: list[dict[str, Any]] = []
    for fam, train_fams in folds(families, held, train_on):
        crops, labels, faces = test_set(fam, a.test_items, meta, a.test_seed, a.data)
        for lam in lambdas:
            for seed in seeds:
                run_dir = (out / f"{a.encoder}{a.input_size}" / run_name(fam, train_fams, bool(train_on))
                           / f"lam{lam:g}" / f"seed{seed}")
                if not (run_dir / "best.pt").exists():  # its per-epoch JSON lines: run_dir/metrics.jsonl
                    with contextlib.redirect_stdout(io.StringIO()):
                        train.main(train_argv(a, train_fams, lam, seed, run_dir))
                probs, m = score(run_dir / "best.pt", crops, a.threads)
                r = {"held_out": fam, "trained_on": list(train_fams), "lambda": lam, "seed": seed,
                     "best_val_auc": m.training.get("best_val_auc"), **fold_metrics(probs, labels, faces,
                                                                                    m.threshold, a.boot)}
                runs.append(r)
                print(f"families: test {fam}, trained on {'+'.join(train_fams)}, λ={lam:g} seed {seed}: val AUC "
                      f"{r['best_val_auc'] or math.nan:.3f}; held-out AUC {r['auc']:.3f} (se items "
                      f"{r['se_items']:.3f}, faces {r['se_faces']:.3f}), FAR {r['far']:.3f} at {m.threshold:.3f}",
                      file=sys.stderr, flush=True)
    rows = summarise(runs, lambdas)
    cols = [("held_out", "held-out family")]
    for lam in lambdas:
        cols += [(f"auc_{lam:g}", f"AUC λ={lam:g}"), (f"se_faces_{lam:g}", "SE(faces)"), (f"far_{lam:g}", "FAR")]
    if len(lambdas) == 2:
        cols += [("paired_diff", f"AUC λ={lambdas[0]:g} − λ={lambdas[1]:g}"), ("ahead", f"λ={lambdas[0]:g} ahead")]
    print(report.table(rows, cols, digits=3))
    result = {**report.envelope(PROG, argv, vars(a)), "rows": rows, "runs": runs}
    path = a.json or str(out / f"families-{a.encoder}{a.input_size}.json")
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(path, result)
    print(f"wrote {path}")
    return 0


def open_model(path: str, kind: str, threads: int) -> tuple[Any, Any, Any]:
    """(p(fake) of uint8 crops, metadata, close) for a checkpoint (``kind`` "ckpt") or a runtime model;
    the path already checked (``checkpoint_file``, ``artifact_file``)."""
    if kind == "ckpt":
        from benchmarks.runners import load_reference

        net, meta = load_reference(str(path), max(1, threads))  # the path checked by score_models
        return (lambda crops: predict(net, meta, crops)), meta, (lambda: None)
    from benchmarks.accuracy import sigmoid
    from runtime.backends import open_backend
    from runtime.preprocess import to_input

    b = open_backend(path, **({"provider": "cpu", "threads": threads} if path.lower().endswith(".onnx") else {}))
    step = max(1, min(b.max_batch, 64))

    def infer(crops: np.ndarray) -> np.ndarray:
        logits = [np.asarray(b.infer(np.concatenate([to_input(c, b.meta) for c in crops[i:i + step]]))["logit"],
                             np.float64).reshape(-1) for i in range(0, len(crops), step)]
        return sigmoid(np.concatenate(logits))

    return infer, b.meta, b.close


def score_models(a: argparse.Namespace, argv: list[str] | None, families: Sequence[str]) -> int:
    """``--ckpt``/``--engine``: each model on each family's test set (held-out faces), one row per pair,
    then its mean over the families it was not trained on and over all of them."""
    report.check_positive(test_items=a.test_items, boot=a.boot)
    rows: list[dict[str, Any]] = []
    sets: dict[Any, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    out = a.json or str(Path(a.out) / "families-models.json")
    models = [(p, "ckpt") for p in a.ckpt or []] + [(p, "engine") for p in a.engine or []]
    from runtime.backends import artifact_file
    from training.checkpoint import checkpoint_file

    for path, kind in models:  # every path checked before minutes of scoring, not when its turn comes
        (checkpoint_file if kind == "ckpt" else artifact_file)(path)
    for i, (path, kind) in enumerate(models):
        try:
            rows += score_one(a, path, kind, families, sets)
        except UserError:
            if rows:  # what was scored stays on disk
                _write_models(a, argv, rows, out)
                print(f"families: stopped at model {i + 1} of {len(models)}; the first {i} are in {out}",
                      file=sys.stderr)
            raise
    cols = [("model", "model"), ("family", "family"), ("trained_on_it", "trained on"), ("auc", "AUC"),
            ("se_faces", "SE(faces)"), ("far", "FAR"), ("tpr", "caught")]
    print(report.table(rows, cols, digits=3))
    _write_models(a, argv, rows, out)
    print(f"wrote {out}")
    return 0


def score_one(a: argparse.Namespace, path: str, kind: str, families: Sequence[str],
              sets: dict[Any, tuple[np.ndarray, np.ndarray, list[str]]]) -> list[dict[str, Any]]:
    """One model's rows: a row per family (test sets shared between models through ``sets``), then means."""
    infer, m, close = open_model(path, kind, a.threads)
    mine: list[dict[str, Any]] = []
    try:
        for fam in families:
            key = (fam, m.input_size, m.face_margin, m.face_align)
            if key not in sets:
                sets[key] = test_set(fam, a.test_items, m, a.test_seed, a.data)
            crops, labels, faces = sets[key]
            trained = fam in trained_families(m)
            r = {"model": str(path), "family": fam, "trained_on_it": trained,
                 **fold_metrics(infer(crops), labels, faces, m.threshold, a.boot)}
            mine.append(r)
            print(f"families: {path}, {fam}{' (trained on)' if trained else ''}: AUC {r['auc']:.3f} "
                  f"(se faces {r['se_faces']:.3f}), FAR {r['far']:.3f}, caught {r['tpr']:.3f} at {m.threshold:.3f}",
                  file=sys.stderr, flush=True)
    finally:
        close()
    unseen = [r for r in mine if not r["trained_on_it"]]
    groups = [(f"mean, {len(unseen)} not trained on", unseen)] if 1 < len(unseen) < len(mine) else []
    for name, group in groups + [(f"mean, all {len(mine)}", list(mine))]:
        mine.append({"model": str(path), "family": name, "trained_on_it": None,
                     **{k: float(np.mean([r[k] for r in group])) for k in ("auc", "se_faces", "far", "tpr")}})
    return mine


def trained_families(meta: Any) -> tuple[str, ...]:
    """The forgery families a model was trained on: ``training["families"]``, or read from its synthetic
    ``data`` spec when it predates that field (the bundled model); none for other data."""
    from training.dataspec import is_synthetic, parse_synthetic

    t = getattr(meta, "training", None) or {}
    if t.get("families"):
        return tuple(t["families"])
    data = str(t.get("data") or "")
    return tuple(parse_synthetic(data)[1]) if data and is_synthetic(data) else ()


def _write_models(a: argparse.Namespace, argv: list[str] | None, rows: list[dict[str, Any]], path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    report.write_json(path, {**report.envelope(PROG, argv, vars(a)), "rows": rows})


if __name__ == "__main__":
    run_cli(main, PROG)
