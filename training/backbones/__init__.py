"""Backbones written in this project: ``xception`` (paper-faithful, 299×299), ``edge``
(MobileNetV3-Small-sized, for Jetson-class devices) and ``plain`` (five conv-BN-ReLU-max-pool
stages, for small inputs). Each maps an image to its last feature map
(stride 32) and exposes ``out_channels``."""

from __future__ import annotations

from training.backbones.edge import EdgeNet
from training.backbones.plain import PlainNet
from training.backbones.xception import Xception

__all__ = ["EdgeNet", "PlainNet", "Xception"]
