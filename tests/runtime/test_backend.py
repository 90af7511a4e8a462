"""ONNX Runtime backend on tiny generated ONNX models (``tests.helpers.models.make_onnx``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.errors import UserError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto  # noqa: E402

from runtime.backends import open_backend  # noqa: E402
from tests.helpers.models import SIZE, batch_of, make_onnx  # noqa: E402


def test_onnx_backend_scores_and_metadata(tmp_path):
    path = make_onnx(tmp_path / "m.onnx")
    with open_backend(path, max_batch=4) as b:
        assert b.meta.input_size == SIZE and b.meta.graph == "detect" and b.max_batch == 4
        out = b.infer(batch_of(0, 255, 127.5))
        assert set(out) == {"logit"}
        assert out["logit"].shape == (3, 1)
        np.testing.assert_allclose(out["logit"][:, 0], [-4.0, 4.0, 0.0], atol=1e-4)
        with pytest.raises(ValueError):
            b.infer(batch_of(*[0] * 5))  # over max_batch
        with pytest.raises(UserError, match="full graph"):
            b.infer(batch_of(0), reconstruct=True)


def test_decoder_is_never_requested_without_reconstruct(tmp_path):
    # the recon node fails whenever it runs, so scoring only works if it is not requested
    path = make_onnx(tmp_path / "poison.onnx", full=True, poison_recon=True)
    with open_backend(path) as b:
        assert b.meta.has_recon
        np.testing.assert_allclose(b.infer(batch_of(255))["logit"], [[4.0]], atol=1e-4)
        with pytest.raises(UserError, match="inference failed"):
            b.infer(batch_of(255), reconstruct=True)


def test_full_graph_returns_recon(tmp_path):
    with open_backend(make_onnx(tmp_path / "full.onnx", full=True)) as b:
        x = batch_of(10, 200)
        out = b.infer(x, reconstruct=True)
        np.testing.assert_allclose(out["recon"], x / 2, atol=1e-6)


def test_fixed_batch_graph_is_padded(tmp_path):
    with open_backend(make_onnx(tmp_path / "b2.onnx", batch=2)) as b:
        assert b.max_batch == 2
        np.testing.assert_allclose(b.infer(batch_of(255))["logit"], [[4.0]], atol=1e-4)


def test_onnx_without_metadata_needs_flags(tmp_path):
    path = make_onnx(tmp_path / "bare.onnx", meta=False)
    with pytest.raises(UserError, match="--input-size --mean --std"):
        open_backend(path)
    with pytest.raises(UserError, match="--std"):
        open_backend(path, input_size=SIZE, mean=(0.5,) * 3)
    with open_backend(path, input_size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3) as b:
        assert b.meta.graph == "detect" and b.meta.input_size == SIZE
        np.testing.assert_allclose(b.infer(batch_of(0))["logit"], [[-4.0]], atol=1e-4)
    with pytest.raises(UserError, match="input 'input' has shape"):
        open_backend(path, input_size=64, mean=(0.5,) * 3, std=(0.5,) * 3)


def test_flags_that_contradict_metadata_are_refused(tmp_path):
    with pytest.raises(UserError, match="--input-size disagree"):
        open_backend(make_onnx(tmp_path / "m.onnx"), input_size=64)


@pytest.mark.parametrize("text, match", [("{not json", "not valid JSON"), (json.dumps({"input_size": 3}), "input_size"),
                                         ("x" * 70000, "more than")])
def test_bad_metadata_is_refused(tmp_path, text, match):
    with pytest.raises(UserError, match=match):
        open_backend(make_onnx(tmp_path / "m.onnx", meta_text=text))


def test_provider_unavailable_is_a_clear_error(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    with pytest.raises(UserError, match="no CUDAExecutionProvider.*--provider cpu"):
        open_backend(make_onnx(tmp_path / "m.onnx"), provider="cuda")


def test_truncated_and_foreign_files(tmp_path):
    good = make_onnx(tmp_path / "m.onnx").read_bytes()
    (tmp_path / "t.onnx").write_bytes(good[: len(good) // 2])
    (tmp_path / "e.onnx").write_bytes(b"")
    (tmp_path / "x.onnx").write_bytes(b"this is a text file, not a model\n" * 10)
    for name in ("t.onnx", "e.onnx", "x.onnx"):
        with pytest.raises(UserError, match=name):
            open_backend(tmp_path / name)
    with pytest.raises(UserError, match="unsupported model file type"):
        open_backend(tmp_path / "m.pt")
    with pytest.raises(UserError, match="no such file"):
        open_backend(tmp_path / "missing.onnx")


def test_external_data_outside_the_folder_is_refused(tmp_path):
    from onnx.external_data_helper import set_external_data

    from runtime.onnx_proto import external_locations

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    path = make_onnx(model_dir / "m.onnx")
    m = onnx.load(str(path))
    k = next(t for t in m.graph.initializer if t.name == "k")
    (tmp_path / "secret.bin").write_bytes(np.float32(4.0).tobytes())
    set_external_data(k, location="../secret.bin", length=4)
    k.ClearField("raw_data")
    k.ClearField("float_data")
    k.data_location = TensorProto.EXTERNAL
    onnx.save(m, str(path))
    assert external_locations(path.read_bytes()) == ["../secret.bin"]
    with pytest.raises(UserError, match="outside the model's folder"):
        open_backend(path)
    # the same data beside the model is fine
    (model_dir / "w.bin").write_bytes(np.float32(4.0).tobytes())
    next(e for e in k.external_data if e.key == "location").value = "w.bin"
    onnx.save(m, str(path))
    with open_backend(path) as b:
        np.testing.assert_allclose(b.infer(batch_of(255))["logit"], [[4.0]], atol=1e-4)
