"""Hostile or broken model files and metadata: one line naming the file (and the field), exit 1, for
every tool that opens an ONNX; model outputs are checked, and non-finite logits are counted, not
turned into "no face".

Every CLI's ``main`` runs in-process (``run_cli`` turns the UserError into the one line and exit 1;
an escaping exception of another type fails the test as a traceback would).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from runtime.errors import UserError
from runtime.meta import Meta
from runtime.onnx_proto import check_external_data
from tests.helpers.models import SIZE, make_external_onnx, make_onnx, tiny_meta

# --- 7. metadata types -------------------------------------------------------------------------
GOOD = tiny_meta().to_dict()
BAD_FIELDS = [  # (field, value): each must be refused with the field named
    ("schema", "1"), ("schema", None), ("schema", 1e400), ("schema", [1]), ("schema", 0), ("schema", True),
    ("input_name", []), ("input_name", ""), ("input_name", None),
    ("input_size", "32"), ("input_size", 32.0), ("input_size", True), ("input_size", 1e400), ("input_size", 10**30),
    ("encoder", ["edge"]), ("encoder", None), ("color", 1), ("graph", {}), ("precision", "int4"),
    ("mean", [0.5, 0.5]), ("mean", [0.5, 0.5, "x"]), ("mean", [0.5, 0.5, 1e400]), ("mean", [True, 0.5, 0.5]),
    ("mean", "grey"), ("std", [0.5, 0.5, 0]), ("std", [0.5, 0.5, -1]), ("std", None),
    ("face_margin", "0.1"), ("face_margin", 1e400), ("face_margin", -0.1), ("face_margin", True),
    ("threshold", None), ("threshold", 2), ("threshold", "0.5"),
    ("outputs", "logit"), ("outputs", [["logit"]]), ("outputs", ["logit", "logit"]), ("outputs", []),
    ("model", []), ("model", "edge"), ("training", None), ("training", {"a": [[1]] * 3000}),
    ("training", {"a": json.loads("[" * 20 + "]" * 20)}),
    ("source_sha256", 5), ("tensorrt_version", ["10"]), ("device", {}), ("compute_capability", 8.7),
    ("profile", [1, 4, 8]), ("profile", {"min": 8, "opt": 4, "max": 1}), ("profile", {"max": "8"}),
]


def _meta_text(field: str, value) -> str:
    return json.dumps({**GOOD, field: value})


@pytest.mark.parametrize("field, value", BAD_FIELDS, ids=[f"{f}={v!r}"[:40] for f, v in BAD_FIELDS])
def test_every_metadata_field_is_type_and_range_checked(field, value):
    with pytest.raises(UserError) as e:
        Meta.from_json(_meta_text(field, value), source="m.onnx (metadata 'jrc_meta')")
    msg = str(e.value)
    assert msg.startswith("m.onnx") and f"'{field}'" in msg and "\n" not in msg, msg


def test_metadata_round_trip_and_unknown_keys_ignored():
    m = tiny_meta().with_(profile={"min": 1, "opt": 4, "max": 8}, device="NVIDIA Jetson AGX Orin")
    assert Meta.from_json(m.to_json()) == m
    assert Meta.from_dict({**m.to_dict(), "from_a_newer_writer": [1, 2]}) == m


@pytest.fixture(scope="module")
def metas(tmp_path_factory):
    d = tmp_path_factory.mktemp("metas")
    cases = {"schema-str": ("schema", "1"), "schema-null": ("schema", None), "schema-inf": ("schema", 1e400),
             "schema-list": ("schema", [1]), "input-name-list": ("input_name", [])}
    return {k: (make_onnx(d / f"{k}.onnx", meta_text=_meta_text(f, v)), f) for k, (f, v) in cases.items()}


def _image(folder: Path, gray: int = 200) -> Path:
    path = folder / f"g{gray}.png"
    cv2.imwrite(str(path), np.full((40, 40, 3), gray, np.uint8))
    return path


@pytest.mark.parametrize("case", ["schema-str", "schema-null", "schema-inf", "schema-list", "input-name-list"])
def test_bad_metadata_is_one_line_in_detect_and_quantize(metas, tmp_path, capsys, case):
    from calibration import quantize
    from runtime.detect import main as detect

    path, field = metas[case]
    assert detect(["--engine", str(path), "--source", str(_image(tmp_path)), "--quiet"]) == 1
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1 and path.name in err[0] and f"'{field}'" in err[0], err
    with pytest.raises(UserError, match=rf"{path.name}.*'{field}'"):
        quantize.main(["--onnx", str(path), "--data", "synthetic", "--quiet"])


# --- 10. one check for every tool that opens an ONNX -------------------------------------------
def _external(folder: Path, edit) -> Path:
    """The tiny model with every tensor in weights.bin, then ``edit(tensor)`` applied to each."""
    return make_external_onnx(folder, edit)


def _set(key: str, value: str):
    def edit(t):
        if t.name != "k":
            return
        for e in t.external_data:
            if e.key == key:
                e.value = value
                return
        t.external_data.add(key=key, value=value)
    return edit


def _dims(t, dims):
    del t.dims[:]
    t.dims.extend(dims)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile-onnx")
    (d / "secret.bin").write_bytes(np.ones(64, np.float32).tobytes())
    files = {
        "outside": _external(d / "outside", lambda t: [setattr(e, "value", "../secret.bin")
                                                       for e in t.external_data if e.key == "location"]),
        "huge-offset": _external(d / "offset", _set("offset", str(2**62))),
        "offset-past-end": _external(d / "offset2", _set("offset", "1000000")),
        "huge-length": _external(d / "length", _set("length", str(2**62))),
        "negative-length": _external(d / "neglength", _set("length", "-4")),
        "huge-dim": _external(d / "dim", lambda t: _dims(t, [2**40]) if t.name == "k" else None),
        "repeated-location": _external(d / "repeat", lambda t: t.external_data.add(key="location",
                                                                                   value="../secret.bin")),
        "nul-location": _external(d / "nul", lambda t: [setattr(e, "value", e.value + "\0../../secret.bin")
                                                         for e in t.external_data if e.key == "location"]),
        "out-and-back": _external(d / "back", lambda t: [setattr(e, "value", f"sub/../../back/{e.value}")
                                                         for e in t.external_data if e.key == "location"]),
    }
    inline = onnx.load(str(make_onnx(d / "inline.onnx")))
    for t in inline.graph.initializer:
        if t.name == "k":
            _dims(t, [2**40])
    (d / "inline-dim.onnx").write_bytes(inline.SerializeToString())
    files["inline-huge-dim"] = d / "inline-dim.onnx"
    for name, dim in (("input-huge-dim", 2**40), ("input-negative-dim", -5)):
        m = onnx.load(str(make_onnx(d / f"{name}.onnx")))
        m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = dim
        (d / f"{name}.onnx").write_bytes(m.SerializeToString())
        files[name] = d / f"{name}.onnx"
    good = make_onnx(d / "good.onnx").read_bytes()
    (d / "trunc.onnx").write_bytes(good[: len(good) // 2])
    files["truncated"] = d / "trunc.onnx"
    return files


HOSTILE = ["outside", "huge-offset", "offset-past-end", "huge-length", "negative-length", "huge-dim",
           "repeated-location", "nul-location", "out-and-back", "inline-huge-dim", "input-huge-dim", "input-negative-dim", "truncated"]


@pytest.mark.parametrize("case", HOSTILE)
def test_the_check_refuses_before_anything_opens_the_model(hostile, case):
    with pytest.raises(UserError) as e:
        check_external_data(hostile[case])
    assert hostile[case].name in str(e.value) and "\n" not in str(e.value)


def _tools(path: Path, tmp: Path) -> dict:
    from calibration import quantize
    from calibration import report as calib_report
    from export import engine, fp16, triton
    from runtime.detect import main as detect

    img = _image(tmp)
    return {
        "runtime.detect": lambda: detect(["--engine", str(path), "--source", str(img), "--quiet"]),
        "calibration.quantize": lambda: quantize.main(["--onnx", str(path), "--data", "synthetic", "--quiet"]),
        "calibration.report": lambda: calib_report.main(["--fp32", str(path)]),
        "export.fp16": lambda: fp16.main(["--onnx", str(path), "--out", str(tmp / "x.fp16.onnx")]),
        "export.engine": lambda: engine.main(["--onnx", str(path)]),
        "export.triton": lambda: triton.main(["--model", str(path), "--out", str(tmp / "repo")]),
    }


TOOLS = ["runtime.detect", "calibration.quantize", "calibration.report", "export.fp16", "export.engine",
         "export.triton"]


@pytest.mark.parametrize("case", ["outside", "huge-offset", "huge-dim", "truncated", "nul-location", "out-and-back"])
@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_refuses_in_one_line(hostile, tmp_path, capsys, tool, case):
    path = hostile[case]
    try:
        code = _tools(path, tmp_path)[tool]()
    except UserError as e:
        msg = str(e)
    else:  # runtime.detect prints its own line and returns the exit code
        assert code == 1
        msg = capsys.readouterr().err.strip()
    assert path.name in msg and "\n" not in msg, msg
    if case in ("outside", "nul-location", "out-and-back"):
        assert "outside the model's folder" in msg
    assert not (tmp_path / "x.fp16.onnx").exists() and not (tmp_path / "repo").exists()


# --- 9. model outputs ---------------------------------------------------------------------------
def _logit_model(path: Path, logit_type: int, logit_shape, value=None, nonfinite: str | None = None) -> Path:
    """input N×3×S×S; 'logit' is a constant ``value`` (declared ``logit_type``/``logit_shape``), or, with
    ``nonfinite``, log(mean(input)) ("nan": NaN for dark crops) or 1/relu(mean(input)) ("inf": +inf for
    dark crops), finite for bright ones."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])
    out = helper.make_tensor_value_info("logit", logit_type, logit_shape)
    if value is None:
        inits = [numpy_helper.from_array(np.array([-1, 1], np.int64), "shape")]
        last = ([helper.make_node("Log", ["m2"], ["logit"])] if nonfinite == "nan" else
                [helper.make_node("Relu", ["m2"], ["r"]), helper.make_node("Reciprocal", ["r"], ["logit"])])
        nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=1),
                 helper.make_node("Reshape", ["m", "shape"], ["m2"])] + last
    else:
        inits = []
        nodes = [helper.make_node("Constant", [], ["logit"], value=numpy_helper.from_array(value))]
    graph = helper.make_graph(nodes, "t", [x], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"jrc_meta": tiny_meta().to_json()})
    path.write_bytes(model.SerializeToString())
    return path


OUTPUT_CASES = {  # declared type, declared shape, constant returned
    "string": (TensorProto.STRING, ["N", 1], np.array([["a"]], dtype=object)),
    "int64": (TensorProto.INT64, ["N", 1], np.zeros((1, 1), np.int64)),
    "declared empty": (TensorProto.FLOAT, [0], np.zeros(0, np.float32)),
    "declared scalar": (TensorProto.FLOAT, [], np.array(1.0, np.float32)),
    "declared two columns": (TensorProto.FLOAT, ["N", 2], np.zeros((1, 2), np.float32)),
    "declared rank 3": (TensorProto.FLOAT, ["N", 1, 1], np.zeros((1, 1, 1), np.float32)),
}


@pytest.mark.parametrize("case", list(OUTPUT_CASES))
def test_declared_logit_output_is_checked_when_opened(tmp_path, case):
    from runtime.backends import open_backend

    kind, shape, value = OUTPUT_CASES[case]
    path = _logit_model(tmp_path / "m.onnx", kind, shape, value)
    with pytest.raises(UserError, match="'logit' output") as e:
        open_backend(path)
    assert path.name in str(e.value)


@pytest.mark.parametrize("value", [np.zeros(0, np.float32), np.array(1.0, np.float32), np.zeros((2, 3), np.float32),
                                   np.zeros((3, 1), np.float32)], ids=["empty", "scalar", "2x3", "3 rows"])
def test_actual_logit_result_is_checked(tmp_path, capsys, monkeypatch, value):
    """When the declared shape says nothing (here: its check switched off), the result is what gets
    checked: one line from the inference thread."""
    from runtime.backends import open_backend
    from runtime.backends.onnxruntime import OnnxRuntimeBackend
    from runtime.detect import main as detect

    monkeypatch.setattr(OnnxRuntimeBackend, "_check_outputs", lambda self, path, batch: None)
    path = _logit_model(tmp_path / "m.onnx", TensorProto.FLOAT, None, value)
    with open_backend(path) as b, pytest.raises(UserError, match="returned a 'logit'"):
        b.infer(np.zeros((2, 3, SIZE, SIZE), np.float32))
    code = detect(["--engine", str(path), "--source", str(_image(tmp_path)), "--faces", "none", "--quiet"])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert code == 1 and len(err) == 1 and "returned a 'logit'" in err[0], err


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_nonfinite_logits_are_counted_warned_once_and_never_no_face(tmp_path, capsys, kind):
    from runtime.detect import main as detect
    from tests.helpers.media import gray_video

    path = _logit_model(tmp_path / "m.onnx", TensorProto.FLOAT, ["N", 1], nonfinite=kind)
    clip = gray_video(tmp_path / "v.mp4", [10, 230, 20, 240, 10])  # dark frames: non-finite logits
    summary, jsonl = tmp_path / "s.json", tmp_path / "o.jsonl"
    code = detect(["--engine", str(path), "--source", str(clip), "--faces", "none", "--quiet",
                   "--summary", str(summary), "--jsonl", str(jsonl)])
    assert code == 0
    warnings = [x for x in capsys.readouterr().err.splitlines() if "warning" in x]
    assert len(warnings) == 1 and "nonfinite_logits" in warnings[0], warnings
    s = json.loads(summary.read_text())
    assert s["nonfinite_logits"] == 3 and s["faces"] == 5 and s["frames_with_face"] == 5
    assert s["frames_without_face"] == 0 and s["verdict"] in ("real", "fake") and math.isfinite(s["prob"])
    recs = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(recs) == 5 and all(len(r["faces"]) == 1 and not r["no_face"] for r in recs)
    probs = [r["faces"][0]["prob"] for r in recs]
    assert [p is None or math.isnan(p) for p in probs] == [True, False, True, False, True]  # null: strict JSON


def test_a_source_with_no_finite_logit_ends_with_an_unscored_line(tmp_path, capsys):
    """Every face non-finite: exit 0, the verdict line says UNSCORED (no traceback formatting None)."""
    from runtime.detect import main as detect
    from tests.helpers.media import gray_video

    path = _logit_model(tmp_path / "m.onnx", TensorProto.FLOAT, ["N", 1], nonfinite="nan")
    clip = gray_video(tmp_path / "v.mp4", [10, 20, 10])  # dark frames only: every logit is NaN
    jsonl = tmp_path / "o.jsonl"
    assert detect(["--engine", str(path), "--source", str(clip), "--faces", "none", "--quiet",
                   "--jsonl", str(jsonl)]) == 0
    out = capsys.readouterr().out
    assert "UNSCORED, 3 face(s) without a finite logit" in out, out
    recs = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["prob"] for r in recs] == [None, None, None] and not any(r["no_face"] for r in recs)


def test_a_nonfinite_face_does_not_hide_the_finite_ones_and_all_nonfinite_is_unscored():
    from runtime.aggregate import Aggregator
    from runtime.pipeline import Face, Result
    from runtime.sources import Frame

    def sigmoid(lg: float) -> float:
        return 1 / (1 + math.exp(-lg)) if math.isfinite(lg) else float("nan")

    said: list[str] = []
    agg = Aggregator(0.5, warn=said.append)
    nan, inf = float("nan"), float("inf")
    frames = [("v.mp4", 0, (nan, 3.0)), ("v.mp4", 0, (nan, nan)), ("v.mp4", 0, (-4.0, -inf)), ("w.mp4", 1, (nan,))]
    for i, (source, item, logits) in enumerate(frames):
        faces = [Face(k, (0, 0, 4, 4), True, lg, sigmoid(lg)) for k, lg in enumerate(logits)]
        agg.add(Result(Frame(image=None, index=i, time=0.0, source=source, item=item), faces, []))
    agg.finish()
    s = agg.summary()
    assert len(said) == 1 and s["nonfinite_logits"] == 5 and s["faces"] == 7 and s["frames_with_face"] == 4
    assert s["verdict"] == "real" and math.isclose(s["prob"], (sigmoid(3.0) + sigmoid(-4.0)) / 2, abs_tol=1e-6)
    v, w = s["sources"]
    assert (v["verdict"], v["faces"], w["verdict"], w["faces"], w["prob"]) == ("real", 6, "unscored", 1, None)
    assert [(t["frames"], t["verdict"]) for t in s["tracks"]] == [(3, "real"), (3, "fake"), (1, "unscored")]
