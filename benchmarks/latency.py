"""``python -m benchmarks.latency --engine A [--engine B ...] --batch 1,8``: classifier latency.

Per artifact and batch: p50/p90/p99 latency, throughput (faces/s), peak memory (host RSS growth;
device memory for TensorRT), and for TensorRT the H2D / compute / D2H split when the backend
reports it. All artifacts are timed in one run, interleaved (randomised order every round), after
untimed warm-up rounds, so their ratios hold on a noisy machine; ratios are medians of per-round
ratios with a 95 % confidence interval. Also reported:

- the runtime's overhead over a bare ``onnxruntime.InferenceSession`` on the same file and batch
  (same options, threads and input), for every ``.onnx``;
- the full / detect graph ratio (what skipping the decoder buys) for every pair of graphs with the
  same backend and precision (the other graph found beside an artifact — ``full.onnx`` beside
  ``detect.onnx``, ``x_full.int8-cpu.onnx`` beside ``x_detect.int8-cpu.onnx`` — is added);
- each lower precision's speed-up over the fp32 artifact of the same graph and backend;
- both ratios only between siblings of one model (:mod:`benchmarks.lineage`: their metadata's
  source hashes lead to the same checkpoint), each naming both sides; a pair of artifacts from
  different models gets a note instead;
- with ``--reference CKPT``, the same model in PyTorch eager mode (full model, as research code
  runs it) and every artifact's speed-up over it;
- for every ``.onnx`` on the CPU, the kernel split from ONNX Runtime's profiler: time in int8
  kernels, float kernels, Q/DQ conversions and layout changes (``benchmarks.kernels``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report, stats
from benchmarks.runners import Runner, Spec, make_input, open_runner
from runtime.errors import Parser, UserError, run_cli

PROG = "benchmarks.latency"
OVERHEAD_TARGET = 1.03  # the runtime's backend may add at most 3 % to bare onnxruntime's latency


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--engine", action="append", required=True, metavar="PATH",
                   help=".onnx or TensorRT .engine/.plan (repeat for several artifacts)")
    p.add_argument("--batch", default="1,8", help="batch sizes, comma-separated (default 1,8)")
    p.add_argument("--runs", type=int, default=100, help="timed runs per artifact and batch (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed warm-up rounds first (default 10)")
    p.add_argument("--reference", metavar="CKPT", help="add the checkpoint in PyTorch eager mode (full model)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="intra-op threads for ONNX Runtime and PyTorch alike (default: all usable cores)")
    p.add_argument("--provider", choices=("cpu", "cuda", "tensorrt"), default="cpu",
                   help="ONNX Runtime execution provider for .onnx artifacts (default cpu)")
    p.add_argument("--order", choices=stats.ORDERS, default="shuffle",
                   help="interleaving: shuffle (randomised blocks, default), rotate, or blocked (not interleaved)")
    p.add_argument("--no-bare", action="store_true", help="skip the bare onnxruntime comparison")
    p.add_argument("--no-siblings", action="store_true",
                   help="do not add the other graph found beside an artifact (full.onnx beside detect.onnx)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement (child processes)")
    p.add_argument("--no-kernels", action="store_true",
                   help="skip the kernel split (ONNX Runtime's profiler: int8 / float / Q/DQ / layout time per .onnx)")
    p.add_argument("--seed", type=int, default=0, help="input data and shuffling seed")
    p.add_argument("--json", metavar="FILE", help="write the full results as JSON")
    p.add_argument("--png", metavar="FILE", help="write a chart (p50 latency and throughput per batch)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def sibling(path: str | Path) -> Path | None:
    """The other graph beside an artifact: ``detect.onnx`` ↔ ``full.onnx``,
    ``jrc_edge_detect.int8-cpu.onnx`` ↔ ``jrc_edge_full.int8-cpu.onnx``; None if absent."""
    p = Path(path)
    for a, b in (("detect", "full"), ("full", "detect")):
        i = p.name.rfind(a)
        if i >= 0:
            other = p.with_name(p.name[:i] + b + p.name[i + len(a):])
            return other if other.is_file() else None
    return None


def _artifacts(engines: list[str], siblings: bool) -> list[str]:
    """The engines, plus the other graph found beside each (for the full/detect ratio)."""
    out = [str(Path(e)) for e in engines]
    if siblings:
        for e in list(out):
            other = sibling(e)
            if other is not None and str(other) not in out:
                out.append(str(other))
                report.note(f"{PROG}: adding {other} (beside {Path(e).name}) for the full/detect ratio")
    return list(dict.fromkeys(out))


def specs_for(a: argparse.Namespace, batches: list[int]) -> list[Spec]:
    paths = _artifacts(a.engine, not a.no_siblings)
    labels = report.artifact_labels(paths)
    top = max(batches)
    specs = []
    for p in paths:
        specs.append(Spec("runtime", p, a.threads, top, a.provider, labels[p]))
        if p.lower().endswith(".onnx") and not a.no_bare:
            specs.append(Spec("bare", p, a.threads, top, a.provider, labels[p] + " [bare ort]"))
    if a.reference:
        specs.append(Spec("torch", a.reference, a.threads, top, label="pytorch eager (full)"))
    return specs


def _pairs(runners: list[Runner]) -> dict[str, list[tuple[str, str, str]]]:
    """Which labels to compare: (numerator, denominator, what) per kind of ratio."""
    overhead, graphs, speedup = [], [], []
    by_path = {(r.spec.path, r.spec.kind): r for r in runners}
    ref = next((r for r in runners if r.spec.kind == "torch"), None)
    for r in runners:
        if r.spec.kind == "runtime":
            bare = by_path.get((r.spec.path, "bare"))
            if bare is not None:
                overhead.append((r.label, bare.label, "runtime / bare onnxruntime"))
            if ref is not None and _same_architecture(r, ref):
                speedup.append((ref.label, r.label, "pytorch eager / artifact"))
    rt = [r for r in runners if r.spec.kind == "runtime"]
    root = _roots(rt)
    precision, models = [], []
    for i, f in enumerate(rt):
        for j, d in enumerate(rt):
            # ratios of graphs and precisions only between siblings of one model (benchmarks.lineage)
            alike = f.backend == d.backend and f.meta.input_size == d.meta.input_size
            same_net = _same_architecture(f, d)
            sibling = root[f.label] == root[d.label]
            if alike and same_net and sibling and f.graph == "full" and d.graph == "detect" and \
                    f.meta.precision == d.meta.precision:
                graphs.append((f.label, d.label, "full / detect"))
            if alike and same_net and sibling and f.graph == d.graph and f.meta.precision == "fp32" and \
                    d.meta.precision != "fp32":
                precision.append((f.label, d.label, f"fp32 / {d.meta.precision}"))
            if alike and not same_net and i < j and f.graph == d.graph and f.meta.precision == d.meta.precision:
                models.append((f.label, d.label, "model / model"))
    return {"overhead": overhead, "full_vs_detect": graphs, "precision": precision, "models": models,
            "speedup": speedup}


def _roots(rt: list[Runner]) -> dict[str, str]:
    """Each runtime artifact's model (:mod:`benchmarks.lineage`): ratios only between siblings."""
    from benchmarks.lineage import roots

    return roots({r.label: (Path(r.spec.path), r.meta) for r in rt})


def _unrelated(runners: list[Runner]) -> list[str]:
    """Say which pairs get no full/detect or precision ratio because they are not one model's."""
    rt = [r for r in runners if r.spec.kind == "runtime"]
    root, notes = _roots(rt), []
    for i, f in enumerate(rt):
        for d in rt[i + 1:]:
            comparable = f.backend == d.backend and f.meta.input_size == d.meta.input_size and (
                f.graph != d.graph or f.meta.precision != d.meta.precision)
            if comparable and root[f.label] != root[d.label]:
                notes.append(f"no ratio between {f.label} and {d.label}: they were not made from the same model "
                             "(their metadata's source hashes lead to different checkpoints)")
    return notes


def _same_architecture(r: Runner, ref: Runner) -> bool:
    """Same encoder, input size and model settings (e.g. the edge style): a speed-up between them
    means something; between two networks it is a comparison of networks (``models``)."""
    return (r.meta.encoder, r.meta.input_size, r.meta.model) == (ref.meta.encoder, ref.meta.input_size, ref.meta.model)


def _warn_reference(runners: list[Runner]) -> list[str]:
    """Say when the reference checkpoint is not the model the artifacts were made from."""
    from runtime.meta import sha256_file

    ref = next((r for r in runners if r.spec.kind == "torch"), None)
    if ref is None:
        return []
    notes, digest = [], sha256_file(ref.spec.path)
    for r in runners:
        if r.spec.kind != "runtime":
            continue
        if not _same_architecture(r, ref):
            notes.append(f"{r.label} is not the architecture of {Path(ref.spec.path).name} (encoder, input size "
                         "or model settings differ): no speed-up over PyTorch eager for it")
        elif r.meta.source_sha256 and r.meta.precision == "fp32" and r.meta.source_sha256 != digest:
            notes.append(f"{r.label} was not exported from {Path(ref.spec.path).name} (source sha256 differs): "
                         "the speed-up compares different weights of the same architecture")
    return notes


def run(a: argparse.Namespace, batches: list[int]) -> dict[str, Any]:
    specs = specs_for(a, batches)
    progress = report.Progress(not a.quiet)
    memory: dict[str, Any] = {}
    if not a.no_memory:
        from benchmarks.memory import measure_in_child

        for s in specs:
            progress(f"memory: {s.label}", force=True)
            memory[s.label] = measure_in_child(s.to_dict(), batches)
    runners: list[Runner] = []
    try:
        for s in specs:
            progress(f"opening {s.label}", force=True)
            runners.append(open_runner(s))
        result = _time_all(a, batches, runners, memory, progress)
        if not a.no_kernels:
            from benchmarks import kernels

            progress("kernel split (ONNX Runtime profiler)", force=True)
            result["kernels"] = kernels.measure(runners, batches, make_input, a.seed)
        return result
    finally:
        progress.done()
        for r in runners:
            r.close()


def _time_all(a: argparse.Namespace, batches: list[int], runners: list[Runner], memory: dict[str, Any],
              progress: report.Progress) -> dict[str, Any]:
    pairs = _pairs(runners)
    rows, ratios, skipped = [], [], []
    for b in batches:
        active = [r for r in runners if r.max_batch >= b]
        skipped += [f"{r.label}: batch {b} exceeds its max batch {r.max_batch}" for r in runners if r.max_batch < b]
        inputs: dict[int, np.ndarray] = {}
        tasks = {}
        for r in active:
            x = inputs.setdefault(r.meta.input_size, make_input(r.meta, b, a.seed))
            tasks[r.label] = r.bind(x)
        times = stats.run_interleaved(tasks, a.runs, a.warmup, a.order, a.seed + b,
                                      progress=lambda i, n, b=b: progress(f"batch {b}: round {i}/{n}"))
        for r in active:
            row = {**r.describe(), "batch": b, **stats.summarize(times[r.label], b)}
            row["warmup_drift"] = round(stats.warmup_drift(times[r.label]), 3)
            mem = memory.get(r.label, {})
            row.update(mem.get("batches", {}).get(str(b), {}))
            if "error" in mem:
                row["memory_error"] = mem["error"]
            split = _split(r, tasks[r.label])
            if split:
                row["split_ms"] = split
            rows.append(row)
        for kind, items in pairs.items():
            for num, den, what in items:
                if num in times and den in times:
                    rt = stats.ratio(times[num], times[den])
                    ratios.append({"kind": kind, "batch": b, "numerator": num, "denominator": den,
                                   "what": what, **rt.to_dict()})
    notes = skipped + _warn_reference(runners) + _unrelated(runners)
    notes += [f"{r['label']} batch {r['batch']}: the first runs were {r['warmup_drift']:.2f}× slower than the "
              "rest (warm-up too short, or the load changed): consider a larger --warmup" for r in rows if r["warmup_drift"] > stats.WARMUP_SUSPECT]
    return {"results": rows, "ratios": ratios, "notes": notes}


def _split(r: Runner, fn: Any, calls: int = 20) -> dict[str, float] | None:
    """Median H2D / compute / D2H (ms) over a few extra calls, when the backend reports it."""
    if r.profile() is None:
        return None
    samples: dict[str, list[float]] = {}
    for _ in range(calls):
        fn()
        for k, v in (r.profile() or {}).items():
            samples.setdefault(k, []).append(float(v))
    return {k: round(float(np.median(v)), 4) for k, v in samples.items()}


# --- output ----------------------------------------------------------------------------------
COLUMNS = [("label", "artifact"), ("backend", "backend"), ("precision", "prec"), ("graph", "graph"),
           ("batch", "batch"), ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"),
           ("throughput", "faces/s"), ("rss_peak_delta_mb", "peak MB"), ("speedup", "vs eager")]


def print_report(result: dict[str, Any]) -> None:
    speed = {(x["denominator"], x["batch"]): x for x in result["ratios"] if x["kind"] == "speedup"}
    rows = []
    for r in result["results"]:
        s = speed.get((r["label"], r["batch"]))
        rows.append({**r, "speedup": f"{s['median']:.2f}×" if s else None,
                     "rss_peak_delta_mb": r.get("device_delta_mb", r.get("rss_peak_delta_mb"))})
    m = result["machine"]
    print(f"machine: {report.describe_cpu(m)}, {m['usable_cores']} usable cores, threads={result['settings']['threads']}; "
          f"{result['settings']['runs']} interleaved runs after {result['settings']['warmup']} warm-up rounds")
    print(report.table(rows, COLUMNS))
    for r in result["results"]:
        if r.get("split_ms"):
            parts = ", ".join(f"{k} {v:.3f}" for k, v in r["split_ms"].items())
            print(f"  {r['label']} batch {r['batch']}: {parts}")
    if result["ratios"]:
        print("\nratios (median of per-round ratios, 95% CI):")
    for x in result["ratios"]:
        rt = stats.Ratio(x["median"], x["low"], x["high"], x["rounds"])
        if x["kind"] == "overhead":
            verdict = overhead_verdict(rt)
            print(f"  runtime overhead vs bare onnxruntime  {x['numerator']:<28} batch {x['batch']:>3}: "
                  f"{rt.percent()}  ({verdict})")
        elif x["kind"] == "full_vs_detect":
            print(f"  full / detect (decoder cost)          {x['numerator'] + ' vs ' + x['denominator']:<28} "
                  f"batch {x['batch']:>3}: {rt.times()}")
        elif x["kind"] == "precision":
            print(f"  speed-up of {x['what'].split(' / ')[1]:<5} over fp32             "
                  f"{x['denominator'] + ' over ' + x['numerator']:<28} batch {x['batch']:>3}: {rt.times()}")
        elif x["kind"] == "models":
            print(f"  speed of one network over another     {x['denominator'] + ' over ' + x['numerator']:<28} "
                  f"batch {x['batch']:>3}: {rt.times()}")
        else:
            print(f"  speed-up over pytorch eager (full)    {x['denominator']:<28} batch {x['batch']:>3}: "
                  f"{rt.times()}")
    if result.get("kernels"):
        from benchmarks import kernels

        print("\n".join(kernels.lines(result["kernels"])))
    for n in result["notes"]:
        print(f"note: {n}")


def overhead_verdict(rt: stats.Ratio, target: float = OVERHEAD_TARGET) -> str:
    """Within / above the 3 % target only when the whole confidence interval says so."""
    if rt.high <= target:
        return "within the 3% target"
    if rt.low > target:
        return "ABOVE the 3% target"
    return ("median within 3%" if rt.median <= target else "median above 3%") + \
        ", but the interval spans the target at this noise level: more --runs"


def plot(result: dict[str, Any], path: str) -> None:
    rows = result["results"]
    labels = list(dict.fromkeys(r["label"] for r in rows))
    batches = sorted({r["batch"] for r in rows})

    def draw(fig: Any) -> None:
        ax1, ax2 = fig.subplots(1, 2)
        width = 0.8 / max(1, len(labels))
        for i, lab in enumerate(labels):
            pts = {r["batch"]: r for r in rows if r["label"] == lab}
            xs = [k + i * width for k, b in enumerate(batches) if b in pts]
            p50 = [pts[b]["p50_ms"] for b in batches if b in pts]
            err = [[0] * len(p50), [pts[b]["p90_ms"] - pts[b]["p50_ms"] for b in batches if b in pts]]
            ax1.bar(xs, p50, width, yerr=err, capsize=2, label=lab)
            ax2.bar(xs, [pts[b]["throughput"] for b in batches if b in pts], width, label=lab)
        for ax, title in ((ax1, "p50 latency, ms (bar to p90)"), (ax2, "throughput, faces/s")):
            ax.set_xticks([k + 0.4 - width / 2 for k in range(len(batches))])
            ax.set_xticklabels([f"batch {b}" for b in batches])
            ax.set_title(title)
        if max(r["p50_ms"] for r in rows) > 30 * min(r["p50_ms"] for r in rows):
            ax1.set_yscale("log")
        ax1.legend(fontsize=7)
        fig.suptitle(f"{result['machine']['cpu']} ({result['machine']['usable_cores']} cores)", fontsize=9)

    report.save_png(path, draw)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    batches = report.parse_batches(a.batch)
    report.check_positive(runs=a.runs, threads=a.threads)
    if a.warmup < 0:
        raise UserError(f"--warmup {a.warmup}: must be 0 or more")
    report.check_paths(a.engine, a.reference, a.json, a.png)
    a.threads = a.threads or report.default_threads()
    settings = {"batches": batches, "runs": a.runs, "warmup": a.warmup, "threads": a.threads,
                "provider": a.provider, "order": a.order, "seed": a.seed}
    head = report.envelope(PROG, argv, settings)
    result = {**head, **run(a, batches)}
    busy = report.busy_note(head["machine"], a.threads)
    if busy:
        result["notes"].append(busy)
    start_load = result["machine"].get("loadavg_1m")
    result["machine"] = {**report.machine(), "loadavg_1m_start": start_load}  # now with the libraries loaded
    report.emit(result, print_report, a.json, a.png, plot)
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
