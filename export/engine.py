"""Build a TensorRT engine from an exported ONNX: ``python -m export.engine --onnx detect.onnx``.

Writes a plain TensorRT plan (loadable by trtexec, Triton and DeepStream) and its sidecar
``<plan>.json`` with the metadata, the TensorRT release, GPU and compute capability, precision,
batch profile and the sha256 of plan and source ONNX. Works with TensorRT 8.5, 8.6, 10.x and 11.x:

- 8.5/8.6: EXPLICIT_BATCH network; FP16/INT8 builder flags; INT8 from a Q/DQ ONNX or with the
  calibrator of :mod:`export.trt_calibrator` (+ cache).
- 10.0-10.11 (JetPack 6.1/6.2: 10.3): FP16 flag; INT8 from a Q/DQ ONNX (explicit), the calibrator as a
  deprecated fallback.
- 10.12+ (weak typing deprecated) and 11.x (removed): strongly typed networks; FP16 from an FP16 copy
  of the ONNX (``export.fp16``, fp32 inputs/outputs kept), INT8 from a copy of the Q/DQ ONNX whose
  float part is fp16; 10.12+ keeps the calibrator (weakly typed) as a fallback, 11 has none.

Without TensorRT, or without a usable CUDA device (checked in a child process before anything is
built), it exits 1 with one line saying what is missing.
"""

from __future__ import annotations

import json
import shlex
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from export.engine_checks import (
    check_face_folder,
    check_option_values,
    check_outputs,
    check_request,
)
from export.onnx_io import inspect_onnx
from export.trt_build import (
    Built,
    EngineOptions,
    build_serialized,
    calibration_batch,
    check_device,
    plan_build,
    profile_notes,
    resolve_profile,
)
from runtime.backends import trt_compat
from runtime.errors import EXIT_USAGE, Parser, UserError, run_cli
from runtime.fileio import replacing, write_atomic
from runtime.meta import FACE_KEY, FACE_NETS, Meta, face_meta_from_json, sha256_file, write_sidecar

PROG = "export.engine"


def parse_batch(text: str) -> tuple[int, int, int]:
    """'4' -> (4, 4, 4); '1:4:16' -> (1, 4, 16); checked min <= opt <= max, all >= 1."""
    parts = str(text).split(":")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) == 1:
        nums *= 3
    if len(nums) != 3 or not 1 <= nums[0] <= nums[1] <= nums[2]:
        raise UserError(f"--batch {text!r}: expected N or MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX", EXIT_USAGE)
    return nums[0], nums[1], nums[2]


def default_output(onnx: Path, precision: str) -> Path:
    """detect.onnx -> detect.fp16.engine; detect.int8.onnx -> detect.int8.engine."""
    stem = onnx.stem
    if not stem.endswith("." + precision):
        stem = f"{stem}.{precision}"
    return onnx.with_name(stem + ".engine")


def fp16_onnx_path(onnx: Path, out: Path) -> Path:
    """Where the FP16 copy that a strongly typed FP16 build needs goes: beside the plan."""
    stem = out.stem if out.stem.endswith(".fp16") else out.stem + ".fp16"
    path = out.with_name(stem + ".onnx")
    return path if path.resolve() != onnx.resolve() else out.with_name(out.stem + ".built.fp16.onnx")


def build_command(onnx: Path, out: Path, opts: EngineOptions, profile: tuple[int, int, int]) -> str:
    """The command line that rebuilds this engine (stored in the sidecar for mismatch messages)."""
    args = ["python", "-m", "export.engine", "--onnx", str(onnx), "--precision", opts.precision,
            "--batch", ":".join(map(str, profile)), "--out", str(out)]
    for flag, value in (("--workspace", opts.workspace_mib), ("--dla", opts.dla_core),
                        ("--opt-level", opts.opt_level), ("--calib-data", opts.calib_data),
                        ("--calib-cache", opts.calib_cache)):
        if value is not None:
            args += [flag, str(value)]
    for flag, on in (("--gpu-fallback", opts.gpu_fallback), ("--version-compatible", opts.version_compatible),
                     ("--hardware-compatible", opts.hardware_compatible)):
        if on:
            args.append(flag)
    return " ".join(shlex.quote(a) for a in args)


def _calibrator(trt: Any, onnx: Path, meta: Meta, opts: EngineOptions, cache: Path,
                profile: tuple[int, int, int]) -> Any:
    try:
        from export.trt_calibrator import make_calibrator
    except ImportError as e:
        raise UserError(f"INT8 calibration could not be loaded ({e}); "
                        "install jrc-edge with its training extras: pip install -e '.[train]'") from None
    return make_calibrator(trt, str(onnx), opts.calib_data, meta, str(cache), calibration_batch(opts, profile),
                           opts.calib_size, method="entropy")


def built_record(build_from: Path, built: Built) -> dict[str, Any]:
    """What the sidecar records of the build itself: the ONNX TensorRT parsed (the FP16 or Q/DQ copy
    where one was made; ``onnx`` stays the source the user gave), its sha256, the TensorRT type of
    each I/O tensor (Triton's ``data_type`` must match it) and the platform (plans are not portable
    across platforms)."""
    return {"built_from": str(build_from), "built_from_sha256": sha256_file(build_from),
            "tensor_types": dict(built.tensor_types), "platform": trt_compat.engine_platform()}


@contextmanager
def _calibration_context(needed: bool) -> Iterator[None]:
    """The calibrator copies batches with pycuda: push device 0's primary context (the one
    TensorRT's builder uses) for the build and pop it afterwards; it stays retained for the process
    (:func:`trt_compat.primary_context`), so nothing is left current on this thread."""
    if not needed:
        yield
        return
    ctx = trt_compat.primary_context(trt_compat.import_pycuda(), 0)
    ctx.push()
    try:
        yield
    finally:
        ctx.pop()


# input shapes (min, opt, max) of the face detector's networks: P-Net sees pyramid levels and
# windows of any size up to a 1080p level; R-Net and O-Net batches of candidates (the runtime
# sends at most 256 at a time)
FACE_PROFILES = {"pnet": ((1, 3, 12, 12), (1, 3, 180, 320), (1, 3, 1088, 1920)),
                 "rnet": ((1, 3, 24, 24), (64, 3, 24, 24), (256, 3, 24, 24)),
                 "onet": ((1, 3, 48, 48), (4, 3, 48, 48), (256, 3, 48, 48))}


def _face_meta(onnx: Path) -> dict[str, Any] | None:
    from export.onnx_io import load_onnx

    for prop in load_onnx(onnx).metadata_props:
        if prop.key == FACE_KEY:
            return face_meta_from_json(prop.value, source=str(onnx))
    return None


def face_net_to_engine(onnx: Path, face: dict[str, Any], out: Path, opts: EngineOptions) -> Path:
    """One face-detector network (export.faces) → plan + sidecar: the same builder path as the
    classifier, with the net's own input profile; the sidecar carries its face-detector metadata."""
    if opts.precision == "int8" or opts.dla_core is not None or opts.batch is not None:
        raise UserError(f"{onnx}: a face-detector network builds in fp32 or fp16 on the GPU, with its own "
                        "input profile; drop --precision int8, --dla and --batch")
    info = inspect_onnx(onnx)
    check_request(info, opts)
    say_replacing = check_outputs(onnx, out, opts, None,
                                  fp16_onnx_path(onnx, out) if opts.precision == "fp16" else None)
    trt = trt_compat.import_tensorrt()
    plan = plan_build(trt, info, opts)
    shapes = FACE_PROFILES[face["net"]]
    device = trt_compat.probe_cuda_device(0)
    check_device(opts, device, trt_compat.is_jetson())  # before any builder call, as for the classifier
    say_replacing()  # only now: without TensorRT or a device, the error is the only line
    for note in plan.notes:
        print(f"{PROG}: note: {note}")
    out.parent.mkdir(parents=True, exist_ok=True)
    build_from = onnx
    if plan.convert_fp16:
        from export.fp16 import convert_file

        build_from = convert_file(onnx, fp16_onnx_path(onnx, out))
    ver = trt_compat.trt_version(trt)
    print(f"{PROG}: building {out.name} ({opts.precision}, MTCNN {face['net']}) with TensorRT {ver} on {device.name}")
    built = build_serialized(trt, build_from, info.input_name, tuple(shapes[0][1:]), (1, 1, 1), plan, opts,
                             None, shapes)
    write_atomic(out, built.plan)
    side = out.with_name(out.name + ".json")
    d = {**face, "precision": opts.precision, "tensorrt_version": ver, "device": device.name,
         "compute_capability": device.compute_capability, "profile": {"shapes": [list(s) for s in shapes]},
         "source_sha256": sha256_file(onnx), "plan_sha256": sha256_file(out), "onnx": str(onnx),
         "build_command": f"python -m export.engine --onnx {shlex.quote(str(onnx))} --precision {opts.precision} "
                          f"--out {shlex.quote(str(out))}",
         "strongly_typed": plan.strongly_typed, "builder_flags": list(plan.flags),
         "version_compatible": opts.version_compatible,
         "hardware_compatible": "AMPERE_PLUS" if opts.hardware_compatible else None,
         **built_record(build_from, built)}
    write_atomic(side, (json.dumps(d, indent=2, sort_keys=True) + "\n").encode())
    print(f"{PROG}: wrote {out} and {side.name}")
    return out


def faces_to_engines(folder: Path, out_dir: Path | None, opts: EngineOptions) -> list[Path]:
    """pnet/rnet/onet.onnx of a face-detector folder → ``<net>.engine`` (+ sidecars) in ``out_dir``
    (default: the same folder), where ``--face-model`` finds them."""
    dest = out_dir or folder
    faces = {}
    for net in FACE_NETS:  # all three read before the first is built
        onnx = folder / f"{net}.onnx"
        face = _face_meta(onnx) if onnx.is_file() else None
        if face is None or face["net"] != net:
            raise UserError(f"{folder}: {net}.onnx missing or not MTCNN's {net}; pass the folder python -m "
                            "export.faces wrote")
        faces[net] = face
    check_face_folder(dest, FACE_NETS)
    return [face_net_to_engine(folder / f"{net}.onnx", face, dest / f"{net}.engine", opts)
            for net, face in faces.items()]


def onnx_to_engine(onnx: str | Path, out: str | Path | None = None,
                   opts: EngineOptions | None = None) -> Path:
    """Build ``onnx`` into a plan at ``out`` (+ sidecar); returns the plan's path. A face-detector
    network (metadata ``kind: face_detector``) builds with its own profile."""
    opts = opts or EngineOptions()
    onnx = Path(onnx)
    info = inspect_onnx(onnx)
    if info.meta is None and (face := _face_meta(onnx)) is not None:
        return face_net_to_engine(onnx, face, Path(out) if out else default_output(onnx, opts.precision), opts)
    if info.meta is None:
        raise UserError(f"{onnx}: no jrc metadata in the ONNX; export it with python -m export.onnx")
    dims = info.input_shape[1:]
    if len(dims) != 3 or any(d is None for d in dims):
        raise UserError(f"{onnx}: input shape {info.input_shape}: expected N×3×H×W with fixed C, H, W")
    out = Path(out) if out else default_output(onnx, opts.precision)
    check_request(info, opts)  # before TensorRT is imported: a wrong input is said first, on any machine
    profile = resolve_profile(info, opts)
    calibrates = opts.precision == "int8" and not info.has_qdq
    converts = not info.is_fp16 and (opts.precision == "fp16" or (opts.precision == "int8" and info.has_qdq))
    say_replacing = check_outputs(onnx, out, opts,
                                  (opts.calib_cache or out.with_suffix(".calib")) if calibrates else None,
                                  fp16_onnx_path(onnx, out) if converts else None)
    trt = trt_compat.import_tensorrt()
    plan = plan_build(trt, info, opts)
    device = trt_compat.probe_cuda_device(0)  # before any builder call: no device, no build
    check_device(opts, device, trt_compat.is_jetson())
    say_replacing()  # only now: without TensorRT or a device, the error is the only line
    for note in (*plan.notes, *profile_notes(profile)):
        print(f"{PROG}: note: {note}")
    out.parent.mkdir(parents=True, exist_ok=True)
    build_from = onnx
    if plan.convert_fp16:
        from export.fp16 import convert_file

        build_from = convert_file(onnx, fp16_onnx_path(onnx, out))
        print(f"{PROG}: wrote the FP16 ONNX it builds from: {build_from}")
    cache = opts.calib_cache or out.with_suffix(".calib")
    make_cal = None
    if plan.int8_mode == "calibrator":

        def make_cal() -> Any:
            return _calibrator(trt, onnx, info.meta, opts, cache, profile)  # type: ignore[arg-type]

    ver = trt_compat.trt_version(trt)
    print(f"{PROG}: building {out.name} ({opts.precision}, batch {':'.join(map(str, profile))}) with "
          f"TensorRT {ver} on {device.name}; this takes a while")
    with _calibration_context(plan.int8_mode == "calibrator"):
        built = build_serialized(trt, build_from, info.input_name, tuple(dims), profile, plan, opts,
                                 make_cal)  # type: ignore[arg-type]
    with replacing(out) as tmp:
        tmp.write_bytes(memoryview(built.plan))
    meta = info.meta.with_(
        precision=opts.precision, tensorrt_version=ver, device=device.name,
        compute_capability=device.compute_capability,
        profile={"min": profile[0], "opt": profile[1], "max": profile[2]},
        source_sha256=sha256_file(onnx))
    extra = {
        "onnx": str(onnx), "build_command": build_command(onnx, out, opts, profile),
        "strongly_typed": plan.strongly_typed, "builder_flags": list(plan.flags),
        "int8_mode": plan.int8_mode, "dla_core": opts.dla_core,
        "version_compatible": opts.version_compatible,
        "hardware_compatible": "AMPERE_PLUS" if opts.hardware_compatible else None,
        "calib_cache": str(cache) if plan.int8_mode == "calibrator" else None,
        **built_record(build_from, built),
    }
    side = write_sidecar(out, meta, extra)
    print(f"{PROG}: wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {side.name}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog=PROG, description="Build a TensorRT engine (plan + JSON sidecar) "
                                 "from an ONNX written by export.onnx (or a Q/DQ ONNX from calibration).")
    ap.add_argument("--onnx", required=True, type=Path, help="detect.onnx, full.onnx or a Q/DQ detect.int8.onnx; "
                    "or a face-detector folder from export.faces (runtime/assets/mtcnn): its three networks are "
                    "built to <net>.engine in --out (a folder; default the same one)")
    ap.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    ap.add_argument("--out", type=Path, help="plan file (default: <onnx stem>.<precision>.engine beside it)")
    ap.add_argument("--batch", type=parse_batch, help="batch profile MIN:OPT:MAX or N (default 1:4:16; "
                    "a static-batch ONNX fixes it)")
    ap.add_argument("--workspace", type=int, metavar="MiB", help="builder workspace limit")
    ap.add_argument("--timing-cache", type=Path, metavar="FILE", help="read and update this timing cache")
    ap.add_argument("--dla", type=int, metavar="CORE", help="build for this DLA core (Jetson; fp16/int8, "
                    "static batch)")
    ap.add_argument("--gpu-fallback", action="store_true", help="with --dla: run unsupported layers on the GPU")
    ap.add_argument("--version-compatible", action="store_true", help="plan runs on later TensorRT of the "
                    "same major version (8.6+)")
    ap.add_argument("--hardware-compatible", action="store_true", help="plan runs on any Ampere or newer "
                    "GPU (8.6+)")
    ap.add_argument("--opt-level", type=int, metavar="N", help="builder optimisation level 0..5 (8.6+)")
    ap.add_argument("--calib-data", metavar="D", help="INT8 calibration crops (implicit INT8, TensorRT "
                    "8.5-10.x); same specs as training data")
    ap.add_argument("--calib-cache", type=Path, metavar="FILE", help="calibration cache to reuse or write "
                    "(default: <out>.calib)")
    ap.add_argument("--calib-batch", type=int, metavar="N", help="calibration batch (default: profile opt)")
    ap.add_argument("--calib-size", type=int, default=512, metavar="N", help="calibration crops to use")
    ap.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    a = ap.parse_args(argv)
    check_option_values(a.workspace, a.opt_level, a.dla, a.calib_batch, a.calib_size)
    opts = EngineOptions(
        precision=a.precision, batch=a.batch, workspace_mib=a.workspace, timing_cache=a.timing_cache,
        dla_core=a.dla, gpu_fallback=a.gpu_fallback, version_compatible=a.version_compatible,
        hardware_compatible=a.hardware_compatible, opt_level=a.opt_level, calib_data=a.calib_data,
        calib_cache=a.calib_cache, calib_batch=a.calib_batch, calib_size=a.calib_size, verbose=a.verbose)
    if a.onnx.is_dir():
        faces_to_engines(a.onnx, a.out, opts)
    else:
        onnx_to_engine(a.onnx, a.out, opts)
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
