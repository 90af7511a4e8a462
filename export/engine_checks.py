"""What ``export.engine`` checks before TensorRT is imported: the ONNX and options (refusals that hold on
every TensorRT release) and the files it will write. A user without TensorRT hears about a wrong input
first, and a user with it never waits for a build (or an INT8 calibration) that cannot be kept.

:func:`export.trt_build.plan_build` makes the release-specific decisions afterwards; the refusals here
use its words so the two never disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterable

from export.onnx_io import OnnxInfo
from export.trt_build import QUANTIZE_HINT, EngineOptions, refuse_untakeable
from runtime.errors import EXIT_USAGE, UserError


def check_request(info: OnnxInfo, opts: EngineOptions) -> None:
    """Refuse an ONNX or options no TensorRT release builds (release-specific refusals stay in plan_build)."""
    p, src = opts.precision, info.path
    refuse_untakeable(info, p)
    if p == "int8" and not info.has_qdq:
        cache_ok = opts.calib_cache is not None and Path(opts.calib_cache).is_file()
        if not opts.calib_data and not cache_ok:
            raise UserError(f"{src}: --precision int8 from a plain ONNX needs calibration crops "
                            f"(--calib-data DIR) or an existing --calib-cache; or {QUANTIZE_HINT}")
    if opts.dla_core is not None and p == "fp32":
        raise UserError("--dla: the DLA runs fp16 or int8 only; pass --precision fp16 or int8", EXIT_USAGE)
    if opts.gpu_fallback and opts.dla_core is None:
        raise UserError("--gpu-fallback only applies with --dla CORE", EXIT_USAGE)


def check_outputs(onnx: Path, out: Path, opts: EngineOptions, calib_cache: Path | None,
                  fp16_copy: Path | None = None) -> Callable[[], None]:
    """The plan, its sidecar, the FP16 copy, the calibration cache and the timing cache can be written,
    and none of them is the ONNX (or another of them). Returns the function that says an earlier plan
    is replaced: called once TensorRT, the plan and the device passed their checks, right before the
    build (a missing TensorRT or a wrong input is the run's only line)."""
    from runtime.fileio import same_file
    from training.outputs import output_file

    sidecar = out.with_name(out.name + ".json")
    written = [("--out", out), ("--out", sidecar), ("--timing-cache", opts.timing_cache),
               ("--calib-cache", calib_cache), ("--out", fp16_copy)]
    written = [(flag, Path(path)) for flag, path in written if path is not None]
    for flag, path in written:
        if same_file(path, onnx):
            raise UserError(f"{flag} {path}: the same file as --onnx {onnx}, the input; writing it would destroy "
                            "the model, choose another path", EXIT_USAGE)
    for (flag, path), (other_flag, other) in _pairs(written):
        if same_file(path, other) and flag != other_flag:
            raise UserError(f"{other_flag} {other}: the same file as {flag} {path}; one would overwrite the "
                            "other, choose another path", EXIT_USAGE)
    for flag, path in written:
        output_file(path, flag)  # its folder takes files (or can be made), before anything is built

    def say_replacing() -> None:
        if out.is_file():
            print(f"export.engine: note: replacing {out} and its sidecar {sidecar.name} (an earlier engine)",
                  file=sys.stderr)

    return say_replacing


def _pairs(items: list[tuple[str, Path]]) -> Iterable[tuple[tuple[str, Path], tuple[str, Path]]]:
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            yield a, b


def check_option_values(workspace: int | None, opt_level: int | None, dla: int | None, calib_batch: int | None,
                        calib_size: int) -> None:
    """Numbers out of range are a bad command line (exit 2), said before anything is read."""
    if workspace is not None and workspace <= 0:
        raise UserError(f"--workspace {workspace}: expected a positive number of MiB", EXIT_USAGE)
    if opt_level is not None and not 0 <= opt_level <= 5:
        raise UserError(f"--opt-level {opt_level}: expected 0..5 (3 is TensorRT's default)", EXIT_USAGE)
    if dla is not None and dla < 0:
        raise UserError(f"--dla {dla}: expected a DLA core number (0 or 1 on a Jetson AGX Orin)", EXIT_USAGE)
    if calib_batch is not None and calib_batch < 1:
        raise UserError(f"--calib-batch {calib_batch}: must be at least 1", EXIT_USAGE)
    if calib_size < 1:
        raise UserError(f"--calib-size {calib_size}: must be at least 1", EXIT_USAGE)


def check_face_folder(out_dir: Path, nets: Iterable[str]) -> None:
    """The folder mode's outputs, before the first network is built: ``out_dir`` takes files and no
    ``<net>.engine`` in it is a folder."""
    from training.outputs import writable_folder

    writable_folder(out_dir, "--out")
    for net in nets:
        path = out_dir / f"{net}.engine"
        if path.is_dir():
            raise UserError(f"--out {out_dir}: {path} is a folder; remove it or choose another --out")
