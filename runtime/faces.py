"""The one face detector module, used by the runtime, training's extraction and calibration.

The default is MTCNN (:mod:`runtime.faces_cnn`): three small CNNs bundled as ONNX files and run by
the same backends as the classifier, with a detection confidence (``--face-threshold`` gates
which boxes are scored) and five landmarks. Measured against Haar (README, "Face detector"): as
good or better recall on real faces, no false boxes on face-free photos where Haar has some, and
cheaper per frame. OpenCV's Haar cascade ``alt2`` stays as ``haar``, the fallback that needs no
model file; a user-supplied YuNet ONNX (``cv2.FaceDetectorYN``) is an option; ``none`` treats
every frame as one face crop. Detection runs on a frame downscaled to ``detect_width``;
:mod:`runtime.tracking` follows faces between detections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from runtime.detection import Box, downscale
from runtime.errors import UserError

CASCADES = {"alt2": "haarcascade_frontalface_alt2.xml", "default": "haarcascade_frontalface_default.xml"}
DEFAULT_CASCADE = "alt2"
DETECTORS = ("mtcnn", "haar", "yunet", "none")
DEFAULT_DETECTOR = "mtcnn"


def _largest_first(boxes: list[Box]) -> list[Box]:
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


class HaarFaceDetector:
    """OpenCV's Haar cascade (frontal faces). Boxes come back largest first.

    ``cascade``: ``alt2`` (default), ``default`` (OpenCV's other frontal cascade) or a path to a
    cascade XML.
    """

    supports_roi = True  # may be run on a window around a tracked face (runtime.tracking)
    gray_ok = True  # takes grayscale frames as they are

    def __init__(self, detect_width: int = 640, min_face: int = 24, neighbors: int = 5,
                 cascade: str | None = None) -> None:
        name = CASCADES.get(cascade or DEFAULT_CASCADE)
        path = str(Path(cv2.data.haarcascades) / name) if name else str(cascade)
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise UserError(f"{path}: could not load the Haar cascade; install opencv-python-headless<5 "
                            "(OpenCV 5 dropped the cascades)")
        self.detect_width = detect_width
        self.min_face = min_face
        self.neighbors = neighbors

    def detect(self, frame: np.ndarray, sizes: tuple[int, int] | None = None, coarse: bool = False) -> list[Box]:
        """Faces in ``frame``; ``sizes`` = (smallest, largest) face side in ``frame`` pixels, when
        the caller knows it (a tracker searching near a face): fewer scales, faster. ``coarse``:
        scale steps of 1.2 instead of 1.1, half the cost, boxes less tight (a tracker's scan for
        new faces)."""
        small, scale = downscale(frame, self.detect_width)
        gray = small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        gray = cv2.equalizeHist(gray)
        lo = max(self.min_face, int(sizes[0] * scale)) if sizes else self.min_face
        hi = (int(sizes[1] * scale),) * 2 if sizes else None
        # a window search (sizes) or a coarse scan sees fewer scales, so fewer overlapping hits per face
        neighbors = min(self.neighbors, 3) if sizes or coarse else self.neighbors
        found = self._cascade.detectMultiScale(gray, scaleFactor=1.2 if coarse else 1.1, minNeighbors=neighbors,
                                               minSize=(lo, lo), maxSize=hi)
        boxes = [tuple(int(round(v / scale)) for v in b) for b in (found if len(found) else [])]
        return _largest_first(boxes)  # type: ignore[arg-type]


class YuNetFaceDetector:
    """A user-supplied YuNet face-detector ONNX run by ``cv2.FaceDetectorYN`` (OpenCV ≥ 4.8)."""

    supports_roi = True

    def __init__(self, model: str, detect_width: int = 640, min_face: int = 24,
                 score_threshold: float = 0.6, nms_threshold: float = 0.3) -> None:
        if not hasattr(cv2, "FaceDetectorYN"):
            raise UserError(f"--face-model {model}: this OpenCV ({cv2.__version__}) has no FaceDetectorYN; "
                            "install opencv-python-headless>=4.8 or use --faces haar")
        if not Path(model).is_file():
            raise UserError(f"--face-model {model}: no such file; pass a YuNet face-detector .onnx")
        try:
            self._net = cv2.FaceDetectorYN.create(str(model), "", (64, 64), score_threshold, nms_threshold, 100)
            self._net.detect(np.zeros((64, 64, 3), np.uint8))  # a wrong network fails here, not mid-run
        except cv2.error as e:
            msg = " ".join(str(e).split())
            msg = msg[msg.find("error:"):][:160] if "error:" in msg else msg[-160:]
            raise UserError(f"--face-model {model}: OpenCV cannot run it as a YuNet face detector ({msg}); "
                            "pass face_detection_yunet_2023mar.onnx or use --faces haar") from None
        self.detect_width = detect_width
        self.min_face = min_face
        self._size: tuple[int, int] | None = (64, 64)

    def detect(self, frame: np.ndarray, sizes: tuple[int, int] | None = None, coarse: bool = False) -> list[Box]:
        small, scale = downscale(frame, self.detect_width)
        size = (small.shape[1], small.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(small)
        boxes: list[Box] = []
        for f in faces if faces is not None else []:
            x, y, w, h = (int(round(v / scale)) for v in f[:4])
            if min(w, h) >= self.min_face / scale and (not sizes or sizes[0] <= max(w, h) <= sizes[1]):
                boxes.append((x, y, w, h))
        return _largest_first(boxes)


class WholeFrameDetector:
    """For inputs that are already face crops: the whole frame is the face."""

    supports_roi = False
    crop_margin = 0.0  # the crops already hold their margin (training reads them as they are)

    def detect(self, frame: np.ndarray, sizes: tuple[int, int] | None = None, coarse: bool = False) -> list[Box]:
        h, w = frame.shape[:2]
        return [(0, 0, w, h)]

    def refine(self, frame: np.ndarray, box: Any) -> list[Box]:
        """A tracked face confirmed: the frame is the face, on every frame (runtime.tracking)."""
        return self.detect(frame)


class GivenFaces:
    """Boxes found beforehand, one list per frame, handed back at no cost: the frame loop with the
    face detector's cost taken out (``benchmarks.pipeline``'s "faces given", the most tracking could
    ever save). Frames past the end of the list have no face."""

    supports_roi = False

    def __init__(self, boxes: Sequence[Sequence[Box]]) -> None:
        self._boxes, self._i = boxes, 0

    def detect(self, frame: np.ndarray, sizes: tuple[int, int] | None = None, coarse: bool = False) -> list[Box]:
        got = self._boxes[self._i] if self._i < len(self._boxes) else []
        self._i += 1
        return list(got)


def make_detector(kind: str = DEFAULT_DETECTOR, **kwargs):  # -> one of the detector classes
    """A face detector by name: ``mtcnn`` (default; ``model=`` a folder of its networks, the bundled
    one otherwise), ``haar`` (the fallback with no model file), ``yunet`` (needs ``model=``) or ``none``."""
    if kind == "mtcnn":
        from runtime.faces_cnn import MtcnnFaceDetector

        return MtcnnFaceDetector(**kwargs)
    kwargs.pop("face_threshold", None)  # only the CNN detector has a confidence to gate on
    kwargs.pop("provider", None)
    kwargs.pop("threads", None)
    if kind == "haar":
        return HaarFaceDetector(**kwargs)
    if kind == "yunet":
        if not kwargs.get("model"):
            raise UserError("--faces yunet needs --face-model PATH (a YuNet face-detector .onnx)")
        return YuNetFaceDetector(**kwargs)
    if kind == "none":
        return WholeFrameDetector()
    raise UserError(f"face detector {kind!r} is unknown; use one of {', '.join(DETECTORS)}")


def detector_options(a: Any) -> tuple[str, dict[str, Any]]:
    """The face detector's kind and options from runtime.detect's arguments (``a.faces`` is set to
    the kind chosen). MTCNN runs where the model runs: ONNX Runtime's provider for an .onnx model;
    for a TensorRT engine, the detector's engines when its folder has them (python -m export.engine
    builds them), else ONNX Runtime on the CPU."""
    # a model file (.onnx) is YuNet's; a folder holds MTCNN's networks
    kind = a.faces or ("yunet" if a.face_model and Path(a.face_model).suffix.lower() == ".onnx" else "mtcnn")
    a.faces = kind
    if kind == "none":
        return kind, {}
    kw: dict[str, Any] = {"detect_width": a.detect_width, "min_face": a.min_face}
    if kind == "yunet":
        kw["model"] = a.face_model
    if kind == "mtcnn":
        from runtime.faces_cnn import BUNDLED, DEFAULT_FACE_THRESHOLD

        folder = Path(a.face_model or BUNDLED)
        kw["model"] = str(folder)
        kw["face_threshold"] = DEFAULT_FACE_THRESHOLD if a.face_threshold is None else a.face_threshold
        if Path(a.engine).suffix.lower() == ".onnx":
            # on a GPU provider the detector runs on the GPU too; CUDA for TensorRT's provider, which
            # would rebuild an engine for every new pyramid size
            kw["provider"] = {"tensorrt": "cuda"}.get(a.provider or "cpu", a.provider or "cpu")
        elif all((folder / f"{n}.engine").is_file() for n in ("pnet", "rnet", "onet")):
            kw["suffix"] = ".engine"
    return kind, kw
