"""A plain five-stage CNN backbone for small inputs (64-128 px): conv-BN-ReLU then a 2×2 max-pool,
five times, in the manner of VGG (Simonyan & Zisserman, ICLR 2015) without its depth.

At 64 px the edge backbone's inverted residuals and squeeze-excite spend their capacity on
feature maps of 2×2 to 4×4 cells; stride-1 3×3 convolutions with max-pool downsampling keep the
pixel-scale traces of a blend (as ``EdgeNet(downsample="max")`` tries to) with fewer, wider
layers. Stride 32 like the other backbones, so the JRC encoder, classifier and decoder are
unchanged. About 0.07 GMACs at 64 px with the default widths (0.85 at 224: meant for small
inputs, not for the 224 px edge budget). Every operation exports to ONNX opset 17 as Conv (BN
folded), Relu and MaxPool.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

CHANNELS = (32, 64, 128, 256, 256)


class PlainNet(nn.Module):
    """Five stages of 3×3 conv + BN + ReLU + 2×2 max-pool; ``out_channels`` at stride 32."""

    def __init__(self, width: float = 1.0, channels: Sequence[int] = CHANNELS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for c in channels:
            cout = max(8, int(round(c * width)))
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.out_channels = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)
