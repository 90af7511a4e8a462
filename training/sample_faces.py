"""Real faces available offline: scikit-image's ``astronaut()`` and ``lfw_subset()``.

These power the synthetic (self-blended) training mode, the tests and the demo model. Know
what they are: ``lfw_subset()`` holds 100 face images of 25×25 pixels, grayscale, plus 100
non-faces (only the first 100 are used; the bundled MTCNN finds a face in all of them and in none
of the other 100, Haar in 98-99 and none). ``astronaut()`` adds one colour face. So the bundled demo model is trained on 101 tiny,
mostly grayscale faces upscaled to the input size: enough to show the pipeline works end to end,
not a detector for real-world deepfakes.

Every face goes through the runtime's own path (the default detector, then ``crop_face`` with the
model's margin), so the crop geometry matches what the runtime feeds the network. LFW images are
first upscaled ×4 (bicubic) and border-padded so the detector can see them. The LFW subset has
no identity labels: each image counts as its own identity, ids ``lfw-000`` … ``lfw-099``; the
astronaut is ``astronaut``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np

from runtime import cpu
from runtime.detection import Detection
from runtime.errors import missing_dependency
from runtime.faces import make_detector
from runtime.fileio import replacing
from runtime.preprocess import crop_face, face_crop
from training.synthetic import is_gray

Face = Tuple[str, np.ndarray]  # (face id, uint8 BGR size×size×3)

LFW_FACES = 100  # lfw_subset(): images 0..99 are faces, 100..199 are not
LFW_UPSCALE = 4  # 25 px → 100 px before detection
LFW_PAD = 30  # border (px, after upscaling) so the whole face lies inside the detector's window


def _skimage_data():
    try:
        from skimage import data
    except ImportError:
        raise missing_dependency("scikit-image", "train") from None
    return data


def lfw_frame(gray01: np.ndarray) -> np.ndarray:
    """One 25×25 LFW image (floats in [0, 1]) as an upscaled, padded uint8 BGR frame."""
    g = np.clip(np.rint(np.asarray(gray01, np.float64) * 255.0), 0, 255).astype(np.uint8)
    side = g.shape[0] * LFW_UPSCALE
    g = cv2.resize(g, (side, side), interpolation=cv2.INTER_CUBIC)
    g = cv2.copyMakeBorder(g, LFW_PAD, LFW_PAD, LFW_PAD, LFW_PAD, cv2.BORDER_REPLICATE)
    return cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)


def lfw_images(faces: bool = True) -> np.ndarray:
    """The LFW subset's 100 faces (``faces=True``) or its 100 non-faces, as float arrays 25×25."""
    imgs = _skimage_data().lfw_subset()
    return imgs[:LFW_FACES] if faces else imgs[LFW_FACES:]


def astronaut_bgr() -> np.ndarray:
    """scikit-image's astronaut (512×512 colour, one frontal face) as uint8 BGR."""
    return cv2.cvtColor(_skimage_data().astronaut(), cv2.COLOR_RGB2BGR)


CACHE_ENV = "JRC_CACHE_DIR"
_CACHE_FORMAT = 1
_CACHE_FIELDS = ("found", "boxes", "scores", "marks", "has_marks")


def cache_dir() -> Path | None:
    """Where the offline faces' detections are cached between runs: ``$JRC_CACHE_DIR`` (set but
    empty: no cache), else ``$XDG_CACHE_HOME/jrc`` or ``~/.cache/jrc``."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return Path(env) if env.strip() else None
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jrc"


def _frames() -> list[tuple[str, np.ndarray, dict[str, int]]]:
    """Every offline face as (id, the frame the detector sees, the detector's options)."""
    out = [("astronaut", astronaut_bgr(), {})]
    out += [(f"lfw-{i:03d}", lfw_frame(img), {"min_face": 20}) for i, img in enumerate(lfw_images(faces=True))]
    return out


def cache_key(frames: list[tuple[str, np.ndarray, dict[str, int]]], model_dir: Path | None = None) -> str:
    """What the detections depend on: the default detector's kind, its network files, the runtime's
    source (pre/post-processing, backends), the libraries that compute them, the CPU's features
    (a home folder shared between machines), and every frame."""
    from importlib.metadata import PackageNotFoundError, version

    from runtime.faces import DEFAULT_DETECTOR
    from runtime.faces_cnn import BUNDLED

    h = hashlib.sha256(f"jrc-sample-faces {_CACHE_FORMAT} {DEFAULT_DETECTOR} np {np.__version__} "
                       f"cv2 {cv2.__version__} {platform.machine()} {' '.join(sorted(cpu.flags()))}".encode())
    for lib in ("onnxruntime",):
        try:
            h.update(f" {lib} {version(lib)}".encode())
        except PackageNotFoundError:
            h.update(f" {lib} none".encode())
    runtime_dir = Path(__file__).resolve().parents[1] / "runtime"
    files = sorted(Path(model_dir or BUNDLED).iterdir()) + sorted(runtime_dir.glob("*.py"))
    files += sorted((runtime_dir / "backends").glob("*.py"))
    for f in files:
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    for fid, frame, opts in frames:
        h.update(f"{fid} {frame.shape} {sorted(opts.items())}".encode() + frame.tobytes())
    return h.hexdigest()[:32]


def _read_cache(path: Path, n: int) -> list[Detection | None] | None:
    """The cached detections, or None when the file is missing, unreadable or not what it should be."""
    try:
        with np.load(path, allow_pickle=False) as z:
            found, boxes, scores, marks, has = (np.asarray(z[k]) for k in _CACHE_FIELDS)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    shapes = {"found": (n,), "boxes": (n, 4), "scores": (n,), "marks": (n, 5, 2), "has_marks": (n,)}
    arrays = dict(zip(_CACHE_FIELDS, (found, boxes, scores, marks, has)))
    if any(arrays[k].shape != shape for k, shape in shapes.items()) or found.dtype != bool or has.dtype != bool \
            or boxes.dtype.kind != "i" or not np.isfinite(marks[has]).all():
        return None
    return [Detection(tuple(boxes[i]), None if np.isnan(scores[i]) else float(scores[i]),
                      marks[i].astype(np.float32) if has[i] else None) if found[i] else None for i in range(n)]


def _write_cache(path: Path, dets: list[Detection | None]) -> None:
    """Write the detections atomically; a cache that cannot be written is no error (the next run detects again)."""
    n = len(dets)
    found = np.array([d is not None for d in dets])
    boxes = np.array([tuple(d) if d is not None else (0, 0, 0, 0) for d in dets], np.int64).reshape(n, 4)
    scores = np.array([d.score if d is not None and d.score is not None else np.nan for d in dets], np.float64)
    has = np.array([d is not None and d.landmarks is not None for d in dets])
    marks = np.full((n, 5, 2), np.nan, np.float32)
    for i, d in enumerate(dets):
        if has[i]:
            marks[i] = d.landmarks
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, found=found, boxes=boxes, scores=scores, marks=marks, has_marks=has)


@lru_cache(maxsize=1)
def _detections() -> tuple[tuple[str, np.ndarray, Detection | None], ...]:
    """Every offline face's frame and the default detector's first box on it (None: none found).

    Detecting them takes about 2 s, in every process that trains, evaluates or calibrates on
    synthetic data, so the boxes are kept in :func:`cache_dir` under a key of everything they
    depend on (:func:`cache_key`); a missing, stale or damaged file is simply detected again."""
    frames = _frames()
    folder = cache_dir()
    path = folder / f"sample-faces-{cache_key(frames)}.npz" if folder is not None else None
    dets = _read_cache(path, len(frames)) if path is not None else None
    if dets is None:
        default, small = make_detector(), make_detector(min_face=20)
        dets = []
        for _, frame, opts in frames:
            boxes = (small if opts else default).detect(frame)
            dets.append(boxes[0] if boxes else None)
        if path is not None:
            _write_cache(path, dets)
    return tuple((fid, frame, d) for (fid, frame, _), d in zip(frames, dets))


@lru_cache(maxsize=8)
def _faces(size: int, margin: float, astronaut: bool, lfw: bool, align: str = "box") -> tuple[Face, ...]:
    def crop(frame: np.ndarray, box) -> np.ndarray:
        marks = getattr(box, "landmarks", None)
        return face_crop(frame, box, marks, margin, size, align if marks is not None else "box")

    out: list[Face] = []
    whole = (LFW_PAD, LFW_PAD, 25 * LFW_UPSCALE, 25 * LFW_UPSCALE)
    for fid, frame, det in _detections():
        if fid == "astronaut" and astronaut:
            out.append((fid, crop(frame, det if det is not None else (176, 56, 91, 118))))  # where MTCNN finds it
        elif fid != "astronaut" and lfw:
            out.append((fid, crop(frame, det) if det is not None else crop_face(frame, whole, margin, size)))
    for _, c in out:
        c.flags.writeable = False  # shared by the cache: callers copy before changing
    return tuple(out)


def sample_real_faces(size: int = 224, margin: float = 0.15, astronaut: bool = True,
                      lfw: bool = True, align: str = "box") -> list[Face]:
    """The offline real faces as (face_id, uint8 BGR ``size``×``size`` crop), in a fixed order.

    101 faces by default (1 astronaut + 100 LFW). The arrays are read-only and cached.
    """
    return list(_faces(int(size), float(margin), bool(astronaut), bool(lfw), str(align)))


def vary_face(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A training-time variant of one offline face (uint8 BGR), drawn from ``rng``: its colour and
    its sharpness change over the whole crop, before any blending, so real and fake crops share it.

    The offline faces are narrow in look: 100 of 101 are grayscale and blurry (25 px upscaled),
    one is colour and sharp. Self-blends add colour and sharpness inside their mask, so a model
    left alone learns "colour or sharp detail is fake" and calls any real sharp colour face fake.
    Varying both globally leaves them carrying no label; the blend's local mismatch still does.
    """
    out = _vary_colour(face, rng)
    u = rng.random()
    if u < 0.4:  # unsharp mask over the whole crop
        blur = cv2.GaussianBlur(out, (0, 0), 1.0)
        amount = rng.uniform(0.3, 1.5)
        out = cv2.addWeighted(out, 1.0 + amount, blur, -amount, 0)
    elif u < 0.6:  # softened over the whole crop
        h, w = out.shape[:2]
        f = rng.uniform(0.5, 0.85)
        small = cv2.resize(out, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def _vary_colour(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grayscale faces mostly get a random skin tone (chroma set in YCrCb around the skin
    cluster, luma kept); colour faces are sometimes desaturated."""
    if is_gray(face):
        if rng.random() < 0.15:
            return face.copy()
        ycc = cv2.cvtColor(face, cv2.COLOR_BGR2YCrCb).astype(np.float32)
        ycc[..., 1] = rng.uniform(136.0, 156.0)  # Cr: skin lies at about 135..170
        ycc[..., 2] = rng.uniform(100.0, 122.0)  # Cb: about 100..125
        return cv2.cvtColor(np.clip(np.rint(ycc), 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2BGR)
    if rng.random() < 0.3:
        keep = rng.uniform(0.0, 0.8)  # share of the original saturation left
        g = cv2.cvtColor(cv2.cvtColor(face, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR).astype(np.float32)
        return np.clip(np.rint(g + keep * (face.astype(np.float32) - g)), 0, 255).astype(np.uint8)
    return face.copy()
