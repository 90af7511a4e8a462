"""The offline faces' detection cache (training.sample_faces): the crops from a warm cache are the
crops the detector gives, byte for byte, with no detector built; a damaged, foreign or stale file is
detected again; an unwritable cache folder costs nothing but time."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("skimage")
sf = pytest.importorskip("training.sample_faces")


def _fresh(size: int = 48) -> list[tuple[str, np.ndarray]]:
    sf._detections.cache_clear()
    sf._faces.cache_clear()
    return sf.sample_real_faces(size)


def _same(a, b) -> None:
    assert [fid for fid, _ in a] == [fid for fid, _ in b]
    for (fid, x), (_, y) in zip(a, b):
        assert np.array_equal(x, y), fid


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The detector's crops with no cache, and the cache file a cold run writes (about 2 s each)."""
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv(sf.CACHE_ENV, "")  # set but empty: no cache
        assert sf.cache_dir() is None
        direct = _fresh()
        folder = tmp_path_factory.mktemp("cache")
        mp.setenv(sf.CACHE_ENV, str(folder))
        cold = _fresh()
        files = list(folder.iterdir())
    finally:
        mp.undo()
        sf._detections.cache_clear()
        sf._faces.cache_clear()
    return direct, cold, files


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(sf.CACHE_ENV, str(folder))
    yield folder
    sf._detections.cache_clear()
    sf._faces.cache_clear()


def test_warm_cache_gives_the_detectors_crops_without_a_detector(reference, cache, monkeypatch):
    direct, cold, files = reference
    assert len(direct) == 101 and len(files) == 1 and files[0].name.startswith("sample-faces-")  # no temporary left
    _same(cold, direct)
    cache.mkdir()
    shutil.copy(files[0], cache / files[0].name)

    def refuse(*a, **k):
        raise AssertionError("the detector ran although the cache holds every box")

    monkeypatch.setattr(sf, "make_detector", refuse)
    _same(_fresh(), direct)  # warm: every box from the file


@pytest.mark.parametrize("damage", ["garbage", "empty", "wrong_shapes", "pickle", "box_dtype", "nan_marks"])
def test_a_damaged_cache_file_is_not_read(reference, tmp_path, damage):
    good = reference[2][0]
    path = tmp_path / good.name
    assert sf._read_cache(good, 101) is not None
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    if damage == "garbage":
        path.write_bytes(b"PK\x03\x04 not a zip at all")
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        if damage == "wrong_shapes":
            arrays = {k: v[:3] for k, v in arrays.items()}
        elif damage == "pickle":
            arrays["found"] = np.array([object()] * 101, dtype=object)
        elif damage == "box_dtype":
            arrays["boxes"] = arrays["boxes"].astype(np.float64)
        else:
            arrays["marks"][arrays["has_marks"].argmax(), 0, 0] = np.nan
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    assert sf._read_cache(path, 101) is None


def test_a_damaged_cache_file_is_detected_again_and_rewritten(reference, cache):
    direct, _, files = reference
    cache.mkdir()
    damaged = cache / files[0].name
    damaged.write_bytes(b"not a cache")
    _same(_fresh(), direct)
    assert sf._read_cache(damaged, 101) is not None  # rewritten whole


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


def test_an_unwritable_cache_folder_costs_only_time(reference, cache):
    cache.write_text("a file where the cache folder should be")
    _same(_fresh(), reference[0])
    assert cache.read_text().startswith("a file")
