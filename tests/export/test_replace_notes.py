"""The export tools say "note: replacing <earlier output>" only once every input passed its checks: with
an earlier output in place and a bad input, stderr is the run's one error line (the output checks
themselves still come before any input is read)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Callable

import pytest

from runtime.meta import Meta, write_sidecar
from tests.helpers import has_module, run_in_process
from tests.helpers.models import tiny_onnx

pytestmark = pytest.mark.skipif(not has_module("onnx"), reason="needs onnx")


def _not_onnx(tmp: Path) -> Path:
    bad = tmp / "bad.onnx"
    bad.write_text("x\n")  # parses as an empty ModelProto: no graph, no metadata
    return bad


def _engine_case(tmp: Path) -> tuple[list, str]:
    (tmp / "existing.engine").write_bytes(b"an earlier engine")
    return ["--onnx", tiny_onnx(tmp / "detect.onnx"), "--precision", "fp32", "--out", tmp / "existing.engine"], \
        "tensorrt is not installed"


def _engine_bad_onnx(tmp: Path) -> tuple[list, str]:
    (tmp / "existing.engine").write_bytes(b"an earlier engine")
    return ["--onnx", _not_onnx(tmp), "--precision", "fp32", "--out", tmp / "existing.engine"], "0 inputs"


def _fp16_missing(tmp: Path) -> tuple[list, str]:
    (tmp / "existing.onnx").write_bytes(b"an earlier result")
    return ["--onnx", tmp / "nope.onnx", "--out", tmp / "existing.onnx"], "not found"


def _fp16_not_onnx(tmp: Path) -> tuple[list, str]:
    (tmp / "existing.onnx").write_bytes(b"an earlier result")
    return ["--onnx", _not_onnx(tmp), "--out", tmp / "existing.onnx"], "0 inputs"


def _deepstream_fold(tmp: Path) -> tuple[list, str]:
    (tmp / "existing.onnx").write_bytes(b"an earlier result")
    return ["--fold-std", _not_onnx(tmp), "--out", tmp / "existing.onnx"], "no jrc metadata"


def _mesonet_junk(tmp: Path) -> tuple[list, str]:
    (tmp / "junk").mkdir()
    (tmp / "junk" / "Meso4_DF.h5").write_text("junk")
    (tmp / "out").mkdir()
    (tmp / "out" / "Meso4_DF.onnx").write_bytes(b"an earlier conversion")
    return ["--h5", tmp / "junk" / "Meso4_DF.h5", "--out", tmp / "out"], "not an HDF5 file"


def _triton_kind(tmp: Path) -> tuple[list, str]:
    engine = tmp / "x.fp16.engine"
    engine.write_bytes(b"plan bytes")
    write_sidecar(engine, Meta(input_size=64, precision="fp16", tensorrt_version="10.3.0", device="Orin",
                               compute_capability="8.7", profile={"min": 1, "opt": 4, "max": 8}), {"onnx": "x.onnx"})
    (tmp / "repo" / "jrc_detect" / "1").mkdir(parents=True)
    (tmp / "repo" / "jrc_detect" / "config.pbtxt").write_text("an earlier entry")
    return ["--model", engine, "--out", tmp / "repo", "--kind", "KIND_CPU"], "--kind KIND_CPU"


def _faces_bad_weights(tmp: Path) -> tuple[list, str]:
    wheel = tmp / "facenet_pytorch-2.6.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for net in ("pnet", "rnet", "onet"):
            z.writestr(f"facenet_pytorch/data/{net}.pt", b"not a state_dict")
    (tmp / "out").mkdir()
    (tmp / "out" / "pnet.onnx").write_bytes(b"an earlier export")
    return ["--wheel", wheel, "--out", tmp / "out"], "its weights cannot be read"


CASES: dict[str, tuple[str, Callable[[Path], tuple[list, str]]]] = {
    "engine-no-tensorrt": ("export.engine", _engine_case),
    "engine-not-onnx": ("export.engine", _engine_bad_onnx),
    "fp16-missing": ("export.fp16", _fp16_missing),
    "fp16-not-onnx": ("export.fp16", _fp16_not_onnx),
    "deepstream-fold-std": ("export.deepstream", _deepstream_fold),
    "mesonet-junk-h5": ("export.mesonet", _mesonet_junk),
    "triton-kind": ("export.triton", _triton_kind),
    "faces-bad-weights": ("export.faces", _faces_bad_weights),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_input_is_the_only_line_with_an_earlier_output(case: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    module, make = CASES[case]
    if case == "faces-bad-weights" and not has_module("torch"):
        pytest.skip("needs torch")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a machine without it, whatever this one has
    argv, error = make(tmp_path)
    r = run_in_process(module, *map(str, argv))
    lines = r.stderr.splitlines()
    assert r.returncode != 0 and len(lines) == 1, r.stderr
    assert lines[0].startswith((f"{module}: error:", f"python -m {module}: error:")) and error in lines[0], r.stderr


@pytest.mark.skipif(not has_module("torch") or not has_module("h5py") or not has_module("onnxruntime"),
                    reason="needs torch, h5py and onnxruntime")
def test_mesonet_says_what_it_replaces_once_the_weights_are_read(tmp_path: Path) -> None:
    from tests.helpers.keras_h5 import write_meso_h5

    h5 = tmp_path / "Meso4_DF.h5"
    write_meso_h5(h5, "meso4")
    out = tmp_path / "out"
    out.mkdir()
    (out / "Meso4_DF.onnx").write_bytes(b"an earlier conversion")
    r = run_in_process("export.mesonet", "--h5", str(h5), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [f"export.mesonet: note: replacing Meso4_DF.onnx in {out} (earlier conversions)"]
