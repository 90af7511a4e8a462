"""Export a checkpoint to ONNX: ``python -m export.onnx --ckpt CKPT --out DIR [--graph both]``.

Writes ``detect.onnx`` (backbone + encoder + classifier: what edge devices run) and/or
``full.onnx`` (adds the reconstruction output ``recon``). Choices, and why:

- TorchScript exporter (``dynamo=False``) at opset 17: one self-contained file (no external
  data, no onnxscript), and 17 is the newest opset TensorRT 8.5 (JetPack 5.1) parses.
- Dynamic batch axis by default (``--batch N`` for a static one: DLA needs static shapes).
- Simplified with onnxslim (BatchNorm folding, constant folding); Polygraphy's constant
  folding when onnxslim is absent; otherwise left as exported, with a note.
- ``onnx.checker`` full check, then a parity gate: ONNX Runtime vs PyTorch on random inputs at
  two batch sizes; max |Δlogit| above 1e-4 fails the export with the numbers.
- The metadata (:class:`runtime.meta.Meta`, ``source_sha256`` = the checkpoint's sha256) goes in
  ``metadata_props["jrc_meta"]``. Files are written atomically.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from export.onnx_io import import_onnx, load_onnx, read_meta, save_onnx, set_meta
from runtime.errors import EXIT_USAGE, Parser, UserError, run_cli
from runtime.meta import OUTPUTS, Meta, sha256_file

PROG = "export.onnx"
DEFAULT_OPSET = 17
PARITY_TOL = 1e-4  # max |Δlogit| allowed between ONNX Runtime and PyTorch
PARITY_BATCHES = (1, 4)


def _wrapper(model: Any, graph: str) -> Any:
    from training.model import DetectGraph, FullGraph

    return (DetectGraph if graph == "detect" else FullGraph)(model).eval()


def simplify(model: Any) -> tuple[Any, str]:
    """onnxslim, else Polygraphy's constant folding, else unchanged; returns (model, what ran)."""
    try:
        import onnxslim
    except ImportError:
        onnxslim = None
    if onnxslim is not None:
        return onnxslim.slim(model), "onnxslim"
    try:
        import onnx_graphsurgeon  # noqa: F401  (Polygraphy's folding needs it and skips silently without)
        from polygraphy.backend.onnx import fold_constants
    except ImportError:
        print(f"{PROG}: note: neither onnxslim nor polygraphy + onnx-graphsurgeon is installed; the graph is "
              "left as exported (pip install onnxslim to simplify it)")
        return model, "none"
    return fold_constants(model, error_ok=False), "polygraphy constant folding"


def torch_to_onnx(model: Any, meta: Meta, graph: str, out: Path, batch: int | None = None,
                  opset: int = DEFAULT_OPSET, doc: str | None = None) -> tuple[Path, str]:
    """Trace one graph of ``model`` to a simplified, checked ONNX file with ``meta`` embedded
    (``doc``: the file's doc string, by default "JRC <encoder> <graph> graph")."""
    import torch

    onnx = import_onnx()
    s = meta.input_size
    names = OUTPUTS[graph]
    dummy = torch.randn(batch or 2, 3, s, s)
    dynamic = None if batch else {n: {0: "batch"} for n in [meta.input_name, *names]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".export.tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation/tracer chatter
            torch.onnx.export(_wrapper(model, graph), (dummy,), str(tmp), input_names=[meta.input_name],
                              output_names=names, dynamic_axes=dynamic, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
        proto = onnx.load(str(tmp))
    finally:
        if tmp.exists():
            tmp.unlink()
    proto, how = simplify(proto)
    set_meta(proto, meta)
    proto.producer_name, proto.doc_string = "jrc-edge export.onnx", doc or f"JRC {meta.encoder} {graph} graph"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise UserError(f"{out}: the exported graph fails onnx.checker ({str(e).splitlines()[0][:200]}); "
                        "this is a bug in the export, please report it") from None
    return save_onnx(proto, out), how


def check_parity(model: Any, graph: str, path: Path, meta: Meta, batches: tuple[int, ...],
                 seed: int = 0) -> dict[str, float]:
    """Max |Δ| per output between ONNX Runtime and PyTorch over random inputs at ``batches``."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapper = _wrapper(model, graph)
    rng = np.random.default_rng(seed)
    worst = {n: 0.0 for n in OUTPUTS[graph]}
    for b in batches:
        x = rng.standard_normal((b, 3, meta.input_size, meta.input_size)).astype(np.float32)
        got = sess.run(OUTPUTS[graph], {meta.input_name: x})
        with torch.no_grad():
            want = wrapper(torch.from_numpy(x))
        want = [want] if graph == "detect" else list(want)
        for name, g, w in zip(OUTPUTS[graph], got, want):
            worst[name] = max(worst[name], float(np.abs(g - w.numpy()).max()))
    return worst


def export_checkpoint(ckpt: str | Path, out_dir: str | Path, graphs: tuple[str, ...] = ("detect",),
                      batch: int | None = None, opset: int = DEFAULT_OPSET,
                      tol: float | None = None) -> dict[str, dict[str, float]]:
    """Export each graph of a checkpoint, run the parity gate; returns {graph: {output: max|Δ|}}."""
    from training.checkpoint import load_model

    tol = PARITY_TOL if tol is None else tol

    ckpt, out_dir = Path(ckpt), Path(out_dir)
    model, meta = load_model(ckpt)
    model.eval()
    digest = sha256_file(ckpt)
    batches = (batch,) if batch else PARITY_BATCHES
    results = {}
    for graph in graphs:
        gmeta = meta.for_graph(graph).with_(source_sha256=digest, precision="fp32")
        note_stale(out_dir / f"{graph}.onnx", digest)
        path, how = torch_to_onnx(model, gmeta, graph, out_dir / f"{graph}.onnx", batch, opset)
        worst = check_parity(model, graph, path, gmeta, batches)
        figures = ", ".join(f"max |Δ{k}| = {v:.2e}" for k, v in worst.items())
        if not worst["logit"] <= tol:
            bad = path.with_name(path.name + ".failed")
            path.replace(bad)
            raise UserError(f"{path}: parity check failed, ONNX Runtime vs PyTorch at batch "
                            f"{'/'.join(map(str, batches))}: {figures} (allowed |Δlogit| ≤ {tol:.0e}); kept "
                            f"as {bad.name} for inspection, try --opset {DEFAULT_OPSET} or report it")
        shape = f"batch {batch} (static)" if batch else "dynamic batch"
        print(f"{PROG}: wrote {path} ({graph} graph, {shape}, opset {opset}, simplified by {how}); "
              f"parity vs PyTorch at batch {'/'.join(map(str, batches))}: {figures}")
        results[graph] = worst
    return results


def check_outputs(out_dir: Path, graphs: tuple[str, ...]) -> None:
    """Before the export: ``out_dir`` can be written and no graph's file is a folder."""
    from training.outputs import writable_folder

    writable_folder(out_dir, "--out")
    for graph in graphs:
        if (out_dir / f"{graph}.onnx").is_dir():
            raise UserError(f"--out {out_dir}: {out_dir / f'{graph}.onnx'} is a folder; remove it or choose another --out")


def note_stale(path: Path, digest: str) -> None:
    """Replacing ``path``, exported from another checkpoint than the one of sha256 ``digest``, is said on
    stderr, naming the files made from the old one beside it (INT8, FP16, engines, a chosen threshold):
    they are now stale."""
    if not path.is_file():
        return
    try:
        old = read_meta(load_onnx(path), str(path))
    except UserError:
        old = None
    if old is not None and old.source_sha256 == digest:
        return  # the same checkpoint again: what was made from it still matches
    graph = path.name[:-len(".onnx")]
    made = sorted(p.name for p in path.parent.glob(f"{graph}.*") if p.name != path.name and p.is_file()
                  and not p.name.startswith("."))
    stale = f"; made from the old one and now stale: {', '.join(made)}" if made else ""
    print(f"{PROG}: note: replacing {path}, exported from another checkpoint{stale}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog=PROG, description="Export a JRC checkpoint to ONNX (detect and/or "
                                 "full graph) with its metadata, checked against PyTorch.")
    ap.add_argument("--ckpt", required=True, type=Path, help="checkpoint written by training.train")
    ap.add_argument("--out", required=True, type=Path, help="output folder (detect.onnx, full.onnx)")
    ap.add_argument("--graph", choices=("detect", "full", "both"), default="detect",
                    help="detect: logit only (default); full: adds the reconstruction; both")
    ap.add_argument("--batch", type=int, metavar="N", help="static batch N (default: dynamic batch axis)")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                    help=f"ONNX opset (default {DEFAULT_OPSET}, the newest TensorRT 8.5 parses)")
    a = ap.parse_args(argv)
    if a.batch is not None and not 1 <= a.batch <= 1024:
        raise UserError(f"--batch {a.batch}: expected 1..1024 (or leave it out for a dynamic batch)", EXIT_USAGE)
    if not 13 <= a.opset <= 20:
        raise UserError(f"--opset {a.opset}: expected 13..20 (17 recommended)", EXIT_USAGE)
    graphs = ("detect", "full") if a.graph == "both" else (a.graph,)
    check_outputs(a.out, graphs)
    export_checkpoint(a.ckpt, a.out, graphs, a.batch, a.opset)
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
