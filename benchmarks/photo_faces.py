"""Real face photos available offline, as a folder of runtime crops: a calibration set unlike the
synthetic one.

The synthetic faces (``training.sample_faces``) are scikit-image's LFW subset, 25-pixel grayscale
faces upscaled, plus one colour face. A user's own faces are usually sharp colour photos from a
camera. Three such photos ship with the libraries the project already installs: Grace Hopper
(matplotlib's sample data), the astronaut Eileen Collins and the cameraman (scikit-image). Each is
found by the runtime's face detector and cropped as the runtime crops (``runtime.preprocess``,
the model's margin), then varied as a camera would see it over time (position and scale of the
box, mirror image, exposure and contrast, now and then grayscale or soft focus), so that
calibrating on them stands for "a user calibrates on their own few people".

``python -m benchmarks.photo_faces --out DIR`` writes the crops as PNG files (an unlabelled crops
folder: every data-spec tool reads it as real faces).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from runtime.errors import Parser

PHOTOS = ("hopper", "astronaut", "camera")


def _frames() -> Iterator[tuple[str, np.ndarray]]:
    import cv2

    try:
        import matplotlib.cbook as cbook
        from skimage import data
    except ImportError as e:
        from runtime.errors import missing_dependency

        raise missing_dependency(e.name or "matplotlib", "train") from None
    hopper = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    if hopper is not None:
        yield "hopper", hopper
    yield "astronaut", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    yield "camera", cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR)


def _vary(frame: np.ndarray, box: tuple[float, float, float, float], margin: float, size: int,
          rng: np.random.Generator) -> np.ndarray:
    import cv2

    from runtime.preprocess import crop_face

    x, y, w, h = box
    s = rng.uniform(0.9, 1.15)
    dx, dy = rng.uniform(-0.08, 0.08, 2) * max(w, h)
    crop = crop_face(frame, (x + dx - (s - 1) * w / 2, y + dy - (s - 1) * h / 2, w * s, h * s), margin, size)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    out = crop.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-30, 30)
    out = np.clip(out, 0, 255).astype(np.uint8)
    u = rng.random()
    if u < 0.15:
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    elif u < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.6, 1.5))
    return np.ascontiguousarray(out)


def photo_crops(per_photo: int = 64, size: int = 224, margin: float = 0.15, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 BGR crop) for ``per_photo`` variants of every photo in which the detector finds a face."""
    from runtime.faces import make_detector

    detector = make_detector()
    rng = np.random.default_rng(seed)
    out = []
    for name, frame in _frames():
        boxes = detector.detect(frame)
        if not boxes:
            continue
        box = tuple(float(v) for v in boxes[0][:4])
        out += [(f"{name}_{k:03d}", _vary(frame, box, margin, size, rng)) for k in range(per_photo)]
    return out


def write_folder(folder: str | Path, per_photo: int = 64, size: int = 224, margin: float = 0.15,
                 seed: int = 0) -> Path:
    """Write :func:`photo_crops` as ``folder/<photo>_<k>.png``; returns the folder."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, crop in photo_crops(per_photo, size, margin, seed):
        cv2.imwrite(str(folder / f"{name}.png"), crop)
    return folder


def main(argv: list[str] | None = None) -> int:

    p = Parser(prog="python -m benchmarks.photo_faces", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="folder for the crops (created)")
    p.add_argument("--per-photo", type=int, default=64, help="variants of each photo (64)")
    p.add_argument("--size", type=int, default=224, help="crop side in pixels (224)")
    p.add_argument("--margin", type=float, default=0.15, help="face crop margin (the model's; 0.15)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    from runtime.errors import UserError

    if a.per_photo < 1 or a.size < 16:
        raise UserError(f"--per-photo {a.per_photo} / --size {a.size}: need at least 1 variant of at least 16 px")
    folder = write_folder(a.out, a.per_photo, a.size, a.margin, a.seed)
    print(f"wrote {len(list(folder.glob('*.png')))} face crops to {folder}")
    return 0


if __name__ == "__main__":
    from runtime.errors import run_cli

    run_cli(main, "benchmarks.photo_faces")
