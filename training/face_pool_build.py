"""Build the real-face pool (``training/assets/face_pool``) from licence-clear public photos.

The pool is what the bundled model learns real faces from: about 226 people photographed in
colour, from three public repositories and two public-domain photos in installed packages:

* ``debruine/webmorphR.stim`` (CC BY 4.0): the Face Research Lab London Set, neutral and smiling
  (``inst/neutral_front``, ``inst/smiling_front``: 102 people, signed consent to use "in their
  original or altered forms"), and the Canada set (``inst/canada``: 40 people). Its restricted
  ``inst/3dsk`` and averaged ``inst/composite`` are left out.
* ``cjdowner/interfaces`` (CC0 per its README; ``CREDITS.md`` links every photo to its stock site,
  recorded per image): 100 people in everyday light.
* scikit-image's ``astronaut`` (NASA) and matplotlib's ``grace_hopper.jpg`` (US Navy), both public domain.

Every photo goes through the runtime's own face detector (MTCNN, the default; a face below its
threshold is skipped and reported); the largest face is kept with a square context region
around it (``--context`` face sides), resized so the face box is ``--face-px`` pixels, and
written as JPEG with its box, score and five landmarks in ``faces.csv``. Training makes the
runtime's crop from those boxes (train = serve) after any blending and camera degradation.
People are split once into train / val / test by a stable hash of the person id
(``person_split``), recorded in ``faces.csv``: one person's photos are always on one side.

A rebuild writes its images over the earlier ones of the same name, then removes the earlier build's
images (those its ``faces.csv`` lists) that it did not write again; other files are never touched.

Licences and the attribution each asks for are written per image in ``PROVENANCE.csv``. The
London/Canada templates (189 hand-placed points) of the training people also give the mean face
outline that :mod:`training.face_shape` maps onto any face's five landmarks (``face_shape.json``).

    python -m training.face_pool_build --webmorph webmorphR.stim --interfaces interfaces \\
        --out training/assets/face_pool
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from runtime.errors import Parser, UserError, run_cli
from runtime.media import read_image
from training.face_pool import CONTEXT

WEBMORPH_REPO = "https://github.com/debruine/webmorphR.stim"
INTERFACES_REPO = "https://github.com/cjdowner/interfaces"
CC_BY = "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"
LONDON_CITE = ("DeBruine, L., & Jones, B. (2017). Face Research Lab London Set (Version 5). figshare. "
               "https://doi.org/10.6084/m9.figshare.5047666.v5")
CANADA_CITE = ("DeBruine, L., & Jones, B. (2017). Young Adult White Faces with Manipulated Versions (Version 1). "
               "figshare. https://doi.org/10.6084/m9.figshare.4220517.v1")
CHANGES = "cropped around the face, resized and re-encoded as JPEG by jrc-edge's training.face_pool_build"
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = {"test": 0.15, "val": 0.15}  # of the people; the rest train
# The London/Canada templates' face outline (Psychomorph's 189-point template): jaw from the left
# ear over the chin to the right ear, then the hairline back over the forehead.
TEMPLATE_OUTLINE = (109, 110, 111, 125, 126, 127, 128, 129, 130, 131, 132, 133, 114, 113, 112,
                    144, 143, 142, 141, 140, 139, 138, 137, 136, 135, 134)
TEMPLATE_BROWS = (71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82)  # both eyebrows' upper edges


@dataclass
class SourceImage:
    id: str  # the pool's name for the image (file stem)
    person: str  # one id per person: the split never separates a person's photos
    set: str  # london-neutral, london-smiling, canada, interfaces, public-domain
    path: Path | None  # the file read (None: an array from an installed package)
    repository: str
    commit: str
    source_path: str  # the path inside its repository or package
    licence: str
    attribution: str
    image: np.ndarray | None = None  # already decoded (public-domain photos from packages)
    template: Path | None = None  # the webmorph .tem file beside it, when there is one


HELD_OUT_PEOPLE = frozenset({"astronaut", "grace-hopper"})  # the demo's faces: never trained on


def person_split(person: str) -> str:
    """train, val or test for a person id: a stable hash, independent of the other people (the
    public-domain faces the demo and the docs show are always test)."""
    if person in HELD_OUT_PEOPLE:
        return "test"
    u = (zlib.crc32(person.encode("utf-8")) & 0xFFFFFFFF) / 2.0 ** 32
    if u < SPLIT_FRACTIONS["test"]:
        return "test"
    if u < SPLIT_FRACTIONS["test"] + SPLIT_FRACTIONS["val"]:
        return "val"
    return "train"


def git_commit(folder: Path, given: str | None) -> str:
    """The commit a source folder was taken at: ``given``, else its own git checkout's HEAD."""
    if given:
        return given
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def webmorph_images(root: Path, commit: str) -> Iterator[SourceImage]:
    """The London (neutral, smiling) and Canada photos of a webmorphR.stim checkout."""
    sets = (("neutral_front", "london-neutral", LONDON_CITE), ("smiling_front", "london-smiling", LONDON_CITE),
            ("canada", "canada", CANADA_CITE))
    for folder, name, cite in sets:
        d = root / "inst" / folder
        if not d.is_dir():
            raise UserError(f"{root}: has no inst/{folder}; pass a checkout of {WEBMORPH_REPO}")
        for p in sorted(d.glob("*.jpg")):
            if p.name.startswith("._"):  # macOS resource forks committed beside the photos
                continue
            stem = p.stem
            person = f"london-{stem.split('_')[0]}" if name.startswith("london") else f"canada-{stem}"
            tem = p.with_suffix(".tem")
            yield SourceImage(f"{name}-{stem}", person, name, p, WEBMORPH_REPO, commit, f"inst/{folder}/{p.name}",
                              CC_BY, f"{cite}; {CHANGES}", template=tem if tem.is_file() else None)


_CREDIT = re.compile(r"\[(\d{3})\.jpg\]\((\S+?)\)")


def interfaces_images(root: Path, commit: str) -> Iterator[SourceImage]:
    """The 1000×1000 photos of an interfaces checkout; photos credited to the same stock photo are
    one person (two such share a link in its CREDITS.md)."""
    d = root / "1000 x 1000"
    credits_file = root / "CREDITS.md"
    if not d.is_dir() or not credits_file.is_file():
        raise UserError(f"{root}: has no '1000 x 1000' folder or CREDITS.md; pass a checkout of {INTERFACES_REPO}")
    links = dict(_CREDIT.findall(credits_file.read_text(encoding="utf-8")))
    first_of_link: dict[str, str] = {}
    for num in sorted(links):
        first_of_link.setdefault(links[num], num)
    for p in sorted(d.glob("*.jpg")):
        num = p.stem
        link = links.get(num, "")
        person = f"interfaces-{first_of_link.get(link, num)}"
        licence = ("CC0 1.0 per the repository's README (https://creativecommons.org/publicdomain/zero/1.0/); "
                   f"photo from {link.split('/')[2] if link.count('/') >= 2 else 'a stock site'}")
        yield SourceImage(f"interfaces-{num}", person, "interfaces", p, INTERFACES_REPO, commit,
                          f"1000 x 1000/{p.name}", licence,
                          f"no attribution required; photo credited at {link or 'CREDITS.md'}")


def public_domain_images() -> Iterator[SourceImage]:
    """scikit-image's astronaut and matplotlib's Grace Hopper portrait (installed packages)."""
    from importlib.metadata import version

    from skimage import data

    yield SourceImage("astronaut", "astronaut", "public-domain", None, f"scikit-image {version('scikit-image')}",
                      "", "skimage/data/astronaut.png", "public domain (NASA photograph of Eileen Collins)",
                      "none required; scikit-image data", image=cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    import matplotlib

    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    yield SourceImage("grace-hopper", "grace-hopper", "public-domain", hopper, f"matplotlib {version('matplotlib')}",
                      "", "mpl-data/sample_data/grace_hopper.jpg",
                      "public domain (US Navy photograph of Grace Hopper)", "none required; matplotlib sample data")


def read_template(path: Path) -> np.ndarray:
    """A Psychomorph/WebMorph ``.tem`` file's points (N×2, image pixels)."""
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    n = int(lines[0].strip())
    return np.array([[float(v) for v in line.split()[:2]] for line in lines[1:1 + n]], np.float64)


def build(images: Sequence[SourceImage], out: Path, face_px: int, context: float, quality: int,
          progress: bool = True) -> dict:
    """Detect, cut and write every image; returns the counts. ``faces.csv``, ``PROVENANCE.csv`` and
    ``face_shape.json`` are written last, whole."""
    from runtime.faces import make_detector
    from training.face_pool import progress_bar, region_of
    from training.face_shape import fit_shape

    detector = make_detector()
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows, prov, skipped, shapes = [], [], [], []
    bar = progress_bar(len(images), progress, "faces")
    for src in images:
        bar.update(1)
        img = src.image if src.image is not None else read_image(str(src.path))
        if img is None:
            skipped.append((src.id, "unreadable"))
            continue
        found = detector.detect(img)
        if not found:
            skipped.append((src.id, "no face at the detector's threshold"))
            continue
        det = found[0]
        x0, y0, side = region_of(det, img.shape[:2], context)
        scale = face_px / float(max(det[2], det[3]))
        size = max(1, int(round(side * scale)))
        region = cv2.resize(img[y0:y0 + side, x0:x0 + side], (size, size),
                            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        name = f"{src.id}.jpg"
        if not cv2.imwrite(str(out / "images" / name), region, [int(cv2.IMWRITE_JPEG_QUALITY), quality]):
            raise UserError(f"{out / 'images' / name}: could not be written; check the folder")
        box = [(det[0] - x0) * scale, (det[1] - y0) * scale, det[2] * scale, det[3] * scale]
        marks = (np.asarray(det.landmarks, np.float64) - [x0, y0]) * scale
        split = person_split(src.person)
        rows.append({"id": src.id, "file": f"images/{name}", "person": src.person, "set": src.set, "split": split,
                     "size": size, "box": " ".join(f"{v:.1f}" for v in box), "score": f"{det.score:.4f}",
                     "landmarks": " ".join(f"{v:.1f}" for v in marks.ravel()),
                     "source_face_px": int(max(det[2], det[3]))})
        prov.append({"file": f"images/{name}", "repository": src.repository, "commit": src.commit,
                     "path": src.source_path, "licence": src.licence, "attribution": src.attribution})
        if src.template is not None and split == "train":
            pts = read_template(src.template)
            shapes.append((np.asarray(det.landmarks, np.float64), pts[list(TEMPLATE_OUTLINE)],
                           pts[list(TEMPLATE_BROWS)]))
    bar.close()
    _write_csv(out / "faces.csv", rows)
    _write_csv(out / "PROVENANCE.csv", prov)
    if shapes:  # without templates (a rebuild from other photos) the mean shape stays as it is
        shape = fit_shape(shapes)
        shape["fitted_on"] = (f"{len(shapes)} train-split London/Canada photos of {WEBMORPH_REPO} (CC BY 4.0): "
                              "their templates' jaw, hairline and eyebrow points against MTCNN's five landmarks")
        (out / "face_shape.json").write_text(json.dumps(shape, indent=1) + "\n", encoding="utf-8")
    people = {r["person"] for r in rows}
    counts = {s: sum(1 for r in rows if r["split"] == s) for s in SPLITS}
    persons = {s: len({r["person"] for r in rows if r["split"] == s}) for s in SPLITS}
    return {"images": len(rows), "people": len(people), "per_split_images": counts, "per_split_people": persons,
            "skipped": skipped, "shape_faces": len(shapes)}


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = Parser(prog="python -m training.face_pool_build", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--webmorph", required=True, metavar="DIR", help=f"a checkout of {WEBMORPH_REPO}")
    p.add_argument("--interfaces", required=True, metavar="DIR", help=f"a checkout of {INTERFACES_REPO}")
    p.add_argument("--webmorph-commit", help="the commit DIR holds (default: its git HEAD)")
    p.add_argument("--interfaces-commit", help="the commit DIR holds (default: its git HEAD)")
    p.add_argument("--out", default="training/assets/face_pool", help="pool folder (default: %(default)s)")
    p.add_argument("--face-px", type=int, default=224, help="face box side in the stored images (default: %(default)s)")
    p.add_argument("--context", type=float, default=CONTEXT,
                   help="stored region side in face sides, around the face (default: %(default)s)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    if not 64 <= a.face_px <= 1024:
        p.error(f"--face-px {a.face_px}: give 64..1024")
    if not 1.2 <= a.context <= 4.0:
        p.error(f"--context {a.context}: give 1.2..4")
    if not 50 <= a.quality <= 100:
        p.error(f"--quality {a.quality}: give 50..100")
    return a


def pool_images(out: Path) -> list[Path]:
    """The images a build wrote, as its ``faces.csv`` lists them (only JPEGs inside ``out``; none
    without one): what a rebuild may remove."""
    from training.outputs import listed_inside

    record = out / "faces.csv"
    if not record.is_file():
        return []
    try:
        with open(record, newline="", encoding="utf-8") as f:
            files = [row.get("file") or "" for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{record}: cannot be read to find the images of the earlier build ({e}); remove the "
                        "folder yourself or choose another --out") from None
    return listed_inside(out, files, ".jpg")


def main(argv: Sequence[str] | None = None) -> int:
    from training.outputs import remove_listed, writable_folder

    a = parse_args(argv)
    web, inter, out = Path(a.webmorph), Path(a.interfaces), Path(a.out)
    writable_folder(out / "images", "--out", out)
    earlier = pool_images(out)
    images = list(webmorph_images(web, git_commit(web, a.webmorph_commit)))
    images += list(interfaces_images(inter, git_commit(inter, a.interfaces_commit)))
    images += list(public_domain_images())
    counts = build(images, out, a.face_px, a.context, a.quality, progress=not a.quiet)
    now = set(pool_images(out))  # a rebuild replaces the pool whole: the earlier images it did not write go
    stale = remove_listed(out, [p for p in earlier if p not in now])
    if stale:
        print(f"removed {stale} images of the earlier build that this one did not write", file=sys.stderr)
    for fid, why in counts.pop("skipped"):
        print(f"skipped {fid}: {why}", file=sys.stderr)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    run_cli(main, "face_pool_build")
