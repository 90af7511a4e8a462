"""``python -m export.faces``: convert MTCNN's weights to the three ONNX files the runtime runs.

The weights come from facenet-pytorch's wheel (MIT licence), which any machine here can fetch
with ``pip download facenet-pytorch==2.6.0 --no-deps``; nothing of facenet-pytorch is imported
(it needs torchvision): the state_dicts are read from the wheel (or an installed copy) and loaded
into :mod:`training.mtcnn`. Each file carries ``metadata_props["jrc_face_meta"]`` (``kind:
face_detector``, the net, its outputs, the source wheel and the sha256 of its weights), and is
checked against PyTorch before it is written. The bundled copy in ``runtime/assets/mtcnn/`` is
this command's output (``make face-model``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from export.onnx_io import import_onnx, save_onnx
from runtime.errors import Parser, UserError, run_cli
from runtime.meta import FACE_INPUT, FACE_KEY, FACE_NETS, SCHEMA_VERSION

PROG = "export.faces"
WHEEL = "facenet-pytorch==2.6.0"
OPSET = 17
_MEMBER = "facenet_pytorch/data/{}.pt"


def read_weights(wheel: str | Path | None) -> tuple[dict[str, bytes], str]:
    """The three state_dict files' bytes and where they came from (a wheel, else an installed copy)."""
    if wheel:
        p = Path(wheel)
        if not p.is_file():
            raise UserError(f"--wheel {p}: no such file; fetch it with pip download {WHEEL} --no-deps -d DIR")
        try:
            with zipfile.ZipFile(p) as z:
                blobs = {n: z.read(_MEMBER.format(n)) for n in FACE_NETS}
        except (zipfile.BadZipFile, KeyError) as e:
            raise UserError(f"--wheel {p}: not a facenet-pytorch wheel with MTCNN weights ({e})") from None
        return blobs, f"{p.name} (sha256 {hashlib.sha256(p.read_bytes()).hexdigest()})"
    import importlib.util

    spec = importlib.util.find_spec("facenet_pytorch")  # located, never imported (it needs torchvision)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"no --wheel given and facenet-pytorch is not installed; run pip download {WHEEL} "
                        "--no-deps -d /tmp/fp and pass --wheel /tmp/fp/facenet_pytorch-2.6.0-py3-none-any.whl")
    root = Path(list(spec.submodule_search_locations)[0])
    return {n: (root / "data" / f"{n}.pt").read_bytes() for n in FACE_NETS}, f"installed facenet_pytorch at {root}"


def _dummy(net: str) -> Any:
    import torch

    s = FACE_INPUT[net] or 64
    return torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (2, 3, s, s + (16 if net == "pnet" else 0)))
                            .astype(np.float32))


def export_net(net: str, blob: bytes, source: str, out: Path, model: Any = None) -> dict[str, Any]:
    """One network → ``out`` (ONNX with metadata); returns its metadata and parity with PyTorch.
    ``model``: the network ``load_net`` made of ``blob`` already."""
    import onnxruntime as ort
    import torch

    from training.mtcnn import load_net

    onnx = import_onnx()
    model = model if model is not None else load_net(net, io.BytesIO(blob))
    names = list(FACE_NETS[net])
    axes = {0: "batch", 2: "height", 3: "width"} if net == "pnet" else {0: "batch"}
    dynamic = {"input": axes, **{n: ({0: "batch", 2: "h", 3: "w"} if net == "pnet" else {0: "batch"}) for n in names}}
    tmp = out.with_name(out.name + ".export.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (_dummy(net),), str(tmp), input_names=["input"], output_names=names,
                              dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True, dynamo=False)
        proto = onnx.load(str(tmp))
    finally:
        if tmp.exists():
            tmp.unlink()
    meta = {"kind": "face_detector", "family": "mtcnn", "net": net, "input_name": "input",
            "input_size": FACE_INPUT[net], "color": "BGR", "pixels": "0-255", "outputs": names,
            "precision": "fp32", "weights_sha256": hashlib.sha256(blob).hexdigest(), "source": source,
            "licence": "MIT (facenet-pytorch, Timothy Esler 2019)", "schema": SCHEMA_VERSION}
    entry = proto.metadata_props.add()
    entry.key, entry.value = FACE_KEY, json.dumps(meta, sort_keys=True)
    proto.producer_name, proto.doc_string = "jrc-edge export.faces", f"MTCNN {net} (Zhang et al. 2016)"
    onnx.checker.check_model(proto, full_check=True)
    save_onnx(proto, out)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = _dummy(net)
    with torch.no_grad():
        want = model(x)
    got = sess.run(names, {"input": x.numpy()})
    meta["parity_max_abs"] = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))
    return meta


def check_out(out: Path) -> Callable[[], None]:
    """Before any network is converted: ``out`` takes files and none of its ONNX names is a folder.
    Returns the function that says earlier files are replaced, with the engines built from them: called
    once the weights passed their checks, before the first is written."""
    from training.outputs import files_in

    paths = files_in(out, [out / f"{net}.onnx" for net in FACE_NETS])

    def say_replacing() -> None:
        earlier = [p.name for p in paths if p.is_file()]
        if earlier:
            engines = sorted(p.name for net in FACE_NETS for p in out.glob(f"{net}.*engine*") if p.is_file())
            stale = f"; built from the earlier ones, rebuild them: {', '.join(engines)}" if engines else ""
            print(f"{PROG}: note: replacing {', '.join(earlier)} in {out}{stale}", file=sys.stderr)

    return say_replacing


def export_faces(out_dir: str | Path, wheel: str | Path | None = None) -> dict[str, dict[str, Any]]:
    from training.mtcnn import load_net

    blobs, source = read_weights(wheel)
    out = Path(out_dir)
    say_replacing = check_out(out)
    nets = {net: load_net(net, io.BytesIO(blobs[net])) for net in FACE_NETS}  # all three read before any write
    say_replacing()
    return {net: export_net(net, blobs[net], source, out / f"{net}.onnx", nets[net]) for net in FACE_NETS}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description="Convert MTCNN's P/R/O-Net weights (facenet-pytorch's "
                                "wheel, MIT) to pnet.onnx, rnet.onnx, onet.onnx with face-detector metadata.")
    p.add_argument("--wheel", help=f"the facenet-pytorch wheel (pip download {WHEEL} --no-deps -d DIR); "
                   "default: an installed facenet-pytorch")
    p.add_argument("--out", default="runtime/assets/mtcnn", help="output folder (default: the bundled copy)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    for net, meta in export_faces(a.out, a.wheel).items():
        print(f"{PROG}: {Path(a.out) / (net + '.onnx')}: parity with PyTorch max |Δ| {meta['parity_max_abs']:.2e}")
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
