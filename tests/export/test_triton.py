"""export.triton: repositories for both platforms, parsed with protobuf's text format against the
subset of Triton's ModelConfig schema that the config uses (field names from model_config.proto), and
engine configs put through the TensorRT backend's load-time checks (export.triton_check) against
engines built on the per-release fakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export.triton import export_repository, pb_string
from export.triton_check import model_config_class
from export.triton_check import parse_config as parse_text
from runtime.errors import UserError
from runtime.meta import Meta, write_sidecar
from tests.helpers import run_module
from tests.helpers.models import tiny_onnx


def parse_config(path: Path):
    return parse_text(path.read_text(), str(path))


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


def test_repository_is_checked_before_writing_and_replacing_is_said(tmp_path: Path, capsys) -> None:
    model = tiny_onnx(tmp_path / "d.onnx")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        export_repository(model, blocker)
    for kw, match in (({"instances": 0}, "--instances 0"), ({"max_batch": -1}, "--max-batch -1"),
                      ({"name": ".hidden"}, "--name")):
        with pytest.raises(UserError, match=match) as e:
            export_repository(model, tmp_path / "repo", **kw)
        assert e.value.exit_code == 2
    (tmp_path / "repo" / "jrc_detect" / "config.pbtxt").mkdir(parents=True)
    with pytest.raises(UserError, match="config.pbtxt is a folder"):
        export_repository(model, tmp_path / "repo")
    (tmp_path / "repo" / "jrc_detect" / "config.pbtxt").rmdir()
    entry = export_repository(model, tmp_path / "repo")
    assert "replacing" not in capsys.readouterr().err
    served = entry / "1" / "model.onnx"
    before = served.read_bytes()
    with pytest.raises(UserError, match="is --model .* itself") as e:
        export_repository(served, tmp_path / "repo")
    assert e.value.exit_code == 2 and served.read_bytes() == before
    (entry / "1" / "model.plan").write_bytes(b"an earlier engine")
    export_repository(model, tmp_path / "repo")
    assert (f"export.triton: note: replacing the repository entry {entry}; {entry / '1' / 'model.plan'} of the "
            "earlier entry stays beside it") in capsys.readouterr().err


def test_pb_string_escapes() -> None:
    from google.protobuf import text_format

    text = 'a "quoted" \\ path\nwith ünïcode'
    cls = model_config_class()
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


# --- issue #30: what Triton's TensorRT backend checks when it loads the plan ---------------------
def _loader(fake, engine: Path):
    """load(dla_core) as the backend does it: a runtime, DLA_core set only for a KIND_NVDLA secondary
    device (else left at -1), the plan deserialized, its I/O tensors (None if TensorRT refuses it)."""
    from runtime.backends import trt_compat

    def load(core: int):
        rt = fake.module.Runtime(trt_compat.shared_logger(fake.module))
        if core != -1:
            rt.DLA_core = core
        eng = rt.deserialize_cuda_engine(engine.read_bytes())
        return None if eng is None else trt_compat.io_tensors(fake.module, eng)

    return load


def _built(tmp: Path, monkeypatch, release: str = "10.3.0", **kw) -> tuple:
    from export.engine import onnx_to_engine
    from export.trt_build import EngineOptions
    from tests.helpers.trt_fakes import install_trt_fakes

    fake = install_trt_fakes(monkeypatch, release)
    io_type, graph = kw.pop("io_type", "float32"), kw.pop("graph", "detect")
    onnx = tiny_onnx(tmp / f"{graph}.{io_type}.onnx", graph=graph, io_type=io_type)
    engine = onnx_to_engine(onnx, tmp / f"{graph}.{io_type}.engine", EngineOptions(precision="fp16", **kw))
    return fake, engine


@pytest.mark.parametrize("core", [0, 1])
def test_dla_engine_names_its_core_as_a_secondary_device(tmp_path: Path, monkeypatch, core: int) -> None:
    """#30.2: the backend sets IRuntime's DLA core only from a KIND_NVDLA secondary device (else -1),
    and a DLA plan does not deserialize on -1: the config must carry the sidecar's dla_core."""
    from export.triton_check import check_plan_config

    fake, engine = _built(tmp_path, monkeypatch, dla_core=core, batch=(4, 4, 4))
    cfg = parse_config(export_repository(engine, tmp_path / "repo") / "config.pbtxt")
    (group,) = cfg.instance_group
    assert group.kind == 1 and [(d.kind, d.device_id) for d in group.secondary_devices] == [(0, core)]
    assert check_plan_config(cfg, _loader(fake, engine), dla_cores=2) == core
    with pytest.raises(UserError, match="DLA Core ID: 1, available number of DLA cores: 1"):
        check_plan_config(parse_text('name: "m" platform: "tensorrt_plan" instance_group [ { kind: KIND_GPU '
                                     'secondary_devices [ { kind: KIND_NVDLA device_id: 1 } ] } ]'),
                          _loader(fake, engine), dla_cores=1)
    del cfg.instance_group[0].secondary_devices[:]  # the config of before: Triton cannot load the plan
    with pytest.raises(UserError, match="unable to create TensorRT engine"):
        check_plan_config(cfg, _loader(fake, engine), dla_cores=2)


@pytest.mark.parametrize("io_type,graph,want", [("float32", "detect", 11), ("float16", "detect", 10),
                                                ("float16", "full", 10)])
def test_data_types_are_the_engine_tensors(tmp_path: Path, monkeypatch, io_type: str, graph: str, want: int) -> None:
    """#30.3: the backend refuses a config whose data_type differs from the engine tensor's type; an
    engine built from an FP16-I/O ONNX has HALF tensors, recorded in its sidecar at build."""
    from export.triton_check import check_plan_config

    fake, engine = _built(tmp_path, monkeypatch, io_type=io_type, graph=graph, batch=(1, 4, 8))
    cfg = parse_config(export_repository(engine, tmp_path / "repo") / "config.pbtxt")
    assert {t.data_type for t in [*cfg.input, *cfg.output]} == {want}  # 10 TYPE_FP16, 11 TYPE_FP32
    assert check_plan_config(cfg, _loader(fake, engine), dla_cores=0) == -1
    cfg.input[0].data_type = 21 - want  # the other float type: what the old config wrote for fp16 I/O
    with pytest.raises(UserError, match="unexpected datatype TYPE_FP(16|32) for inference input 'input'"):
        check_plan_config(cfg, _loader(fake, engine), dla_cores=0)


def test_static_profile_engine_reports_a_dynamic_batch_and_loads(tmp_path: Path, monkeypatch) -> None:
    """#30.16: a min = max profile built from a dynamic-batch ONNX still reports -1 for the batch axis;
    the config (batching off, one fixed batch) is accepted against that shape and the profile."""
    from export.triton_check import check_plan_config

    fake, engine = _built(tmp_path, monkeypatch, batch=(4, 4, 4))
    tensors = _loader(fake, engine)(-1)
    assert {t.name: t.shape[0] for t in tensors} == {"input": -1, "logit": -1}
    cfg = parse_config(export_repository(engine, tmp_path / "repo") / "config.pbtxt")
    assert cfg.max_batch_size == 0 and list(cfg.input[0].dims) == [4, 3, 32, 32]
    check_plan_config(cfg, _loader(fake, engine), dla_cores=0)
    cfg.input[0].dims[0] = 8  # outside the profile: Triton refuses
    with pytest.raises(UserError, match="dimension 0 to be between 4 and 4 but received 8"):
        check_plan_config(cfg, _loader(fake, engine), dla_cores=0)
    cfg.input[0].dims[2] = 31
    with pytest.raises(UserError, match="the model expects 4 dimensions"):
        check_plan_config(cfg, _loader(fake, engine), dla_cores=0)


def test_plan_on_cpu_instances_is_refused(tmp_path: Path, capsys) -> None:
    """#30.4: "TensorRT backend supports only GPU device": --kind KIND_CPU for a plan is one line, and
    nothing is written."""
    from export.triton_check import check_plan_config

    engine = _engine(tmp_path, "detect", {"min": 1, "opt": 4, "max": 8})
    with pytest.raises(UserError, match="--kind KIND_CPU: .*GPU instances only.*supports only GPU device") as e:
        export_repository(engine, tmp_path / "repo", kind="KIND_CPU")
    assert "\n" not in str(e.value) and not (tmp_path / "repo").exists()
    p = run_module("export.triton", "--model", engine, "--out", tmp_path / "repo", "--kind", "KIND_CPU", timeout=120)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1 and "GPU instances only" in p.stderr
    with pytest.raises(UserError, match="TensorRT backend supports only GPU device"):
        check_plan_config(parse_text('name: "m" instance_group [ { kind: KIND_CPU } ]'), lambda core: [], 0)
    export_repository(tiny_onnx(tmp_path / "d.onnx"), tmp_path / "onnx_repo", kind="KIND_CPU")  # ONNX: fine


def test_sidecar_without_tensor_types_assumes_fp32_with_a_note(tmp_path: Path, capsys) -> None:
    engine = _engine(tmp_path, "detect", {"min": 1, "opt": 4, "max": 8})
    cfg = parse_config(export_repository(engine, tmp_path / "repo") / "config.pbtxt")
    assert cfg.input[0].data_type == 11 and "does not record its tensor types" in capsys.readouterr().out
    odd = _engine(tmp_path / "o" if (tmp_path / "o").mkdir() is None else tmp_path, "detect",
                  {"min": 1, "opt": 4, "max": 8}, tensor_types={"input": "FP8", "logit": "FLOAT"})
    with pytest.raises(UserError, match="tensor 'input' the type 'FP8', which Triton cannot serve"):
        export_repository(odd, tmp_path / "repo2")
