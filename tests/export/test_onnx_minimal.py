"""export.onnx on the edge encoder's minimal style (3×3, ReLU, no squeeze-excitation) at its design
size: the full graph's parity (its logit is the detect path), the style carried in the metadata, and
a graph made of what ONNX Runtime's integer kernels run whole: convolutions, ReLUs, residual adds,
no hard-swish or excitation gate, every depthwise width already a multiple of 16."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import export.onnx as export_onnx
from export.onnx_io import load_onnx, read_meta
from tests.helpers import has_module
from tests.helpers.models import make_checkpoint

pytestmark = pytest.mark.skipif(not (has_module("torch") and has_module("onnx")), reason="needs torch and onnx")


def test_minimal_edge_full_graph_parity_and_layers(tmp_path: Path) -> None:
    from onnx import helper

    from calibration.channel_pad import pad_depthwise

    ckpt = make_checkpoint(tmp_path / "m.pt", "edge", style="minimal")
    r = export_onnx.export_checkpoint(ckpt, tmp_path / "out", ("full",))
    assert r["full"]["logit"] <= 1e-4 and r["full"]["recon"] <= 1e-4
    model = load_onnx(tmp_path / "out" / "full.onnx")
    meta = read_meta(model, "full")
    assert meta.encoder == "edge" and meta.input_size == 224 and meta.model["style"] == "minimal"
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["HardSwish"] == ops["HardSigmoid"] == ops["Mul"] == 0, ops
    assert ops["GlobalAveragePool"] == 1  # the classifier head's pooling only
    groups = [helper.get_attribute_value(a) for n in model.graph.node if n.op_type == "Conv"
              for a in n.attribute if a.name == "group"]
    depthwise = [g for g in groups if g > 1]
    assert len(depthwise) == 11 and all(g % 16 == 0 for g in depthwise)
    assert pad_depthwise(model)[1] == []  # calibration.channel_pad has nothing to widen
