"""INT8 Q/DQ ONNX for TensorRT and for CPUs, checked for accuracy before it is handed out.

``python -m calibration.quantize --onnx detect.onnx --data D --target trt|cpu|trt,cpu``

Calibrates on faces preprocessed exactly as the runtime does (``training.calibration_set``), widens
every activation range to cover a few real faces as well (``--anchor``, default 64 of the bundled
pool's training people: a calibration set narrower than what cameras show, such as the grey
synthetic faces, would otherwise clip colour faces) and then by ``--headroom`` (×2) for faces
unlike both, quantizes
with ONNX Runtime's static quantizer for the target (``calibration.qdq``), optionally keeps the
most sensitive layers in float (``--keep-float first,head`` or ``auto`` from a per-layer
sensitivity analysis) and the layers before a cut (``--cpu-plan``: measured on this CPU;
``--trt-plan``: chosen by accuracy), then evaluates every artifact against fp32 on a held-out labelled set and
fails (exit 1, numbers in the message) when an artifact's AUC drops by more than
``--max-auc-drop`` or its probabilities move by more than ``--max-dprob`` on some face. Writes
``detect.int8.onnx`` (trt), ``detect.int8-cpu.onnx`` (cpu), ``detect.fp16.onnx`` (``--fp16``) and
``detect.quant.json`` (the report) beside the input.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime import cpu
from runtime.errors import EXIT_USAGE, Parser, UserError, missing_dependency, run_cli

PROG = "calibration.quantize"
SUFFIX = {"trt": ".int8.onnx", "cpu": ".int8-cpu.onnx", "fp16": ".fp16.onnx", "report": ".quant.json"}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", required=True, type=Path, help="fp32 ONNX from python -m export.onnx")
    p.add_argument("--data", required=True,
                   help="calibration faces: crops folder (real/, fake/ or any images), CSV manifest, "
                        "videos folder or file, or a generated set: 'pool' (the bundled real-face pool's "
                        "training people; what `make bench` uses for a trained model) or 'synthetic' "
                        "(drawn faces: fine for speed, too far from real faces to hold a trained model's "
                        "scores within the bounds)")
    p.add_argument("--anchor", default="pool", metavar="SPEC|none",
                   help="real faces every activation range also covers, whatever --data is (default 'pool': "
                        "--anchor-size faces of the bundled real-face pool's training people), so a calibration set "
                        "narrower than what cameras show (grey faces, one light, one camera) cannot clip a face "
                        "another camera shows; any data spec, or 'none' for --data's ranges alone")
    p.add_argument("--anchor-size", type=int, default=64, metavar="N", help="faces read from --anchor (default 64)")
    p.add_argument("--headroom", type=float, default=2.0, metavar="X",
                   help="every activation range (but the logit's and bounded ops') scaled by X after calibration, "
                        "so faces unlike the calibration ones (studio photos, another camera) are not clipped "
                        "(default 2: one bit of the 8; 1: the ranges as calibrated)")
    p.add_argument("--target", default="trt", help="trt (TensorRT Q/DQ), cpu (ONNX Runtime CPU) or trt,cpu")
    p.add_argument("--method", choices=("mse", "entropy", "percentile", "minmax"), default="mse",
                   help="activation range calibration: mse (default: the clip with the least squared error per "
                        "tensor), entropy (TensorRT's KL), percentile, minmax")
    p.add_argument("--percentile", type=float, default=99.99, help="for --method percentile")
    p.add_argument("--calib-size", type=int, default=256, help="calibration faces (balanced real/fake)")
    p.add_argument("--batch-size", type=int, default=16, help="calibration batch")
    p.add_argument("--keep-float", default="", metavar="LIST",
                   help="layers to leave in float: first, head, auto (the most sensitive) and/or node names")
    p.add_argument("--auto-keep", type=int, default=2, metavar="N", help="layers --keep-float auto keeps (2)")
    p.add_argument("--sensitivity", action="store_true", help="print the per-layer sensitivity table")
    p.add_argument("--sensitivity-samples", type=int, default=64, metavar="N",
                   help="calibration faces the per-layer sensitivity is measured on (default 64)")
    p.add_argument("--reduce-range", choices=("auto", "on", "off"), default="auto",
                   help="cpu target: 7-bit weights; auto = on unless this CPU has VNNI")
    p.add_argument("--cpu-plan", default="auto", metavar="auto|all|TENSOR",
                   help="cpu target: which layers run in int8. auto (default): measure up to --plan-candidates "
                        "plans on this CPU (layers before a cut stay float) and keep the fastest within "
                        "--max-dprob/2 of fp32 on the calibration faces; all: every layer that can; TENSOR: "
                        "float before that tensor")
    p.add_argument("--trt-plan", default="auto", metavar="auto|all|TENSOR",
                   help="trt target: which layers are int8. auto (default): of the --plan-candidates cuts, the "
                        "earliest whose max |Δprob| on the calibration faces is within --max-dprob/4 (chosen by "
                        "accuracy: TensorRT's speed is not measured here); all: every layer; TENSOR: float before it")
    p.add_argument("--plan-candidates", type=int, default=8, metavar="N", help="plans --cpu-plan auto measures (8)")
    p.add_argument("--plan-rounds", type=int, default=20, metavar="N",
                   help="interleaved timing rounds per plan and batch (20)")
    p.add_argument("--max-dprob", type=float, default=0.05,
                   help="agreement bound with fp32 (max |Δprob|): --cpu-plan auto keeps plans within half of it on "
                        "the calibration faces, and an artifact above it on the held-out set fails the check as one "
                        "over --max-auc-drop does (0.05)")
    p.add_argument("--cpu-quantizer", choices=("jrc", "ort"), default="jrc",
                   help="cpu target: this project's graph (jrc, default) or ONNX Runtime's generic quantize_static "
                        "(ort, for comparison)")
    p.add_argument("--fp16", action="store_true", help="also write the FP16 ONNX (fp32 I/O) and report it")
    p.add_argument("--eval-data", default="synthetic",
                   help="held-out labelled set for the report (default: the synthetic validation faces)")
    p.add_argument("--eval-size", type=int, default=200, help="samples from --eval-data (default 200)")
    p.add_argument("--max-auc-drop", type=float, default=0.005,
                   help="fail when AUC drops more (default 0.005); --cpu-plan auto keeps plans within half of it on "
                        "labelled calibration faces")
    p.add_argument("--no-speed", action="store_true", help="skip the int8-cpu vs fp32 timing")
    p.add_argument("--speed-rounds", type=int, default=30, help="interleaved timing rounds (default 30)")
    p.add_argument("--out", type=Path, help="output file (one target only)")
    p.add_argument("--out-dir", type=Path, help="output folder (default: beside --onnx)")
    p.add_argument("--report", type=Path, help="report JSON (default: <stem>.quant.json)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration and evaluation samples (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _targets(text: str) -> list[str]:
    from calibration.qdq import TARGETS

    items = ["trt", "cpu"] if text == "both" else [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in TARGETS]
    if bad or not items:
        raise UserError(f"--target {text!r}: expected trt, cpu, trt,cpu or both", EXIT_USAGE)
    return list(dict.fromkeys(items))


def _outputs(a: argparse.Namespace, targets: list[str]) -> dict[str, Path]:
    """Every output path; the ones this run writes are checked (calibration.outputs) before any face is read:
    none is an input or another output, each can be written, and replacing an earlier one is said."""
    from calibration.outputs import check_outputs

    stem = a.onnx.name[:-len(".onnx")] if a.onnx.name.endswith(".onnx") else a.onnx.stem
    folder = a.out_dir or a.onnx.parent
    outs = {k: folder / f"{stem}{s}" for k, s in SUFFIX.items()}
    if a.out:
        if len(targets) != 1:
            raise UserError("--out names one file but --target has two; use --out-dir instead", EXIT_USAGE)
        outs[targets[0]] = a.out
    if a.report:
        outs["report"] = a.report
    default = "--out-dir" if a.out_dir else "output"
    flag = {k: "--out" if a.out and k == targets[0] else "--report" if a.report and k == "report" else default
            for k in outs}
    written = [*targets, *(["fp16"] if a.fp16 else []), "report"]
    inputs = [("--onnx", a.onnx), ("--data", a.data), ("--anchor", a.anchor), ("--eval-data", a.eval_data)]
    a.say_replacing = check_outputs(PROG, [(flag[k], outs[k]) for k in written], inputs, [outs[t] for t in targets],
                                    say=False)  # said once the inputs are read: a bad --data is the only line
    return outs


def _check_args(a: argparse.Namespace) -> None:
    for name, v, low in (("--calib-size", a.calib_size, 1), ("--batch-size", a.batch_size, 1),
                         ("--eval-size", a.eval_size, 2), ("--auto-keep", a.auto_keep, 0),
                         ("--sensitivity-samples", a.sensitivity_samples, 1), ("--speed-rounds", a.speed_rounds, 1),
                         ("--plan-candidates", a.plan_candidates, 1), ("--plan-rounds", a.plan_rounds, 1),
                         ("--anchor-size", a.anchor_size, 1)):
        if v < low:
            raise UserError(f"{name} {v}: must be at least {low}", EXIT_USAGE)
    if not 0 <= a.max_auc_drop <= 1:
        raise UserError(f"--max-auc-drop {a.max_auc_drop}: expected an AUC difference in 0..1", EXIT_USAGE)
    if not 0 < a.max_dprob <= 1:
        raise UserError(f"--max-dprob {a.max_dprob}: expected a probability difference in (0, 1]", EXIT_USAGE)
    if not 1 <= a.headroom <= 16:
        raise UserError(f"--headroom {a.headroom}: expected a factor from 1 (the ranges as calibrated) to 16",
                        EXIT_USAGE)
    if not 50 < a.percentile <= 100:
        raise UserError(f"--percentile {a.percentile}: expected a value in (50, 100]", EXIT_USAGE)


def _sensitivity(prep: Path, calib: Any, target: str, tensor_ranges: dict[str, Any], a: argparse.Namespace,
                 tmp: Path) -> list[Any]:
    """Quantize everything once, then measure each weighted layer quantized alone."""
    import onnx
    from tqdm import tqdm

    from calibration import qdq, sensitivity

    full = tmp / "all-int8.onnx"
    qdq.quantize(prep, full, calib, target, tensor_ranges, (), _vnni(a))
    x = calib.inputs()[: a.sensitivity_samples]

    def bar(names: Any) -> Any:
        return tqdm(names, desc="sensitivity", unit="layer", leave=False, disable=a.quiet)

    rows = sensitivity.analyse(onnx.load(str(prep)), onnx.load(str(full)), x, calib.meta.input_name, bar)
    print(f"per-layer sensitivity ({target}, each layer quantized alone, {len(x)} calibration faces):")
    print(sensitivity.format_rows(rows))
    return rows


def _anchor_set(a: argparse.Namespace, meta: Any) -> Any:
    """The --anchor faces (None for 'none'), read before any long work so a bad spec fails at once."""
    from training.calibration_set import load

    if a.anchor == "none":
        return None
    try:
        return load(a.anchor, meta, a.anchor_size, seed=a.seed, progress=False)
    except UserError as e:
        raise UserError(f"--anchor: {e}") from None


def _anchored(a: argparse.Namespace, prep: Path, full: list[str], anchor: Any, tensor_ranges: dict[str, Any],
              done: _Quantized) -> dict[str, Any]:
    """``tensor_ranges`` widened to cover the anchor faces' ranges (same method), recorded in ``done``."""
    from calibration import ranges

    stats = ranges.collect(prep, anchor, a.batch_size)
    covered, widened = ranges.cover(tensor_ranges, ranges.ranges(stats, a.method, a.percentile, full))
    done.anchor = {"source": anchor.source, "widened": widened, "tensors": len(covered), **anchor.cache_key()}
    print(f"anchor: every range also covers {len(anchor)} faces of {anchor.source} ({widened} of {len(covered)} "
          "tensors widened; --anchor none for the calibration faces' ranges alone)")
    return covered


def _cut_at(flag: str, cut: str, prepped: Any, always: list[str]) -> list[str]:
    """The float layers of a plan cut at the tensor ``cut`` (named by ``flag``), ``always`` among them."""
    from calibration import cpu_plan

    try:
        return cpu_plan.keep_for(prepped, cut, always)
    except KeyError:
        cuts = ", ".join(t for _, t in cpu_plan.cut_points(prepped)[:6])
        raise UserError(f"{flag} {cut!r}: no such tensor in the preprocessed graph; "
                        f"use auto, all or a tensor such as {cuts}") from None


def _trt_plan(a: argparse.Namespace, prep: Path, prepped: Any, tensor_ranges: dict[str, Any], calib: Any,
              anchor: Any, done: _Quantized, tmp: Path) -> list[str]:
    """The float layers of the trt artifact: the user's --keep-float, the classifier head, and the
    layers before the cut --trt-plan names or chooses by accuracy (calibration.trt_plan)."""
    import numpy as np

    from calibration import cpu_plan, qdq, trt_plan

    always = list(dict.fromkeys(done.keep + cpu_plan.head_layers(prepped)))
    if a.trt_plan == "all":
        done.trt_plan = {"mode": "all"}
        return done.keep
    if a.trt_plan != "auto":
        done.trt_plan = {"mode": "cut", "cut": a.trt_plan}
        return _cut_at("--trt-plan", a.trt_plan, prepped, always)
    cands = cpu_plan.candidates(prepped, a.plan_candidates, always)

    def build(c: Any) -> Path:
        out = tmp / "trt-plan.onnx"
        qdq.quantize(prep, out, calib, "trt", tensor_ranges, c.float_nodes, _vnni(a))
        return out

    bound = a.max_dprob / 4
    progress = None if a.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    x = calib.inputs()[:128]
    faces = f"{len(x)} calibration"
    if anchor is not None:  # real faces beside the calibration ones, which may be far from real
        x = np.concatenate([x, anchor.inputs()])
        faces += f" and {len(anchor)} anchor"
    best = trt_plan.choose(cands, build, prep, x, bound, progress)
    print(f"trt plan (chosen by accuracy: the earliest cut within max |Δp| {bound:g} of fp32 on {faces} faces; "
          "TensorRT's speed is not measured here):")
    print(cpu_plan.format_candidates(cands, best))
    done.trt_plan = {"mode": "auto", "cut": best.cut, "candidates": [c.to_dict() for c in cands]}
    return best.float_nodes


def _cpu_plan(a: argparse.Namespace, prepped: Any, tensor_ranges: dict[str, Any], calib: Any,
              done: _Quantized) -> list[str]:
    """The float layers of the cpu artifact: the user's --keep-float, the classifier head, and
    the layers before the cut --cpu-plan names or measures (calibration.cpu_plan)."""
    from calibration import cpu_plan, qdq

    always = list(dict.fromkeys(done.keep + cpu_plan.head_layers(prepped)))
    if a.cpu_plan == "all":
        done.plan = {"mode": "all"}
        return always
    if a.cpu_plan != "auto":
        done.plan = {"mode": "cut", "cut": a.cpu_plan}
        return _cut_at("--cpu-plan", a.cpu_plan, prepped, always)
    cands = cpu_plan.candidates(prepped, a.plan_candidates, always)
    x = calib.inputs()[:128]
    check, check_source = _ranking_faces(a, calib)
    vnni = _vnni(a)

    def build(c: Any) -> bytes:
        return qdq.cpu_model(prepped, tensor_ranges, c.float_nodes, vnni)[0].SerializeToString()

    progress = None if a.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    best, _ = cpu_plan.choose(cands, build, prepped.SerializeToString(), x, calib.meta.input_name,
                              calib.meta.input_size, rounds=a.plan_rounds, threads=1, max_dprob=a.max_dprob / 2,
                              max_auc_drop=a.max_auc_drop / 2, check=check, progress=progress)
    print(f"cpu plan (measured on this CPU, 1 thread; speed = fp32 time / int8 time, quick quartile of "
          f"{a.plan_rounds} interleaved rounds; max |Δp| against fp32 on {len(x)} calibration faces, bound "
          f"{a.max_dprob / 2:g}; ΔAUC on {len(check[1])} {check_source}, bound {a.max_auc_drop / 2:g}):")
    print(cpu_plan.format_candidates(cands, best))
    done.plan = {"mode": "auto", "cut": best.cut, "candidates": [c.to_dict() for c in cands]}
    return best.float_nodes


def _ranking_faces(a: argparse.Namespace, calib: Any, n: int = 256) -> tuple[tuple[Any, Any], str]:
    """Labelled faces the cpu plan checks the ranking on: the calibration faces when they carry
    both labels, else the synthetic calibration-split faces (never the held-out ones)."""
    import numpy as np

    from training.calibration_set import load

    if calib.labels is not None and len(np.unique(calib.labels[:n])) == 2:
        return (calib.inputs()[:n], calib.labels[:n]), "labelled calibration faces"
    faces = load("synthetic", calib.meta, n, seed=a.seed, progress=False)
    return (faces.inputs(), faces.labels), "synthetic calibration-split faces (the calibration set has no labels)"


def _bar(batches: Any, total: int) -> Any:
    from tqdm import tqdm

    return tqdm(batches, total=total, desc="calibrating", unit="batch", leave=False)


def _vnni(a: argparse.Namespace) -> bool | None:
    return {"auto": None, "on": False, "off": True}[a.reduce_range]  # reduce_range = not vnni


def _reject(path: Path) -> Path:
    """Move an artifact that failed the accuracy check out of the way of export.engine."""
    dest = path.with_name(path.name[:-len(".onnx")] + ".rejected.onnx")
    path.replace(dest)
    return dest


@dataclass
class _Quantized:
    """What the quantization step made: artifact name ("int8-trt", "fp16", ...) -> file, and why."""

    written: dict[str, Path] = field(default_factory=dict)
    keep: list[str] = field(default_factory=list)
    sensitivity: list[Any] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)  # the cpu target's measured plans and the choice
    trt_plan: dict[str, Any] = field(default_factory=dict)  # the trt target's plans and the choice
    anchor: dict[str, Any] = field(default_factory=dict)  # the faces every range also covers (--anchor)


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str], dict[str, Path]]:
    """Arguments, targets and output paths, all checked before anything heavy is loaded."""
    a = build_parser().parse_args(argv)
    _check_args(a)
    targets = _targets(a.target)
    outs = _outputs(a, targets)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise missing_dependency(e.name or "onnx", "train") from None
    return a, targets, outs


def _load(a: argparse.Namespace) -> tuple[Any, Any]:
    """The fp32 model's metadata and the calibration faces, preprocessed as the runtime does."""
    from export.onnx_io import file_meta
    from training.calibration_set import load

    meta = file_meta(a.onnx)
    if meta.precision != "fp32":
        raise UserError(f"{a.onnx}: metadata says precision {meta.precision}; quantize the fp32 ONNX from export.onnx")
    calib = load(a.data, meta, a.calib_size, seed=a.seed, progress=not a.quiet)
    fakes = "unlabelled" if calib.labels is None else f"{int(calib.labels.sum())} fake"
    print(f"calibration: {len(calib)} faces from {calib.source} ({fakes}), {a.method}, data sha256 "
          f"{calib.data_sha256[:12]}…" + (f", {calib.skipped} skipped" if calib.skipped else ""))
    return meta, calib


def _calibrate_and_quantize(a: argparse.Namespace, targets: list[str], outs: dict[str, Path], meta: Any,
                            calib: Any, anchor: Any) -> _Quantized:
    """Activation ranges, the layers kept in float, then one INT8 artifact per target (and FP16)."""
    import onnx

    from calibration import qdq, ranges

    done = _Quantized()
    items = [s.strip() for s in a.keep_float.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="jrc-quant-") as tmpdir:
        tmp = Path(tmpdir)
        prep = qdq.preprocess(a.onnx, tmp / "prep.onnx")
        prepped = onnx.load(str(prep))
        stats = ranges.collect(prep, calib, a.batch_size, None if a.quiet else _bar)
        full = ranges.full_range_tensors(prepped)
        tensor_ranges = ranges.ranges(stats, a.method, a.percentile, full)
        if anchor is not None:
            tensor_ranges = _anchored(a, prep, full, anchor, tensor_ranges, done)
        if a.headroom != 1:
            tensor_ranges = ranges.widen(tensor_ranges, a.headroom, full)
        done.keep = qdq.resolve_keep_float(prepped, [s for s in items if s != "auto"], str(a.onnx))
        if a.sensitivity or "auto" in items:
            done.sensitivity = _sensitivity(prep, calib, targets[0], tensor_ranges, a, tmp)
            if "auto" in items:
                done.keep = list(dict.fromkeys(done.keep + [r.node for r in done.sensitivity[: a.auto_keep]]))
        if done.keep:
            print(f"kept in float: {', '.join(done.keep)}")
        for t in targets:
            outs[t].parent.mkdir(parents=True, exist_ok=True)
            keep = done.keep
            if t == "cpu" and a.cpu_quantizer == "jrc":
                keep = _cpu_plan(a, prepped, tensor_ranges, calib, done)
            elif t == "trt":
                keep = _trt_plan(a, prep, prepped, tensor_ranges, calib, anchor, done, tmp)
            info = qdq.quantize(prep, outs[t], calib, t, tensor_ranges, keep, _vnni(a),
                                generic=t == "cpu" and a.cpu_quantizer == "ort")
            if t == "cpu" and done.plan:
                info["plan"] = done.plan
            if t == "trt" and done.trt_plan:
                info["plan"] = done.trt_plan
            if done.anchor:
                info["anchor"] = {k: done.anchor[k] for k in ("source", "samples", "widened")}
            info.update(method=a.method, headroom=a.headroom,
                        **({"percentile": a.percentile} if a.method == "percentile" else {}))
            if done.sensitivity:
                info["sensitivity"] = [r.to_dict() for r in done.sensitivity[:10]]
            qdq.stamp(outs[t], meta, a.onnx, info)
            done.written[f"int8-{t}"] = outs[t]
            print(f"wrote {outs[t]} (int8 Q/DQ for {t}: {info['activation_type']} activations, int8 per-channel "
                  f"weights{', reduce_range' if info['reduce_range'] else ''})")
    if a.fp16:
        from export.fp16 import convert_file

        done.written["fp16"] = Path(convert_file(a.onnx, outs["fp16"]))
        print(f"wrote {done.written['fp16']} (fp16, fp32 inputs/outputs)")
    return done


def _evaluate(a: argparse.Namespace, targets: list[str], outs: dict[str, Path], meta: Any,
              done: _Quantized) -> tuple[Any, list[Any], Any]:
    """Every artifact against fp32 on the held-out set; int8-cpu vs fp32 timing when asked for."""
    from calibration import report, speed
    from training.calibration_set import load

    evalset = load(a.eval_data, meta, a.eval_size, seed=a.seed, held_out=True, need_labels=True,
                   progress=not a.quiet)
    order = [k for k in ("fp16", "int8-trt", "int8-cpu") if k in done.written]
    rows = report.evaluate([("fp32", a.onnx)] + [(k, done.written[k]) for k in order], evalset)
    print(f"accuracy on {evalset.source} ({'held-out ' if evalset.source.startswith('synthetic') else ''}"
          f"{len(evalset)} faces, {int(evalset.labels.sum())} fake; threshold {meta.threshold}):")
    print(report.format_table(rows))
    timing = None
    if "cpu" in targets and not a.no_speed:
        timing = speed.compare([("fp32", a.onnx), ("int8-cpu", outs["cpu"])], meta.input_name, meta.input_size,
                               rounds=a.speed_rounds)
        print(speed.format_speed(timing))
        print(speed.verdict(timing, "int8-cpu"))
    return evalset, rows, timing


def _report(a: argparse.Namespace, targets: list[str], outs: dict[str, Path], calib: Any, done: _Quantized,
            evalset: Any, rows: list[Any], timing: Any) -> None:
    """Move failed artifacts aside, write the report JSON, and fail when accuracy dropped too much."""
    from calibration import report

    bad = report.violations(rows, a.max_auc_drop, a.max_dprob)
    rejected = {r.name: str(_reject(Path(r.path))) for r in bad}
    payload = {"source": str(a.onnx), "targets": targets, "method": a.method, "headroom": a.headroom,
               "keep_float": done.keep, "calibration": {"source": calib.source, **calib.cache_key()},
               "anchor": done.anchor or None,
               "eval": {"source": evalset.source, **evalset.cache_key()},
               "rows": [r.to_dict() for r in rows], "max_auc_drop": a.max_auc_drop, "passed": not bad,
               "rejected": rejected, "speed": timing, "sensitivity": [r.to_dict() for r in done.sensitivity],
               "cpu_plan": done.plan, "trt_plan": done.trt_plan, "max_dprob": a.max_dprob,
               "machine": cpu.describe()}  # the CPU that timed the cpu plan and chose the weight bits
    print(f"report: {report.write_json(outs['report'], payload)}")
    if bad:
        moved = ", ".join(f"{Path(p).name}" for p in rejected.values())
        raise UserError(report.failure_message(bad, rows, a.max_auc_drop, a.max_dprob) + f" (moved aside as {moved})")


def main(argv: list[str] | None = None) -> int:
    a, targets, outs = _parse(argv)
    meta, calib = _load(a)
    anchor = _anchor_set(a, meta)
    a.say_replacing()
    done = _calibrate_and_quantize(a, targets, outs, meta, calib, anchor)
    evalset, rows, timing = _evaluate(a, targets, outs, meta, done)
    _report(a, targets, outs, calib, done, evalset, rows, timing)
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
