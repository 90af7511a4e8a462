"""Backbones written in this project: ``xception`` (paper-faithful, 299×299) and ``edge``
(MobileNetV3-Small-sized, for Jetson-class devices). Each maps an image to its last feature map
(stride 32) and exposes ``out_channels``."""

from __future__ import annotations

from training.backbones.edge import EdgeNet
from training.backbones.xception import Xception

__all__ = ["EdgeNet", "Xception"]
