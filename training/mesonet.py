"""MesoNet's classifier and its authors' Keras weights, read with h5py (no TensorFlow).

Afchar, Nozick, Yamagishi, Echizen, "MesoNet: a Compact Facial Video Forgery Detection Network",
WIFS 2018 (arXiv 1809.00888); code and weights: github.com/DariusAf/MesoNet (Apache-2.0). The
weights (``weights/Meso4_DF.h5``, ``Meso4_F2F.h5``, ``MesoInception_DF.h5``,
``MesoInception_F2F.h5``) were saved by Keras 2.1.5 for 256×256 RGB crops scaled to [0, 1].

:class:`MesoNet` is the authors' classifier: a backbone of ``training.backbones.meso`` (which the
JRC model can use too), then flatten → dropout → dense 16 → LeakyReLU(0.1) → dropout → dense 1.
Three things change in the conversion, none of which changes a score:

- Keras's convolution kernels are (kh, kw, in, out); PyTorch's are (out, in, kh, kw).
- Keras flattens the last feature map in (H, W, C) order, PyTorch in (C, H, W): the first dense
  layer's rows are permuted to match.
- The authors' sigmoid is p(real): their ``example.py`` labels the classes with Keras's
  ``flow_from_directory`` over the folders ``df`` and ``real``, which numbers them alphabetically
  (``df`` = 0, ``real`` = 1), and their test images confirm it (the deepfakes score near 0). This
  project's models output the logit of *fake*, so the last dense layer is negated:
  logit_fake = −logit_real, and sigmoid(logit_fake) = 1 − p(real).

Layers are matched by kind and creation order (Keras numbers layers as they are built:
``conv2d_5`` before ``conv2d_6``), then checked by shape. The order of ``layer_names`` in the file
is Keras's topological order, which for MesoInception interleaves branches of equal shapes and
would swap them if followed blindly.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from runtime.errors import UserError, missing_dependency
from training.backbones.meso import BACKBONES, FEATURE_CHANNELS

INPUT_SIZE = 256  # the authors' IMGWIDTH: their dense layer is sized for it
LEAKY_SLOPE = 0.1
DROPOUT = 0.5
HIDDEN = 16
# Convolutions per architecture: how a weights file tells which network it belongs to.
CONVS = {"meso4": 4, "mesoinception4": 16}
ARCH_NAMES = {"meso4": "Meso4", "mesoinception4": "MesoInception4"}


class MesoNet(nn.Module):
    """The authors' classifier; ``forward`` returns the logit of fake, (N, 1)."""

    def __init__(self, arch: str = "meso4") -> None:
        super().__init__()
        if arch not in BACKBONES:
            raise UserError(f"MesoNet architecture {arch!r} is unknown; use one of {', '.join(BACKBONES)}")
        self.arch = arch
        self.backbone = BACKBONES[arch]()
        cells = math.ceil(INPUT_SIZE / self.backbone.stride) ** 2
        self.drop1 = nn.Dropout(DROPOUT)
        self.fc1 = nn.Linear(FEATURE_CHANNELS * cells, HIDDEN)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)
        self.drop2 = nn.Dropout(DROPOUT)
        self.fc2 = nn.Linear(HIDDEN, 1)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward_head(self, f: Tensor) -> Tensor:
        return self.fc2(self.drop2(self.act(self.fc1(self.drop1(torch.flatten(f, 1))))))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, input_size={INPUT_SIZE}, output='logit of fake'"


# --- the authors' .h5 files ---------------------------------------------------------------------
def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise missing_dependency("h5py", "train") from None
    return h5py


def _order(name: str) -> int:
    """Keras's creation number of a layer: ``conv2d_12`` → 12, ``conv2d`` (the first) → 0."""
    m = re.search(r"_(\d+)$", name)
    return int(m.group(1)) if m else 0


def _kind(name: str) -> str:
    return re.sub(r"_\d+$", "", name)


def read_layers(source: str | Path | bytes, label: str | None = None
                ) -> tuple[dict[str, list[dict[str, np.ndarray]]], dict[str, str]]:
    """The weighted layers of a Keras 2 weights file (a path or its bytes; ``label`` names it in
    errors), by kind (``conv2d``, ``batch_normalization``, ``dense``) in creation order, each as
    {weight name without the layer prefix: array}; and the file's attributes (keras_version, backend)."""
    h5py = _h5py()
    label = label or ("the weights" if isinstance(source, bytes) else str(source))
    handle: Any = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        f = h5py.File(handle, "r")
    except (OSError, ValueError) as e:
        raise UserError(f"{label}: not an HDF5 file ({str(e).splitlines()[0][:120]}); pass one of MesoNet's "
                        "weights/*.h5") from None
    with f:
        group = f["model_weights"] if "model_weights" in f else f  # a whole saved model keeps them there
        names = group.attrs.get("layer_names")
        if names is None:
            raise UserError(f"{label}: an HDF5 file without Keras's layer_names; pass one of MesoNet's weights/*.h5")
        layers: dict[str, list[tuple[int, dict[str, np.ndarray]]]] = {}
        for raw in names:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            g = group[name]
            weights = {}
            for w in g.attrs.get("weight_names", []):
                w = w.decode() if isinstance(w, bytes) else str(w)
                weights[w.split("/")[-1].split(":")[0]] = np.asarray(g[w], np.float32)
            if weights:
                layers.setdefault(_kind(name), []).append((_order(name), weights))
        attrs = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in f.attrs.items()
                 if k in ("keras_version", "backend")}
    return {k: [w for _, w in sorted(v, key=lambda t: t[0])] for k, v in layers.items()}, attrs


def arch_of(layers: dict[str, list[dict[str, np.ndarray]]], label: str) -> str:
    counts = {k: len(v) for k, v in layers.items()}
    for arch, convs in CONVS.items():
        if counts == {"conv2d": convs, "batch_normalization": 4, "dense": 2}:
            return arch
    raise UserError(f"{label}: its layers ({', '.join(f'{n} {k}' for k, n in sorted(counts.items())) or 'none'}) "
                    "are neither Meso4's (4 conv2d, 4 batch_normalization, 2 dense) nor MesoInception4's "
                    "(16 conv2d); pass one of MesoNet's weights/*.h5")


def _put(target: Tensor, value: np.ndarray, what: str, label: str) -> None:
    if tuple(value.shape) != tuple(target.shape):
        raise UserError(f"{label}: {what} has shape {tuple(value.shape)}, the network expects "
                        f"{tuple(target.shape)}; the file is not one of MesoNet's weights")
    with torch.no_grad():
        target.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def _need(layer: dict[str, np.ndarray], key: str, what: str, label: str) -> np.ndarray:
    if key not in layer:
        raise UserError(f"{label}: {what} has no '{key}' weight (it has {', '.join(sorted(layer))})")
    return layer[key]


def load_keras_weights(source: str | Path | bytes, label: str | None = None) -> MesoNet:
    """The authors' classifier with the weights of one of their .h5 files (eval mode)."""
    label = label or ("the weights" if isinstance(source, bytes) else str(source))
    return from_layers(read_layers(source, label)[0], label)


def from_layers(layers: dict[str, list[dict[str, np.ndarray]]], label: str) -> MesoNet:
    """The authors' classifier holding the layers :func:`read_layers` read (eval mode)."""
    net = MesoNet(arch_of(layers, label))
    for i, (conv, w) in enumerate(zip(net.backbone.convs(), layers["conv2d"])):
        _put(conv.weight, _need(w, "kernel", f"conv2d #{i + 1}", label).transpose(3, 2, 0, 1), f"conv2d #{i + 1}", label)
        _put(conv.bias, _need(w, "bias", f"conv2d #{i + 1}", label), f"conv2d #{i + 1} bias", label)
    for i, (bn, w) in enumerate(zip(net.backbone.bns(), layers["batch_normalization"])):
        what = f"batch_normalization #{i + 1}"
        for key, param in (("gamma", bn.weight), ("beta", bn.bias), ("moving_mean", bn.running_mean),
                           ("moving_variance", bn.running_var)):
            _put(param, _need(w, key, what, label), f"{what} {key}", label)
    d1, d2 = layers["dense"]
    kernel = _need(d1, "kernel", "dense #1", label)
    side = int(round(math.sqrt(kernel.shape[0] / FEATURE_CHANNELS)))
    if side * side * FEATURE_CHANNELS != kernel.shape[0]:
        raise UserError(f"{label}: dense #1 takes {kernel.shape[0]} inputs, not {FEATURE_CHANNELS}×S×S; "
                        "the file is not one of MesoNet's weights")
    # rows in Keras's (H, W, C) flatten order → PyTorch's (C, H, W)
    chw = kernel.reshape(side, side, FEATURE_CHANNELS, -1).transpose(2, 0, 1, 3).reshape(kernel.shape[0], -1)
    _put(net.fc1.weight, chw.T, "dense #1", label)
    _put(net.fc1.bias, _need(d1, "bias", "dense #1", label), "dense #1 bias", label)
    # p(real) → logit of fake: the last layer negated
    _put(net.fc2.weight, -_need(d2, "kernel", "dense #2", label).T, "dense #2", label)
    _put(net.fc2.bias, -_need(d2, "bias", "dense #2", label), "dense #2 bias", label)
    return net.eval()


def backbone_state_dict(source: str | Path | bytes) -> dict[str, Tensor]:
    """The backbone's tensors of an .h5 file, named as ``MesoNet.state_dict()`` names them
    (``backbone.conv1.weight``, ...), for ``training.model.load_backbone_weights``."""
    net = load_keras_weights(source)
    return {k: v for k, v in net.state_dict().items() if k.startswith("backbone.")}


def sha256_bytes(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()
