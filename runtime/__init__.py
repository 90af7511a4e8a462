"""Torch-free runtime of the JRC deepfake detector: numpy + OpenCV + the artifact's backend.

Nothing here imports torch, onnx tooling, or the training/export/calibration packages, so it
installs and runs on a Jetson where torch is absent.
"""

__version__ = "0.1.0"
