"""The standard deepfake benchmarks as their authors ship them: which videos, labels, splits, pairs.

Each reader takes a dataset's root folder in its official layout and lists :class:`Video`
records; nothing is decoded here (``training.datasets`` extracts the crops).

* **FaceForensics++** (Rössler et al. 2019): ``original_sequences/youtube/<c>/videos/000.mp4`` and
  ``manipulated_sequences/<Method>/<c>/videos/000_003.mp4`` (``<c>`` = ``raw``, ``c23``, ``c40``).
  The official ``splits/train.json|val.json|test.json`` list [target, source] pairs such as
  ``["071", "054"]``: reals 071 and 054 and the fakes 071_054 and 054_071 of every method go to that
  pair's split, so no identity is on two sides; the group of all four is ``071_054``. Videos in no
  split file are left out and counted. DeepFakeDetection (``original_sequences/actors`` and
  ``manipulated_sequences/DeepFakeDetection``, fakes ``01_02__scene__CODE.mp4``) has no official
  split: actors are split ~72/14/14 by a stable hash of the actor id; a real goes with its actor,
  a fake with its two actors when both are on one side, and is left out (counted) otherwise.
* **Celeb-DF v2** (Li et al. 2020): ``Celeb-real/``, ``YouTube-real/``, ``Celeb-synthesis/`` and
  ``List_of_testing_videos.txt``, lines ``<flag> <folder>/<file>.mp4`` where the flag is **1 for
  real and 0 for fake** (Celeb-DF's own convention, the reverse of ours); listed videos are the
  test split, the others train (Celeb-DF has no val split). A fake ``id0_id16_0000`` (target id0's
  video 0000 with id16's face) is grouped with its target video ``id0_0000``.
* **DFDC** (Dolhansky et al. 2020): ``dfdc_train_part_<n>/metadata.json``
  ``{"x.mp4": {"label": "FAKE"|"REAL", "split": "train", "original": "y.mp4"}}`` (a fake grouped
  with its original), and labelled test/validation folders holding ``labels.csv``
  (``filename,label``, 1 = fake) beside their videos: split ``test`` unless the folder's name says
  validation (``val``).
* **DFDC preview** (Dolhansky et al. 2019): ``dataset.json`` ``{"method_A/…/x.mp4": {"label":
  "fake"|"real", "set": "train"|"test", …}}`` beside ``original_videos/``, ``method_A/``,
  ``method_B/``; grouped by the subject folder (the path's second part) or ``target_id``.

A split file or metadata that is not in the official format is a one-line :class:`UserError`.
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from runtime.errors import UserError
from runtime.media import VIDEO_EXTS

FF_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection")
FF_DEFAULT_METHODS = FF_METHODS[:4]  # the FF++ paper's four: the protocol's training set
COMPRESSIONS = ("raw", "c23", "c40")
SPLITS = ("train", "val", "test")
_FF_PAIR = re.compile(r"(\d{3})_(\d{3})")
_DFD_FAKE = re.compile(r"(\d+)_(\d+)__(.+)")
_DFD_REAL = re.compile(r"(\d+)__(.+)")
_CELEB_FAKE = re.compile(r"(id\d+)_(id\d+)_(\d+)")


@dataclass(frozen=True)
class Video:
    """One video of a benchmark: where it is, what it is, and which side of the split it belongs to."""

    path: Path
    label: str  # "real" | "fake"
    video: str  # unique within the dataset: <method or source folder>/<name>
    split: str  # "train" | "val" | "test"
    method: str  # manipulation method, or the real source ("youtube", "actors", "Celeb-real", ...)
    group: str  # identity group: a fake and the real videos it was made from share it


@dataclass
class Listing:
    """A dataset's videos, its output name and what was left out (and why)."""

    name: str
    videos: list[Video]
    notes: list[str]


def _videos_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file())


def _load_json(path: Path, expected: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e}); check the dataset folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); expected {expected}; restore the official file") from None


# --- FaceForensics++ -------------------------------------------------------------------------
def read_ff_split(path: Path) -> list[tuple[str, str]]:
    """The [target, source] pairs of an official FF++ split file."""
    expected = 'a JSON list of [target, source] pairs like [["071", "054"], ...]'
    data = _load_json(path, expected)
    if not isinstance(data, list) or not data:
        raise UserError(f"{path}: got {type(data).__name__}, expected {expected}; restore the official file")
    pairs = []
    for i, pair in enumerate(data):
        ok = (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) and re.fullmatch(r"\d{3}", v)
                                                               for v in pair))
        if not ok:
            raise UserError(f"{path}: entry {i} is {json.dumps(pair)[:60]}, expected {expected}; "
                            "restore the official file")
        pairs.append((pair[0], pair[1]))
    return pairs


def ff_split_files(root: Path, splits_dir: Path | None) -> dict[str, Path]:
    """train/val/test.json: in ``splits_dir``, ``root/splits`` or ``root`` itself."""
    for d in ([splits_dir] if splits_dir else [root / "splits", root]):
        found = {s: d / f"{s}.json" for s in SPLITS}
        if all(p.is_file() for p in found.values()):
            return found
    where = splits_dir or f"{root / 'splits'} or {root}"
    raise UserError(f"{where}: no FaceForensics++ train.json, val.json and test.json; download the official "
                    "split files (github.com/ondyari/FaceForensics, dataset/splits) into "
                    f"{root / 'splits'} or pass --ff-splits DIR")


def _ff_assignment(files: dict[str, Path]) -> dict[str, tuple[str, str]]:
    """Video number → (split, group) from the split files; a number in two pairs is an error."""
    where: dict[str, tuple[str, str]] = {}
    for split, path in files.items():
        for a, b in read_ff_split(path):
            group = f"{a}_{b}"
            for v in (a, b):
                if v in where and where[v] != (split, group):
                    raise UserError(f"{path}: video {v} is in pair {group} ({split}) and in pair {where[v][1]} "
                                    f"({where[v][0]}); the official splits list each video once")
                where[v] = (split, group)
    return where


def _dfd_split(actor: str) -> str:
    """DeepFakeDetection has no official split: actors ~72/14/14 by a stable hash of their id."""
    h = (zlib.crc32(f"dfd-actor-{int(actor)}".encode()) & 0xFFFFFFFF) % 100
    return "train" if h < 72 else "val" if h < 86 else "test"


def faceforensics(root: Path, compression: str = "c23", methods: Iterable[str] = FF_DEFAULT_METHODS,
                  splits_dir: Path | None = None) -> Listing:
    methods = list(methods)
    where = _ff_assignment(ff_split_files(root, splits_dir))
    videos: list[Video] = []
    notes: list[str] = []
    unsplit = 0

    def add_pair_video(path: Path, label: str, method: str) -> None:
        nonlocal unsplit
        m = _FF_PAIR.fullmatch(path.stem)
        numbers = [m.group(1), m.group(2)] if m else [path.stem]
        places = {where.get(n) for n in numbers}
        if None in places or len(places) != 1:
            unsplit += 1
            return
        split, group = places.pop()  # type: ignore[misc]
        videos.append(Video(path, label, f"{method}/{path.stem}", split, method, group))

    ff_methods = [m for m in methods if m != "DeepFakeDetection"]
    if ff_methods:
        reals = _videos_in(root / "original_sequences" / "youtube" / compression / "videos")
        if not reals:
            notes.append(f"no real videos in original_sequences/youtube/{compression}/videos")
        for p in reals:
            add_pair_video(p, "real", "youtube")
    for method in ff_methods:
        found = _videos_in(root / "manipulated_sequences" / method / compression / "videos")
        if not found:
            notes.append(f"no {method} videos in manipulated_sequences/{method}/{compression}/videos")
        for p in found:
            add_pair_video(p, "fake", method)
    if "DeepFakeDetection" in methods:
        videos += _dfd(root, compression, notes)
    if unsplit:
        notes.append(f"{unsplit} videos are in no official split file (or their pair's halves disagree) "
                     "and were left out")
    return Listing(f"ffpp-{compression}", videos, notes)


def _dfd(root: Path, compression: str, notes: list[str]) -> list[Video]:
    out, across = [], 0
    reals = _videos_in(root / "original_sequences" / "actors" / compression / "videos")
    fakes = _videos_in(root / "manipulated_sequences" / "DeepFakeDetection" / compression / "videos")
    if not reals and not fakes:
        notes.append(f"no DeepFakeDetection videos in original_sequences/actors/{compression} or "
                     f"manipulated_sequences/DeepFakeDetection/{compression}")
    for p in reals:
        m = _DFD_REAL.fullmatch(p.stem)
        actor = m.group(1) if m else p.stem
        split = _dfd_split(actor) if m else "test"
        out.append(Video(p, "real", f"actors/{p.stem}", split, "actors", f"actor{int(actor):02d}" if m else p.stem))
    for p in fakes:
        m = _DFD_FAKE.fullmatch(p.stem)
        if not m:
            across += 1
            continue
        sides = {_dfd_split(m.group(1)), _dfd_split(m.group(2))}
        if len(sides) != 1:
            across += 1
            continue
        out.append(Video(p, "fake", f"DeepFakeDetection/{p.stem}", sides.pop(), "DeepFakeDetection",
                         f"actor{int(m.group(1)):02d}"))
    if across:
        notes.append(f"{across} DeepFakeDetection fakes whose two actors fall on different sides of the split "
                     "(or with an unknown name) were left out")
    return out


# --- Celeb-DF v2 -----------------------------------------------------------------------------
CELEB_FOLDERS = {"Celeb-real": "real", "YouTube-real": "real", "Celeb-synthesis": "fake"}


def read_celeb_test_list(path: Path) -> dict[str, int]:
    """``folder/file.mp4`` → flag (1 real, 0 fake) of List_of_testing_videos.txt."""
    out: dict[str, int] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot be read ({e}); restore the official file") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1") or parts[1].split("/")[0] not in CELEB_FOLDERS:
            raise UserError(f"{path}:{n}: {line.strip()[:80]!r}, expected '<1 real|0 fake> <Celeb-real|YouTube-real|"
                            "Celeb-synthesis>/<name>.mp4'; restore the official file")
        out[parts[1]] = int(parts[0])
    if not out:
        raise UserError(f"{path}: lists no videos; restore the official file")
    return out


def celebdf(root: Path) -> Listing:
    listed = read_celeb_test_list(root / "List_of_testing_videos.txt")
    videos, notes = [], []
    for folder, label in CELEB_FOLDERS.items():
        found = _videos_in(root / folder)
        if not found:
            notes.append(f"no videos in {folder}/")
        for p in found:
            key = f"{folder}/{p.name}"
            flag = listed.pop(key, None)
            if flag is not None and (flag == 1) != (label == "real"):
                raise UserError(f"{root / 'List_of_testing_videos.txt'}: {key} is flagged {flag}, but {folder}/ holds "
                                f"{label} videos (the list's flag is 1 for real, 0 for fake); restore the official file")
            m = _CELEB_FAKE.fullmatch(p.stem)
            group = f"{m.group(1)}_{m.group(3)}" if (label == "fake" and m) else p.stem
            group = group if folder != "YouTube-real" else f"youtube_{p.stem}"
            videos.append(Video(p, label, f"{folder}/{p.stem}", "test" if flag is not None else "train", folder, group))
    if listed:
        notes.append(f"{len(listed)} videos of List_of_testing_videos.txt are missing (e.g. {next(iter(listed))})")
    return Listing("celebdf-v2", videos, notes)


# --- DFDC ------------------------------------------------------------------------------------
def _dfdc_label(value: Any) -> str | None:
    v = str(value).strip().lower()
    return {"fake": "fake", "real": "real", "1": "fake", "0": "real", "1.0": "fake", "0.0": "real"}.get(v)


def read_dfdc_metadata(path: Path) -> dict[str, dict[str, Any]]:
    expected = '{"x.mp4": {"label": "FAKE"|"REAL", "split": "train", "original": "y.mp4"}, ...}'
    data = _load_json(path, expected)
    if not isinstance(data, dict) or not data:
        raise UserError(f"{path}: got {type(data).__name__}, expected {expected}; restore the official file")
    for name, rec in data.items():
        if not isinstance(rec, dict) or _dfdc_label(rec.get("label")) is None:
            raise UserError(f"{path}: entry {name!r} is {json.dumps(rec)[:60]}, expected {expected}; "
                            "restore the official file")
    return data


def read_dfdc_labels(path: Path) -> dict[str, str]:
    """``labels.csv`` (``filename,label``, 1 = fake) of the DFDC test and validation sets."""
    out: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: cannot be read as CSV ({e}); restore the official file") from None
    head = [c.strip().lower() for c in rows[0]] if rows else []
    if "filename" not in head or "label" not in head:
        raise UserError(f"{path}: header {rows[0] if rows else 'missing'}, expected filename,label; "
                        "restore the official file")
    fi, li = head.index("filename"), head.index("label")
    for n, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        label = _dfdc_label(row[li]) if len(row) > max(fi, li) else None
        if label is None or not row[fi].strip():
            raise UserError(f"{path}:{n}: {','.join(row)[:60]!r}, expected filename,label with label 0 (real) "
                            "or 1 (fake); restore the official file")
        out[row[fi].strip()] = label
    return out


def dfdc(root: Path) -> Listing:
    videos, notes, missing = [], [], 0
    parts = sorted(p.parent for p in root.glob("*/metadata.json") if not (p.parent / "labels.csv").is_file())
    for part in parts:
        for name, rec in read_dfdc_metadata(part / "metadata.json").items():
            path = part / name
            if not path.is_file():
                missing += 1
                continue
            split = str(rec.get("split") or "train").strip().lower()
            split = "val" if split.startswith("val") else split if split in SPLITS else "train"
            original = rec.get("original") or name
            videos.append(Video(path, _dfdc_label(rec["label"]), f"{part.name}/{Path(name).stem}", split,  # type: ignore[arg-type]
                                part.name, Path(str(original)).stem))
    for labels in sorted(root.glob("*/labels.csv")):
        folder = labels.parent
        split = "val" if "val" in folder.name.lower() else "test"
        for name, label in read_dfdc_labels(labels).items():
            path = next((p for p in (folder / name, folder / "videos" / name) if p.is_file()), None)
            if path is None:
                missing += 1
                continue
            videos.append(Video(path, label, f"{folder.name}/{Path(name).stem}", split, folder.name, Path(name).stem))
    if missing:
        notes.append(f"{missing} videos named by metadata.json or labels.csv are missing")
    return Listing("dfdc", videos, notes)


# --- DFDC preview ----------------------------------------------------------------------------
def dfdc_preview(root: Path) -> Listing:
    expected = '{"method_A/.../x.mp4": {"label": "fake"|"real", "set": "train"|"test"}, ...}'
    path = root / "dataset.json"
    data = _load_json(path, expected)
    if not isinstance(data, dict) or not data:
        raise UserError(f"{path}: got {type(data).__name__}, expected {expected}; restore the official file")
    videos, missing = [], 0
    for name, rec in data.items():
        label = _dfdc_label(rec.get("label")) if isinstance(rec, dict) else None
        split = str(rec.get("set", "")).strip().lower() if isinstance(rec, dict) else ""
        if label is None or split not in ("train", "test"):
            raise UserError(f"{path}: entry {name!r} is {json.dumps(rec)[:60]}, expected {expected}; "
                            "restore the official file")
        p = root / name
        if not p.is_file():
            missing += 1
            continue
        parts = Path(name).parts
        group = str(rec.get("target_id") or (parts[1] if len(parts) > 2 else Path(name).stem))
        videos.append(Video(p, label, Path(name).with_suffix("").as_posix(), split, parts[0], group))
    notes = [f"{missing} videos named by dataset.json are missing"] if missing else []
    return Listing("dfdcp", videos, notes)


# --- recognising layouts under a root --------------------------------------------------------
DATASETS = ("ffpp", "celebdf", "dfdc", "dfdcp")


def _is_ff(d: Path) -> bool:
    return (d / "original_sequences").is_dir() or (d / "manipulated_sequences").is_dir()


def _is_celeb(d: Path) -> bool:
    return (d / "List_of_testing_videos.txt").is_file()


def _is_dfdc(d: Path) -> bool:
    if any(d.glob("dfdc_train_part_*/metadata.json")):
        return True
    for labels in d.glob("*/labels.csv"):  # a test or validation set: labels.csv headed filename,label
        try:
            with open(labels, encoding="utf-8-sig") as f:
                if f.readline().strip().lower().startswith("filename"):
                    return True
        except (OSError, UnicodeDecodeError):
            pass
    return False


def _is_dfdcp(d: Path) -> bool:
    return (d / "dataset.json").is_file() and (d / "original_videos").is_dir()


_MARKERS: dict[str, Callable[[Path], bool]] = {"ffpp": _is_ff, "celebdf": _is_celeb, "dfdc": _is_dfdc,
                                               "dfdcp": _is_dfdcp}


def find_datasets(root: Path, max_depth: int = 3) -> dict[str, Path]:
    """Each benchmark's root folder at or below ``root`` (the shallowest match), by its own layout."""
    found: dict[str, Path] = {}
    level = [root]
    for _ in range(max_depth + 1):
        nxt = []
        for d in level:
            for name, test in _MARKERS.items():
                if name not in found and test(d):
                    found[name] = d
            if not any(v == d for v in found.values()):
                try:
                    nxt += sorted(c for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
                except OSError:
                    pass
        level = nxt
    return found
