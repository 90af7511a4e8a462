"""``python -m benchmarks.hswish_bound --fp32 A.onnx --int8 A.int8-cpu.onnx``: the ceiling of an INT8
model with hard-swish on ONNX Runtime's CPU kernels.

ONNX Runtime has no int8 hard-swish. :mod:`calibration.cpu_graph` writes each x·hardsigmoid(x) as
two integer passes over the tensor: the gate (x re-quantized by a QLinearAdd of zero, whose
saturation clips it) and the product (QLinearMul, which has only an SSE2 kernel on x86). This
benchmark asks what an int8 hard-swish kernel could give at best. It takes the INT8 model as ONNX
Runtime fuses it (its QDQ transformer, saved at the extended level, so the CPU-specific layout
passes still run when it is loaded), finds every hard-swish there (a QLinearMul of x and a
QLinearAdd of x) and writes two altered copies:

- ``one pass``: the product removed, its readers take the gate: one integer pass per hard-swish,
  what a vectorised lookup-table kernel would cost;
- ``free``: both removed, its readers take x: hard-swish costing nothing.

The altered models compute wrong scores; only their time means anything. fp32, the INT8 model and
both copies are timed interleaved (randomised order every round) on the same input, and each is
reported as fp32's time over its own: the median of per-round ratios with a 95 % interval. If the
``free`` ratio is under a goal, no hard-swish kernel reaches it on this CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report, stats
from runtime.errors import Parser, UserError, run_cli

PROG = "benchmarks.hswish_bound"
VARIANTS = ("fp32", "int8", "int8, one-pass hard-swish", "int8, free hard-swish")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--fp32", required=True, metavar="PATH", help="the float model (.onnx)")
    p.add_argument("--int8", required=True, metavar="PATH",
                   help="its INT8 model for the CPU (.int8-cpu.onnx from calibration.quantize --target cpu)")
    p.add_argument("--batch", default="1,8", help="batch sizes, comma-separated (default 1,8)")
    p.add_argument("--runs", type=int, default=100, help="timed rounds per batch (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed warm-up rounds first (default 10)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="intra-op threads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="input data and shuffling seed")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def fused(path: str, threads: int) -> Any:
    """The INT8 model with ONNX Runtime's QDQ fusions applied (no CPU-specific layout passes)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.log_severity_level = 3  # its notes on unused initializers are not the user's business
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.intra_op_num_threads = threads
        so.optimized_model_filepath = str(Path(tmp) / "fused.onnx")
        ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        return onnx.load(so.optimized_model_filepath)


def hard_swishes(model: Any) -> list[tuple[Any, Any]]:
    """(product, gate) of every hard-swish in a fused graph: QLinearMul(x, QLinearAdd(x, …))."""
    producer = {out: n for n in model.graph.node for out in n.output}
    found = []
    for n in model.graph.node:
        if n.op_type != "QLinearMul":
            continue
        for x, g in ((n.input[0], n.input[3]), (n.input[3], n.input[0])):
            gate = producer.get(g)
            if gate is not None and gate.op_type == "QLinearAdd" and x in (gate.input[0], gate.input[3]):
                found.append((n, gate))
                break
    return found


def without(model: Any, drop_gate: bool) -> bytes:
    """A copy with every hard-swish's product removed (and its gate with ``drop_gate``)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    pairs = hard_swishes(m)
    gate_of = {mul.name: gate for mul, gate in pairs}
    drop, rename = set(), {}
    for mul, gate in pairs:
        x = next(i for i in (mul.input[0], mul.input[3]) if i != gate.output[0])
        rename[mul.output[0]] = x if drop_gate else gate.output[0]
        drop.add(mul.name)
        if drop_gate:
            drop.add(gate_of[mul.name].name)
    kept = [n for n in m.graph.node if n.name not in drop]
    for n in kept:
        for i, name in enumerate(n.input):
            while name in rename:
                name = rename[name]
            n.input[i] = name
    graph_outputs = {o.name for o in m.graph.output}
    if graph_outputs & set(rename):
        raise UserError("--int8: a hard-swish is the graph's output; nothing to time without it")
    del m.graph.node[:]
    m.graph.node.extend(kept)
    return m.SerializeToString()


def _loaded(flag: str, path: str, load: Any) -> Any:
    """``load()``, with ONNX Runtime's refusal of a user's file turned into a one-line error."""
    try:
        return load()
    except UserError:
        raise
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf classes
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{flag} {path}: ONNX Runtime cannot load it ({first}); give an .onnx model "
                        "this project exported or quantized") from None


def sessions(a: argparse.Namespace) -> tuple[dict[str, Any], int]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = a.threads
    model = _loaded("--int8", a.int8, lambda: fused(a.int8, a.threads))
    count = len(hard_swishes(model))
    if not count:
        raise UserError(f"--int8 {a.int8}: no hard-swish found (QLinearMul of x and its gate); "
                        "give the INT8 model of a network with hard-swish (edge style v3)")
    sources = {"fp32": a.fp32, "int8": a.int8, VARIANTS[2]: without(model, drop_gate=False),
               VARIANTS[3]: without(model, drop_gate=True)}
    made = {k: _loaded("--fp32" if k == "fp32" else "--int8", a.fp32 if k == "fp32" else a.int8,
                       lambda src=src: ort.InferenceSession(src, so, providers=["CPUExecutionProvider"]))
            for k, src in sources.items()}
    inputs = {k: [(i.name, i.shape) for i in s.get_inputs()] for k, s in made.items()}
    if inputs["fp32"] != inputs["int8"]:
        raise UserError(f"--fp32 {a.fp32} and --int8 {a.int8}: their inputs differ ({inputs['fp32']} and "
                        f"{inputs['int8']}); give a float model and its own INT8 model")
    return made, count


def run(a: argparse.Namespace, batches: list[int]) -> dict[str, Any]:
    made, count = sessions(a)
    name = made["fp32"].get_inputs()[0].name
    shape = [d if isinstance(d, int) else 1 for d in made["fp32"].get_inputs()[0].shape]
    progress = report.Progress(not a.quiet)
    rows = []
    for b in batches:
        x = np.random.default_rng(a.seed).random([b] + shape[1:], dtype=np.float32)
        tasks = {k: (lambda s=s, x=x: s.run(None, {name: x})) for k, s in made.items()}
        times = stats.run_interleaved(tasks, a.runs, a.warmup, "shuffle", a.seed + b,
                                      progress=lambda i, n, b=b: progress(f"batch {b}: round {i}/{n}"))
        for k in made:
            rows.append({"batch": b, "model": k, "p50_ms": float(np.median(times[k])) * 1e3,
                         "over_fp32": stats.ratio(times["fp32"], times[k]).to_dict()})
    progress.done()
    return {"hard_swish": count, "rows": rows}


def print_report(result: dict[str, Any]) -> None:
    s = result["settings"]
    print(f"machine: {report.describe_cpu(result['machine'])}; threads={s['threads']}, "
          f"{s['runs']} interleaved rounds per batch")
    print(f"{result['hard_swish']} hard-swish in the INT8 model; the altered copies' scores are wrong, "
          "only their time counts")
    rows = []
    for r in result["rows"]:
        o = r["over_fp32"]
        rows.append({**r, "speed": f"{o['median']:.2f}× [{o['low']:.2f}, {o['high']:.2f}]"})
    print(report.table(rows, [("batch", "batch"), ("model", "model"), ("p50_ms", "p50 ms"),
                                        ("speed", "fp32 time / its time")], digits=3))


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    batches = report.parse_batches(a.batch)
    report.check_positive(runs=a.runs, threads=a.threads)
    if a.warmup < 0:
        raise UserError(f"--warmup {a.warmup}: must be 0 or more")
    from runtime.onnx_proto import check_external_data

    for flag, path in (("--fp32", a.fp32), ("--int8", a.int8)):
        report.check_files([path], flag)
        check_external_data(path)  # the one check before ONNX Runtime reads a model
    report.check_writable(a.json, "--json", [("--fp32", a.fp32), ("--int8", a.int8)])
    settings = {"batches": batches, "runs": a.runs, "warmup": a.warmup, "threads": a.threads, "seed": a.seed,
                "fp32": a.fp32, "int8": a.int8}
    result = {**report.envelope(PROG, argv, settings), **run(a, batches)}
    report.emit(result, print_report, a.json, None, lambda r, p: None)
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
