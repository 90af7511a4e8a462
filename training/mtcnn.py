"""MTCNN's three networks in PyTorch, for conversion to ONNX only (never run at serve time).

Zhang, Zhang, Li, Qiao: "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks", IEEE Signal Processing Letters 23(10), 2016. A proposal net (P-Net,
fully convolutional, 12 px window, stride 2) scans an image pyramid; a refine net (R-Net, 24 px)
and an output net (O-Net, 48 px, with five landmarks) re-score and re-fit the candidates.

The weights are those of facenet-pytorch's wheel (``facenet_pytorch/data/{p,r,o}net.pt``, MIT
licence; converted there from the TensorFlow port of the authors' Caffe models). Layer names
follow those state_dict keys so the files load as they are. Two choices of the original
conversion are kept because the weights depend on them: the fully connected layers read the
feature map in (W, H, C) order, and every network takes RGB pixels normalised as (x - 127.5) / 128.

``forward`` takes BGR pixels in 0..255 (OpenCV's frames as they are): :func:`fold_input` moves the
channel swap and the normalisation into the first convolution (exact: it has no padding).
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import torch
from torch import nn

NETS = ("pnet", "rnet", "onet")


def _block(cin: int, cout: int, k: int, pool: tuple[int, int] | None, i: int) -> list[tuple[str, nn.Module]]:
    layers: list[tuple[str, nn.Module]] = [(f"conv{i}", nn.Conv2d(cin, cout, k)), (f"prelu{i}", nn.PReLU(cout))]
    if pool:
        layers.append((f"pool{i}", nn.MaxPool2d(pool[0], pool[1], ceil_mode=True)))
    return layers


class _Net(nn.Module):
    def _layers(self, layers: list[tuple[str, nn.Module]]) -> None:
        """Register the feature layers under their state_dict names, in the order _features runs them."""
        for name, m in layers:
            self.add_module(name, m)
        self._order = [n for n, _ in layers]

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._order:
            x = getattr(self, name)(x)
        return x

    def _flatten_whc(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)  # the weights expect (W, H, C) order


class PNet(_Net):
    """Proposal net: for each 12×12 window (stride 2), p(face) and a box correction."""

    def __init__(self) -> None:
        super().__init__()
        layers = _block(3, 10, 3, (2, 2), 1) + _block(10, 16, 3, None, 2) + _block(16, 32, 3, None, 3)
        self._layers(layers)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: N×3×H×W → (prob N×1×H'×W', reg N×4×H'×W')."""
        f = self._features(x)
        return torch.softmax(self.conv4_1(f), dim=1)[:, 1:2], self.conv4_2(f)


class RNet(_Net):
    """Refine net: p(face) and a box correction for 24×24 candidates."""

    def __init__(self) -> None:
        super().__init__()
        layers = _block(3, 28, 3, (3, 2), 1) + _block(28, 48, 3, (3, 2), 2) + _block(48, 64, 2, None, 3)
        self._layers(layers)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: N×3×24×24 → (prob N×1, reg N×4)."""
        f = self.prelu4(self.dense4(self._flatten_whc(self._features(x))))
        return torch.softmax(self.dense5_1(f), dim=1)[:, 1:2], self.dense5_2(f)


class ONet(_Net):
    """Output net: p(face), a box correction and five landmarks for 48×48 candidates."""

    def __init__(self) -> None:
        super().__init__()
        layers = (_block(3, 32, 3, (3, 2), 1) + _block(32, 64, 3, (3, 2), 2) + _block(64, 64, 3, (2, 2), 3)
                  + _block(64, 128, 2, None, 4))
        self._layers(layers)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: N×3×48×48 → (prob N×1, reg N×4, landmarks N×10: five x then five y, box-relative)."""
        f = self.prelu5(self.dense5(self._flatten_whc(self._features(x))))
        return torch.softmax(self.dense6_1(f), dim=1)[:, 1:2], self.dense6_2(f), self.dense6_3(f)


def fold_input(net: nn.Module) -> None:
    """Make the first convolution take BGR 0..255: swap its input channels and fold in
    (x - 127.5) / 128 (w' = w / 128, b' = b - 127.5 / 128 · Σw)."""
    conv = net.conv1
    with torch.no_grad():
        w = conv.weight.flip(1)  # RGB → BGR input channels
        conv.bias.sub_(127.5 / 128.0 * w.sum(dim=(1, 2, 3)))
        conv.weight.copy_(w / 128.0)


def load_net(name: str, weights: str | Path | IO[bytes], bgr255: bool = True) -> nn.Module:
    """One network with the weights of a state_dict file (loaded with weights_only); a damaged or
    foreign file is a one-line UserError naming the network."""
    import pickle
    import warnings

    from runtime.errors import UserError

    net = {"pnet": PNet, "rnet": RNet, "onet": ONet}[name]()
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: the error says enough
            warnings.simplefilter("ignore")
            state = torch.load(weights if hasattr(weights, "read") else str(weights), map_location="cpu",
                               weights_only=True)
        net.load_state_dict(state)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0].split(". ")[0][:120] if str(e).strip() else type(e).__name__
        raise UserError(f"MTCNN {name}: its weights cannot be read ({first}); the weights file is damaged or not "
                        "MTCNN's, reinstall the package that ships them") from None
    if bgr255:
        fold_input(net)
    return net.eval()
