"""export.deepstream: nvinfer config values derived from the metadata, checked by replaying nvinfer's
preprocessing formula against runtime/preprocess.py, and the exact --fold-std variant in ONNX Runtime."""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np
import pytest

from export.deepstream import export_config, fold_std, nvinfer_crop, scale_and_offsets
from export.onnx_io import load_onnx, read_meta
from runtime.errors import UserError
from runtime.meta import Meta, write_sidecar
from runtime.preprocess import to_input
from tests.helpers import run_module
from tests.helpers.models import tiny_onnx

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _engine(tmp: Path, precision: str = "fp16", color: str = "RGB", extra: dict | None = None, **meta) -> Path:
    engine = tmp / f"detect.{precision}.engine"
    engine.write_bytes(b"plan")
    m = Meta(graph="detect", outputs=("logit",), precision=precision, color=color, tensorrt_version="10.3.0",
             device="Orin", compute_capability="8.7", profile={"min": 1, "opt": 4, "max": 8}, **meta)
    write_sidecar(engine, m, {"onnx": "detect.onnx", **(extra or {})})
    return engine


def _read(path: Path) -> tuple[configparser.SectionProxy, str]:
    cp = configparser.ConfigParser()
    text = path.read_text()
    cp.read_string(text)
    return cp["property"], text


def _nvinfer(pixels_bgr: np.ndarray, prop: configparser.SectionProxy) -> np.ndarray:
    """nvinfer's preprocessing: y = net-scale-factor * (x - offsets[c]) in the model's colour order."""
    x = pixels_bgr[..., ::-1] if prop["model-color-format"] == "0" else pixels_bgr
    offsets = np.array([float(v) for v in prop["offsets"].split(";")], np.float32)
    y = float(prop["net-scale-factor"]) * (x.astype(np.float32) - offsets)
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def test_imagenet_std_is_approximated_and_says_by_how_much(tmp_path: Path) -> None:
    engine = _engine(tmp_path, **IMAGENET)
    prop, text = _read(export_config(engine))
    assert prop["model-engine-file"] == engine.name and prop["onnx-file"] == "detect.onnx"
    assert (prop["network-mode"], prop["batch-size"], prop["model-color-format"]) == ("2", "8", "0")
    assert prop["infer-dims"] == "3;224;224" and prop["output-blob-names"] == "logit"
    assert prop["network-type"] == "100" and prop["output-tensor-meta"] == "1"
    _, _, _, err = scale_and_offsets(Meta(**IMAGENET))
    assert 0.010 < err < 0.012 and f"{100 * err:.2f}%" in text
    crops = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    want, got = to_input(crops, Meta(**IMAGENET)), _nvinfer(crops, prop)
    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-3)
    assert np.median(rel) < err + 1e-3 and rel[np.abs(want) > 0.1].max() <= err + 1e-3


def test_uniform_std_is_exact(tmp_path: Path) -> None:
    meta = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    prop, text = _read(export_config(_engine(tmp_path, precision="int8", color="BGR", input_size=299, **meta)))
    assert prop["network-mode"] == "1" and prop["model-color-format"] == "1" and "exact" in text
    crops = np.random.default_rng(1).integers(0, 256, (2, 299, 299, 3), dtype=np.uint8)
    np.testing.assert_allclose(_nvinfer(crops, prop), to_input(crops, Meta(color="BGR", input_size=299, **meta)),
                               atol=1e-5)


def test_fold_std_makes_the_single_scale_exact(tmp_path: Path) -> None:
    import onnxruntime as ort

    meta = Meta(input_size=32, graph="detect", outputs=("logit",), **IMAGENET)
    src = tiny_onnx(tmp_path / "d.onnx", meta=meta)
    folded = fold_std(src, tmp_path / "d.ds.onnx")
    fmeta = read_meta(load_onnx(folded), "folded")
    assert len(set(fmeta.std)) == 1 and fmeta.mean == meta.mean
    engine = _engine(tmp_path, input_size=32, mean=fmeta.mean, std=fmeta.std)
    prop, text = _read(export_config(engine))
    assert "exact" in text
    crops = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    run = lambda p, x: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(folded, _nvinfer(crops, prop)), run(src, to_input(crops, meta)), atol=1e-5)


def test_batch_limits_and_cli(tmp_path: Path) -> None:
    engine = _engine(tmp_path, **IMAGENET)
    with pytest.raises(UserError, match="allows 1..8"):
        export_config(engine, batch=16)
    p = run_module("export.deepstream", "--engine", engine, "--batch", "4", "--out", tmp_path / "cfg.txt", timeout=120)
    assert p.returncode == 0, p.stderr
    assert _read(tmp_path / "cfg.txt")[0]["batch-size"] == "4"
    p = run_module("export.deepstream", timeout=60)
    assert p.returncode == 2 and p.stderr.strip().startswith("export.deepstream: error: pass --engine")


def test_out_never_overwrites_an_input_and_is_checked(tmp_path: Path, capsys) -> None:
    from export.deepstream import main

    engine = _engine(tmp_path, **IMAGENET)
    onnx = tiny_onnx(tmp_path / "detect.onnx")
    sidecar = engine.with_name(engine.name + ".json")
    before = engine.read_bytes(), sidecar.read_bytes(), onnx.read_bytes()
    for argv, match in ((["--engine", engine, "--out", engine], "the same file as --engine"),
                        (["--engine", engine, "--out", sidecar], "the same file as --engine's sidecar"),
                        (["--engine", engine, "--out", onnx], "the same file as the engine's ONNX"),
                        (["--fold-std", onnx, "--out", onnx], "the same file as --fold-std"),
                        (["--engine", engine, "--gpu-id", "-1"], "--gpu-id -1"),
                        (["--engine", engine, "--batch", "16"], "allows 1..8")):
        with pytest.raises(UserError, match=match) as e:
            main([str(a) for a in argv])
        assert e.value.exit_code == 2
    assert (engine.read_bytes(), sidecar.read_bytes(), onnx.read_bytes()) == before
    (tmp_path / "cfg.txt").mkdir()
    with pytest.raises(UserError, match="is a folder; name a file"):
        export_config(engine, tmp_path / "cfg.txt")
    with pytest.raises(UserError, match="is a file, not a folder"):
        export_config(engine, onnx / "cfg.txt")
    out = tmp_path / "detect.fp16.nvinfer.txt"
    out.write_text("earlier")
    export_config(engine)
    assert f"note: replacing {out} (an earlier result)" in capsys.readouterr().err


def test_dla_engine_enables_the_dla(tmp_path: Path) -> None:
    """#15.2: a DLA engine's config must say enable-dla/use-dla-core, or nvinfer rebuilding from the
    ONNX makes a GPU engine."""
    prop, _ = _read(export_config(_engine(tmp_path, precision="int8", extra={"dla_core": 1})))
    assert (prop["enable-dla"], prop["use-dla-core"]) == ("1", "1")
    prop, _ = _read(export_config(_engine(tmp_path / "gpu" if (tmp_path / "gpu").mkdir() is None else tmp_path)))
    assert "enable-dla" not in prop and "use-dla-core" not in prop


def test_paths_are_relative_to_the_config(tmp_path: Path) -> None:
    """#15.3: nvinfer resolves model-engine-file and onnx-file against the config file's folder."""
    models = tmp_path / "models"
    models.mkdir()
    engine = _engine(models)
    (models / "detect.onnx").write_bytes(b"onnx")
    cfg = export_config(engine, out=tmp_path / "ds" / "configs" / "sgie.txt")
    prop, _ = _read(cfg)
    assert prop["model-engine-file"] == "../../models/detect.fp16.engine"
    assert prop["onnx-file"] == "../../models/detect.onnx"
    assert (cfg.parent / prop["model-engine-file"]).resolve() == engine.resolve()
    assert (cfg.parent / prop["onnx-file"]).resolve() == (models / "detect.onnx").resolve()
    prop, _ = _read(export_config(engine))  # default: beside the engine
    assert prop["model-engine-file"] == engine.name and prop["onnx-file"] == "detect.onnx"


# --- issue #30 ----------------------------------------------------------------------------------
def test_calibrator_engine_config_names_its_calibration_cache(tmp_path: Path, monkeypatch) -> None:
    """#30.5: nvinfer sets INT8 only with int8-calib-file ("INT8 calibration file not specified. Trying
    FP16 mode."), so rebuilding the INT8 engine from the fp32 ONNX needs the calibration cache."""
    import sys
    import types

    from export.engine import onnx_to_engine
    from export.trt_build import EngineOptions
    from tests.helpers.trt_fakes import install_trt_fakes

    install_trt_fakes(monkeypatch, "8.6.1")
    cal = types.ModuleType("export.trt_calibrator")

    def make_calibrator(trt, onnx_path, data, meta, cache_path, *a, **k):
        Path(cache_path).write_bytes(b"TRT-8601-EntropyCalibration2\n")  # what TensorRT writes
        return trt.IInt8EntropyCalibrator2()

    cal.make_calibrator = make_calibrator
    monkeypatch.setitem(sys.modules, "export.trt_calibrator", cal)
    models = tmp_path / "models"
    onnx = tiny_onnx(models / "detect.onnx", meta=Meta(input_size=32, graph="detect", outputs=("logit",),
                                                         precision="int8"))
    engine = onnx_to_engine(onnx, models / "detect.int8.engine", EngineOptions(precision="int8", calib_data="x"))
    prop, text = _read(export_config(engine, out=tmp_path / "ds" / "sgie.txt"))
    assert prop["network-mode"] == "1" and prop["int8-calib-file"] == "../models/detect.int8.calib"
    assert prop["onnx-file"] == "../models/detect.onnx"
    qdq = onnx_to_engine(tiny_onnx(models / "q.onnx", qdq=True), models / "q.int8.engine",
                         EngineOptions(precision="int8"))
    prop, text = _read(export_config(qdq))
    assert "int8-calib-file" not in prop and "falls back to FP16" in text and prop["onnx-file"] == "q.onnx"


@pytest.mark.parametrize("release,built", [("10.3.0", "detect.onnx"), ("11.4", "detect.fp16.onnx")])
def test_onnx_file_is_what_tensorrt_parsed(tmp_path: Path, monkeypatch, release: str, built: str) -> None:
    """#30.5: on a strongly typed release the engine is built from an FP16 copy; nvinfer rebuilding
    from the fp32 source would make an fp32 engine there, so onnx-file names the copy."""
    from export.engine import onnx_to_engine
    from export.trt_build import EngineOptions
    from tests.helpers.trt_fakes import install_trt_fakes

    install_trt_fakes(monkeypatch, release)
    engine = onnx_to_engine(tiny_onnx(tmp_path / "detect.onnx"), tmp_path / "detect.fp16.engine",
                            EngineOptions(precision="fp16"))
    assert _read(export_config(engine))[0]["onnx-file"] == built


def test_crops_are_stated_and_aligned_models_refused(tmp_path: Path) -> None:
    """#30.15: nvinfer crops the detector's box, without the training square's margin; the config
    scales bilinearly on the GPU, says what the application must do, and landmark-aligned models
    (a warp nvinfer cannot make) are refused in one line."""
    prop, text = _read(export_config(_engine(tmp_path, face_margin=0.25)))
    assert (prop["maintain-aspect-ratio"], prop["scaling-filter"], prop["scaling-compute-hw"]) == ("0", "1", "1")
    assert "face is 1.5x larger than" in text and "enlarge each face box to that square" in text
    aligned = _engine(tmp_path / "a" if (tmp_path / "a").mkdir() is None else tmp_path, face_align="landmarks")
    with pytest.raises(UserError, match="aligned by their landmarks.*nvinfer cannot make") as e:
        export_config(aligned)
    assert "\n" not in str(e.value) and not aligned.with_name(aligned.stem + ".nvinfer.txt").exists()


def test_nvinfer_crop_replays_box_scaling_and_padding() -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[20:60, 50:70] = 255  # a 20 wide, 40 high white box
    box = (50, 20, 20, 40)
    assert (nvinfer_crop(frame, box, 16) == 255).all()  # stretched: only the box
    padded = nvinfer_crop(frame, box, 16, maintain_aspect=True, symmetric=True, scaling_filter=1)
    assert (padded[:, 4:12] == 255).all() and (padded[:, :4] == 0).all() and (padded[:, 12:] == 0).all()
    top_left = nvinfer_crop(frame, box, 16, maintain_aspect=True)
    assert (top_left[:, :8] == 255).all() and (top_left[:, 8:] == 0).all()
    edge = nvinfer_crop(frame, (-10, -10, 30, 30), 20)  # clipped to the frame
    assert edge.shape == (20, 20, 3) and not edge.any()
    with pytest.raises(ValueError, match="outside"):
        nvinfer_crop(frame, (300, 10, 10, 10), 16)


def test_crop_benchmark_on_real_faces() -> None:
    """benchmarks.deepstream_crops on the astronaut and 3 LFW faces: nvinfer's box crops move the
    model's probability far more than the box enlarged to the training square first."""
    from benchmarks.deepstream_crops import DEFAULT_ONNX, measure, render

    r = measure(DEFAULT_ONNX, lfw=3)
    assert r["faces"] == 4 and r["face_scale_in_nvinfer_crop"] == 1.3
    rows = {row["variant"]: row for row in r["rows"]}
    fixed = rows["detector box enlarged to the training square first"]
    default = rows["nvinfer defaults (box stretched, nearest)"]
    assert fixed["pixel_mad"] < 3 < 20 < default["pixel_mad"] and fixed["dp_median"] < default["dp_median"]
    assert "crop given to the model" in render(r)
