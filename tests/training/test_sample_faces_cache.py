"""The offline faces' detection cache (training.sample_faces): the crops from a warm cache are the
crops the detector gives, byte for byte, with no detector built; a damaged, foreign or stale file is
detected again; an unwritable cache folder costs nothing but time."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("skimage")
sf = pytest.importorskip("training.sample_faces")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder of this test's own, and no detections kept in this process."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(sf.CACHE_ENV, str(folder))
    sf._detections.cache_clear()
    sf._faces.cache_clear()
    yield folder
    sf._detections.cache_clear()
    sf._faces.cache_clear()


def _fresh(size: int = 48) -> list[tuple[str, np.ndarray]]:
    sf._detections.cache_clear()
    sf._faces.cache_clear()
    return sf.sample_real_faces(size)


def _no_detector(monkeypatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("the detector ran although the cache holds every box")

    monkeypatch.setattr(sf, "make_detector", refuse)


def _same(a, b) -> None:
    assert [fid for fid, _ in a] == [fid for fid, _ in b]
    for (fid, x), (_, y) in zip(a, b):
        assert np.array_equal(x, y), fid


def test_warm_cache_gives_the_detectors_crops_without_a_detector(cache, monkeypatch):
    monkeypatch.setenv(sf.CACHE_ENV, "")  # set but empty: no cache
    assert sf.cache_dir() is None
    direct = _fresh()
    assert len(direct) == 101
    monkeypatch.setenv(sf.CACHE_ENV, str(cache))
    cold = _fresh()
    (file,) = cache.glob("sample-faces-*.npz")  # one file, no temporary left behind
    assert list(cache.iterdir()) == [file]
    _same(cold, direct)
    _no_detector(monkeypatch)
    _same(_fresh(), direct)  # warm: every box from the file


@pytest.mark.parametrize("damage", ["garbage", "empty", "wrong_shapes", "pickle"])
def test_a_damaged_cache_file_is_detected_again(cache, monkeypatch, damage):
    first = _fresh()
    (file,) = cache.glob("sample-faces-*.npz")
    if damage == "garbage":
        file.write_bytes(b"PK\x03\x04 not a zip at all")
    elif damage == "empty":
        file.write_bytes(b"")
    elif damage == "wrong_shapes":
        with open(file, "wb") as f:
            np.savez(f, found=np.ones(3, bool), boxes=np.zeros((3, 4), np.int64), scores=np.zeros(3),
                     marks=np.zeros((3, 5, 2), np.float32), has_marks=np.zeros(3, bool))
    else:
        with open(file, "wb") as f:
            np.savez(f, found=np.array([object()] * 101, dtype=object))
    _same(_fresh(), first)  # detected again, not read
    assert sf._read_cache(file, 101) is not None  # and the file rewritten whole


def test_the_key_follows_the_detectors_files_and_the_frames(tmp_path):
    frames = sf._frames()
    key = sf.cache_key(frames)
    assert key == sf.cache_key(sf._frames())  # deterministic
    models = tmp_path / "mtcnn"
    from runtime.faces_cnn import BUNDLED

    shutil.copytree(BUNDLED, models)
    assert sf.cache_key(frames, models) == key  # the same files, elsewhere
    onet = models / "onet.onnx"
    data = bytearray(onet.read_bytes())
    data[-1] ^= 1
    onet.write_bytes(bytes(data))
    assert sf.cache_key(frames, models) != key  # other weights: other boxes
    moved = [(fid, np.roll(f, 1, axis=1) if fid == "lfw-007" else f, o) for fid, f, o in frames]
    assert sf.cache_key(moved) != key


def test_an_unwritable_cache_folder_costs_only_time(cache, monkeypatch):
    cache.parent.mkdir(exist_ok=True)
    cache.write_text("a file where the cache folder should be")
    faces = _fresh()
    assert len(faces) == 101 and cache.read_text().startswith("a file")
