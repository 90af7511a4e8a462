"""The bundled real-face pool (training/assets/face_pool): its files, licences, people and splits,
that its boxes are the runtime detector's (train = serve), the builder on miniature replicas of
its sources, and a user's folder of real faces."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.errors import UserError
from tests.helpers import run_module
from training.face_pool import POOL, folder_faces, pool_faces

POOL_BUDGET = 25 * 1024 * 1024  # what the repository may carry for it


def _rows(name: str) -> list[dict[str, str]]:
    with open(POOL / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_every_image_has_a_row_a_licence_and_a_person_on_one_side():
    faces, prov = _rows("faces.csv"), _rows("PROVENANCE.csv")
    files = sorted(p.relative_to(POOL).as_posix() for p in (POOL / "images").glob("*"))
    assert files == sorted(r["file"] for r in faces) == sorted(r["file"] for r in prov)
    for r in prov:
        assert r["repository"] and r["path"] and r["licence"] and r["attribution"], r
        assert "3dsk" not in r["path"] and "composite" not in r["path"]  # restricted / averaged sets left out
    sides: dict[str, set[str]] = {}
    for r in faces:
        sides.setdefault(r["person"], set()).add(r["split"])
    assert all(len(s) == 1 for s in sides.values())
    people = {s: sum(1 for v in sides.values() if v == {s}) for s in ("train", "val", "test")}
    assert len(sides) >= 200 and min(people.values()) >= 30, people
    assert sum(p.stat().st_size for p in POOL.rglob("*") if p.is_file()) <= POOL_BUDGET


def test_attribution_follows_the_licence():
    for r in _rows("PROVENANCE.csv"):
        if r["licence"].startswith("CC BY"):  # CC BY asks for the citation and the changes made
            assert "doi.org" in r["attribution"] and "cropped" in r["attribution"], r


def test_boxes_are_the_runtime_detectors():
    from runtime.faces import make_detector
    from runtime.tracking import iou

    det = make_detector()
    for face in pool_faces()[::40]:
        found = det.detect(np.ascontiguousarray(face.image))
        assert found, face.id
        assert iou(found[0], face.box) > 0.8, (face.id, found[0], face.box)
        eyes = face.landmarks[:2]
        assert np.all(np.abs(np.asarray(found[0].landmarks)[:2] - eyes) < 0.08 * face.box[2]), face.id


def test_splits_partition_the_pool():
    every = {f.id for f in pool_faces()}
    parts = [{f.id for f in pool_faces(s)} for s in ("train", "val", "test")]
    assert set.union(*parts) == every and sum(map(len, parts)) == len(every)
    with pytest.raises(UserError, match="split 'dev'"):
        pool_faces("dev")


def _replicas(tmp: Path) -> tuple[Path, Path]:
    """Miniature webmorphR.stim and interfaces checkouts made of pool images."""
    src = [f for f in pool_faces("train")][:3]
    web = tmp / "webmorph"
    for folder in ("neutral_front", "smiling_front", "canada"):
        (web / "inst" / folder).mkdir(parents=True)
    cv2.imwrite(str(web / "inst" / "neutral_front" / "001_03.jpg"), src[0].image)
    cv2.imwrite(str(web / "inst" / "smiling_front" / "001_08.jpg"), src[0].image)
    (web / "inst" / "neutral_front" / "._001_03.jpg").write_bytes(b"\0" * 16)  # a macOS resource fork
    inter = tmp / "interfaces"
    (inter / "1000 x 1000").mkdir(parents=True)
    cv2.imwrite(str(inter / "1000 x 1000" / "001.jpg"), src[1].image)
    cv2.imwrite(str(inter / "1000 x 1000" / "002.jpg"), src[2].image)
    cv2.imwrite(str(inter / "1000 x 1000" / "003.jpg"), np.full((300, 300, 3), 127, np.uint8))  # no face
    (inter / "CREDITS.md").write_text("- [001.jpg](https://www.pexels.com/photo/1/)\n"
                                      "- [002.jpg](https://www.pexels.com/photo/1/)\n"
                                      "- [003.jpg](https://unsplash.com/photos/x)\n", encoding="utf-8")
    return web, inter


def test_builder_on_replicas(tmp_path):
    web, inter = _replicas(tmp_path)
    out = tmp_path / "pool"
    r = run_module("training.face_pool_build", "--webmorph", web, "--interfaces", inter, "--out", out, "--quiet",
                   "--webmorph-commit", "abc", "--interfaces-commit", "def")
    assert r.returncode == 0, r.stderr
    assert "skipped interfaces-003: no face" in r.stderr
    with open(out / "faces.csv", newline="", encoding="utf-8") as f:
        rows = {row["id"]: row for row in csv.DictReader(f)}
    assert set(rows) >= {"london-neutral-001_03", "london-smiling-001_08", "interfaces-001", "interfaces-002",
                         "astronaut", "grace-hopper"}
    assert rows["london-neutral-001_03"]["person"] == rows["london-smiling-001_08"]["person"]  # one person, two photos
    assert rows["interfaces-001"]["person"] == rows["interfaces-002"]["person"]  # credited to one stock photo
    with open(out / "PROVENANCE.csv", newline="", encoding="utf-8") as f:
        prov = {row["file"]: row for row in csv.DictReader(f)}
    assert prov["images/london-neutral-001_03.jpg"]["commit"] == "abc"
    assert "figshare" in prov["images/london-neutral-001_03.jpg"]["attribution"]
    assert "CC0" in prov["images/interfaces-001.jpg"]["licence"]
    img = cv2.imread(str(out / rows["astronaut"]["file"]))
    box = [float(v) for v in rows["astronaut"]["box"].split()]
    assert abs(max(box[2], box[3]) - 224) < 1.5 and img.shape[0] == img.shape[1]  # face at --face-px in a square


def test_a_rebuild_removes_only_the_earlier_builds_images(tmp_path):
    web, inter = _replicas(tmp_path)
    out = tmp_path / "pool"
    build = ["training.face_pool_build", "--webmorph", web, "--interfaces", inter, "--out", out, "--quiet"]
    assert run_module(*build).returncode == 0
    (out / "images" / "my_photo.jpg").write_bytes(b"the user's own")
    (inter / "1000 x 1000" / "002.jpg").unlink()  # the rebuild no longer has this photo
    r = run_module(*build)
    assert r.returncode == 0, r.stderr
    assert "removed 1 images of the earlier build that this one did not write" in r.stderr
    with open(out / "faces.csv", newline="", encoding="utf-8") as f:
        listed = {row["file"] for row in csv.DictReader(f)}
    assert (out / "images" / "my_photo.jpg").read_bytes() == b"the user's own"
    assert {f"images/{p.name}" for p in (out / "images").iterdir()} == listed | {"images/my_photo.jpg"}
    assert "images/interfaces-002.jpg" not in listed


def test_builder_refuses_an_out_that_is_a_file_in_one_line(tmp_path):
    web, inter = _replicas(tmp_path)
    (tmp_path / "pool").write_text("a file")
    r = run_module("training.face_pool_build", "--webmorph", web, "--interfaces", inter, "--out", tmp_path / "pool",
                   "--quiet")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == (f"face_pool_build: error: --out {tmp_path / 'pool'}: {tmp_path / 'pool'} is a file, "
                                "not a folder; pass a path in a folder")


def test_builder_refuses_a_wrong_folder(tmp_path):
    r = run_module("training.face_pool_build", "--webmorph", tmp_path, "--interfaces", tmp_path, "--out",
                   tmp_path / "o", "--quiet")
    assert r.returncode == 1 and "inst/neutral_front" in r.stderr and "Traceback" not in r.stderr


def test_folder_faces_people_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JRC_CACHE_DIR", str(tmp_path / "cache"))
    src = pool_faces("val")[:3]
    (tmp_path / "faces" / "alice").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "faces" / "alice" / "a.jpg"), src[0].image)
    cv2.imwrite(str(tmp_path / "faces" / "alice" / "b.jpg"), src[1].image)
    cv2.imwrite(str(tmp_path / "faces" / "bob.png"), src[2].image)
    cv2.imwrite(str(tmp_path / "faces" / "wall.png"), np.full((200, 200, 3), 90, np.uint8))
    got = folder_faces(tmp_path / "faces", progress=False)
    assert sorted((f.id, f.person) for f in got) == [("alice/a.jpg", "alice"), ("alice/b.jpg", "alice"),
                                                      ("bob.png", "bob")]
    assert len(list((tmp_path / "cache").glob("folder-faces-*.json"))) == 1
    again = folder_faces(tmp_path / "faces", progress=False)  # from the cache: the same faces
    assert [f.box for f in again] == [f.box for f in got]


def test_folder_faces_reads_videos_and_refuses_faceless_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("JRC_CACHE_DIR", "")
    face = pool_faces("val")[0].image
    w = cv2.VideoWriter(str(tmp_path / "cam1.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, face.shape[1::-1])
    for i in range(6):
        w.write(np.roll(face, i, axis=1))
    w.release()
    got = folder_faces(tmp_path, frames=3, progress=False)
    assert len(got) == 3 and {f.person for f in got} == {"cam1"}
    empty = tmp_path / "walls"
    empty.mkdir()
    cv2.imwrite(str(empty / "x.png"), np.full((100, 100, 3), 50, np.uint8))
    with pytest.raises(UserError, match="found no face"):
        folder_faces(empty, progress=False)
    with pytest.raises(UserError, match="not found"):
        folder_faces(tmp_path / "nowhere", progress=False)

