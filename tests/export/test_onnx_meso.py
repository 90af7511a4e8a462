"""export.onnx on the MesoNet encoders (training/backbones/meso.py) as JRC backbones: both graphs at
256 px (their design size) and the detect graph at a size that is not a multiple of 32, where
TensorFlow's 'same' pooling pads with -inf before the pool; parity with PyTorch at batch 1 and 4."""

from __future__ import annotations

from pathlib import Path

import pytest

import export.onnx as export_onnx
from export.onnx_io import load_onnx, read_meta
from tests.helpers.models import make_checkpoint


@pytest.mark.parametrize("encoder", ["meso4", "mesoinception4"])
def test_meso_full_graph_parity(tmp_path: Path, encoder: str) -> None:
    ckpt = make_checkpoint(tmp_path / "m.pt", encoder)
    r = export_onnx.export_checkpoint(ckpt, tmp_path / "out", ("detect", "full"))
    assert r["detect"]["logit"] <= 1e-4 and r["full"]["logit"] <= 1e-4 and r["full"]["recon"] <= 1e-4
    proto = load_onnx(tmp_path / "out" / "detect.onnx")
    meta = read_meta(proto, "detect")
    assert meta.encoder == encoder and meta.input_size == 256 and meta.std == (1.0, 1.0, 1.0)
    assert "Pad" not in {n.op_type for n in proto.graph.node}  # 256 = 8 × 32: nothing to pad


def test_meso_at_an_odd_size_pads_as_tensorflow(tmp_path: Path) -> None:
    import torch

    from training.checkpoint import save_checkpoint
    from training.model import build_model, default_meta

    torch.manual_seed(0)
    meta = default_meta("meso4", 100)
    model = build_model(meta).eval()
    save_checkpoint(tmp_path / "m.pt", model, meta, epoch=1)
    r = export_onnx.export_checkpoint(tmp_path / "m.pt", tmp_path / "out", ("detect",))
    assert r["detect"]["logit"] <= 1e-4
    ops = {n.op_type for n in load_onnx(tmp_path / "out" / "detect.onnx").graph.node}
    assert "Pad" in ops and "MaxPool" in ops  # 25 → 13 (pool 2) → 4 (pool 4, one row of -inf before)
