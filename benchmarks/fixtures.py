"""Untrained JRC artifacts for tests, smoke runs and speed measurements.

- :func:`make_tiny_artifacts`: the real JRC architecture (edge backbone) shrunk to a 64-pixel input
  and a quarter width, random weights, made in seconds: the numbers it gives mean nothing, but every
  tool runs on it exactly as on a trained model (metadata included), so CLIs are tested end to end.
- :func:`make_speed_artifacts` (``python -m benchmarks.fixtures --input-size 224 --out DIR``): the
  full-width encoder at any input size, random weights, exported by :mod:`export.onnx`: speed does
  not depend on the weights, so this measures what a trained model of that size would cost.
"""

from __future__ import annotations

from pathlib import Path

from runtime.errors import Parser

TINY = {"width": 0.25, "encoder_channels": 16, "latent_channels": 8, "hidden": 8,
        "decoder_channels": [8, 8, 8, 8, 8]}
TINY_SIZE = 64


def make_tiny_artifacts(folder: str | Path, seed: int = 0, input_size: int = TINY_SIZE) -> dict[str, Path]:
    """Write ``tiny.pt``, ``detect.onnx`` and ``full.onnx`` (dynamic batch, opset 17) into ``folder``."""
    import warnings

    import onnx
    import torch

    from runtime.meta import ONNX_KEY, sha256_file
    from training.checkpoint import save_checkpoint
    from training.model import JRC, DetectGraph, FullGraph, default_meta

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = JRC("edge", input_size, **TINY).eval()
    meta = default_meta("edge", input_size).with_(model=model.config())
    ckpt = save_checkpoint(folder / "tiny.pt", model, meta)
    digest = sha256_file(ckpt)
    out = {"ckpt": ckpt}
    dummy = torch.randn(2, 3, input_size, input_size)
    for graph, wrapper, names in (("detect", DetectGraph, ["logit"]), ("full", FullGraph, ["logit", "recon"])):
        path = folder / f"{graph}.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper(model).eval(), (dummy,), str(path), input_names=["input"], output_names=names,
                              dynamic_axes={n: {0: "batch"} for n in ["input", *names]}, opset_version=17,
                              dynamo=False)
        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key = ONNX_KEY
        entry.value = meta.for_graph(graph).with_(source_sha256=digest).to_json()
        onnx.save(proto, str(path))
        out[graph] = path
    return out


def make_speed_artifacts(folder: str | Path, input_size: int = 224, encoder: str = "edge", seed: int = 0,
                         graphs: tuple[str, ...] = ("detect",), style: str | None = None,
                         downsample: str | None = None) -> dict[str, Path]:
    """Write ``model.pt`` (full width, random weights) and its ONNX graphs into ``folder``
    (``style``, ``downsample``: the edge encoder's options, as ``training.train``; None: the default)."""
    import torch

    from export.onnx import export_checkpoint
    from training.checkpoint import save_checkpoint
    from training.model import JRC, default_meta

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    meta = default_meta(encoder, input_size, downsample, style)
    model = JRC(encoder, input_size, **meta.model).eval()
    meta = meta.with_(model=model.config())
    out = {"ckpt": save_checkpoint(folder / "model.pt", model, meta)}
    export_checkpoint(out["ckpt"], folder, graphs)
    return {**out, **{g: folder / f"{g}.onnx" for g in graphs}}


def main(argv: list[str] | None = None) -> int:

    from runtime.errors import UserError, run_cli
    from runtime.meta import ENCODERS

    p = Parser(prog="python -m benchmarks.fixtures", description="An untrained, full-width "
                                "JRC checkpoint and its ONNX graphs, for speed measurements (the scores mean nothing).")
    p.add_argument("--out", required=True, help="folder to write model.pt and detect.onnx (and full.onnx) into")
    p.add_argument("--input-size", type=int, default=224, help="input side in px (default 224)")
    p.add_argument("--encoder", choices=ENCODERS, default="edge")
    p.add_argument("--graph", choices=("detect", "full", "both"), default="detect")
    p.add_argument("--edge-style", choices=("v3", "minimal"), default=None,
                   help="edge encoder: v3 (default) or minimal (3x3, ReLU, no squeeze-excitation; as training.train)")
    p.add_argument("--downsample", choices=("stride", "max"), default=None,
                   help="edge encoder: strided convolutions (default) or max-pools (as training.train)")
    a = p.parse_args(argv)

    def run() -> int:
        if not 32 <= a.input_size <= 1024:
            raise UserError(f"--input-size {a.input_size}: use 32-1024")
        graphs = ("detect", "full") if a.graph == "both" else (a.graph,)
        make_speed_artifacts(a.out, a.input_size, a.encoder, graphs=graphs, style=a.edge_style,
                             downsample=a.downsample)
        return 0

    return run_cli(run, prog="benchmarks.fixtures")


if __name__ == "__main__":
    raise SystemExit(main())
