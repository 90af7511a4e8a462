"""export.onnx: both graphs of both encoders, the parity gate, metadata, dynamic/static batch,
single-file simplified output, and Polygraphy loading the result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import export.onnx as export_onnx
from export.onnx_io import load_onnx, read_meta
from runtime.errors import UserError
from runtime.meta import sha256_file
from runtime.onnx_proto import check_external_data
from tests.helpers import run_module
from tests.helpers.models import make_checkpoint


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("edge")
    ckpt = make_checkpoint(d / "edge.pt", "edge")
    results = export_onnx.export_checkpoint(ckpt, d / "out", ("detect", "full"))
    return {"ckpt": ckpt, "dir": d / "out", "results": results}


def _ort(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_parity_within_gate(edge: dict) -> None:
    r = edge["results"]
    assert set(r) == {"detect", "full"} and set(r["full"]) == {"logit", "recon"}
    assert r["detect"]["logit"] <= 1e-4 and r["full"]["logit"] <= 1e-4 and r["full"]["recon"] <= 1e-4


def test_logits_are_not_trivially_small(edge: dict) -> None:
    x = np.random.default_rng(5).standard_normal((4, 3, 224, 224)).astype(np.float32)
    logit = _ort(edge["dir"] / "detect.onnx").run(None, {"input": x})[0]
    assert np.abs(logit).max() > 0.5  # the gate above is meaningful at this scale


def test_metadata_round_trip(edge: dict) -> None:
    from runtime.meta import Meta
    from training.checkpoint import read_checkpoint

    ck_meta = Meta.from_dict(read_checkpoint(edge["ckpt"])["meta"])
    for graph in ("detect", "full"):
        meta = read_meta(load_onnx(edge["dir"] / f"{graph}.onnx"), graph)
        assert meta == ck_meta.for_graph(graph).with_(source_sha256=sha256_file(edge["ckpt"]), precision="fp32")
        assert meta.graph == graph and meta.outputs == (("logit",) if graph == "detect" else ("logit", "recon"))


def test_graph_io_single_file_simplified(edge: dict) -> None:
    for graph, outs in (("detect", ["logit"]), ("full", ["logit", "recon"])):
        path = edge["dir"] / f"{graph}.onnx"
        model = load_onnx(path)
        assert [i.name for i in model.graph.input] == ["input"]
        assert [o.name for o in model.graph.output] == outs
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
        ops = {n.op_type for n in model.graph.node}
        assert "BatchNormalization" not in ops and "Identity" not in ops  # folded by the simplifier
        assert check_external_data(path) == []
    assert sorted(p.name for p in edge["dir"].iterdir()) == ["detect.onnx", "full.onnx"]


def test_dynamic_batch_runs_in_onnxruntime(edge: dict) -> None:
    import torch

    from training.checkpoint import load_model
    from training.model import FullGraph

    model, _ = load_model(edge["ckpt"])
    sess = _ort(edge["dir"] / "full.onnx")
    for n in (1, 3, 7):
        x = np.random.default_rng(n).standard_normal((n, 3, 224, 224)).astype(np.float32)
        logit, recon = sess.run(None, {"input": x})
        assert logit.shape == (n, 1) and recon.shape == (n, 3, 224, 224)
        if n == 7:
            with torch.no_grad():
                want = FullGraph(model)(torch.from_numpy(x))
            assert np.abs(logit - want[0].numpy()).max() <= 1e-4


def test_polygraphy_loads_the_export(edge: dict) -> None:
    poly = Path(sys.executable).with_name("polygraphy")
    if not poly.exists():
        pytest.skip("polygraphy CLI not installed")
    p = subprocess.run([str(poly), "run", str(edge["dir"] / "detect.onnx"), "--onnxrt",
                        "--input-shapes", "input:[2,3,224,224]"], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0 and "PASSED" in p.stdout + p.stderr, p.stdout + p.stderr


def test_static_batch_cli(edge: dict, tmp_path: Path) -> None:
    p = run_module("export.onnx", "--ckpt", edge["ckpt"], "--out", tmp_path, "--batch", "2", timeout=300)
    assert p.returncode == 0, p.stderr
    assert "batch 2 (static)" in p.stdout and "parity vs PyTorch at batch 2: max |Δlogit| = " in p.stdout
    model = load_onnx(tmp_path / "detect.onnx")
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [2, 3, 224, 224]
    sess = _ort(tmp_path / "detect.onnx")
    assert sess.run(None, {"input": np.zeros((2, 3, 224, 224), np.float32)})[0].shape == (2, 1)
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    with pytest.raises(InvalidArgument, match="invalid dimensions"):  # a static graph: batch 2 only
        sess.run(None, {"input": np.zeros((3, 3, 224, 224), np.float32)})


def test_parity_gate_failure_reports_numbers(edge: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_onnx, "PARITY_TOL", -1.0)  # any difference, even 0, now fails
    with pytest.raises(UserError) as e:
        export_onnx.main(["--ckpt", str(edge["ckpt"]), "--out", str(tmp_path)])
    msg = str(e.value)
    assert "parity check failed" in msg and "max |Δlogit| = " in msg and "batch 1/4" in msg and "\n" not in msg
    assert not (tmp_path / "detect.onnx").exists() and (tmp_path / "detect.onnx.failed").exists()


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    p = run_module("export.onnx", "--ckpt", tmp_path / "nope.pt", "--out", tmp_path, timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("export.onnx: error: "), p.stderr
    assert "nope.pt" in lines[0]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    p = run_module("export.onnx", "--ckpt", bad, "--out", tmp_path, "--opset", "9", timeout=120)
    assert p.returncode == 2 and "--opset 9" in p.stderr  # a value out of range: a command-line error



def test_simplify_falls_back_without_onnxslim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import onnx

    from tests.helpers.models import tiny_onnx

    model = onnx.load(str(tiny_onnx(tmp_path / "t.onnx")))
    monkeypatch.setitem(sys.modules, "onnxslim", None)
    monkeypatch.setitem(sys.modules, "onnx_graphsurgeon", None)
    out, how = export_onnx.simplify(model)
    assert how == "none" and out is model and "left as exported" in capsys.readouterr().out


def test_outputs_are_checked_before_the_export(tmp_path: Path) -> None:
    """An --out that cannot hold the files, or a value out of range, is one line before the checkpoint is read
    (here a checkpoint that does not exist, which would be the error otherwise)."""
    from tests.helpers import run_in_process

    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub", "/proc/jrc-export"):
        p = run_in_process("export.onnx", "--ckpt", tmp_path / "nope.pt", "--out", out)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"export.onnx: error: --out {out}:"), p.stderr
    p = run_in_process("export.onnx", "--ckpt", tmp_path / "nope.pt", "--out", tmp_path, "--batch", "0")
    assert p.returncode == 2 and p.stderr.startswith("export.onnx: error: --batch 0:")


def test_replacing_another_checkpoints_export_names_what_is_now_stale(edge: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "models"
    out.mkdir()
    (out / "detect.onnx").write_bytes((edge["dir"] / "detect.onnx").read_bytes())
    (out / "detect.int8.onnx").write_bytes(b"made from the old model")
    (out / "detect.fp16.engine").write_bytes(b"made from the old model")
    export_onnx.note_stale(out / "detect.onnx", sha256_file(edge["ckpt"]))  # the same checkpoint: nothing to say
    export_onnx.note_stale(out / "full.onnx", sha256_file(edge["ckpt"]))  # nothing to replace
    assert capsys.readouterr().err == ""
    other = make_checkpoint(tmp_path / "other.pt", "edge", seed=1)
    export_onnx.note_stale(out / "detect.onnx", sha256_file(other))
    assert capsys.readouterr().err.splitlines() == [
        f"export.onnx: note: replacing {out / 'detect.onnx'}, exported from another checkpoint; made from the old "
        "one and now stale: detect.fp16.engine, detect.int8.onnx"]
