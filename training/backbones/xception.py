"""Xception (Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017).

The paper-faithful JRC backbone: entry flow (two plain convolutions, three strided blocks),
middle flow (eight 728-channel residual blocks of three separable convolutions), exit flow (one
strided block, two separable convolutions to 2048 channels). At 299×299 it returns a
2048×10×10 feature map and holds about 20.8 M parameters (no ImageNet classifier).

Module names follow the layout most ImageNet Xception checkpoints use (``conv1``/``bn1``,
``block1``..``block12`` with ``rep``/``skip``/``skipbn``, ``conv3``/``bn3``, ``conv4``/``bn4``,
separable convolutions as ``conv1`` depthwise + ``pointwise``), so such a file can be loaded with
``training.model.load_backbone_weights``.
"""

from __future__ import annotations

from torch import Tensor, nn

MIDDLE_BLOCKS = 8
FEATURE_CHANNELS = 2048


class SeparableConv2d(nn.Module):
    """Depthwise k×k convolution followed by a 1×1 pointwise convolution (no bias: BN follows)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, kernel, stride, padding, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.conv1(x))


class Block(nn.Module):
    """A residual unit of ``reps`` (ReLU, separable conv, BN) triples, max-pooled when strided.

    ``grow_first`` changes the channel count in the first separable conv (entry flow) or the
    last one (exit flow). The shortcut is a strided 1×1 conv + BN when the shape changes,
    the identity otherwise.
    """

    def __init__(self, cin: int, cout: int, reps: int, stride: int = 1,
                 start_with_relu: bool = True, grow_first: bool = True) -> None:
        super().__init__()
        if cout != cin or stride != 1:
            self.skip: nn.Module | None = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            self.skipbn: nn.Module | None = nn.BatchNorm2d(cout)
        else:
            self.skip = self.skipbn = None

        widths = [cin] + [cout] * reps if grow_first else [cin] * reps + [cout]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            # Not in place: the block input also feeds the shortcut.
            layers += [nn.ReLU(inplace=bool(layers)), SeparableConv2d(a, b), nn.BatchNorm2d(b)]
        if not start_with_relu:
            layers = layers[1:]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.skip is None else self.skipbn(self.skip(x))
        return self.rep(x) + shortcut


class Xception(nn.Module):
    """Xception feature extractor: image (N,3,H,W) → feature map (N,2048,H/32-ish,W/32-ish)."""

    out_channels = FEATURE_CHANNELS
    stride = 32

    def __init__(self) -> None:
        super().__init__()
        # Entry flow. The two first convolutions are unpadded, as in the paper (299 → 147).
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.block1 = Block(64, 128, 2, 2, start_with_relu=False)
        self.block2 = Block(128, 256, 2, 2)
        self.block3 = Block(256, 728, 2, 2)
        # Middle flow: block4 .. block11.
        for i in range(4, 4 + MIDDLE_BLOCKS):
            self.add_module(f"block{i}", Block(728, 728, 3, 1))
        # Exit flow.
        self.block12 = Block(728, 1024, 2, 2, grow_first=False)
        self.conv3 = SeparableConv2d(1024, 1536)
        self.bn3 = nn.BatchNorm2d(1536)
        self.conv4 = SeparableConv2d(1536, FEATURE_CHANNELS)
        self.bn4 = nn.BatchNorm2d(FEATURE_CHANNELS)
        self.blocks = [f"block{i}" for i in range(1, 5 + MIDDLE_BLOCKS)]
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        for name in self.blocks:
            x = getattr(self, name)(x)
        x = self.relu(self.bn3(self.conv3(x)))
        return self.relu(self.bn4(self.conv4(x)))


def _init_weights(model: Xception) -> None:
    """He init; each block starts as its shortcut (last BN of the branch at zero).

    Keeps a fresh network's activations O(1) in eval mode too (not only under batch
    statistics), so untrained exports stay in fp16 range.
    """
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            # The pointwise conv follows the depthwise one with no activation in between.
            gain = "linear" if name.endswith("pointwise") else "relu"
            nn.init.kaiming_normal_(m.weight, nonlinearity=gain)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, Block):
            nn.init.zeros_([layer for layer in m.rep if isinstance(layer, nn.BatchNorm2d)][-1].weight)
