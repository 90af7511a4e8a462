"""MesoNet's convolutional stages (Afchar, Nozick, Yamagishi, Echizen, "MesoNet: a Compact Facial Video
Forgery Detection Network", WIFS 2018, arXiv 1809.00888), as JRC backbones.

Two networks of four stages each, built for 256×256 RGB crops scaled to [0, 1]:

- ``Meso4``: (conv → ReLU → BN → max-pool) × 4: 3×3 to 8 channels, 5×5 to 8, 5×5 to 16, 5×5 to 16;
  pools 2, 2, 2, 4 (stride 32; 16×8×8 at 256 px; about 0.06 GMACs there).
- ``MesoInception4``: the first two stages are inception layers (four branches: 1×1; 1×1 → 3×3;
  1×1 → 3×3 dilated 2; 1×1 → 3×3 dilated 3; concatenated) to 11 and 12 channels, then Meso4's last
  two stages.

Layer for layer what the authors' Keras code (``classifiers.py``) builds: ReLU *before* BatchNorm
(Keras's epsilon 1e-3), 'same' convolutions, and 'same' max-pools as TensorFlow pads them (at sizes
that are not a multiple of the pool, the missing rows go half before, half after, as -inf; at
multiples of 32 nothing is padded). So the authors' trained weights load unchanged
(``training.mesonet`` reads their .h5 files); their classifier head (flatten, dense 16, dense 1) is
``training.mesonet.MesoNet``, not part of the backbone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BN_EPS = 1e-3  # Keras's BatchNormalization default
FEATURE_CHANNELS = 16
INCEPTION_WIDTHS = ((1, 4, 4, 2), (2, 4, 4, 2))  # (a, b, c, d) of the two inception layers


class SamePool2d(nn.Module):
    """k×k max-pool, stride k, padded as TensorFlow's ``padding='same'``: the output is ceil(n / k)
    and the padding (-inf) goes ``total // 2`` before and the rest after."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.pool = nn.MaxPool2d(k)

    def forward(self, x: Tensor) -> Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])  # static per traced graph (the input size is fixed)
        ph, pw = (max((math.ceil(n / self.k) - 1) * self.k + self.k - n, 0) for n in (h, w))
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=float("-inf"))
        return self.pool(x)

    def extra_repr(self) -> str:
        return f"k={self.k}, padding='same'"


def _conv(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Conv2d:
    """A stride-1 'same' convolution with bias (Keras's Conv2D default)."""
    return nn.Conv2d(cin, cout, k, padding=dilation * (k - 1) // 2, dilation=dilation)


class InceptionLayer(nn.Module):
    """Four branches concatenated on channels: 1×1 (a); 1×1 → 3×3 (b); 1×1 → 3×3 dilated 2 (c);
    1×1 → 3×3 dilated 3 (d). Every convolution is followed by a ReLU."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int) -> None:
        super().__init__()
        self.branch1 = _conv(cin, a, 1)
        self.branch2 = nn.Sequential(_conv(cin, b, 1), nn.ReLU(inplace=True), _conv(b, b, 3))
        self.branch3 = nn.Sequential(_conv(cin, c, 1), nn.ReLU(inplace=True), _conv(c, c, 3, dilation=2))
        self.branch4 = nn.Sequential(_conv(cin, d, 1), nn.ReLU(inplace=True), _conv(d, d, 3, dilation=3))
        self.out_channels = a + b + c + d

    def forward(self, x: Tensor) -> Tensor:
        # each branch ends in a ReLU in the authors' code: one ReLU over the concatenation is the same
        return F.relu(torch.cat((self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)), dim=1))

    def convs(self) -> list[nn.Conv2d]:
        """The convolutions in the order the authors' code creates them (branch by branch)."""
        return [self.branch1, self.branch2[0], self.branch2[2], self.branch3[0], self.branch3[2],
                self.branch4[0], self.branch4[2]]


class _MesoBase(nn.Module):
    """Shared by both networks: stages 3 and 4 (5×5 conv to 16, ReLU, BN, pool 2 then pool 4)."""

    out_channels = FEATURE_CHANNELS
    stride = 32

    def _tail(self, cin: int) -> None:
        self.conv3 = _conv(cin, 16, 5)
        self.bn3 = nn.BatchNorm2d(16, eps=BN_EPS)
        self.pool3 = SamePool2d(2)
        self.conv4 = _conv(16, FEATURE_CHANNELS, 5)
        self.bn4 = nn.BatchNorm2d(FEATURE_CHANNELS, eps=BN_EPS)
        self.pool4 = SamePool2d(4)

    def _forward_tail(self, x: Tensor) -> Tensor:
        x = self.pool3(self.bn3(F.relu(self.conv3(x))))
        return self.pool4(self.bn4(F.relu(self.conv4(x))))

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)


class Meso4(_MesoBase):
    """Meso-4's four convolutional stages: image (N,3,H,W) → (N,16,⌈H/32⌉,⌈W/32⌉)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv(3, 8, 3)
        self.bn1 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.pool1 = SamePool2d(2)
        self.conv2 = _conv(8, 8, 5)
        self.bn2 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.pool2 = SamePool2d(2)
        self._tail(8)
        self._init()

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.bn1(F.relu(self.conv1(x))))
        x = self.pool2(self.bn2(F.relu(self.conv2(x))))
        return self._forward_tail(x)

    def convs(self) -> list[nn.Conv2d]:
        return [self.conv1, self.conv2, self.conv3, self.conv4]

    def bns(self) -> list[nn.BatchNorm2d]:
        return [self.bn1, self.bn2, self.bn3, self.bn4]


class MesoInception4(_MesoBase):
    """MesoInception-4's stages: two inception layers, then Meso-4's last two stages."""

    def __init__(self) -> None:
        super().__init__()
        self.inception1 = InceptionLayer(3, *INCEPTION_WIDTHS[0])
        c1 = self.inception1.out_channels
        self.bn1 = nn.BatchNorm2d(c1, eps=BN_EPS)
        self.pool1 = SamePool2d(2)
        self.inception2 = InceptionLayer(c1, *INCEPTION_WIDTHS[1])
        c2 = self.inception2.out_channels
        self.bn2 = nn.BatchNorm2d(c2, eps=BN_EPS)
        self.pool2 = SamePool2d(2)
        self._tail(c2)
        self._init()

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.bn1(self.inception1(x)))
        x = self.pool2(self.bn2(self.inception2(x)))
        return self._forward_tail(x)

    def convs(self) -> list[nn.Conv2d]:
        return [*self.inception1.convs(), *self.inception2.convs(), self.conv3, self.conv4]

    def bns(self) -> list[nn.BatchNorm2d]:
        return [self.bn1, self.bn2, self.bn3, self.bn4]


BACKBONES = {"meso4": Meso4, "mesoinception4": MesoInception4}
