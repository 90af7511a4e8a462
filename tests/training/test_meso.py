"""MesoNet in PyTorch (training/backbones/meso.py, training/mesonet.py): TensorFlow's 'same' pooling,
the conversion of a Keras weights file checked against an independent numpy forward pass read
straight from the file, the JRC backbones, and their start from the authors' weights."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import ROOT, has_module

pytestmark = pytest.mark.skipif(not (has_module("torch") and has_module("h5py")),
                                reason="needs the train extra (torch, h5py)")

ASSETS = ROOT / "benchmarks" / "assets" / "mesonet"


@pytest.mark.parametrize("n, k", [(8, 2), (7, 2), (8, 4), (7, 4), (6, 4), (5, 4), (13, 4), (3, 4)])
def test_same_pool_is_tensorflows(n: int, k: int) -> None:
    """Where the size is not a multiple of the pool, TensorFlow pads half before (torch's ceil_mode
    pads after only): 6 and 5 with k=4 tell the two apart."""
    import torch

    from tests.helpers.keras_h5 import pool_same
    from training.backbones.meso import SamePool2d

    x = np.random.default_rng(n * 10 + k).standard_normal((2, n, n + 1, 3)).astype(np.float32)
    got = SamePool2d(k)(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    assert got.shape == (2, -(-n // k), -(-(n + 1) // k), 3)
    np.testing.assert_array_equal(got, pool_same(x, k))


@pytest.mark.parametrize("arch", ["meso4", "mesoinception4"])
def test_h5_conversion_matches_an_independent_forward_pass(tmp_path, arch: str) -> None:
    """A Keras-layout file with random weights (MesoInception's equal-shaped branches listed in Keras's
    topological order, as the published files list them): the converted network's output is minus
    the numpy forward pass's logit of real, and only the exact layer mapping gives that."""
    import torch

    from tests.helpers.keras_h5 import keras_forward, write_meso_h5
    from training.mesonet import load_keras_weights

    weights = write_meso_h5(tmp_path / "w.h5", arch, seed=3)
    net = load_keras_weights(tmp_path / "w.h5")
    assert net.arch == arch and not net.training
    x = np.random.default_rng(4).uniform(0, 1, (2, 256, 256, 3)).astype(np.float32)
    want = keras_forward(weights, arch, x)
    with torch.no_grad():
        got = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().reshape(-1)
    assert np.abs(want).max() > 0.5  # logits of a few units: the tolerance below means something
    np.testing.assert_allclose(got, -want, rtol=1e-4, atol=1e-4)


def test_h5_errors_are_one_line_user_errors(tmp_path) -> None:
    import h5py

    from runtime.errors import UserError
    from tests.helpers.keras_h5 import write_meso_h5
    from training.mesonet import load_keras_weights

    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(UserError, match="not an HDF5 file"):
        load_keras_weights(junk)
    with h5py.File(tmp_path / "bare.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(UserError, match="without Keras's layer_names"):
        load_keras_weights(tmp_path / "bare.h5")
    write_meso_h5(tmp_path / "w.h5", "meso4")
    with h5py.File(tmp_path / "w.h5", "a") as f:  # one dense layer fewer: not MesoNet
        names = [n for n in f.attrs["layer_names"] if n != b"dense_2"]
        f.attrs["layer_names"] = np.array(names)
    with pytest.raises(UserError, match="neither Meso4's"):
        load_keras_weights(tmp_path / "w.h5")


@pytest.mark.parametrize("encoder, size", [("meso4", 256), ("meso4", 100), ("mesoinception4", 128)])
def test_jrc_with_meso_backbones(encoder: str, size: int) -> None:
    import torch

    from training.model import JRC, default_meta

    meta = default_meta(encoder)
    assert meta.input_size == 256 and meta.mean == (0.0, 0.0, 0.0) and meta.std == (1.0, 1.0, 1.0)
    model = JRC(encoder, size).eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        feats = model.forward_features(x)
        logit, recon = model.forward_full(x)
    assert feats.shape == (2, 16, -(-size // 32), -(-size // 32))
    assert logit.shape == (2, 1) and recon.shape == (2, 3, size, size)


@pytest.mark.parametrize("encoder, name, tensors", [("meso4", "Meso4_DF", 28), ("mesoinception4", "MesoInception_F2F", 52)])
def test_jrc_backbone_starts_from_the_converted_peer(encoder: str, name: str, tensors: int) -> None:
    """--backbone-weights with a committed peer's .pt: every backbone tensor loads (the peer's own head
    is skipped), and the JRC backbone then computes what the peer's backbone computes."""
    import torch

    from training.mesonet import MesoNet
    from training.model import JRC, load_backbone_weights

    model = JRC(encoder, 256).eval()
    report = load_backbone_weights(model, ASSETS / f"{name}.pt", quiet=True)
    assert report["matched"] == report["total"] == tensors and report["missing"] == []
    assert sorted(report["skipped"]) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    peer = MesoNet(encoder).eval()
    peer.load_state_dict(torch.load(ASSETS / f"{name}.pt", weights_only=True))
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), peer.forward_features(x))


def test_backbone_weights_read_from_an_h5(tmp_path) -> None:
    """The authors' .h5 itself is accepted too (read by training.mesonet), at any input size."""
    import torch

    from tests.helpers.keras_h5 import write_meso_h5
    from training.model import JRC, load_backbone_weights

    weights = write_meso_h5(tmp_path / "own.h5", "meso4", seed=5)
    model = JRC("meso4", 128)
    report = load_backbone_weights(model, tmp_path / "own.h5", quiet=True)
    assert report["matched"] == report["total"] == 28
    kernel = torch.from_numpy(weights["conv2d_2"]["kernel"].transpose(3, 2, 0, 1).copy())
    assert torch.equal(model.backbone.conv2.weight, kernel)
