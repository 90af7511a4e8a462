"""A tiny JRC checkpoint and its detect/full ONNX graphs, made in seconds, for tests and smoke runs.

The network is the real JRC architecture (edge backbone) shrunk to a 64-pixel input and a
quarter width, with random weights: the numbers it gives mean nothing, but every tool runs on it
exactly as on a trained model (metadata included), so the CLIs can be tested end to end.
"""

from __future__ import annotations

from pathlib import Path

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
