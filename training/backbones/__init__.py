"""Backbones written in this project: ``xception`` (paper-faithful, 299×299), ``edge``
(MobileNetV3-Small-sized, for Jetson-class devices), ``plain`` (five conv-BN-ReLU-max-pool
stages, for small inputs) and ``meso4`` / ``mesoinception4`` (MesoNet's convolutional stages, 256×256,
whose authors' deepfake-trained weights load). Each maps an image to its last feature map
(stride 32) and exposes ``out_channels``."""

from __future__ import annotations

from training.backbones.edge import EdgeNet
from training.backbones.meso import Meso4, MesoInception4
from training.backbones.plain import PlainNet
from training.backbones.xception import Xception

__all__ = ["EdgeNet", "Meso4", "MesoInception4", "PlainNet", "Xception"]
