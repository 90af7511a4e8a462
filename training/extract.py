"""Face crops from videos and photos: ``python -m training.extract --videos DIR --out DIR --frames 32``.

For every video below ``--videos`` (recursively) it samples ``--frames`` evenly spaced frames
(:func:`training.video_frames.sample_frames`; ``training.calibration_set`` reads video specs
through it too), finds faces with
``runtime.faces`` and crops them with ``runtime.preprocess.crop_face`` (the crop the runtime
makes), then writes ``OUT/<real|fake>/<video id>/<frame>.png`` and a row per crop in
``OUT/manifest.csv`` (``path,label,video``). Every photo below it is one frame: its largest face
(every face with ``--all-faces``) is cropped to ``OUT/<real|fake>/<its path>.png``, its video id
the photo's folder (:func:`find_photos`); photos read, without a face and skipped are counted. Either ``OUT`` or the manifest is a valid ``--data``
for every tool (``training.dataspec``). The video id is the video's path below ``DIR`` (or below
``DIR/real|fake``) without its extension. Labels come from ``DIR/real`` and ``DIR/fake`` when
those exist, else from ``--label``.

Videos that cannot be opened or decoded are reported on stderr, one line each, and skipped; a
video that decodes only partly keeps the crops of the frames it has. Each manifest row is
written after its PNG and flushed, so an interrupted run leaves a manifest whose rows all name
existing crops. ``--overwrite`` removes the crops the earlier manifest lists (inside ``OUT`` only; a
link itself, never its target) when the first new crop is ready, and starts the new manifest then:
a run that writes no crop leaves the earlier manifest and its crops as they were. Exit status 0 when
at least one video was processed, 1 when none could be.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

import cv2
import numpy as np

from runtime.errors import Parser, UserError, missing_dependency, run_cli
from runtime.faces import DEFAULT_DETECTOR, DETECTORS, make_detector
from runtime.faces_cnn import DEFAULT_FACE_THRESHOLD
from runtime.fileio import make_folder
from runtime.media import IMAGE_EXTS, VIDEO_EXTS
from runtime.meta import FACE_ALIGNS, Meta
from runtime.preprocess import as_bgr8, face_crop
from training.outputs import remove_listed, writable_folder
from training.video_frames import sample_frames

PROG = "training.extract"
LABELS = ("real", "fake")


def find_videos(root: Path, label: str | None, exts: tuple[str, ...] = VIDEO_EXTS) -> tuple[list[tuple[Path, str, str]], int]:
    """(video path, label, video id) for every video below ``root``, and how many were ignored
    (``exts``: the suffixes looked for).

    With ``root/real`` or ``root/fake`` present, only videos below them count (others are ignored).
    """
    def under(base: Path) -> list[Path]:
        return sorted(p for p in base.rglob("*") if p.suffix.lower() in exts and p.is_file())

    labelled = [name for name in LABELS if (root / name).is_dir()]
    found: list[tuple[Path, str, str]] = []
    if labelled:
        for name in labelled:
            found += [(p, name, p.relative_to(root / name).with_suffix("").as_posix()) for p in under(root / name)]
        ignored = len(under(root)) - len(found)
    else:
        if label is None:
            raise UserError(f"{root}: has no real/ or fake/ subfolder, so the label is unknown; pass "
                            "--label real or --label fake, or sort the videos into real/ and fake/")
        found = [(p, label, p.relative_to(root).with_suffix("").as_posix()) for p in under(root)]
        ignored = 0
    # Two videos that differ only by extension (clip.mp4, clip.avi) keep their extension in the id.
    seen: dict = {}
    for _, lab, vid in found:
        seen[(lab, vid)] = seen.get((lab, vid), 0) + 1
    found = [(p, lab, p.relative_to(root / lab if labelled else root).as_posix() if seen[(lab, vid)] > 1 else vid)
             for p, lab, vid in found]
    return found, ignored


def find_photos(root: Path, label: str | None) -> tuple[list[tuple[Path, str, str, str]], int]:
    """(photo path, label, video id, crop name) for every photo below ``root`` (the folders as for
    videos), and how many were ignored. The video id is ``training.dataspec``'s rule for crops: the
    photo's folder below ``real|fake`` (photos of one person kept together), or its name without the
    suffix for a photo directly there; the crop keeps the photo's path (``<label>/<path>.png``; its
    suffix kept in the name when two photos of a folder share a stem)."""
    from training.dataspec import video_id_from_path

    found, ignored = find_videos(root, label, IMAGE_EXTS)
    labelled = any((root / name).is_dir() for name in LABELS)
    stems: dict[tuple[str, str], int] = {}
    rels = [p.relative_to(root / lab if labelled else root) for p, lab, _ in found]
    for (_, lab, _), rel in zip(found, rels):
        key = (lab, rel.with_suffix("").as_posix())
        stems[key] = stems.get(key, 0) + 1
    out = []
    for (p, lab, _), rel in zip(found, rels):
        name = rel.with_suffix("").as_posix()
        if stems[(lab, name)] > 1:
            name += "_" + rel.suffix.lstrip(".").lower()
        out.append((p, lab, video_id_from_path(rel), name))
    return out, ignored


def video_crops(path: Path, frames: int, detector: Any, size: int, margin: float, all_faces: bool = False,
                stats: dict | None = None, align: str = "box") -> Iterator[tuple[int, int, np.ndarray]]:
    """(frame index, face number, crop) for the faces of ``frames`` sampled frames: the largest face
    of each (every face with ``all_faces``) cropped as the runtime crops (``align``: around the box,
    or aligned by the detector's landmarks). ``stats`` receives
    ``wanted``, ``read`` (see :func:`sample_frames`) and ``no_face`` (decoded frames without one)."""
    stats = {} if stats is None else stats
    stats["no_face"] = 0
    for idx, frame in sample_frames(path, frames, stats):
        frame = as_bgr8(frame)
        boxes = detector.detect(frame)
        if not boxes:
            stats["no_face"] += 1
            continue
        for k, box in enumerate(boxes if all_faces else boxes[:1]):
            yield idx, k, face_crop(frame, box, getattr(box, "landmarks", None), margin, size, align)


def extraction_detector(kind: str, model: str | None, detect_width: int, min_face: int,
                        face_threshold: float = DEFAULT_FACE_THRESHOLD) -> Any:
    """The face detector of the extraction tools (this one and ``training.datasets``), built from
    their shared options: the runtime's own (``runtime.faces.make_detector``)."""
    if kind == "none":
        return make_detector("none")
    if kind == "yunet" and not model:
        raise UserError("--faces yunet needs --face-model PATH (a YuNet face-detector .onnx)")
    kw: dict[str, Any] = {"detect_width": detect_width, "min_face": min_face}
    if kind == "mtcnn":
        kw["face_threshold"] = face_threshold
    if kind in ("mtcnn", "yunet") and model:
        kw["model"] = model
    return make_detector(kind, **kw)


class OutputError(UserError):
    """Writing to --out failed: that stops the run (unlike a bad video, which is skipped)."""


def _write_png(path: Path, crop: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", crop)
    try:
        if not ok:
            raise OSError("PNG encoding failed")
        path.parent.mkdir(parents=True, exist_ok=True)
        buf.tofile(str(path))
    except OSError as e:
        raise OutputError(f"{path}: cannot be written ({e}); check free space and permissions of --out") from None


class Manifest:
    """``manifest.csv``, started (the file created, its header written) when the first crop is written,
    after ``replacing`` ran (``--overwrite``: the earlier crops removed), so a run that writes no crop
    leaves an earlier manifest and its crops as they were. Each row is flushed right after its crop
    is on disk."""

    def __init__(self, path: Path, replacing: Callable[[], None] | None = None) -> None:
        self.path = path
        self._replacing = replacing
        self._f: TextIO | None = None

    @property
    def started(self) -> bool:
        return self._f is not None

    def start(self) -> None:
        if self._f is not None:
            return
        if self._replacing is not None:
            self._replacing()
        try:
            self._f = open(self.path, "w", newline="", encoding="utf-8")
        except OSError as e:
            raise OutputError(f"{self.path}: cannot be written ({e.strerror or e}); check --out") from None
        self._w = csv.writer(self._f, lineterminator="\n")
        self.add("path", "label", "video")

    def write_crop(self, rel: str, crop: np.ndarray, label: str, video: str) -> None:
        """The crop at ``rel`` (below the manifest's folder), then its row."""
        self.start()
        _write_png(self.path.parent / rel, crop)
        self.add(rel, label, video)

    def add(self, rel: str, label: str, video: str) -> None:
        self.start()
        self._w.writerow([rel, label, video])
        self._f.flush()

    def sync(self) -> None:
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        """Close; a run without crops and without an earlier manifest to keep still leaves its header."""
        if self._f is None and self._replacing is None:
            self.start()
        if self._f is not None:
            self.sync()
            self._f.close()


def earlier_crops(out: Path, manifest_path: Path) -> list[Path]:
    """``--overwrite``: the crops an earlier extraction wrote, as its manifest lists them (only PNGs
    inside ``out``; training.outputs.listed_inside). Read before the work starts: an unreadable manifest
    is one line then."""
    from training.outputs import listed_inside

    try:
        with open(manifest_path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{manifest_path}: cannot be read to remove the crops it lists ({e}); remove the folder "
                        "yourself or choose another --out") from None
    return listed_inside(out, [row[0] for row in rows[1:] if row], ".png")


def extract_video(path: Path, label: str, video_id: str, manifest: Manifest, detector, frames: int,
                  size: int, margin: float, all_faces: bool, align: str = "box") -> tuple[int, int]:
    """Crops of one video; returns (crops written, sampled frames without a face)."""
    crops = 0
    stats: dict = {}
    for idx, k, crop in video_crops(path, frames, detector, size, margin, all_faces, stats, align):
        rel = f"{label}/{video_id}/" + (f"{idx:06d}_{k}.png" if all_faces else f"{idx:06d}.png")
        manifest.write_crop(rel, crop, label, video_id)
        crops += 1
    manifest.sync()
    if stats.get("read", 0) < stats.get("wanted", 0):
        _tqdm().write(f"{PROG}: {path}: only {stats['read']} of {stats['wanted']} sampled frames could be decoded "
                      "(truncated?); kept their crops", file=sys.stderr)
    return crops, stats["no_face"]


def extract_photo(path: Path, label: str, video_id: str, name: str, manifest: Manifest, detector,
                  size: int, margin: float, all_faces: bool, align: str = "box") -> int:
    """Crops of one photo (its largest face, or every face); returns how many were written."""
    from runtime.media import check_content_matches_name, read_image

    check_content_matches_name(str(path))
    frame = read_image(str(path))
    if frame is None:
        raise UserError("not a decodable image (damaged, or a format OpenCV cannot read)")
    boxes = detector.detect(frame)
    for k, box in enumerate(boxes if all_faces else boxes[:1]):
        rel = f"{label}/{name}" + (f"_{k}.png" if all_faces else ".png")
        manifest.write_crop(rel, face_crop(frame, box, getattr(box, "landmarks", None), margin, size, align),
                            label, video_id)
    manifest.sync()
    return len(boxes if all_faces else boxes[:1])


def _each(items: list[tuple[Any, ...]], bar: Any, work: Any) -> list[Any]:
    """``work(item)`` for each item (its path first); a bad file is reported in one line and skipped,
    a failing output stops the run. Returns the results of the items that worked."""
    results = []
    for item in items:
        try:
            results.append(work(item))
        except OutputError:
            raise
        except UserError as e:
            bar.write(f"{PROG}: skipped {item[0]}: {e}", file=sys.stderr)
        finally:
            bar.update()
        bar.set_postfix(done=len(results), skipped=bar.n - len(results))
    return results


def add_detector_options(p: argparse.ArgumentParser) -> None:
    """The face-detector options of the extraction tools (this one and ``training.datasets``)."""
    p.add_argument("--faces", choices=DETECTORS, default=DEFAULT_DETECTOR,
                   help="face detector (runtime.faces, the runtime's own): mtcnn (the bundled CNN), haar (no model "
                   "file), yunet (needs --face-model) or none (frames are crops)")
    p.add_argument("--face-model", help="mtcnn: folder of pnet/rnet/onet .onnx (default: the bundled one); "
                   "yunet: its .onnx")
    p.add_argument("--face-threshold", type=float, default=DEFAULT_FACE_THRESHOLD,
                   help="mtcnn: faces below this detection confidence are not cropped (keep the runtime's)")
    p.add_argument("--detect-width", type=int, default=640, help="detection runs on frames scaled to this width")
    p.add_argument("--min-face", type=int, default=24, help="smallest face (pixels at detection width)")


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        raise missing_dependency("tqdm", "train") from None
    return tqdm


def build_parser() -> argparse.ArgumentParser:
    meta = Meta()
    p = Parser(prog="python -m training.extract", description="Sample frames of every video, crop the faces as the runtime does, write PNG "
                                "crops and a manifest.csv for training.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--videos", required=True, type=Path, help="folder of videos and photos (with real/ and fake/, or "
                   "use --label); a photo gives one crop (its largest face; every face with --all-faces)")
    p.add_argument("--out", required=True, type=Path, help="output folder for crops and manifest.csv")
    p.add_argument("--frames", type=int, default=32, help="frames sampled evenly per video")
    p.add_argument("--size", type=int, default=meta.input_size, help="crop side in pixels")
    p.add_argument("--margin", type=float, default=meta.face_margin,
                   help="face box margin (crop side = (1 + 2*margin) * box side); keep the model's")
    p.add_argument("--label", choices=LABELS, help="label of all videos when --videos has no real/ fake/")
    p.add_argument("--all-faces", action="store_true", help="crop every detected face, not only the largest")
    add_detector_options(p)
    p.add_argument("--align", choices=FACE_ALIGNS, default="box", help="crop around the box, or align by the "
                   "detector's five landmarks (mtcnn); train with the same --face-align")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT/manifest.csv and remove the "
                   "crops it lists (only those), once the first new crop is ready")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames < 1 or not 16 <= args.size <= 2048 or not 0 <= args.margin <= 2:
        raise UserError(f"--frames {args.frames} --size {args.size} --margin {args.margin}: expected frames >= 1, "
                        "size 16..2048, margin 0..2")
    if not args.videos.is_dir():
        raise UserError(f"{args.videos}: not a folder; --videos takes a folder of videos and photos")
    videos, ignored = find_videos(args.videos, args.label)
    photos, ignored_photos = find_photos(args.videos, args.label)
    if not videos and not photos:
        raise UserError(f"{args.videos}: no video files ({', '.join(VIDEO_EXTS)}) and no photos "
                        f"({', '.join(IMAGE_EXTS)}) found; nothing to extract")
    manifest_path = args.out / "manifest.csv"
    if manifest_path.exists() and not args.overwrite:
        raise UserError(f"{manifest_path}: exists; pass --overwrite to replace it or choose another --out")
    writable_folder(args.out, "--out")
    earlier = earlier_crops(args.out, manifest_path) if args.overwrite and manifest_path.is_file() else None
    detector = extraction_detector(args.faces, args.face_model, args.detect_width, args.min_face, args.face_threshold)
    if args.align == "landmarks" and not getattr(detector, "has_landmarks", False):
        raise UserError(f"--align landmarks needs a detector with landmarks; --faces {args.faces} has none, use mtcnn")
    make_folder(args.out, "--out")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # our one line per bad video replaces FFmpeg's noise
    tqdm = _tqdm()

    def replace_earlier() -> None:  # once the first new crop is ready: the folder and manifest stay in step
        removed = remove_listed(args.out, earlier or [])
        tqdm.write(f"{PROG}: --overwrite: removed {removed} crops of the earlier extraction ({manifest_path})",
                   file=sys.stderr)

    if ignored or ignored_photos:
        print(f"{PROG}: ignoring {ignored} videos and {ignored_photos} photos outside real/ and fake/", file=sys.stderr)
    manifest = Manifest(manifest_path, replace_earlier if earlier is not None else None)
    try:
        bar = tqdm(total=len(videos) + len(photos), desc="extract", unit="file", file=sys.stderr, dynamic_ncols=True)
        done = _each(videos, bar, lambda v: extract_video(v[0], v[1], v[2], manifest, detector, args.frames,
                                                          args.size, args.margin, args.all_faces, args.align))
        # a photo is one frame: its largest face (every face with --all-faces)
        shots = _each(photos, bar, lambda ph: extract_photo(ph[0], ph[1], ph[2], ph[3], manifest, detector,
                                                            args.size, args.margin, args.all_faces, args.align))
        bar.close()
    finally:
        manifest.close()
    processed, skipped = len(done), len(videos) - len(done)
    crops, no_face = sum(c for c, _ in done) + sum(shots), sum(nf for _, nf in done)
    read, photo_skipped, photo_no_face = len(shots), len(photos) - len(shots), sum(c == 0 for c in shots)
    print(f"{PROG}: {processed} videos processed, {skipped} skipped, {crops} crops written, "
          f"{no_face} sampled frames without a face; {read} photos read, {photo_no_face} without a face, "
          f"{photo_skipped} skipped -> {manifest_path}")
    if not manifest.started:
        print(f"{PROG}: --overwrite: no crop was written, so {manifest_path} and the crops it lists are kept as "
              "they were", file=sys.stderr)
    if processed == 0 and read == 0:
        raise UserError(f"{args.videos}: none of the {len(videos)} videos and {len(photos)} photos could be read; "
                        "see the lines above")
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
