"""Standard benchmarks → face crops + manifest: ``python -m training.datasets --root DATA --out CROPS``.

Finds FaceForensics++, Celeb-DF v2, DFDC and DFDC-preview below ``--root`` by their official
layouts (``training.layouts`` says how each is read: labels, official splits, pairs) and writes,
per dataset, ``CROPS/<name>/<real|fake>/<video id>/<frame>.png`` and ``CROPS/<name>/manifest.csv``
with columns ``path,label,video,split,dataset,method,group``: ``split`` is the official side
(train/val/test), ``group`` ties a fake to the real videos it was made from. The manifest (or the
folder) is a valid ``--data`` for every tool; ``--split`` of training.train and training.evaluate
selects by the column, and ``training.evaluate --protocol CROPS`` prints the protocol's table.
Names: ``ffpp-<compression>``, ``celebdf-v2``, ``dfdc``, ``dfdcp``.

Frames and faces are ``training.extract``'s: ``--frames`` evenly spaced frames, the largest face
found by ``runtime.faces`` (``--faces``), cropped by ``runtime.preprocess.crop_face`` (train =
serve). Videos run in ``--workers`` processes; one writer appends a video's rows after all its
crops are on disk, then records the video in ``progress.jsonl``. A second run into the same
``--out`` skips recorded videos and drops rows of any video the first run left unfinished, so an
interrupted run resumes where it stopped. Damaged videos are skipped, counted and recorded.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from runtime.errors import Parser, UserError, run_cli
from runtime.faces import DEFAULT_DETECTOR
from runtime.faces_cnn import DEFAULT_FACE_THRESHOLD
from runtime.fileio import replacing, write_atomic
from runtime.meta import Meta
from training import layouts
from training.layouts import COMPRESSIONS, DATASETS, FF_DEFAULT_METHODS, FF_METHODS, Listing, Video

COLUMNS = ("path", "label", "video", "split", "dataset", "method", "group")
MANIFEST, PROGRESS, SETTINGS = "manifest.csv", "progress.jsonl", "extract.json"


@dataclass(frozen=True)
class Settings:
    """What the crops depend on; a resumed run must ask for the same."""

    frames: int = 32
    real_frames: int = 32
    size: int = Meta().input_size
    margin: float = Meta().face_margin
    faces: str = DEFAULT_DETECTOR  # the runtime's: crops found by the detector that serves
    face_model: str | None = None
    detect_width: int = 640
    min_face: int = 24
    face_threshold: float = DEFAULT_FACE_THRESHOLD


@dataclass
class Tally:
    done_before: int = 0
    processed: int = 0
    damaged: int = 0
    crops: int = 0
    no_face: int = 0
    damaged_names: list[str] = field(default_factory=list)


def list_datasets(root: Path, which: Iterable[str], compression: str, methods: Iterable[str],
                  ff_splits: Path | None = None) -> list[Listing]:
    """The videos of each requested benchmark found below ``root``."""
    if not root.is_dir():
        raise UserError(f"--root {root}: not a folder; pass the folder holding the datasets")
    found = layouts.find_datasets(root)
    which = list(which)
    missing = [d for d in which if d not in found]
    if len(missing) == len(which):
        raise UserError(f"--root {root}: no {', '.join(which)} layout found (looked for original_sequences/, "
                        "List_of_testing_videos.txt, dfdc_train_part_*/metadata.json, */labels.csv, dataset.json "
                        "beside original_videos/, up to 3 levels down); point --root at the datasets")
    out = []
    for name in which:
        if name not in found:
            continue
        d = found[name]
        if name == "ffpp":
            out.append(layouts.faceforensics(d, compression, methods, ff_splits))
        elif name == "celebdf":
            out.append(layouts.celebdf(d))
        elif name == "dfdc":
            out.append(layouts.dfdc(d))
        else:
            out.append(layouts.dfdc_preview(d))
    return out


def describe(listing: Listing) -> str:
    """One line: videos per split and label."""
    counts: dict[tuple[str, str], int] = {}
    for v in listing.videos:
        counts[(v.split, v.label)] = counts.get((v.split, v.label), 0) + 1
    parts = [f"{s} {counts.get((s, 'real'), 0)} real + {counts.get((s, 'fake'), 0)} fake"
             for s in layouts.SPLITS if counts.get((s, "real")) or counts.get((s, "fake"))]
    return f"{listing.name}: {len(listing.videos)} videos ({'; '.join(parts) or 'none'})"


# --- one video (runs in a worker process) ---------------------------------------------------
_DETECTOR: Any = None
_DETECTOR_SETTINGS: Settings | None = None


def _init_worker(settings: Settings) -> None:
    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    cv2.setNumThreads(1)
    global _DETECTOR
    _DETECTOR = _make_detector(settings)


def _make_detector(s: Settings) -> Any:
    from training.extract import extraction_detector

    return extraction_detector(s.faces, s.face_model, s.detect_width, s.min_face, s.face_threshold)


def crop_video(job: tuple[Video, Path, Settings]) -> dict[str, Any]:
    """Crops of one video written under ``out``; the manifest rows to add, or why it was skipped."""
    from training.extract import OutputError, _write_png, video_crops

    video, out, s = job
    folder = out / video.label / video.video
    shutil.rmtree(folder, ignore_errors=True)  # leftovers of an interrupted run
    frames = s.real_frames if video.label == "real" else s.frames
    stats: dict = {}
    rows = []
    try:
        for idx, _, crop in video_crops(video.path, frames, _DETECTOR, s.size, s.margin, False, stats):
            rel = f"{video.label}/{video.video}/{idx:06d}.png"
            _write_png(out / rel, crop)
            rows.append(rel)
    except OutputError:
        raise
    except UserError as e:
        return {"video": video.video, "status": "damaged", "error": str(e), "crops": 0, "no_face": 0}
    return {"video": video.video, "status": "ok", "rows": rows, "crops": len(rows),
            "no_face": stats.get("no_face", 0), "read": stats.get("read", 0), "wanted": stats.get("wanted", 0)}


# --- resumable output -----------------------------------------------------------------------
def _read_progress(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
            done[str(rec["video"])] = rec
        except (json.JSONDecodeError, KeyError, TypeError):
            if n != len(lines):  # only the last line can be cut short by an interruption
                raise UserError(f"{path}:{n}: not a progress record; delete {path.parent} or pass --overwrite") from None
    return done


def _prepare(out: Path, s: Settings, overwrite: bool) -> dict[str, dict[str, Any]]:
    """Start or resume ``out``: the finished videos; rows of unfinished ones are dropped."""
    settings_path, manifest = out / SETTINGS, out / MANIFEST
    if overwrite and settings_path.is_file():
        for name in ("real", "fake", MANIFEST, PROGRESS, SETTINGS):
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    if settings_path.is_file():
        try:
            before = json.loads(settings_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            before = None
        if before != asdict(s):
            diff = ", ".join(f"{k} {before.get(k)!r} → {v!r}" for k, v in asdict(s).items()
                             if before.get(k) != v) if isinstance(before, dict) else "unreadable"
            raise UserError(f"{settings_path}: an earlier run used other settings ({diff}); resume with the same "
                            "options, pass --overwrite to start again, or choose another --out")
    elif manifest.exists():
        raise UserError(f"{manifest}: exists but was not written by training.datasets; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    write_atomic(settings_path, json.dumps(asdict(s), indent=1) + "\n")
    done = _read_progress(out / PROGRESS)
    if manifest.is_file():  # keep the rows of finished videos only (an interrupted one starts over)
        with open(manifest, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f)]
        keep = [r for r in rows[1:] if len(r) == len(COLUMNS) and r[2] in done]
        with replacing(manifest) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows([list(COLUMNS), *keep])
    else:
        with replacing(manifest) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerow(COLUMNS)
    with replacing(out / PROGRESS) as tmp:  # also drops a last line cut short
        Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in done.values()), encoding="utf-8")
    return done


class _Writer:
    """Appends a finished video's rows to the manifest, then its record to progress.jsonl."""

    def __init__(self, out: Path, dataset: str) -> None:
        self.dataset = dataset
        self._m = open(out / MANIFEST, "a", newline="", encoding="utf-8")
        self._w = csv.writer(self._m, lineterminator="\n")
        self._p = open(out / PROGRESS, "a", encoding="utf-8")

    def add(self, video: Video, result: dict[str, Any]) -> None:
        for rel in result.get("rows", []):
            self._w.writerow([rel, video.label, video.video, video.split, self.dataset, video.method, video.group])
        self._m.flush()
        os.fsync(self._m.fileno())
        rec = {k: v for k, v in result.items() if k != "rows"}
        self._p.write(json.dumps(rec) + "\n")
        self._p.flush()
        os.fsync(self._p.fileno())

    def close(self) -> None:
        self._m.close()
        self._p.close()


def _results(jobs: list[tuple[Video, Path, Settings]], workers: int, s: Settings) -> Iterator[tuple[Video, dict]]:
    if workers <= 1 or len(jobs) <= 1:
        _init_detector_here(s)
        for job in jobs:
            yield job[0], crop_video(job)
        return
    import multiprocessing as mp

    by_name = {job[0].video: job[0] for job in jobs}
    pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(s,))
    try:
        for result in pool.imap_unordered(crop_video, jobs, chunksize=1):
            yield by_name[result["video"]], result
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _init_detector_here(s: Settings) -> None:
    global _DETECTOR, _DETECTOR_SETTINGS
    if _DETECTOR is None or _DETECTOR_SETTINGS != s:
        _DETECTOR, _DETECTOR_SETTINGS = _make_detector(s), s


def extract_listing(listing: Listing, out_root: Path, s: Settings, workers: int = 1, overwrite: bool = False,
                    progress: bool = True) -> Tally:
    """Crops and manifest of one dataset into ``out_root/<name>``; resumes an earlier run there."""
    from tqdm import tqdm

    out = out_root / listing.name
    done = _prepare(out, s, overwrite)
    tally = Tally(done_before=sum(1 for v in listing.videos if v.video in done))
    todo = [(v, out, s) for v in listing.videos if v.video not in done]
    writer = _Writer(out, listing.name)
    try:
        with tqdm(total=len(listing.videos), initial=tally.done_before, desc=listing.name, unit="video",
                  file=sys.stderr, dynamic_ncols=True, disable=not progress) as bar:
            for video, result in _results(todo, workers, s):
                writer.add(video, result)
                if result["status"] == "damaged":
                    tally.damaged += 1
                    tally.damaged_names.append(video.video)
                    bar.write(f"datasets: skipped {video.path}: {result['error']}", file=sys.stderr)
                else:
                    tally.processed += 1
                    tally.crops += result["crops"]
                    tally.no_face += result["no_face"]
                bar.update(1)
                bar.set_postfix(crops=tally.crops, damaged=tally.damaged)
    finally:
        writer.close()
    return tally


# --- CLI -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    meta = Meta()
    p = Parser(prog="python -m training.datasets", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--root", required=True, type=Path, help="folder holding the datasets in their official layouts")
    p.add_argument("--out", type=Path, help="output folder: one subfolder per dataset (not needed with --list)")
    p.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS),
                   help="which benchmarks to prepare (those found below --root)")
    p.add_argument("--compression", choices=COMPRESSIONS + ("c0",), default="c23",
                   help="FaceForensics++ quality: raw (= c0), c23 (HQ) or c40 (LQ)")
    p.add_argument("--methods", nargs="+", choices=FF_METHODS + ("all",), default=list(FF_DEFAULT_METHODS),
                   help="FaceForensics++ manipulations (default: the four of the FF++ protocol)")
    p.add_argument("--ff-splits", type=Path, help="folder with FF++'s official train/val/test.json "
                   "(default: <FF++ root>/splits or the FF++ root)")
    p.add_argument("--splits", nargs="+", choices=layouts.SPLITS, default=list(layouts.SPLITS),
                   help="extract only these official splits (e.g. test: DFDC's test set without its 470 GB train)")
    p.add_argument("--frames", type=int, default=32, help="frames sampled evenly per video")
    p.add_argument("--real-frames", type=int, help="frames per real video (default: --frames); more real frames is "
                   "one way to balance FF++'s 4 fakes per real")
    p.add_argument("--size", type=int, default=meta.input_size, help="crop side in pixels (299 for Xception)")
    p.add_argument("--margin", type=float, default=meta.face_margin, help="face box margin; keep the model's")
    from training.extract import add_detector_options

    add_detector_options(p)  # as training.extract: the runtime's detector and its settings
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="videos processed in parallel")
    p.add_argument("--overwrite", action="store_true", help="start again instead of resuming an earlier run")
    p.add_argument("--list", action="store_true", help="only print what was found per dataset and split")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    compression = "raw" if a.compression == "c0" else a.compression
    methods = FF_METHODS if "all" in a.methods else tuple(dict.fromkeys(a.methods))
    real_frames = a.frames if a.real_frames is None else a.real_frames
    if min(a.frames, real_frames) < 1 or not 16 <= a.size <= 2048 or not 0 <= a.margin <= 2 or a.workers < 0:
        raise UserError(f"--frames {a.frames} --real-frames {real_frames} --size {a.size} --margin {a.margin} "
                        f"--workers {a.workers}: expected frames >= 1, size 16..2048, margin 0..2, workers >= 0")
    if a.faces == "yunet" and not a.face_model:
        raise UserError("--faces yunet needs --face-model PATH (a YuNet face-detector .onnx)")
    listings = list_datasets(a.root, a.datasets, compression, methods, a.ff_splits)
    for lst in listings:
        lst.videos = [v for v in lst.videos if v.split in a.splits]
    for lst in listings:
        print(f"datasets: {describe(lst)}", file=sys.stderr)
        for note in lst.notes:
            print(f"datasets: {lst.name}: note: {note}", file=sys.stderr)
    if a.list:
        return 0
    if a.out is None:
        raise UserError("--out is required to extract crops (or pass --list to only look)")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if not 0.0 <= a.face_threshold <= 1.0:
        raise UserError(f"--face-threshold {a.face_threshold}: must be a probability between 0 and 1")
    s = Settings(a.frames, real_frames, a.size, a.margin, a.faces, a.face_model, a.detect_width, a.min_face,
                 a.face_threshold)
    total = 0
    for lst in listings:
        if not lst.videos:
            continue
        t = extract_listing(lst, a.out, s, a.workers, a.overwrite)
        total += t.processed + t.done_before
        print(f"datasets: {lst.name}: {t.processed} videos processed, {t.done_before} already done, {t.damaged} "
              f"damaged and skipped, {t.crops} crops written, {t.no_face} sampled frames without a face -> "
              f"{a.out / lst.name / MANIFEST}")
    if total == 0:
        raise UserError(f"--root {a.root}: no video could be read and no crops were written; see the lines above")
    return 0


if __name__ == "__main__":
    run_cli(main, "datasets")
