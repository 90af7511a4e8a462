"""Triton Inference Server model repository: ``python -m export.triton --model detect.onnx --out REPO``.

Writes ``REPO/<name>/config.pbtxt`` and ``REPO/<name>/1/model.onnx`` (platform
``onnxruntime_onnx``) or ``1/model.plan`` (``tensorrt_plan``) from the same artifacts the
runtime uses: dynamic batching, an instance group, input/output dims read from the model (the
ONNX graph, or the engine's sidecar), and the jrc metadata in the config's ``parameters`` so a
client can read input size, mean/std, colour order and threshold from the server.

Engines: Triton's dynamic batcher sends any batch from 1 to ``max_batch_size``, and TensorRT refuses
a batch below the profile's minimum, so an engine whose profile minimum is above 1 is refused
(a static-batch engine is served with batching off, at its one batch size). A version-compatible
plan needs ``tritonserver --backend-config=tensorrt,version-compatible=true``; the export says so.
Triton's TensorRT backend (triton-inference-server/tensorrt_backend) refuses a plan whose config
``data_type`` differs from the engine tensor's type, so each tensor's type comes from the sidecar
(recorded at build); it runs plans on ``KIND_GPU`` instances only; and it takes the DLA core only from
``instance_group { secondary_devices [ { kind: KIND_NVDLA device_id: N } ] }`` (else -1), so a DLA
plan's core is written there. :func:`check_plan_config` replays those load-time checks on an
engine's tensors (``benchmarks.gpu_check`` runs it on a real engine; the tests on the fakes).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from export.triton_check import TRT_TO_TRITON, parse_config
from runtime.errors import EXIT_USAGE, Parser, UserError, run_cli
from runtime.fileio import replacing, write_atomic
from runtime.meta import ENGINE_SUFFIXES, Meta, missing_engine, read_sidecar

PROG = "export.triton"
ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64", 3: "TYPE_INT8", 2: "TYPE_UINT8",
              6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL"}


def pb_string(text: str) -> str:
    """A protobuf text-format string literal (escapes valid for every protobuf release)."""
    out = []
    for b in text.encode("utf-8"):
        c = chr(b)
        if c in '"\\':
            out.append("\\" + c)
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def _tensor(name: str, dtype: str, dims: list[int]) -> str:
    return f'  {{ name: {pb_string(name)} data_type: {dtype} dims: [ {", ".join(map(str, dims))} ] }}'


def model_io(model: Path) -> tuple[Meta, str, list[tuple[str, str, list[int]]], list[tuple[str, str, list[int]]], int | None]:
    """(meta, platform, inputs, outputs, batch limit) with dims *including* the batch axis (-1: dynamic)."""
    if model.suffix.lower() == ".onnx":
        from export.onnx_io import inspect_onnx

        info = inspect_onnx(model)
        if info.meta is None:
            raise UserError(f"{model}: no jrc metadata; export it with python -m export.onnx")
        if info.external_data:
            raise UserError(f"{model}: keeps weights in external files; export a single-file ONNX")
        dims = [[-1 if d is None else int(d) for d in shape] for shape in
                [info.input_shape, *info.outputs.values()]]
        ins = [(info.input_name, ONNX_TYPES.get(info.input_type, "TYPE_FP32"), dims[0])]
        outs = [(n, ONNX_TYPES.get(info.output_types[n], "TYPE_FP32"), d) for n, d in zip(info.outputs, dims[1:])]
        return info.meta, "onnxruntime_onnx", ins, outs, None
    if model.suffix.lower() in (".engine", ".plan"):
        meta, raw = read_sidecar(model)
        s, prof = meta.input_size, meta.profile or {}
        static = prof.get("min") == prof.get("max") and prof.get("max") is not None
        b = int(prof["max"]) if static else -1
        kind = _plan_types(model, raw)
        ins = [(meta.input_name, kind(meta.input_name), [b, 3, s, s])]
        outs = [("logit", kind("logit"), [b, 1])] + ([("recon", kind("recon"), [b, 3, s, s])] if meta.has_recon else [])
        return meta, "tensorrt_plan", ins, outs, int(prof["max"]) if prof.get("max") else None
    raise UserError(f"{model}: expected an .onnx model or a TensorRT .engine/.plan with its sidecar")


def _plan_types(model: Path, raw: dict[str, Any]) -> Callable[[str], str]:
    """tensor name -> Triton data_type, from the TensorRT types the build recorded in the sidecar.
    Sidecars from before they were recorded: TYPE_FP32 (what the ONNX export writes), with a note."""
    types = raw.get("tensor_types")
    if not isinstance(types, dict):
        print(f"{PROG}: note: {model.name}'s sidecar does not record its tensor types (built before they were "
              "recorded): TYPE_FP32 assumed; if Triton says 'unexpected datatype', rebuild it with export.engine")

    def kind(name: str) -> str:
        if not isinstance(types, dict):
            return "TYPE_FP32"
        t = types.get(name)
        if t not in TRT_TO_TRITON:
            raise UserError(f"{model}: its sidecar gives tensor {name!r} the type {t!r}, which Triton cannot serve "
                            f"(expected one of {', '.join(TRT_TO_TRITON)}); rebuild it with python -m export.engine")
        return TRT_TO_TRITON[t]

    return kind


def make_config(name: str, meta: Meta, platform: str, inputs: list, outputs: list, max_batch: int,
                instances: int, kind: str, dla_core: int | None = None) -> str:
    """config.pbtxt text. ``max_batch`` 0 means the model's batch axis is fixed (no batching);
    ``dla_core``: the instances run the plan on that DLA core (Triton's only way to set it)."""
    strip = 1 if max_batch > 0 else 0
    lines = [f"name: {pb_string(name)}", f"platform: {pb_string(platform)}", f"max_batch_size: {max_batch}",
             "input [", ",\n".join(_tensor(n, t, d[strip:]) for n, t, d in inputs), "]",
             "output [", ",\n".join(_tensor(n, t, d[strip:]) for n, t, d in outputs), "]"]
    if max_batch > 0:
        preferred = sorted({b for b in (1, 4, 8, 16, 32) if b <= max_batch} | {max_batch})
        lines += ["dynamic_batching {", f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]",
                  "  max_queue_delay_microseconds: 500", "}"]
    dla = f" secondary_devices [ {{ kind: KIND_NVDLA device_id: {int(dla_core)} }} ]" if dla_core is not None else ""
    lines += ["instance_group [", f"  {{ count: {instances} kind: {kind}{dla} }}", "]"]
    params = {"jrc_meta": meta.to_json(), "input_size": str(meta.input_size), "color": meta.color,
              "mean": ",".join(map(str, meta.mean)), "std": ",".join(map(str, meta.std)),
              "threshold": str(meta.threshold), "precision": meta.precision,
              "output_activation": "sigmoid(logit) = probability of fake"}
    for k, v in params.items():
        lines.append(f"parameters {{ key: {pb_string(k)} value: {{ string_value: {pb_string(v)} }} }}")
    return "\n".join(lines) + "\n"


def export_repository(model: str | Path, out: str | Path, name: str = "jrc_detect", max_batch: int = 16,
                      instances: int = 1, kind: str | None = None) -> Path:
    """Write (or replace) ``out/name``; returns the model folder."""
    model, out = Path(model), Path(out)
    if not model.exists() and model.suffix.lower() in ENGINE_SUFFIXES:
        raise missing_engine(model)
    if not model.is_file():
        raise UserError(f"{model}: not found; pass an .onnx from export.onnx or an .engine from export.engine")
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise UserError(f"--name {name!r}: expected a plain folder name such as jrc_detect", EXIT_USAGE)
    if max_batch < 0:
        raise UserError(f"--max-batch {max_batch}: expected 0 (no batching) or more", EXIT_USAGE)
    if instances < 1:
        raise UserError(f"--instances {instances}: expected 1 or more", EXIT_USAGE)
    meta, platform, ins, outs, limit = model_io(model)
    folder = out / name
    target = folder / "1" / ("model.plan" if platform == "tensorrt_plan" else "model.onnx")
    say_replacing = check_entry(model, out, folder, target)
    if platform == "tensorrt_plan" and kind not in (None, "KIND_GPU"):
        raise UserError(f"--kind {kind}: Triton's TensorRT backend runs plans on GPU instances only (\"TensorRT "
                        "backend supports only GPU device\"); drop --kind for the engine, or serve the ONNX with "
                        f"--kind {kind}")
    dynamic = ins[0][2][0] == -1
    notes = engine_notes(model, dynamic) if platform == "tensorrt_plan" else []
    dla_core = read_sidecar(model)[1].get("dla_core") if platform == "tensorrt_plan" else None
    batch = min(max_batch, limit) if (dynamic and limit) else (max_batch if dynamic else 0)
    if dynamic and limit and max_batch > limit:
        print(f"{PROG}: note: the engine's profile allows batch ≤ {limit}; max_batch_size set to {limit}")
    if not dynamic:
        print(f"{PROG}: note: {model.name} has a fixed batch of {ins[0][2][0]}; Triton batching is off "
              "(export with a dynamic batch to enable it)")
    kind = kind or ("KIND_GPU" if platform == "tensorrt_plan" else "KIND_CPU")
    text = make_config(name, meta, platform, ins, outs, batch, instances, kind,
                       int(dla_core) if isinstance(dla_core, int) else None)
    parse_config(text, str(folder / "config.pbtxt"))  # parsed as Triton parses it, before anything is written
    say_replacing()  # every check passed: right before the write
    target.parent.mkdir(parents=True, exist_ok=True)
    with replacing(target) as tmp:
        shutil.copyfile(model, tmp)
    write_atomic(folder / "config.pbtxt", text)
    where = f" on DLA core {dla_core}" if isinstance(dla_core, int) else ""
    print(f"{PROG}: wrote {folder} ({platform}, max_batch_size {batch}, {instances}× {kind}{where})")
    for note in notes:
        print(f"{PROG}: note: {note}")
    return folder


def check_entry(model: Path, out: Path, folder: Path, target: Path) -> Callable[[], None]:
    """Before anything is written: the entry's files can be written and the model is not one of them (exit
    2: the copy would read what it replaces). Returns the function that says an earlier entry is
    replaced, naming the model file it leaves behind when the platform changes: called once every
    other check passed, right before the write."""
    from runtime.fileio import same_file
    from training.outputs import writable_folder

    config = folder / "config.pbtxt"
    for path in (target, config):
        if same_file(path, model):
            raise UserError(f"--out {out}: {path} is --model {model} itself; export into another repository "
                            "(--out) or under another --name", EXIT_USAGE)
    writable_folder(target.parent, "--out", out)
    for path in (target, config):
        if path.is_dir():
            raise UserError(f"--out {out}: {path} is a folder; remove it or choose another --out or --name")

    def say_replacing() -> None:
        if config.exists():
            other = target.with_name("model.onnx" if target.name == "model.plan" else "model.plan")
            left = f"; {other} of the earlier entry stays beside it (Triton ignores it)" if other.exists() else ""
            print(f"{PROG}: note: replacing the repository entry {folder}{left}", file=sys.stderr)

    return say_replacing


VERSION_COMPATIBLE_FLAG = "--backend-config=tensorrt,version-compatible=true"


def engine_notes(model: Path, dynamic: bool) -> list[str]:
    """Refuse an engine Triton would fail on; notes for what the server needs."""
    meta, raw = read_sidecar(model)
    lo = int((meta.profile or {}).get("min") or 1)
    if dynamic and lo > 1:
        raise UserError(f"{model}: the engine's batch profile starts at {lo}, but Triton's dynamic batcher "
                        "sends batches from 1 and TensorRT refuses smaller ones; rebuild it with "
                        "python -m export.engine --batch 1:OPT:MAX (or a static --batch N)")
    notes = []
    if raw.get("version_compatible"):
        notes.append(f"this plan is version-compatible: start Triton with {VERSION_COMPATIBLE_FLAG} "
                     "(the TensorRT backend refuses plans with embedded host code otherwise)")
    return notes


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog=PROG, description="Write a Triton model repository entry for a "
                                 "detect/full ONNX or TensorRT engine.")
    ap.add_argument("--model", required=True, type=Path, help="detect.onnx or detect.<precision>.engine")
    ap.add_argument("--out", required=True, type=Path, help="model repository folder")
    ap.add_argument("--max-batch", type=int, default=16, help="max_batch_size (default 16; an engine's "
                    "profile caps it)")
    ap.add_argument("--instances", type=int, default=1, help="model instances (instance_group count)")
    ap.add_argument("--kind", choices=("KIND_GPU", "KIND_CPU"), help="instance kind (default: GPU for "
                    "engines, CPU for ONNX)")
    ap.add_argument("--name", default="jrc_detect", help="model name in the repository")
    a = ap.parse_args(argv)
    export_repository(a.model, a.out, a.name, a.max_batch, a.instances, a.kind)
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
