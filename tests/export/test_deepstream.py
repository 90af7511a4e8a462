"""export.deepstream: nvinfer config values derived from the metadata, checked by replaying nvinfer's
preprocessing formula against runtime/preprocess.py, and the exact --fold-std variant in ONNX Runtime."""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np
import pytest

from export.deepstream import export_config, fold_std, scale_and_offsets
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
    assert p.returncode == 1 and p.stderr.strip().startswith("export.deepstream: error: pass --engine")


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
