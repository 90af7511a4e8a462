"""The light edge backbone: a MobileNetV3-Small-sized network (Howard et al., "Searching for
MobileNetV3", ICCV 2019).

Inverted residual blocks (1×1 expand, k×k depthwise, squeeze-excite, 1×1 project), hard-swish
in the deeper half, and a 1×1 convolution to 576 channels at stride 32; about 0.06 GMACs at
224×224 with ``width=1``. Every operation exports to ONNX opset 17 as Conv (BN folded),
Relu, HardSwish, HardSigmoid, GlobalAveragePool, MaxPool, Mul or Add, all of which TensorRT
8.5+ runs.

``downsample="max"`` halves the resolution with a 2×2 max-pool after the stem and
after each stride-2 depthwise convolution, which then runs at stride 1: the local, pixel-scale
traces of a blended face survive downsampling as local maxima instead of being sampled away
(about 0.075 GMACs at 224; the bundled 64 px model uses it). ``downsample="stride"`` (the
default) is the paper's strided convolutions.

``style="minimal"`` is the paper's quantization-friendly variant (the "minimalistic" models of the
MobileNetV3 release, Keras ``MobileNetV3Small(minimalistic=True)``): the same blocks and widths
with 3×3 depthwise kernels, ReLU everywhere and no squeeze-excitation, so every layer is a
convolution whose activation an integer kernel absorbs (ONNX Runtime has no int8 hard-swish or
hard-sigmoid, and runs an excitation as separate passes). Here its depthwise widths are also
rounded up to multiples of 16 (72, 88, 120 → 80, 96, 128), the channel counts ONNX Runtime's fast
int8 depthwise kernel takes, so :mod:`calibration.channel_pad` has nothing to pad and the added
channels are trained instead of zero (about 0.05 GMACs at 224). ``style="v3"`` (the default) is
the network above.

Module names follow a common ImageNet MobileNetV3-Small layout (``features.<i>.block.<j>``,
squeeze-excite ``fc1``/``fc2``), so such weights can be loaded at ``width=1`` with
``training.model.load_backbone_weights``. The minimal style keeps the layout, its blocks simply have
no excitation module; it trains from scratch (torchvision publishes no minimalistic weights, and the
widened depthwise layers would not take Keras's or timm's 72/88/120-channel ones).
"""

from __future__ import annotations

from torch import Tensor, nn

# (kernel, expanded channels, output channels, squeeze-excite, activation, stride) per block,
# from Table 2 of the MobileNetV3 paper (the "small" model).
SMALL: tuple[tuple[int, int, int, bool, str, int], ...] = (
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hswish", 2),
    (5, 240, 40, True, "hswish", 1),
    (5, 240, 40, True, "hswish", 1),
    (5, 120, 48, True, "hswish", 1),
    (5, 144, 48, True, "hswish", 1),
    (5, 288, 96, True, "hswish", 2),
    (5, 576, 96, True, "hswish", 1),
    (5, 576, 96, True, "hswish", 1),
)
STEM_CHANNELS = 16
LAST_EXPANSION = 6  # last 1×1 conv: 6 × the last block's output channels (96 → 576)
BN_EPS = 1e-3
DOWNSAMPLE = ("max", "stride")
STYLES = ("v3", "minimal")
MINIMAL_KERNEL = 3
DEPTHWISE_MULTIPLE = 16  # minimal style: ONNX Runtime's fast int8 depthwise kernel (x86) takes multiples of 16


def divisible(channels: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor``, never losing more than 10%."""
    out = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * channels else out


def _act(name: str) -> nn.Module:
    return nn.Hardswish() if name == "hswish" else nn.ReLU(inplace=True)


def conv_bn_act(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                act: str | None = "relu", pool: bool = False) -> nn.Sequential:
    """Conv (no bias) + BN [+ activation] [+ 2×2 max-pool]: indices 0, 1, 2 as the ImageNet layout
    has them. ``pool`` runs the conv at stride 1 and halves the size after it instead (ceil, like
    a padded stride-2 conv)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, 1 if pool else stride, (kernel - 1) // 2,
                                         groups=groups, bias=False),
                               nn.BatchNorm2d(cout, eps=BN_EPS)]
    if act is not None:
        layers.append(_act(act))
    if pool:
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: global average → 1×1 reduce → ReLU → 1×1 expand → hard-sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        squeezed = divisible(channels / reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV3 block; residual when the stride is 1 and the width does not change."""

    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, act: str,
                 stride: int, pool: bool = False) -> None:
        super().__init__()
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(conv_bn_act(cin, expanded, act=act))
        layers.append(conv_bn_act(expanded, expanded, kernel, stride, groups=expanded, act=act,
                                  pool=pool and stride == 2))
        if se:
            layers.append(SqueezeExcite(expanded))
        layers.append(conv_bn_act(expanded, cout, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


def blocks(style: str = "v3") -> tuple[tuple[int, int, int, bool, str, int], ...]:
    """The block table of a style: :data:`SMALL`, or its minimal form (3×3 kernels, ReLU, no
    excitation; :class:`EdgeNet` rounds its depthwise widths to multiples of 16)."""
    if style not in STYLES:
        raise ValueError(f"style {style!r}, expected one of {STYLES}")
    if style == "v3":
        return SMALL
    return tuple((MINIMAL_KERNEL, expanded, cout, False, "relu", stride)
                 for _, expanded, cout, _, _, stride in SMALL)


class EdgeNet(nn.Module):
    """MobileNetV3-Small feature extractor: image (N,3,H,W) → (N, out_channels, ⌈H/32⌉, ⌈W/32⌉).

    ``width`` scales every layer's channels (rounded to multiples of 8; the minimal style's
    depthwise widths to multiples of 16); ``out_channels`` is 576 at ``width=1``. ``downsample``:
    "stride" or "max" (max-pool after stride-1 convs). ``style``: "v3" (the paper's network) or
    "minimal" (its quantization-friendly variant: 3×3, ReLU, no squeeze-excitation).
    """

    stride = 32

    def __init__(self, width: float = 1.0, downsample: str = "stride", style: str = "v3") -> None:
        super().__init__()
        if downsample not in DOWNSAMPLE:
            raise ValueError(f"downsample {downsample!r}, expected one of {DOWNSAMPLE}")
        table = blocks(style)
        pool = downsample == "max"
        act = "relu" if style == "minimal" else "hswish"  # the stem's and the last layer's
        dw_multiple = DEPTHWISE_MULTIPLE if style == "minimal" else 8
        cin = divisible(STEM_CHANNELS * width, dw_multiple)  # the first block's depthwise width
        layers: list[nn.Module] = [conv_bn_act(3, cin, 3, 2, act=act, pool=pool)]
        for kernel, expanded, cout, se, block_act, stride in table:
            cout_w = divisible(cout * width)
            layers.append(InvertedResidual(cin, kernel, divisible(expanded * width, dw_multiple), cout_w, se,
                                           block_act, stride, pool))
            cin = cout_w
        self.out_channels = LAST_EXPANSION * cin
        layers.append(conv_bn_act(cin, self.out_channels, act=act))
        self.features = nn.Sequential(*layers)
        _init_weights(self)
        if style == "minimal":
            _init_linear_inputs(self.features)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")  # fan_in: a fresh net in eval mode keeps its signal
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _init_linear_inputs(features: nn.Sequential) -> None:
    """Gain 1 for the convolutions that read an input no ReLU has halved: the stem (the image), each
    expansion and the last 1×1 (the linear bottleneck). With the ReLU gain every one of them doubles
    the variance, and a fresh minimal network (no excitation gates or hard-swish to damp it) gave
    logits of −30 to −100 in eval mode; untrained fixtures should give a trained network's O(1)."""
    first = [m for m in features[0].modules() if isinstance(m, nn.Conv2d)][:1]
    expansions = [b.block[0][0] for b in features if isinstance(b, InvertedResidual) and b.block[0][0].groups == 1]
    last = [features[-1][0]]
    for conv in first + expansions + last:
        nn.init.kaiming_normal_(conv.weight, nonlinearity="linear")
