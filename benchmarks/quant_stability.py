"""``python -m benchmarks.quant_stability --onnx M``: is INT8 stable whichever faces calibrate it?

For every model, calibration set and range method, runs the same ``calibration.quantize`` a user
runs (its plan search included) and reads its report: ΔAUC and max |Δprob| of the INT8 artifact
against fp32 on the held-out set (``--eval-data``, default the synthetic validation faces), with
the bound the project holds INT8 to (|ΔAUC| ≤ 0.005, max |Δprob| ≤ 0.05).

Calibration sets: ``synthetic`` (the default set), ``photos`` (real colour face photos shipped
with matplotlib and scikit-image, varied as a camera sees them: ``benchmarks.photo_faces``),
``mix`` (half each), or any data spec (a crops folder, a manifest, videos). ``--anchor pool,none``
and ``--headroom 2,1`` compare calibration.quantize's defaults (every range also covers 64 faces of
the bundled real-face pool's training people, then doubled) with the calibration faces' ranges
alone. Beside the held-out set, each artifact's max |Δprob| on varied crops of the bundled photos
(real faces unlike the pool's) is a second check of clipping. One table, one JSON (``--json``); the
artifacts and each run's report are kept with ``--out-dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import report
from runtime.errors import Parser, UserError, run_cli

PROG = "benchmarks.quant_stability"
BUILTIN = ("synthetic", "photos", "mix")
MAX_AUC_DROP = 0.005
MAX_DPROB = 0.05
SUFFIX = {"cpu": ".int8-cpu.onnx", "trt": ".int8.onnx"}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--onnx", action="append", required=True, metavar="PATH", help="fp32 detect ONNX (repeatable)")
    p.add_argument("--calib", default="synthetic,photos,mix",
                   help="calibration sets, comma-separated: synthetic, photos, mix or data specs (default all three)")
    p.add_argument("--method", default="mse", help="range methods to compare, comma-separated (default mse)")
    p.add_argument("--anchor", default="pool",
                   help="calibration.quantize's --anchor values to compare, comma-separated: the real faces every "
                        "range also covers ('pool', the default, as calibration.quantize runs; 'none': the "
                        "calibration faces alone; or a data spec)")
    p.add_argument("--headroom", default="2",
                   help="calibration.quantize's --headroom values to compare, comma-separated (default 2, as it runs)")
    p.add_argument("--agree-photos", type=int, default=64, metavar="N",
                   help="also max |Δprob| against fp32 on N varied crops of each bundled photo, a second real-face "
                        "set unlike the pool (seed 7; the photos calibration set uses seed 0); 0: skip (default 64)")
    p.add_argument("--target", default="cpu", help="cpu, trt or cpu,trt (default cpu)")
    p.add_argument("--cpu-plan", default="auto", help="passed to calibration.quantize (default auto)")
    p.add_argument("--calib-size", type=int, default=256, help="calibration faces per set (default 256)")
    p.add_argument("--photos", type=int, default=64, metavar="N", help="variants of each photo for photos/mix (64)")
    p.add_argument("--eval-data", default="synthetic", help="held-out labelled set (default synthetic)")
    p.add_argument("--eval-size", type=int, default=200, help="held-out faces the table scores (default 200)")
    p.add_argument("--out-dir", type=Path, help="keep artifacts and reports here (default: a temporary folder)")
    p.add_argument("--json", metavar="FILE", help="write the table as JSON")
    p.add_argument("--verbose", action="store_true", help="show calibration.quantize's own output")
    return p


def _mix_folder(folder: Path, photos: Path, meta: Any, n: int) -> Path:
    """Photo crops plus as many synthetic calibration crops, in one unlabelled folder."""
    import shutil

    import cv2

    from training.calibration_set import load

    folder.mkdir(parents=True, exist_ok=True)
    for p in photos.glob("*.png"):
        shutil.copy(p, folder / p.name)
    synth = load("synthetic", meta, n, seed=1, progress=False)
    for i, crop in enumerate(synth.crops):
        cv2.imwrite(str(folder / f"synthetic_{i:03d}.png"), crop)
    return folder


def calibration_sets(names: list[str], meta: Any, work: Path, per_photo: int) -> dict[str, str]:
    """Name -> data spec; the built-in photos and mix sets are written under ``work``."""
    from benchmarks.photo_faces import write_folder

    out: dict[str, str] = {}
    photos: Path | None = None
    for name in names:
        if name in ("photos", "mix") and photos is None:
            photos = write_folder(work / "photos", per_photo, meta.input_size, meta.face_margin)
            if not any(photos.glob("*.png")):
                raise UserError("photos: the face detector found no face in the bundled photos")
        if name == "photos":
            out[name] = str(photos)
        elif name == "mix":
            out[name] = str(_mix_folder(work / "mix", photos, meta, len(list(photos.glob("*.png")))))
        else:
            out[name] = name
    return out


def run_one(onnx: str, spec: str, method: str, targets: str, a: argparse.Namespace, out_dir: Path,
            anchor: str = "pool", headroom: str = "2") -> dict[str, Any]:
    """One calibration.quantize run, with the project's bounds (its plan search holds to them); the
    rows of its report (one per INT8 artifact)."""
    from calibration import quantize

    out_dir.mkdir(parents=True, exist_ok=True)
    rep = out_dir / "quant.json"
    argv = ["--onnx", onnx, "--data", spec, "--target", targets, "--method", method, "--out-dir", str(out_dir),
            "--report", str(rep), "--max-auc-drop", str(MAX_AUC_DROP), "--max-dprob", str(MAX_DPROB),
            "--no-speed", "--quiet", "--eval-data", a.eval_data,
            "--eval-size", str(a.eval_size), "--calib-size", str(a.calib_size), "--cpu-plan", a.cpu_plan,
            "--anchor", anchor, "--headroom", headroom]
    sink = contextlib.nullcontext() if a.verbose else contextlib.redirect_stdout(io.StringIO())
    with sink:
        try:
            quantize.main(argv)
        except UserError:  # over the bound: the report is written all the same, and the table says so
            pass
    payload = json.loads(rep.read_text())
    rows = {r["name"]: r for r in payload["rows"]}
    plan = payload.get("cpu_plan") or {}
    return {"rows": rows, "plan": plan, "report": str(rep), "headroom": payload.get("headroom"),
            "trt_plan": payload.get("trt_plan") or {}, "rejected": payload.get("rejected") or {}}


class PhotoAgreement:
    """max |Δprob| of an artifact against the fp32 model on varied crops of the bundled photos: real
    faces unlike the pool's (sharp studio photos), so a second check of clipping, with no labels needed."""

    def __init__(self, onnx: str, meta: Any, per_photo: int) -> None:
        from benchmarks.photo_faces import photo_crops
        from calibration.report import predict
        from runtime.preprocess import to_input

        crops = [c for _, c in photo_crops(per_photo, meta.input_size, meta.face_margin, seed=7)]
        self.x = to_input(crops, meta)
        self.ref = predict(onnx, self.x)

    def __call__(self, artifact: str) -> float:
        import numpy as np

        from calibration.report import predict

        return round(float(np.max(np.abs(predict(artifact, self.x) - self.ref))), 6)


def _chosen_speed(plan: dict[str, Any]) -> dict[str, float]:
    """The speed-up over fp32 the plan search measured for the plan it chose (per batch)."""
    for c in plan.get("candidates", []):
        if c.get("cut") == plan.get("cut"):
            return dict(c.get("speedup", {}))
    return {}


def within(row: dict[str, Any]) -> bool:
    d, m = row.get("d_auc"), row.get("max_dprob")
    return d is not None and m is not None and abs(d) <= MAX_AUC_DROP and m <= MAX_DPROB


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    from export.onnx_io import file_meta

    for path in a.onnx:
        if not Path(path).is_file():
            raise UserError(f"--onnx {path}: file not found; export one with python -m export.onnx")
    report.check_writable(a.json, "--json", [("--onnx", p) for p in a.onnx])
    names = [s.strip() for s in a.calib.split(",") if s.strip()]
    methods = [m.strip() for m in a.method.split(",") if m.strip()]
    anchors = [x.strip() for x in a.anchor.split(",") if x.strip()]
    headrooms = [x.strip() for x in a.headroom.split(",") if x.strip()]
    if not names or not methods or not anchors or not headrooms:
        raise UserError(f"--calib {a.calib!r} / --method {a.method!r} / --anchor {a.anchor!r} / --headroom "
                        f"{a.headroom!r}: name at least one of each")
    result: dict[str, Any] = {**report.envelope(PROG, argv, {"calib": names, "methods": methods, "anchors": anchors,
                                                             "headrooms": headrooms, "agree_photos": a.agree_photos,
                                                             "target": a.target,
                                                             "eval": a.eval_data, "eval_size": a.eval_size}),
                              "bounds": {"max_auc_drop": MAX_AUC_DROP, "max_dprob": MAX_DPROB}, "rows": []}
    labels = report.artifact_labels(a.onnx)  # two detect.onnx files: their folders tell them apart
    with tempfile.TemporaryDirectory(prefix="jrc-stability-") as tmp:
        root = a.out_dir or Path(tmp)
        for onnx in a.onnx:
            meta = file_meta(onnx)
            model_dir = root / labels[onnx].removesuffix(".onnx").replace("/", "-")
            specs = calibration_sets(names, meta, model_dir / "data", a.photos)
            agree = PhotoAgreement(onnx, meta, a.agree_photos) if a.agree_photos else None
            for name, spec in specs.items():
                for method, anchor, hr in [(m, x, h) for m in methods for x in anchors for h in headrooms]:
                    print(f"{PROG}: {labels[onnx]}, calibrated on {name}, {method}, anchor {anchor}, headroom {hr} …",
                          file=sys.stderr, flush=True)
                    folder = model_dir / f"{name}-{method}-anchor-{Path(anchor).name}-headroom-{hr}"
                    got = run_one(onnx, spec, method, a.target, a, folder, anchor, hr)
                    for art, row in got["rows"].items():
                        if art == "fp32":
                            continue
                        result["rows"].append({"model": str(onnx), "label": labels[onnx], "calibration": name,
                                               "method": method, "anchor": anchor,
                                               "headroom": got["headroom"],
                                               # an artifact the gate refused was moved aside: measured there
                                               "photos_max_dprob": agree(got["rejected"].get(art, row["path"]))
                                               if agree else None,
                                               "artifact": art, "fp32_auc": got["rows"]["fp32"]["auc"],
                                               "d_auc": row["d_auc"], "max_dprob": row["max_dprob"],
                                               "mean_dprob": row["mean_dprob"], "flips": row["flips"],
                                               "samples": row["samples"],
                                               "cut": (got["trt_plan"] if art == "int8-trt" else got["plan"]).get("cut"),
                                               "speedup": _chosen_speed(got["plan"]) if art == "int8-cpu" else {},
                                               "within": within(row)})
    report.emit(result, print_table, a.json, None, lambda *_: None)
    return 0


def print_table(result: dict[str, Any]) -> None:
    cols = [("model", "model"), ("calibration", "calibrated on"), ("method", "method"), ("anchor", "anchor"),
            ("headroom", "headroom"),
            ("artifact", "artifact"),
            ("fp32_auc", "fp32 AUC"), ("d_auc", "ΔAUC"), ("max_dprob", "max|Δprob|"), ("mean_dprob", "mean|Δprob|"),
            ("flips", "flips"), ("photos", "photos max|Δp|"),
            ("cut", "int8 from"), ("speed", "speed b1/b8"), ("ok", "within")]
    rows = [{**r, "model": r.get("label") or Path(r["model"]).name, "ok": "yes" if r["within"] else "NO",
             "d_auc": _signed(r["d_auc"]), "cut": _short(r.get("cut")),
             "photos": "-" if r.get("photos_max_dprob") is None else f"{r['photos_max_dprob']:.4f}",
             "headroom": f"{r['headroom']:g}" if isinstance(r.get("headroom"), float) else "-",
             "speed": "/".join(f"{v:.2f}×" for v in r.get("speedup", {}).values()) or "-"} for r in result["rows"]]
    print(f"INT8 against fp32 on {result['settings']['eval']} (held out, {result['settings']['eval_size']} faces); "
          f"bounds: |ΔAUC| ≤ {MAX_AUC_DROP}, max |Δprob| ≤ {MAX_DPROB}")
    print(report.table(rows, cols, digits=4))


def _short(cut: Any) -> str:
    """The plan's cut tensor, shortened (``features/features.9/b3/block.3.0/Conv``)."""
    if not cut:
        return "-"
    return "/".join(str(cut).split("/")[-5:]).replace("/block/block.", "/b").replace("_output_0", "").lstrip("/")


def _signed(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.4f}"


if __name__ == "__main__":
    run_cli(main, PROG)
