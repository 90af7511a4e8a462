"""Data specs: the one reader of ``--data`` / ``--val`` / ``--eval-data`` for every tool.

A spec is one of:

* **a folder of face crops** (PNG, JPEG, … any depth). With ``real/`` and/or ``fake/`` below it,
  those give the labels (0 real, 1 fake) and files elsewhere are ignored; without them every
  image counts, unlabelled (calibration accepts that; training and evaluation need labels).
  Video id: the file's folder below ``real|fake`` (``real/clip01/000012.png`` → ``clip01``, what
  ``training.extract`` writes); for a file directly in ``real|fake``, its stem without a
  trailing ``_f<digits>`` frame suffix (``fake/clip07_f0031.png`` → ``clip07``).
* **a CSV manifest** (a ``.csv`` file), UTF-8. The first row that is not blank and not a comment
  is the header, which must name ``path`` and ``label`` (``video`` optional, other columns and
  the column order free). Rows whose first cell starts with ``#`` are comments, blank rows are
  skipped. Label ``0``/``1`` (also ``0.0``/``1.0``) or ``real``/``fake``, any case. A relative path is
  resolved against the CSV's folder. An empty or absent video makes the row its own video (its
  path as written). A bad label, an empty path and every missing file are errors reported with
  the line number. Optional columns: ``split`` (``train``, ``val``, ``test`` or empty: the
  official side, written by ``python -m training.datasets``), ``group`` (videos that must stay on
  one side of a split: a fake and its source), ``method`` and ``dataset`` (kept in
  :attr:`CropFiles.columns` for per-method reports).
* **a video file, or a folder of videos** (a folder holding videos and no images; ``real/`` and
  ``fake/`` label them as for crops): evenly spaced frames (``training.extract.sample_frames``),
  the largest face of each (``runtime.faces``) cropped by ``runtime.preprocess.crop_face``, in
  memory. Only calibration and its report read videos; to train or evaluate on them, extract the
  crops once with ``python -m training.extract``.
* **``synthetic``** or ``synthetic:<n>``: the offline real faces (``training.sample_faces``) as
  label 0 alternating with self-blends of them (``training.synthetic``) as label 1, ``n`` items
  (default: two per face; a tool's size limit below ``n`` gives ``synthetic:<limit>``); the
  video id is the face id. Other forgery families (``training.forgeries``): ``synthetic-i2g:<n>``
  (one family) or ``synthetic:<n>:families=sbi,i2g,region`` (rotating; ``families=all``).

Rules shared by every spec: a video id that occurs under both labels becomes ``real/<id>`` and
``fake/<id>``; a crop file that cannot be decoded is an error naming it (a skipped crop would
change the metrics unnoticed); a video that cannot be decoded and a sampled frame without a face
are skipped, as ``training.extract`` does, and counted (``training.calibration_set``'s ``skipped``).

Splits: :func:`split_ids` partitions video (face) ids ~80/20 by a stable hash, never by seed, so
a set opened for training and one opened for validation never share a video; a labelled spec is
split within each class (a manifest's ``group`` with both labels is a class of its own), so both
sides hold real and fake faces, and a validation side that could not (a class with one video id)
is refused in one line. :func:`split_for`
says which part a tool reads: ``synthetic`` is always split (training and calibration read its
``train`` faces; validation and every evaluation tool — training.evaluate, calibration.quantize's
report, calibration.report, benchmarks.accuracy — its ``val`` faces, so ``synthetic:200`` is the
same 200 held-out items everywhere); a folder, manifest or videos is read whole, since held-out
data is its own spec (training without ``--val`` is the exception: it holds out the val split
of ``--data``). A manifest with a ``split`` column is split by it, not by hash: split ``s`` is
its rows whose column says ``s`` (``test`` exists only there); without that column a manifest's
hash split draws whole ``group``s when that column is present, so a fake and its source stay together.

This module lists a spec's items (:func:`open_items`) and needs numpy and OpenCV only (export.engine
uses it where torch is absent). ``training.data`` wraps :func:`open_items` in a torch ``Dataset`` for
training; ``training.calibration_set`` reads a spec as runtime crops for calibration and evaluation.
"""

from __future__ import annotations

import csv
import re
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from runtime.errors import UserError
from runtime.media import IMAGE_EXTS, VIDEO_EXTS, read_image
from runtime.meta import Meta
from training.pairs import pair_items

if TYPE_CHECKING:
    from training.blend_set import FrameFaceSet

LABELS = ("real", "fake")
MANIFEST_SPLITS = ("train", "val", "test")
_EXTRA_COLUMNS = ("split", "group", "method", "dataset")
SPEC_HELP = ("a crops folder (real/, fake/), a CSV manifest, a videos folder or file, "
             "'synthetic[-FAMILY][:N][:families=A,B]', 'pool[-FAMILY][:N][:families=A,B]' or "
             "'selfblend:FOLDER[:N][:families=A,B]'")
_LABEL_SPELLINGS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "real": 0, "fake": 1}
_FRAME_SUFFIX = re.compile(r"_f\d+$")
_NAMED = re.compile(r"(?P<base>synthetic|pool)(?:-(?P<family>[a-z0-9]+))?(?P<opts>(?::[^:]+)*)")
_OPTION = re.compile(r"(?P<n>\d+)|families=(?P<families>[a-z0-9,]+)|camera=(?P<camera>on|off)|ramp=(?P<ramp>\d+)")
GENERATED = ("synthetic", "pool", "selfblend")


@dataclass(frozen=True)
class GeneratedSpec:
    """A spec whose fakes are made here from real faces: ``synthetic`` (the offline sample faces),
    ``pool`` (the bundled real-face pool, ``training.face_pool``) or ``selfblend:FOLDER`` (a
    folder of the user's own real photos, crops or videos). ``camera``: every face takes the
    camera's trip (``training.camera``; default on for ``pool`` and ``selfblend``)."""

    base: str
    path: str | None = None
    n: int | None = None
    families: tuple[str, ...] = ("sbi",)
    camera: bool | None = None  # None: the base's default
    ramp: int = 0  # training: the camera's trip grows over this many epochs (training.blend_set)

    @property
    def camera_on(self) -> bool:
        return self.base != "synthetic" if self.camera is None else self.camera

    def text(self) -> str:
        head = f"selfblend:{self.path}" if self.base == "selfblend" else self.base
        return (head + (f":{self.n}" if self.n else "")
                + ("" if self.families == ("sbi",) else f":families={','.join(self.families)}")
                + ("" if self.camera is None else f":camera={'on' if self.camera else 'off'}")
                + (f":ramp={self.ramp}" if self.ramp else ""))


def _parse_options(text: str, opts: list[str]) -> dict:
    found: dict = {}
    for o in opts:
        m = _OPTION.fullmatch(o)
        if m is None:
            raise UserError(f"{text}: option {o!r} is unknown; use :N, :families=A,B, :camera=on|off or :ramp=EPOCHS")
        for k, v in m.groupdict().items():
            if v is not None:
                if k in found:
                    raise UserError(f"{text}: {k} given twice")
                found[k] = v
    return found


def parse_generated(spec: str | Path) -> GeneratedSpec | None:
    """A generated spec's parts, None when ``spec`` is not one; UserError when it is one but malformed."""
    from training.forgeries import parse_families

    text = str(spec).strip()
    if text.startswith("selfblend:"):
        rest, opts = text[len("selfblend:"):], []
        while ":" in rest and _OPTION.fullmatch(rest.rsplit(":", 1)[1]):  # options peel off the end
            rest, last = rest.rsplit(":", 1)
            opts.insert(0, last)
        if not rest:
            raise UserError(f"{text}: name a folder of real faces: selfblend:FOLDER[:N][:families=A,B]")
        base, path, family = "selfblend", rest, None
    else:
        m = _NAMED.fullmatch(text)
        if m is None:
            return None
        base, path, family = m.group("base"), None, m.group("family")
        opts = [o for o in m.group("opts").split(":") if o]
    found = _parse_options(text, opts)
    if family and "families" in found:
        raise UserError(f"{text}: name the families once: {base}-FAMILY or {base}:families=A,B")
    try:
        families = parse_families(family or found.get("families"))
    except ValueError as e:
        raise UserError(f"{text}: {e}") from None
    camera = None if "camera" not in found else found["camera"] == "on"
    return GeneratedSpec(base, path, int(found["n"]) if "n" in found else None, families, camera,
                         int(found.get("ramp", 0)))


# --- splits ----------------------------------------------------------------------------------
def is_synthetic(spec: str | Path) -> bool:
    """Whether ``spec`` is generated from real faces here (:class:`GeneratedSpec`): synthetic, pool or selfblend."""
    try:
        return parse_generated(spec) is not None
    except UserError:
        return True  # it names a generated spec, malformed: parse_synthetic says what is wrong


def parse_synthetic(spec: str | Path) -> tuple[int | None, tuple[str, ...]]:
    """A generated spec (``synthetic|pool[-FAMILY][:N][:families=A,B]``, ``selfblend:FOLDER[...]``)
    as (N or None, forgery families); UserError on a bad one. Without a family, ``sbi``
    (self-blends); ``families=all`` is every family."""
    g = parse_generated(spec)
    if g is None:
        raise UserError(f"{str(spec).strip()}: not a generated spec; expected synthetic[-FAMILY][:N][:families=A,B], "
                        "pool[...] or selfblend:FOLDER[...]")
    return g.n, g.families


def synthetic_spec(n: int | None, families: Sequence[str], like: str | Path | None = None) -> str:
    """The spec string for ``n`` items of ``families``, of ``like``'s kind (default ``synthetic``):
    the inverse of :func:`parse_synthetic`."""
    g = parse_generated(like) if like is not None else None
    g = g or GeneratedSpec("synthetic")
    return replace(g, n=n or None, families=tuple(families)).text()


def split_for(spec: str | Path, role: str) -> str | None:
    """The split a tool in ``role`` ("train", "calibrate", "validate", "evaluate") reads of ``spec``.

    Generated specs are always split by person: training and calibration read ``train``; the
    pool's validation reads its ``val`` people and evaluation its ``test`` people; the others'
    validation and evaluation read their ``val`` faces."""
    if role not in ("train", "calibrate", "validate", "evaluate"):
        raise ValueError(f"role {role!r}")
    g = parse_generated(spec) if is_synthetic(spec) else None
    if g is None:
        return None
    if role in ("train", "calibrate"):
        return "train"
    return "test" if g.base == "pool" and role == "evaluate" else "val"


def split_ids(ids: Sequence[str], split: str | None, val_fraction: float = 0.2) -> set:
    """The ids (face or video ids) in ``split`` ("train", "val" or None = all); with two ids or
    more, each side gets at least one. Depends only on the ids (a stable hash order)."""
    unique = sorted(set(ids))
    if split is None:
        return set(unique)
    if split not in ("train", "val"):
        raise UserError(f"split {split!r} is unknown; use 'train', 'val' or none")
    order = sorted(unique, key=lambda k: (zlib.crc32(k.encode("utf-8")) & 0xFFFFFFFF, k))
    n_val = int(round(len(order) * val_fraction))
    if len(order) >= 2:
        n_val = min(max(n_val, 1), len(order) - 1)
    val = set(order[:n_val])
    return val if split == "val" else set(order) - val


# --- items: what a spec lists, before any pixel is read -------------------------------------
class CropFiles:
    """Crops stored as image files (a folder or a manifest)."""

    def __init__(self, spec: str, paths: Sequence[Path], labels: Sequence[int] | None, videos: Sequence[str],
                 columns: dict[str, list[str]] | None = None):
        self.spec, self.paths, self.videos = spec, [Path(p) for p in paths], list(videos)
        self.labels = None if labels is None else [int(v) for v in labels]
        self.columns = dict(columns or {})  # a manifest's optional columns (split, group, method, dataset)

    def __len__(self) -> int:
        return len(self.paths)

    def crop(self, index: int, rng: np.random.Generator, vary: bool = False) -> np.ndarray:
        return read_crop(self.paths[index])


class SyntheticFaces:
    """Offline real faces (label 0) alternating with forgeries of them (label 1).

    Item 2k is a face's real crop, item 2k+1 a forgery of the same face, of the family
    ``families_of[2k+1]`` (``training.forgeries``; "" for real items). Families rotate over the
    pairs and, when faces repeat, over each face's rounds, so no face is tied to one family.
    Two-identity families draw their donor from this set's other faces only, so a split's
    forgeries never contain a face of the other split.
    """

    def __init__(self, spec: str, faces: Sequence[tuple[str, np.ndarray]], n: int | None = None,
                 families: Sequence[str] = ("sbi",)):
        self.spec, self.faces, self.families = spec, list(faces), tuple(families)
        order = pair_items(len(self.faces), self.families, n)
        self.face_of, self.labels, self.families_of = order.face_of, order.labels, order.families_of
        self.videos = [self.faces[k][0] for k in self.face_of]

    def __len__(self) -> int:
        return len(self.labels)

    def crop(self, index: int, rng: np.random.Generator, vary: bool = False) -> np.ndarray:
        """Item ``index``; ``rng`` draws the forgery, ``vary`` adds training's global variants first."""
        return self.forgery(index, rng, vary)[0]

    def forgery(self, index: int, rng: np.random.Generator, vary: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(crop, mask) of item ``index``; the mask is all zero for a real item."""
        from training.forgeries import NEEDS_DONOR, forge
        from training.sample_faces import vary_face

        k = self.face_of[index]
        face = self.faces[k][1]
        if vary:  # before blending: the real and the fake crop of a face share them
            face = vary_face(face, rng)
        if self.labels[index] == 0:
            return face.copy(), np.zeros(face.shape[:2], np.float32)
        family = self.families_of[index]
        donor = None
        if family in NEEDS_DONOR or family == "region":
            others = [j for j in range(len(self.faces)) if self.faces[j][0] != self.faces[k][0]]
            if others:
                donor = self.faces[others[int(rng.integers(len(others)))]][1]
                if vary:
                    donor = vary_face(donor, rng)
        if family in NEEDS_DONOR and donor is None:  # a one-face set: the nearest thing is a self-blend
            family = "sbi"
        return forge(family, face, rng, donor)


def read_crop(path: Path) -> np.ndarray:
    """A crop file decoded as the runtime decodes images (any depth/channels → 8-bit BGR)."""
    img = read_image(str(path))
    if img is None:
        raise UserError(f"{path}: cannot be decoded as an image (missing, damaged or not an image); "
                        "delete it or re-extract the crops")
    return img


def video_id_from_path(rel: Path) -> str:
    """The folder rule: ``clip01/000012.png`` → ``clip01``; ``clip07_f0031.png`` → ``clip07``."""
    if len(rel.parts) > 1:
        return rel.parent.as_posix()
    return _FRAME_SUFFIX.sub("", rel.stem) or rel.stem


def parse_label(value: str) -> int | None:
    return _LABEL_SPELLINGS.get(value.strip().lower())


def _files(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts and p.is_file())


def labelled_files(root: Path, exts: tuple[str, ...]) -> tuple[list[Path], list[int] | None, list[str]]:
    """Files below ``root/real`` and ``root/fake`` (labelled), or below ``root`` (unlabelled), with video ids."""
    if not any((root / name).is_dir() for name in LABELS):
        files = _files(root, exts)
        return files, None, [video_id_from_path(p.relative_to(root)) for p in files]
    files, labels, videos = [], [], []
    for y, name in enumerate(LABELS):
        found = _files(root / name, exts) if (root / name).is_dir() else []
        files += found
        labels += [y] * len(found)
        videos += [video_id_from_path(p.relative_to(root / name)) for p in found]
    return files, labels, videos


def read_manifest(csv_path: Path) -> tuple[list[Path], list[int], list[str]]:
    """(paths, labels, video ids) of a manifest; the rules are in the module docstring."""
    return read_manifest_columns(csv_path)[:3]  # type: ignore[return-value]


def read_manifest_columns(csv_path: Path) -> tuple[list[Path], list[int], list[str], dict[str, list[str]]]:
    """:func:`read_manifest` plus the optional columns present (split, group, method, dataset)."""
    base, rows, missing = csv_path.parent, [], []
    try:
        handle = open(csv_path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise UserError(f"{csv_path}: cannot be read ({e.strerror or e})") from None
    with handle:
        reader = csv.reader(handle)
        try:
            columns: dict[str, int] | None = None
            for row in reader:
                line = reader.line_num
                if not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
                    continue
                if columns is None:
                    columns = {c.strip().lower(): i for i, c in enumerate(row)}
                    if "path" not in columns or "label" not in columns:
                        raise UserError(f"{csv_path}:{line}: header {row}, expected columns path,label,video; "
                                        "add that header line")
                    continue
                cell = {k: (row[i].strip() if i < len(row) else "") for k, i in columns.items()}
                label = parse_label(cell["label"])
                if not cell["path"]:
                    raise UserError(f"{csv_path}:{line}: empty path; every row needs path,label,video")
                if label is None:
                    raise UserError(f"{csv_path}:{line}: label {cell['label']!r}, expected 0, 1, real or fake; "
                                    "fix the row")
                split_cell = cell.get("split", "").lower()
                if split_cell and split_cell not in MANIFEST_SPLITS:
                    raise UserError(f"{csv_path}:{line}: split {cell['split']!r}, expected train, val, test or empty; "
                                    "fix the row")
                p = Path(cell["path"])
                p = p if p.is_absolute() else base / p
                if not p.is_file():
                    missing.append((line, cell["path"]))
                extra = {k: (split_cell if k == "split" else cell[k]) for k in _EXTRA_COLUMNS if k in cell}
                rows.append((p, label, cell.get("video") or cell["path"], extra))
        except csv.Error as e:
            raise UserError(f"{csv_path}:{reader.line_num}: malformed CSV ({e}); fix the row") from None
        except UnicodeDecodeError:
            raise UserError(f"{csv_path}: is not UTF-8 text; save the manifest as UTF-8 CSV") from None
    if missing:
        line, raw = missing[0]
        p = Path(raw) if Path(raw).is_absolute() else base / raw
        what = "is a folder, not a crop file" if p.is_dir() else "is not a regular file" if p.exists() else "does not exist"
        more = f" ({len(missing) - 1} more rows name missing files)" if len(missing) > 1 else ""
        raise UserError(f"{csv_path}:{line}: {raw} {what}{more}; fix the path (relative paths are "
                        f"resolved against {base})")
    if not rows:
        raise UserError(f"{csv_path}: has no rows; list crops as path,label,video")
    names = [k for k in _EXTRA_COLUMNS if k in rows[0][3]]
    return ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
            {k: [r[3][k] for r in rows] for k in names})


def _qualify(videos: list[str], labels: list[int] | None) -> list[str]:
    """Give a video id that occurs under both labels a ``real/``/``fake/`` prefix."""
    if labels is None:
        return videos
    seen: dict[str, set[int]] = {}
    for v, y in zip(videos, labels):
        seen.setdefault(v, set()).add(y)
    return [f"{LABELS[y]}/{v}" if len(seen[v]) > 1 else v for v, y in zip(videos, labels)]


def _kind(path: Path) -> str:
    if path.is_dir():
        return "videos" if not _files(path, IMAGE_EXTS) and _files(path, VIDEO_EXTS) else "crops"
    if path.is_file() and path.suffix.lower() == ".csv":
        return "manifest"
    if path.is_file() and path.suffix.lower() in VIDEO_EXTS:
        return "videos"
    if path.is_file():
        raise UserError(f"{path}: neither a .csv manifest nor a video ({', '.join(VIDEO_EXTS)}); pass {SPEC_HELP}")
    raise UserError(f"{path}: not found (no such folder or file); pass {SPEC_HELP}")


def open_items(spec: str | Path, meta: Meta, split: str | None = None, val_fraction: float = 0.2,
               need_labels: bool = True, check_files: bool = True) -> CropFiles | SyntheticFaces | FrameFaceSet:
    """The items of a crops folder, manifest or ``synthetic[:n]`` spec (``split`` of them).

    ``check_files`` verifies every image header up front, so a bad crop is reported before a long
    run starts.
    """
    text = str(spec).strip()
    if is_synthetic(text):
        return _generated_items(text, meta, split, val_fraction)
    path = Path(text).expanduser()
    kind = _kind(path)
    if kind == "videos":
        raise UserError(f"{path}: holds videos; training and evaluation read face crops: extract them with "
                        f"python -m training.extract --videos {path} --out CROPS and pass CROPS")
    columns: dict[str, list[str]] = {}
    if kind == "manifest":
        paths, labels, videos, columns = read_manifest_columns(path)
    else:
        paths, labels, videos = labelled_files(path, IMAGE_EXTS)
        if labels is None and need_labels:
            raise UserError(f"{path}: has neither a real/ nor a fake/ subfolder, and this tool needs labels; put "
                            f"face crops in {path}/real and {path}/fake, or pass a CSV manifest")
        if not paths:
            raise UserError(f"{path}: real/ and fake/ hold no images ({', '.join(IMAGE_EXTS)}); "
                            "extract crops with python -m training.extract")
    videos = _qualify(videos, labels)
    idx = _split_rows(text, videos, columns, split, val_fraction, labels)
    items = CropFiles(text, [paths[i] for i in idx], None if labels is None else [labels[i] for i in idx],
                      [videos[i] for i in idx], {k: [v[i] for i in idx] for k, v in columns.items()})
    if check_files:
        _check_readable(items.paths, text)
    return items


def _generated_items(text: str, meta: Meta, split: str | None, val_fraction: float) -> SyntheticFaces | FrameFaceSet:
    """The items of a generated spec (:class:`GeneratedSpec`), ``split`` of its people."""
    g = parse_generated(text)
    assert g is not None
    if g.n is not None and g.n < 2:
        raise UserError(f"{text}: {g.base}:<n> needs n >= 2 (one real and one fake)")
    if g.base == "synthetic":
        from training.sample_faces import sample_real_faces

        faces = sample_real_faces(meta.input_size, meta.face_margin, align=meta.face_align)
        keep = split_ids([fid for fid, _ in faces], split, val_fraction)
        return SyntheticFaces(text, [f for f in faces if f[0] in keep], g.n, g.families)
    from training.blend_set import FrameFaceSet
    from training.camera import DEFAULT
    from training.face_pool import folder_faces, pool_faces

    if g.base == "pool":
        frames = pool_faces(split)
    else:
        if split == "test":
            raise UserError(f"{text}: a folder has no test split; pass held-out people as their own selfblend:FOLDER")
        every = folder_faces(g.path or "")
        keep = split_ids([f.person for f in every], split, val_fraction)
        frames = [f for f in every if f.person in keep]
    if not frames:
        raise UserError(f"{text}: no faces in its {split} split; add people (each split needs at least one)")
    return FrameFaceSet(text, frames, meta, g.n, g.families, DEFAULT if g.camera_on else None, g.ramp)


def _split_rows(spec: str, videos: list[str], columns: dict[str, list[str]], split: str | None,
                val_fraction: float, labels: Sequence[int] | None = None) -> list[int]:
    """Rows of ``split``: by a manifest's split column when it has one, else by hash of group or
    video, stratified by label (:func:`_stratified`)."""
    if split is not None and split not in MANIFEST_SPLITS:
        raise UserError(f"split {split!r} is unknown; use train, val or test")
    if split is not None and "split" in columns:
        idx = [i for i, s in enumerate(columns["split"]) if s == split]
        if not idx:
            present = sorted(set(columns["split"]) - {""}) or ["none"]
            raise UserError(f"{spec}: no row has split {split!r} (its split column holds {', '.join(present)}); "
                            "choose another split, or pass the held-out data as its own spec")
        return idx
    if split == "test":
        raise UserError(f"{spec}: has no split column, so it has no test split; write one with python -m "
                        "training.datasets, or pass the test data as its own spec without a split")
    keys = ([g or v for g, v in zip(columns["group"], videos)] if "group" in columns and split is not None
            else videos)
    keep = _stratified(spec, keys, labels, split, val_fraction) if labels is not None and split is not None \
        else split_ids(keys, split, val_fraction)
    idx = [i for i, k in enumerate(keys) if k in keep]
    if not idx:
        raise UserError(f"{spec}: the {split} split is empty (only {len(set(keys))} video ids); "
                        "use more videos or no split")
    return idx


def _stratified(spec: str, keys: list[str], labels: Sequence[int], split: str, val_fraction: float) -> set:
    """:func:`split_ids` within each class (the labels a key's rows carry: a group holding a fake and
    its source is a class of its own), so both sides hold every class that has two keys or more. A
    validation side that would miss a class (it has a single video id) is refused in one line:
    metrics, best.pt and an 'eer' threshold need both."""
    classes: dict[str, set[int]] = {}
    for k, y in zip(keys, labels):
        classes.setdefault(k, set()).add(int(y))
    strata: dict[tuple[int, ...], list[str]] = {}
    for k, ys in classes.items():
        strata.setdefault(tuple(sorted(ys)), []).append(k)
    if split == "val":
        for name, y in (("real", 0), ("fake", 1)):
            held = sum(len(ks) for st, ks in strata.items() if y in st)
            if held == 1 and len(classes) > 1:
                raise UserError(f"{spec}: its automatic validation split needs two video ids or more holding {name} "
                                f"faces to keep one for validation, and it has 1; add {name} videos (folders below "
                                f"{name}/), or pass a validation set with --val")
    keep: set = set()
    for ks in strata.values():
        keep |= split_ids(ks, split, val_fraction)
    return keep


def _check_readable(paths: Sequence[Path], source: str) -> None:
    import cv2

    bad = [p for p in paths if not cv2.haveImageReader(str(p))]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UserError(f"{bad[0]}{more}: not a readable image (empty, damaged or unknown format), listed by "
                        f"{source}; delete or replace it")
