"""``python -m benchmarks.accuracy --engine A [--engine B ...] --data SPEC``: accuracy beside speed.

One table: for each artifact (backend × precision) the ROC AUC, the false-alarm rate (FAR: share
of the real faces called fake at the artifact's metadata threshold) and the fakes caught at that
threshold on a labelled face set, beside its p50 latency (batch 1) and throughput (faces/s at its max
batch), so a precision or a backend is chosen on both at once, and different models (the bundled
one, a peer such as the converted MesoNet in ``benchmarks/assets/mesonet``) are compared on the same
faces. The faces go through the runtime's own preprocessing for each artifact's metadata (its crop
size, margin and alignment: the items are the same, each model gets them cut as its runtime would
cut them) and through the runtime's backend, so the scores are the ones ``runtime.detect`` would
give. ``--data`` is read by ``training.calibration_set`` as an evaluation set, as training.evaluate and
calibration.report read it: a folder with ``real/`` and ``fake/`` crops, a CSV manifest, a videos
folder, or ``synthetic[:N]`` (the held-out faces training never saw). Speed is timed interleaved, as in
``benchmarks.latency``. ``--reference CKPT`` adds the checkpoint in PyTorch eager mode.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report, stats
from runtime.errors import Parser, UserError, run_cli

PROG = "benchmarks.accuracy"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--engine", action="append", required=True, metavar="PATH", help="artifact (repeatable)")
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="labelled faces: folder with real/ and fake/, CSV manifest, videos, or synthetic[:N] "
                   "(its held-out faces)")
    p.add_argument("--split", choices=("val", "train"),
                   help="use only this split of --data's videos (default: all; synthetic: val)")
    p.add_argument("--limit", type=int, metavar="N", help="score at most N faces (a seeded, balanced choice)")
    p.add_argument("--reference", metavar="CKPT", help="add the checkpoint in PyTorch eager mode")
    p.add_argument("--runs", type=int, default=50, help="timed runs per artifact and batch (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up rounds (default 5)")
    p.add_argument("--threads", type=int, metavar="N", help="intra-op threads (default: all usable cores)")
    p.add_argument("--provider", choices=("cpu", "cuda", "tensorrt"), default="cpu",
                   help="ONNX Runtime execution provider for .onnx artifacts (default cpu)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--png", metavar="FILE", help="write AUC vs latency as a chart")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def geometry(meta: Any) -> tuple[int, float, str]:
    """What decides the crop a model is given: its input size, face margin and alignment."""
    return (int(meta.input_size), float(meta.face_margin), str(meta.face_align))


class Faces:
    """The labelled items of a spec, cut once per crop geometry (:func:`geometry`) as each model's
    runtime cuts them, turned into network input per metadata (cached). ``crops`` and ``labels`` are
    those of the first metadata; every other geometry must give the same items."""

    def __init__(self, spec: str, split: str | None, limit: int | None, meta: Any, progress: bool = False) -> None:
        self.spec, self._split, self._limit, self._progress = spec, split, limit, progress
        self._sets: dict[tuple, Any] = {}
        self._cache: dict[tuple, np.ndarray] = {}
        first = self._set(meta)
        self.crops = first.crops
        self.labels = first.labels

    def _set(self, meta: Any) -> Any:
        from training.calibration_set import load

        key = geometry(meta)
        if key not in self._sets:
            got = load(self.spec, meta, self._limit, held_out=True, need_labels=True, progress=self._progress,
                       split=self._split)
            if self._sets:
                first = next(iter(self._sets.values()))
                if got.labels.tolist() != first.labels.tolist() or got.groups != first.groups:
                    raise UserError(f"--data {self.spec}: cut at {key[0]} px, margin {key[1]:g} ({key[2]}) it gives "
                                    f"{len(got)} faces, not the {len(first)} the first model was given (a detector "
                                    "found different faces); compare these models on a folder of crops")
            self._sets[key] = got
        return self._sets[key]

    def crops_for(self, meta: Any) -> np.ndarray:
        """The crops as ``meta``'s runtime cuts them (uint8 BGR, its input size)."""
        return self._set(meta).crops

    def inputs(self, meta: Any) -> np.ndarray:
        from runtime.preprocess import to_input

        key = (*geometry(meta), tuple(meta.mean), tuple(meta.std), meta.color)
        if key not in self._cache:
            self._cache[key] = to_input(self.crops_for(meta), meta)
        return self._cache[key]


def score(infer: Any, x: np.ndarray, batch: int) -> np.ndarray:
    """Probability of fake for every face, in batches of at most ``batch``."""
    logits = [np.asarray(infer(x[i:i + batch]), np.float32).reshape(-1) for i in range(0, len(x), batch)]
    return sigmoid(np.concatenate(logits))


def metrics(probs: np.ndarray, faces: Faces, threshold: float) -> dict[str, Any]:
    """AUC, AP, and at ``threshold`` ACC, FAR (false-alarm rate: share of real faces with p >= it) and
    caught (share of fake faces with p >= it)."""
    from training.metrics import accuracy, average_precision, catch_rate, false_alarm_rate, roc_auc

    return {"auc": round(roc_auc(probs, faces.labels), 5), "ap": round(average_precision(probs, faces.labels), 5),
            "acc": round(accuracy(probs, faces.labels, threshold), 5),
            "far": round(false_alarm_rate(probs, faces.labels, threshold), 5),
            "caught": round(catch_rate(probs, faces.labels, threshold), 5), "threshold": threshold}


def threshold_rule(meta: Any) -> dict[str, Any] | None:
    """How the metadata's threshold was chosen (``training["threshold_rule"]``), when recorded."""
    rule = (getattr(meta, "training", None) or {}).get("threshold_rule")
    return rule if isinstance(rule, dict) and rule else None


def run(a: argparse.Namespace) -> dict[str, Any]:
    from runtime.backends import open_backend

    progress = report.Progress(not a.quiet)
    models: list[dict[str, Any]] = []
    try:
        for path in a.engine:
            progress(f"opening {path}", force=True)
            opts = {"provider": a.provider, "threads": a.threads} if path.lower().endswith(".onnx") else {}
            b = open_backend(path, **opts)
            models.append({"label": Path(path).name, "backend": b.name, "meta": b.meta, "max_batch": b.max_batch,
                           "infer": (lambda x, b=b: b.infer(x)["logit"]), "close": b.close, "path": path})
        if a.reference:
            models.append(_reference(a.reference, a.threads))
        progress("reading faces", force=True)
        faces = Faces(a.data, a.split, a.limit, models[0]["meta"])
        if len(set(faces.labels.tolist())) < 2:
            raise UserError(f"--data {a.data}: holds only {'fake' if faces.labels[0] else 'real'} faces; AUC needs both")
        rows, probs = [], {}
        for m in models:
            progress(f"scoring {len(faces.labels)} faces: {m['label']}", force=True)
            probs[m["label"]] = score(m["infer"], faces.inputs(m["meta"]), min(m["max_batch"], 64))
        rows = [{"label": m["label"], "backend": m["backend"], "precision": m["meta"].precision,
                 "graph": m["meta"].graph, "path": m["path"], "encoder": m["meta"].encoder,
                 "input_size": m["meta"].input_size, "face_margin": m["meta"].face_margin,
                 **metrics(probs[m["label"]], faces, m["meta"].threshold), "threshold_rule": threshold_rule(m["meta"])}
                for m in models]
        first = probs[models[0]["label"]]
        for r in rows:
            r["max_abs_dprob_vs_first"] = round(float(np.max(np.abs(probs[r["label"]] - first))), 5)
        _speed(a, models, rows, faces, progress)
        progress.done()
        return {"data": {"spec": a.data, "split": a.split, "faces": int(len(faces.labels)),
                         "fake": int(faces.labels.sum())}, "results": rows}
    finally:
        progress.done()
        for m in models:
            m["close"]()


def _reference(path: str, threads: int) -> dict[str, Any]:
    import torch

    from benchmarks.runners import load_reference

    model, meta = load_reference(path, threads)

    def infer(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    def full(x: np.ndarray) -> Any:
        with torch.no_grad():
            return model.forward_full(torch.from_numpy(np.ascontiguousarray(x)))

    return {"label": "pytorch eager (full)", "backend": "torch eager", "meta": meta.with_(graph="full"),
            "max_batch": 1 << 16, "infer": infer, "timed": full, "close": lambda: None, "path": path}


def _speed(a: argparse.Namespace, models: list[dict[str, Any]], rows: list[dict[str, Any]], faces: Faces,
           progress: report.Progress) -> None:
    """p50 at batch 1 and faces/s at each artifact's max batch (≤ 8), interleaved."""
    for key, batch_of in (("b1", lambda m: 1), ("bmax", lambda m: min(8, m["max_batch"]))):
        tasks = {}
        for m in models:
            x = faces.inputs(m["meta"])
            n = batch_of(m)
            xb = np.ascontiguousarray(np.resize(x, (n,) + x.shape[1:]))
            fn = m.get("timed", m["infer"])
            tasks[m["label"]] = (lambda fn=fn, xb=xb: fn(xb))
        times = stats.run_interleaved(tasks, a.runs, a.warmup, "shuffle",
                                      progress=lambda i, n, k=key: progress(f"timing {k}: round {i}/{n}"))
        for r, m in zip(rows, models):
            s = stats.summarize(times[m["label"]], batch_of(m))
            if key == "b1":
                r.update(p50_ms=s["p50_ms"], p90_ms=s["p90_ms"], p99_ms=s["p99_ms"])
            else:
                r.update(batch=batch_of(m), throughput=s["throughput"])


COLUMNS = [("label", "artifact"), ("backend", "backend"), ("precision", "prec"), ("graph", "graph"),
           ("input_size", "px"), ("auc", "AUC"), ("threshold", "thr (meta)"), ("acc", "ACC@thr"), ("far", "FAR@thr"),
           ("caught", "caught@thr"),
           ("max_abs_dprob_vs_first", "max|Δp|"), ("p50_ms", "p50 ms (b1)"), ("throughput", "faces/s"),
           ("batch", "at batch")]


def print_report(result: dict[str, Any]) -> None:
    d, m = result["data"], result["machine"]
    print(f"machine: {report.describe_cpu(m)}, {m['usable_cores']} usable cores, threads={result['settings']['threads']}; "
          f"data {d['spec']}: {d['faces']} faces ({d['fake']} fake)")
    print(report.table(result["results"], COLUMNS, digits=4))
    print(f"(FAR@thr: false-alarm rate, the share of the {d['faces'] - d['fake']} real faces with "
          f"p(fake) >= thr, each artifact's own metadata threshold, as runtime.detect applies it; caught@thr: the "
          f"share of the {d['fake']} fake faces at or above it; ACC@thr at it too)")
    if len({(r["input_size"], r["face_margin"]) for r in result["results"]}) > 1:
        print("(px: each artifact's input size; every artifact gets the same items at its own size and, where the "
              "spec cuts the crops (synthetic, videos), at its own margin: "
              + ", ".join(f"{r['label']} at {r['input_size']} px, margin {r['face_margin']:g}" for r in result["results"])
              + ")")
    from training.report import threshold_rule_line

    for r in result["results"]:
        line = threshold_rule_line(r.get("threshold_rule"), r.get("threshold"))
        if line:
            print(f"{r['label']}: {line}")
    print("(max|Δp|: largest difference in probability of fake from the first artifact, over all faces; "
          "artifacts are timed on the logit only, as runtime.detect runs them without --reconstruct, except "
          "the PyTorch reference, which runs the full model as research code does)")


def plot(result: dict[str, Any], path: str) -> None:
    rows = result["results"]

    def draw(fig: Any) -> None:
        axes = fig.subplots(1, 2)
        for ax, key, ylabel in ((axes[0], "auc", "ROC AUC"),
                                (axes[1], "far", "false-alarm rate (reals called fake) at the metadata threshold")):
            for i, r in enumerate(rows):  # labels stacked so that coinciding points stay readable
                if r.get(key) is None:
                    continue
                ax.scatter(r["p50_ms"], r[key], s=40)
                ax.annotate(f"{r['label']} ({r['precision']}" + (f", thr {r['threshold']:g})" if key == "far" else ")"),
                            (r["p50_ms"], r[key]), fontsize=7, xytext=(4, 4 + 9 * i), textcoords="offset points")
            if max(r["p50_ms"] for r in rows) > 10 * min(r["p50_ms"] for r in rows):
                ax.set_xscale("log")
            ax.set_xlabel("p50 latency at batch 1, ms")
            ax.set_ylabel(ylabel, fontsize=8 if key == "far" else 10)
            if key == "far":
                ax.set_ylim(bottom=-0.02)  # a rate: its distance from zero is the point
            ax.grid(alpha=0.3)
        fig.suptitle(f"accuracy vs speed on {result['data']['spec']} ({result['data']['faces']} faces) — "
                     f"{result['machine']['cpu']}", fontsize=9)

    report.save_png(path, draw, (12, 5))


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    report.check_positive(runs=a.runs, threads=a.threads, limit=a.limit)
    data = a.data.split(":", 1)[1] if a.data.startswith("selfblend:") else a.data  # a folder or manifest it reads
    report.check_paths(a.engine, a.reference, a.json, a.png, [("--data", data)])
    a.threads = a.threads or report.default_threads()
    settings = {"runs": a.runs, "warmup": a.warmup, "threads": a.threads, "provider": a.provider,
                "limit": a.limit, "split": a.split}
    result = {**report.envelope(PROG, argv, settings), **run(a)}
    report.emit(result, print_report, a.json, a.png, plot)
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
