"""export.onnx on the paper's configuration (Xception at 299), once: the full graph (its logit is the
detect path, plus the decoder's recon), parity at batch 1 and 4.

Slow on a CPU (about 15 s of compute), so it has its own file and the ``slow`` marker; it still runs
by default. The edge encoder's tests cover both graphs separately.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import export.onnx as export_onnx
from export.onnx_io import load_onnx, read_meta
from tests.helpers.models import make_checkpoint


@pytest.mark.slow
def test_xception_full_graph_parity(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "x.pt", "xception")
    r = export_onnx.export_checkpoint(ckpt, tmp_path / "out", ("full",))
    assert r["full"]["logit"] <= 1e-4 and r["full"]["recon"] <= 1e-4
    meta = read_meta(load_onnx(tmp_path / "out" / "full.onnx"), "full")
    assert meta.encoder == "xception" and meta.input_size == 299
