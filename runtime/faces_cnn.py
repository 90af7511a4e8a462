"""MTCNN, the default face detector: three small CNNs run by :mod:`runtime.backends`.

Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks" (2016). P-Net scans an image pyramid (12 px window, stride 2) for candidates; R-Net
(24 px) and O-Net (48 px) re-score and re-fit them; O-Net's probability is the face's
``score`` and it also gives five landmarks (eyes, nose, mouth corners). Only boxes whose score
reaches ``face_threshold`` are returned, so a doubtful box is never scored as a face.

The networks are ONNX files (or TensorRT engines) written by ``python -m export.faces``; the
bundled copy is in ``runtime/assets/mtcnn/``. Pre- and post-processing (pyramid, crops,
non-maximum suppression, box regression) are numpy + OpenCV here: no torch at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.errors import UserError
from runtime.meta import FACE_KEY, FACE_NETS, face_meta_from_json

BUNDLED = Path(__file__).resolve().parent / "assets" / "mtcnn"
DEFAULT_FACE_THRESHOLD = 0.9
STAGE_THRESHOLDS = (0.6, 0.7)  # P-Net and R-Net (MTCNN's defaults); O-Net's is face_threshold
FACTOR, COARSE_FACTOR = 0.709, 0.6  # pyramid steps: area halves per level; coarser for scans beside tracks


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_min: bool = False) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression of (x1, y1, x2, y2) boxes, best first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.asarray(keep, np.int64)


def _square(b: np.ndarray) -> np.ndarray:
    """Boxes made square around their centre (side = the longer side)."""
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    side = np.maximum(w, h)
    b = b.copy()
    b[:, 0] += (w - side) / 2
    b[:, 1] += (h - side) / 2
    b[:, 2:4] = b[:, 0:2] + side[:, None]
    return b


def _regress(b: np.ndarray, reg: np.ndarray, plus_one: bool = True) -> np.ndarray:
    w = b[:, 2] - b[:, 0] + (1 if plus_one else 0)
    h = b[:, 3] - b[:, 1] + (1 if plus_one else 0)
    out = b.copy()
    out[:, :4] = b[:, :4] + reg * np.stack([w, h, w, h], axis=1)
    return out


def crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """N×3×size×size float32 crops of (x1, y1, x2, y2) boxes; outside the image is black."""
    h, w = image.shape[:2]
    out = np.empty((len(boxes), size, size, 3), np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(np.int64)):
        bw, bh = max(1, x2 - x1 + 1), max(1, y2 - y1 + 1)
        patch = np.zeros((bh, bw, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(0, x1), max(0, y1), min(w, x2 + 1), min(h, y2 + 1)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - y1: sy1 - y1, sx0 - x1: sx1 - x1] = image[sy0:sy1, sx0:sx1]
        interp = cv2.INTER_AREA if bw > size else cv2.INTER_LINEAR
        out[k] = cv2.resize(patch, (size, size), interpolation=interp)
    return out.transpose(0, 3, 1, 2)


def find_nets(folder: str | Path, suffix: str = ".onnx") -> dict[str, Path]:
    """pnet/rnet/onet files in ``folder`` (``<net><suffix>``), or a clear error."""
    d = Path(folder)
    if not d.is_dir():
        raise UserError(f"--face-model {folder}: not a folder; pass the folder python -m export.faces wrote "
                        f"(pnet{suffix}, rnet{suffix}, onet{suffix})")
    paths = {n: d / f"{n}{suffix}" for n in FACE_NETS}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise UserError(f"--face-model {folder}: {', '.join(missing)} missing; re-run python -m export.faces "
                        f"(and python -m export.engine for .engine files) into that folder")
    return paths


class MtcnnFaceDetector:
    """MTCNN on ONNX Runtime (or TensorRT engines). Boxes come back largest first, each a
    :class:`runtime.detection.Detection` with ``score`` and ``landmarks`` (5×2, frame pixels)."""

    supports_roi = True  # may be run on a window around a tracked face (runtime.tracking)
    gray_ok = False
    has_landmarks = True
    roi_face_px = 48  # window searches shrink a tracked face to O-Net's input side, not Haar's 32 px

    def __init__(self, model: str | Path | None = None, detect_width: int = 640, min_face: int = 24,
                 face_threshold: float = DEFAULT_FACE_THRESHOLD, provider: str = "cpu", threads: int = 1,
                 suffix: str = ".onnx") -> None:
        from runtime.backends import open_graph

        if not 0.0 <= face_threshold <= 1.0:
            raise UserError(f"--face-threshold {face_threshold}: must be a probability between 0 and 1")
        self.model = str(model or BUNDLED)
        opts: dict[str, Any] = {"provider": provider, "threads": threads} if suffix == ".onnx" else {}
        self._nets = {n: open_graph(p, **opts) for n, p in find_nets(self.model, suffix).items()}
        for n, g in self._nets.items():
            text = g.props.get(FACE_KEY)
            if text is None:
                raise UserError(f"{g.path}: carries no face-detector metadata ('{FACE_KEY}'); re-run python -m export.faces")
            meta = face_meta_from_json(text, source=g.path)
            if meta["net"] != n:
                raise UserError(f"{g.path}: holds MTCNN's {meta['net']}, not its {n}; re-run python -m export.faces")
        self.detect_width, self.min_face, self.face_threshold = detect_width, min_face, float(face_threshold)
        self._info = {"detector": "mtcnn", "model": self.model, "face_threshold": self.face_threshold,
                      **{k: v for k, v in self._nets["pnet"].describe().items() if k != "path"}}

    def describe(self) -> dict[str, Any]:
        return dict(self._info)

    def close(self) -> None:
        for g in self._nets.values():
            g.close()

    def detect(self, frame: np.ndarray, sizes: tuple[int, int] | None = None, coarse: bool = False) -> list[Any]:
        """Faces in ``frame``; ``sizes`` = (smallest, largest) face side in frame pixels when the
        caller knows it (a tracker searching near a face); ``coarse``: fewer pyramid levels."""
        from runtime.detection import Detection, downscale

        small, scale = downscale(frame, self.detect_width)
        if small.ndim == 2:
            small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        lo = max(self.min_face, sizes[0] * scale) if sizes else self.min_face
        hi = sizes[1] * scale if sizes else None
        boxes, points = self._cascade(small, lo, hi, COARSE_FACTOR if coarse else FACTOR)
        out = []
        for b, p in zip(boxes, points):
            x, y = b[0] / scale, b[1] / scale
            w, h = (b[2] - b[0]) / scale, (b[3] - b[1]) / scale
            if sizes and not sizes[0] * 0.7 <= max(w, h) <= sizes[1] * 1.4:
                continue
            out.append(Detection((round(x), round(y), max(1, round(w)), max(1, round(h))), float(b[4]),
                                 (p / scale).astype(np.float32)))
        return sorted(out, key=lambda d: d[2] * d[3], reverse=True)

    # --- the three stages -------------------------------------------------------------------
    def _pyramid(self, image: np.ndarray, lo: float, hi: float | None, factor: float) -> np.ndarray:
        h, w = image.shape[:2]
        s, found, level = 12.0 / lo, [], image
        smallest = 12.0 / hi * factor if hi else 0.0  # one level past the largest face wanted
        while min(h, w) * s >= 12 and s >= smallest:
            sh, sw = int(np.ceil(h * s)), int(np.ceil(w * s))
            # each level from the one before (area averaging): a fraction of resizing the image each time
            smaller = sw < level.shape[1]
            level = cv2.resize(level, (sw, sh), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_LINEAR)
            prob, reg = self._nets["pnet"].run({"input": level.transpose(2, 0, 1)[None].astype(np.float32)},
                                                ("prob", "reg"))
            ys, xs = np.nonzero(prob[0, 0] >= STAGE_THRESHOLDS[0])
            if len(ys):
                inv = 1.0 / s  # a P-Net cell (stride 2, 12 px window) back in image pixels
                b = np.stack([np.floor((2 * xs + 1) * inv), np.floor((2 * ys + 1) * inv),
                              np.floor((2 * xs + 12) * inv), np.floor((2 * ys + 12) * inv),
                              prob[0, 0, ys, xs]], axis=1)
                b = np.concatenate([b, reg[0][:, ys, xs].T], axis=1)
                found.append(b[nms(b[:, :4], b[:, 4], 0.5)])
            s *= factor
        return np.concatenate(found) if found else np.zeros((0, 9), np.float32)

    def _cascade(self, image: np.ndarray, lo: float, hi: float | None, factor: float) -> tuple[np.ndarray, np.ndarray]:
        none = np.zeros((0, 5)), np.zeros((0, 5, 2))
        b = self._pyramid(image, lo, hi, factor)
        if not len(b):
            return none
        b = b[nms(b[:, :4], b[:, 4], 0.7)]
        b = _square(np.concatenate([_regress(b[:, :4], b[:, 5:9], plus_one=False), b[:, 4:5]], axis=1))
        b[:, :4] = np.trunc(b[:, :4])
        prob, reg = self._run_batches("rnet", crops(image, b, 24), ("prob", "reg"))
        keep = prob[:, 0] > STAGE_THRESHOLDS[1]
        b = np.concatenate([b[keep, :4], prob[keep]], axis=1)
        reg = reg[keep]
        pick = nms(b[:, :4], b[:, 4], 0.7)
        if not len(pick):
            return none
        return self._output_stage(image, _square(_regress(b[pick], reg[pick])))

    def _onet(self, image: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """O-Net on square (x1, y1, x2, y2) candidates, in one batch: every candidate re-fitted,
        (x1, y1, x2, y2, score) rows, and its landmarks (N×5×2); nothing dropped."""
        b = b.copy()
        b[:, :4] = np.trunc(b[:, :4])
        prob, reg, marks = self._run_batches("onet", crops(image, b, 48), ("prob", "reg", "landmarks"))
        b = np.concatenate([b[:, :4], prob[:, :1]], axis=1)
        w, h = b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1
        pts = np.stack([w[:, None] * marks[:, :5] + b[:, 0:1] - 1, h[:, None] * marks[:, 5:] + b[:, 1:2] - 1], axis=2)
        return _regress(b, reg), pts

    def _output_stage(self, image: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """O-Net on square (x1, y1, x2, y2) candidates: the boxes that reach the face threshold,
        re-fitted, with their landmarks."""
        b, pts = self._onet(image, b)
        keep = b[:, 4] >= self.face_threshold
        b, pts = b[keep], pts[keep]
        pick = nms(b[:, :4], b[:, 4], 0.7, by_min=True)
        return b[pick], pts[pick]

    def refine(self, frame: np.ndarray, box: Any) -> list[Any]:
        """A tracked face re-found from its predicted ``box`` (x, y, w, h, frame pixels) by O-Net
        alone, on the full-resolution frame: one 48 px crop instead of a pyramid. Empty when the
        face is not there (O-Net's score below the face threshold: the tracker then searches a
        window with the whole cascade)."""
        found = self.refine_all(frame, [box])[0]
        return [] if found is None else [found]

    def refine_all(self, frame: np.ndarray, boxes: list[Any]) -> list[Any]:
        """:meth:`refine` for several tracked faces in one O-Net batch: per box, its re-fitted
        :class:`runtime.detection.Detection`, or None where O-Net's score is below the face threshold."""
        from runtime.detection import Detection

        if not len(boxes):
            return []
        xywh = np.array([[float(v) for v in box[:4]] for box in boxes], np.float64)
        square = _square(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:4]], axis=1))
        found, points = self._onet(frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), square)
        return [Detection((b[0], b[1], b[2] - b[0], b[3] - b[1]), float(b[4]), p.astype(np.float32))
                if b[4] >= self.face_threshold else None for b, p in zip(found, points)]

    def _run_batches(self, net: str, x: np.ndarray, names: tuple[str, ...], limit: int = 256) -> list[np.ndarray]:
        parts = [self._nets[net].run({"input": x[i: i + limit]}, names) for i in range(0, len(x), limit)]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(names))]
