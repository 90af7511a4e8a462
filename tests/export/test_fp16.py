"""export.fp16: FP16 graph with fp32 inputs/outputs, outputs close to the fp32 model in ONNX Runtime.

Tolerance (measured on the edge model, logits of ±4-5, recon of ±0.12, ONNX Runtime CPU, batch 8,
3 seeds): max |Δlogit| 3e-3 to 7.5e-3 (≈0.15% of |logit|), max |Δprobability| ≤ 1.1e-4,
max |Δrecon| ≈ 1.2e-4. Asserted with headroom: |Δlogit| ≤ 2e-2, |Δprob| ≤ 1e-3, |Δrecon| ≤ 1e-3.
ORT's CPU provider runs ops it has no fp16 kernel for in fp32 (it inserts the casts itself), so
these figures measure the fp16 weights and tensors, not fp16 arithmetic on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import export.onnx as export_onnx
from export.fp16 import convert_file, convert_model
from export.onnx_io import inspect_onnx, load_onnx, read_meta
from runtime.errors import UserError
from tests.helpers import run_module
from tests.helpers.models import make_checkpoint

LOGIT_TOL, PROB_TOL, RECON_TOL = 2e-2, 1e-3, 1e-3


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fp16")
    export_onnx.export_checkpoint(make_checkpoint(d / "e.pt", "edge"), d, ("detect", "full"))
    return d


def _run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})


def test_keeps_fp32_io_and_metadata(fp32: Path, tmp_path: Path) -> None:
    half = convert_file(fp32 / "full.onnx", tmp_path / "full.fp16.onnx")
    info = inspect_onnx(half)
    assert info.is_fp16 and info.input_type == 1 and info.output_types == {"logit": 1, "recon": 1}
    model = load_onnx(half)
    kinds = {t.data_type for t in model.graph.initializer if t.data_type in (1, 10)}
    assert kinds == {10}  # every float weight is fp16
    assert model.graph.node[0].op_type == "Cast" and model.graph.node[-1].op_type == "Cast"
    before, after = read_meta(load_onnx(fp32 / "full.onnx"), "a"), read_meta(model, "b")
    assert after == before.with_(precision="fp16")


@pytest.mark.parametrize("graph", ["detect", "full"])
def test_outputs_stay_close_to_fp32(fp32: Path, tmp_path: Path, graph: str) -> None:
    half = convert_file(fp32 / f"{graph}.onnx", tmp_path / f"{graph}.fp16.onnx")
    x = np.random.default_rng(1).standard_normal((8, 3, 224, 224)).astype(np.float32)
    want, got = _run(fp32 / f"{graph}.onnx", x), _run(half, x)
    assert all(g.dtype == np.float32 for g in got)
    assert np.abs(want[0]).max() > 1.0  # logits large enough for the bound to mean something
    assert np.abs(got[0] - want[0]).max() <= LOGIT_TOL
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    assert np.abs(sig(got[0]) - sig(want[0])).max() <= PROB_TOL
    assert np.abs(got[0] - want[0]).max() > 0  # it really is a different (fp16) model
    if graph == "full":
        assert np.abs(got[1] - want[1]).max() <= RECON_TOL


def test_keep_fp32_op_wraps_it_in_casts(fp32: Path) -> None:
    model = convert_model(load_onnx(fp32 / "detect.onnx"), keep_fp32=["GlobalAveragePool"])
    nodes = list(model.graph.node)
    for i, n in enumerate(nodes):
        if n.op_type == "GlobalAveragePool":
            assert nodes[i - 1].op_type == "Cast" and nodes[i + 1].op_type == "Cast"
            assert nodes[i + 1].attribute[0].i == 10


def test_resize_scales_stay_fp32(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    w = numpy_helper.from_array(np.full((1, 1, 1, 1), 0.5, np.float32), "w")
    g = helper.make_graph([helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="linear"),
                           helper.make_node("Conv", ["r", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])], [scales, w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "r.onnx"))
    half = convert_file(tmp_path / "r.onnx")
    types = {t.name: t.data_type for t in load_onnx(half).graph.initializer}
    assert types == {"scales": 1, "w": 10}
    x = np.random.default_rng(0).random((1, 1, 4, 4)).astype(np.float32)
    import onnxruntime as ort

    a = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    b = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert b.dtype == np.float32 and np.abs(a - b).max() < 1e-3


def test_cli(fp32: Path, tmp_path: Path) -> None:
    p = run_module("export.fp16", "--onnx", fp32 / "detect.onnx", "--out", tmp_path / "d16.onnx", timeout=120)
    assert p.returncode == 0 and (tmp_path / "d16.onnx").is_file(), p.stderr
    with pytest.raises(UserError, match="the same file as --onnx") as e:
        convert_file(tmp_path / "d16.onnx", tmp_path / "d16.onnx")
    assert e.value.exit_code == 2


def test_output_is_checked_before_converting_and_replacing_is_said(fp32: Path, tmp_path: Path, capsys) -> None:
    from export.fp16 import main

    (tmp_path / "dir.onnx").mkdir()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out, match in ((tmp_path / "dir.onnx", "is a folder; name a file"),
                       (blocker / "d16.onnx", "is a file, not a folder"),
                       ("/proc/jrc-x/d16.onnx", "nothing can be written in /proc")):
        with pytest.raises(UserError, match=match) as e:
            main(["--onnx", str(fp32 / "detect.onnx"), "--out", str(out)])
        assert e.value.exit_code == 1
    out = tmp_path / "d16.onnx"
    out.write_bytes(b"earlier")
    assert main(["--onnx", str(fp32 / "detect.onnx"), "--out", str(out)]) == 0
    assert f"export.fp16: note: replacing {out} (an earlier result)" in capsys.readouterr().err
