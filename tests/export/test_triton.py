"""export.triton: repositories for both platforms, parsed with protobuf's text format against the
subset of Triton's ModelConfig schema that the config uses (field names from model_config.proto)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export.triton import export_repository, pb_string
from runtime.errors import UserError
from runtime.meta import Meta, write_sidecar
from tests.helpers import run_module
from tests.helpers.models import tiny_onnx


def _model_config_class():
    """ModelConfig (subset) built from a descriptor, so text_format can parse config.pbtxt strictly."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="jrc_test_model_config.proto", package="inference", syntax="proto3")
    dt = fdp.enum_type.add(name="DataType")
    for i, n in enumerate(["TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64",
                           "TYPE_INT8", "TYPE_INT16", "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32",
                           "TYPE_FP64", "TYPE_STRING", "TYPE_BF16"]):
        dt.value.add(name=n, number=i)

    def msg(name, fields, parent=None):
        m = (parent.nested_type if parent else fdp.message_type).add(name=name)
        for num, (fname, ftype, label, tname) in enumerate(fields, 1):
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                f.type_name = tname
        return m

    OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    msg("ModelInput", [("name", F.TYPE_STRING, OPT, None), ("data_type", F.TYPE_ENUM, OPT, ".inference.DataType"),
                       ("dims", F.TYPE_INT64, REP, None)])
    msg("ModelOutput", [("name", F.TYPE_STRING, OPT, None), ("data_type", F.TYPE_ENUM, OPT, ".inference.DataType"),
                        ("dims", F.TYPE_INT64, REP, None)])
    ig = msg("ModelInstanceGroup", [("count", F.TYPE_INT32, OPT, None),
                                    ("kind", F.TYPE_ENUM, OPT, ".inference.ModelInstanceGroup.Kind")])
    kind = ig.enum_type.add(name="Kind")
    for i, n in enumerate(["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"]):
        kind.value.add(name=n, number=i)
    msg("ModelDynamicBatching", [("preferred_batch_size", F.TYPE_INT32, REP, None),
                                 ("max_queue_delay_microseconds", F.TYPE_UINT64, OPT, None)])
    msg("ModelParameter", [("string_value", F.TYPE_STRING, OPT, None)])
    cfg = msg("ModelConfig", [("name", F.TYPE_STRING, OPT, None), ("platform", F.TYPE_STRING, OPT, None),
                              ("max_batch_size", F.TYPE_INT32, OPT, None),
                              ("input", F.TYPE_MESSAGE, REP, ".inference.ModelInput"),
                              ("output", F.TYPE_MESSAGE, REP, ".inference.ModelOutput"),
                              ("instance_group", F.TYPE_MESSAGE, REP, ".inference.ModelInstanceGroup"),
                              ("dynamic_batching", F.TYPE_MESSAGE, OPT, ".inference.ModelDynamicBatching"),
                              ("parameters", F.TYPE_MESSAGE, REP, ".inference.ModelConfig.ParametersEntry")])
    entry = msg("ParametersEntry", [("key", F.TYPE_STRING, OPT, None),
                                    ("value", F.TYPE_MESSAGE, OPT, ".inference.ModelParameter")], parent=cfg)
    entry.options.map_entry = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


def parse_config(path: Path):
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), _model_config_class()())


def test_onnx_repository(tmp_path: Path) -> None:
    onnx = tiny_onnx(tmp_path / "detect.onnx", size=48)
    folder = export_repository(onnx, tmp_path / "repo", max_batch=16, instances=2)
    assert (folder / "1" / "model.onnx").read_bytes() == onnx.read_bytes()
    cfg = parse_config(folder / "config.pbtxt")
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("jrc_detect", "onnxruntime_onnx", 16)
    assert [(i.name, list(i.dims)) for i in cfg.input] == [("input", [3, 48, 48])]
    assert [(o.name, list(o.dims)) for o in cfg.output] == [("logit", [1])]
    assert cfg.input[0].data_type == 11  # TYPE_FP32
    assert list(cfg.dynamic_batching.preferred_batch_size) == [1, 4, 8, 16]
    assert (cfg.instance_group[0].count, cfg.instance_group[0].kind) == (2, 2)  # KIND_CPU
    meta = Meta.from_json(cfg.parameters["jrc_meta"].string_value)
    assert meta.input_size == 48 and meta.graph == "detect"
    assert cfg.parameters["threshold"].string_value == "0.5"


def test_static_onnx_turns_batching_off(tmp_path: Path, capsys) -> None:
    folder = export_repository(tiny_onnx(tmp_path / "s.onnx", batch=2), tmp_path / "repo", name="jrc_static")
    cfg = parse_config(folder / "config.pbtxt")
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [2, 3, 32, 32] and list(cfg.output[0].dims) == [2, 1]
    assert "batching is off" in capsys.readouterr().out


def _engine(tmp: Path, graph: str, profile: dict, **extra) -> Path:
    engine = tmp / f"{graph}.fp16.engine"
    engine.write_bytes(b"plan bytes")
    outputs = ("logit", "recon") if graph == "full" else ("logit",)
    write_sidecar(engine, Meta(input_size=64, graph=graph, outputs=outputs, precision="fp16", tensorrt_version="10.3.0",
                               device="Orin", compute_capability="8.7", profile=profile),
                  {"onnx": f"{graph}.onnx", **extra})
    return engine


def test_engine_repository(tmp_path: Path, capsys) -> None:
    engine = _engine(tmp_path, "full", {"min": 1, "opt": 4, "max": 8})
    folder = export_repository(engine, tmp_path / "repo", name="jrc_full", max_batch=16)
    assert (folder / "1" / "model.plan").read_bytes() == b"plan bytes"
    cfg = parse_config(folder / "config.pbtxt")
    assert (cfg.platform, cfg.max_batch_size) == ("tensorrt_plan", 8)  # capped by the engine's profile
    assert "profile allows batch ≤ 8" in capsys.readouterr().out
    assert [(o.name, list(o.dims)) for o in cfg.output] == [("logit", [1]), ("recon", [3, 64, 64])]
    assert cfg.instance_group[0].kind == 1  # KIND_GPU
    assert json.loads(cfg.parameters["jrc_meta"].string_value)["tensorrt_version"] == "10.3.0"


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        export_repository(tmp_path / "none.onnx", tmp_path / "repo")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="expected an .onnx"):
        export_repository(tmp_path / "m.pt", tmp_path / "repo")
    with pytest.raises(UserError, match="--name"):
        export_repository(tiny_onnx(tmp_path / "d.onnx"), tmp_path / "repo", name="../evil")
    engine = _engine(tmp_path, "detect", {"min": 1, "opt": 1, "max": 1})
    engine.write_bytes(b"tampered")
    with pytest.raises(UserError, match="does not match its sidecar"):
        export_repository(engine, tmp_path / "repo")


def test_pb_string_escapes() -> None:
    from google.protobuf import text_format

    text = 'a "quoted" \\ path\nwith ünïcode'
    cls = _model_config_class()
    assert text_format.Parse(f"name: {pb_string(text)}", cls()).name == text


def test_cli(tmp_path: Path) -> None:
    p = run_module("export.triton", "--model", tiny_onnx(tmp_path / "d.onnx"), "--out", tmp_path / "repo",
                   "--max-batch", "4", timeout=120)
    assert p.returncode == 0, p.stderr
    assert parse_config(tmp_path / "repo" / "jrc_detect" / "config.pbtxt").max_batch_size == 4


def test_version_compatible_engine_names_the_server_flag(tmp_path: Path, capsys) -> None:
    """#15.7: Triton loads version-compatible plans only with the backend config flag; say so."""
    engine = _engine(tmp_path, "detect", {"min": 1, "opt": 4, "max": 8}, version_compatible=True)
    export_repository(engine, tmp_path / "repo")
    assert "--backend-config=tensorrt,version-compatible=true" in capsys.readouterr().out
    plain = _engine(tmp_path / "p" if (tmp_path / "p").mkdir() is None else tmp_path, "detect",
                    {"min": 1, "opt": 4, "max": 8})
    export_repository(plain, tmp_path / "repo2")
    assert "version-compatible" not in capsys.readouterr().out


def test_engine_with_profile_minimum_above_one_is_refused(tmp_path: Path) -> None:
    """#15.7: Triton's dynamic batcher sends batches from 1; TensorRT refuses those below the minimum."""
    engine = _engine(tmp_path, "detect", {"min": 2, "opt": 4, "max": 8})
    with pytest.raises(UserError, match="starts at 2.*--batch 1:OPT:MAX"):
        export_repository(engine, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
    static = _engine(tmp_path / "s" if (tmp_path / "s").mkdir() is None else tmp_path, "detect",
                     {"min": 4, "opt": 4, "max": 4})
    cfg = parse_config(export_repository(static, tmp_path / "repo") / "config.pbtxt")
    assert cfg.max_batch_size == 0 and list(cfg.input[0].dims) == [4, 3, 64, 64]  # one fixed batch
