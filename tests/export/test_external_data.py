"""ONNX external data must stay in the model's folder (runtime/onnx_proto.py, used by export and
available to the runtime without the onnx package)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.onnx_io import load_onnx
from runtime.errors import UserError
from runtime.onnx_proto import check_external_data, external_locations
from tests.helpers import ROOT
from tests.helpers.models import tiny_onnx


def _external(tmp: Path, name: str = "m.onnx", location: str = "weights.bin") -> Path:
    model = onnx.load(str(tiny_onnx(tmp / "src" / "t.onnx")))
    path = tmp / name
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=0)
    return path


def _relocate(path: Path, location: str) -> None:
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def test_inside_the_folder_is_accepted_and_loads(tmp_path: Path) -> None:
    path = _external(tmp_path)
    assert check_external_data(path) == [(tmp_path / "weights.bin").resolve()]
    import onnxruntime as ort

    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": np.zeros((1, 3, 32, 32), np.float32)})[0]
    assert out.shape == (1, 1)
    assert len(load_onnx(path).graph.initializer) == 4


def test_same_locations_as_onnx_finds(tmp_path: Path) -> None:
    path = _external(tmp_path)
    model = onnx.load(str(path), load_external_data=False)
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    want = [e.value for t in _get_all_tensors(model) if uses_external_data(t) for e in t.external_data
            if e.key == "location"]
    assert external_locations(path.read_bytes()) == want and len(want) == 4


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../outside.bin", ""])
def test_outside_or_absolute_is_refused(tmp_path: Path, location: str) -> None:
    (tmp_path / "outside.bin").write_bytes(b"\0" * 1024)
    d = tmp_path / "model"
    d.mkdir()
    path = _external(d)
    _relocate(path, location)
    with pytest.raises(UserError, match="outside the model's folder"):
        check_external_data(path)
    with pytest.raises(UserError, match="outside the model's folder"):
        load_onnx(path)  # the export tools refuse it before onnx reads anything


def test_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "model"
    d.mkdir()
    path = _external(d)
    (tmp_path / "secret.bin").write_bytes((d / "weights.bin").read_bytes())
    (d / "weights.bin").unlink()
    os.symlink(tmp_path / "secret.bin", d / "weights.bin")
    with pytest.raises(UserError, match="outside the model's folder"):
        check_external_data(path)


def test_missing_data_file(tmp_path: Path) -> None:
    path = _external(tmp_path)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(UserError, match="missing"):
        check_external_data(path)


def test_subgraph_tensor_is_found(tmp_path: Path) -> None:
    """A Constant inside an If branch pointing outside: found although it is no initializer."""
    const = numpy_helper.from_array(np.ones(4, np.float32), "c")
    const.data_location = TensorProto.EXTERNAL
    const.ClearField("raw_data")
    const.external_data.add(key="location", value="../../etc/shadow")
    branch = helper.make_graph([helper.make_node("Constant", [], ["y"], value=const)], "then", [],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    other = helper.make_graph([helper.make_node("Constant", [], ["y2"], value=numpy_helper.from_array(
        np.zeros(4, np.float32)))], "else", [], [helper.make_tensor_value_info("y2", TensorProto.FLOAT, [4])])
    g = helper.make_graph([helper.make_node("If", ["cond"], ["out"], then_branch=branch, else_branch=other)], "g",
                          [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4])])
    path = tmp_path / "if.onnx"
    path.write_bytes(helper.make_model(g).SerializeToString())
    assert external_locations(path.read_bytes()) == ["../../etc/shadow"]
    with pytest.raises(UserError, match="outside"):
        check_external_data(path)


def test_not_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f")
    with pytest.raises(UserError, match="not a valid ONNX"):
        check_external_data(bad)
    with pytest.raises(UserError, match="cannot read"):
        check_external_data(tmp_path / "absent.onnx")


def test_checker_needs_no_onnx_package(tmp_path: Path) -> None:
    path = _external(tmp_path)
    code = ("import sys\nsys.modules['onnx'] = None\nsys.modules['google.protobuf'] = None\n"
            "from runtime.onnx_proto import check_external_data\nprint(len(check_external_data(sys.argv[1])))\n")
    p = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "1", p.stderr
