"""training.datasets / training.layouts on miniature replicas of the official benchmark layouts.

Every replica uses the official folder and file names and split/metadata formats, with one tiny
generated face video (the astronaut's head, 96×96, 8 frames) copied under each name.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import UserError
from tests.helpers import has_module, run_module
from tests.helpers.media import face_video
from training import datasets, layouts

FF_SPLITS = {"train": [["000", "003"]], "val": [["071", "054"]], "test": [["100", "200"]]}
FRAMES = 3
SIZE = 64


def _put(src: Path, *dests: Path) -> None:
    for d in dests:
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, d)


def _ffpp(root: Path, clip: Path, methods=("Deepfakes", "FaceSwap")) -> Path:
    ff = root / "FaceForensics++"
    numbers = [n for pairs in FF_SPLITS.values() for pair in pairs for n in pair]
    _put(clip, *[ff / "original_sequences/youtube/c23/videos" / f"{n}.mp4" for n in numbers + ["999"]])
    for m in methods:
        vids = [f"{a}_{b}.mp4" for pairs in FF_SPLITS.values() for x, y in pairs for a, b in ((x, y), (y, x))]
        _put(clip, *[ff / "manipulated_sequences" / m / "c23/videos" / v for v in vids])
    # DeepFakeDetection: actors 01 (train side) and 02, 05, 09 (see _dfd_split), and their fakes
    _put(clip, *[ff / "original_sequences/actors/c23/videos" / f"{a}__walking_outside.mp4" for a in ("01", "02", "05")])
    _put(clip, *[ff / "manipulated_sequences/DeepFakeDetection/c23/videos" / f"{a}_{b}__walking_outside__X{a}{b}.mp4"
                 for a, b in (("01", "02"), ("02", "01"), ("01", "05"))])
    (ff / "splits").mkdir()
    for split, pairs in FF_SPLITS.items():
        (ff / "splits" / f"{split}.json").write_text(json.dumps(pairs))
    return ff


def _celebdf(root: Path, clip: Path) -> Path:
    c = root / "Celeb-DF-v2"
    _put(clip, *[c / "Celeb-real" / f"{n}.mp4" for n in ("id0_0000", "id1_0000")])
    _put(clip, *[c / "Celeb-synthesis" / f"{n}.mp4" for n in ("id0_id1_0000", "id1_id0_0000")])
    _put(clip, *[c / "YouTube-real" / f"{n}.mp4" for n in ("00170", "00001")])
    (c / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00170.mp4\n1 Celeb-real/id1_0000.mp4\n0 Celeb-synthesis/id1_id0_0000.mp4\n")
    return c


def _dfdc(root: Path, clip: Path) -> Path:
    d = root / "DFDC"
    meta = {"aaa.mp4": {"label": "REAL", "split": "train", "original": None},
            "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
            "ccc.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"}}
    _put(clip, *[d / "dfdc_train_part_0" / n for n in meta])
    (d / "dfdc_train_part_0" / "metadata.json").write_text(json.dumps(meta))
    _put(clip, d / "test/videos/ttt.mp4", d / "test/videos/uuu.mp4")
    (d / "test/labels.csv").write_text("filename,label\nttt.mp4,0\nuuu.mp4,1\n")
    return d


def _dfdcp(root: Path, clip: Path) -> Path:
    d = root / "dfdc_preview_set"
    entries = {"original_videos/1000/1000_A_001.mp4": {"label": "real", "set": "train"},
               "method_A/1000/1000_1001_A/1000_1001_A_001.mp4": {"label": "fake", "set": "train"},
               "original_videos/2000/2000_B_002.mp4": {"label": "real", "set": "test"},
               "method_B/2000/2000_2001_B/2000_2001_B_002.mp4": {"label": "fake", "set": "test"}}
    _put(clip, *[d / k for k in entries])
    (d / "dataset.json").write_text(json.dumps(entries))
    return d


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return face_video(tmp_path_factory.mktemp("clip") / "face.mp4", frames=8, size=(96, 96))


@pytest.fixture(scope="module")
def root(tmp_path_factory, clip) -> Path:
    r = tmp_path_factory.mktemp("data")
    _ffpp(r, clip)
    _celebdf(r, clip)
    _dfdc(r, clip)
    _dfdcp(r, clip)
    # one damaged video where a fake would be (random bytes, official name)
    (r / "FaceForensics++/manipulated_sequences/FaceSwap/c23/videos/100_200.mp4").write_bytes(
        np.random.default_rng(0).bytes(3000))
    return r


def _by_video(listing):
    return {v.video: v for v in listing.videos}


def test_recognises_each_layout(root):
    found = layouts.find_datasets(root)
    assert found == {"ffpp": root / "FaceForensics++", "celebdf": root / "Celeb-DF-v2", "dfdc": root / "DFDC",
                     "dfdcp": root / "dfdc_preview_set"}


def test_ffpp_official_pairs_splits_and_no_identity_leak(root):
    lst = layouts.faceforensics(root / "FaceForensics++", "c23", ("Deepfakes", "FaceSwap", "DeepFakeDetection"))
    v = _by_video(lst)
    assert lst.name == "ffpp-c23"
    # the pair ["000", "003"] of train.json: both reals and both fakes of every method, one group
    for vid in ("youtube/000", "youtube/003", "Deepfakes/000_003", "Deepfakes/003_000", "FaceSwap/003_000"):
        assert (v[vid].split, v[vid].group) == ("train", "000_003"), vid
    assert (v["youtube/054"].split, v["FaceSwap/071_054"].split, v["Deepfakes/100_200"].split) == ("val", "val", "test")
    assert v["youtube/000"].label == "real" and v["Deepfakes/000_003"].label == "fake"
    assert v["FaceSwap/071_054"].method == "FaceSwap" and v["youtube/071"].method == "youtube"
    assert "youtube/999" not in v and any("1 videos are in no official split" in n for n in lst.notes)
    ff = [x for x in lst.videos if x.method in ("youtube", "Deepfakes", "FaceSwap")]
    assert len(ff) == 6 + 2 * 6
    counts = {s: sum(x.split == s for x in ff) for s in layouts.SPLITS}
    assert counts == {"train": 6, "val": 6, "test": 6}

    def people(split):  # FF++ identities (video numbers) and DFD actors seen on one side
        out = set()
        for x in lst.videos:
            if x.split == split:
                stem = x.path.stem.split("__")[0]
                out |= {f"{x.method in ('actors', 'DeepFakeDetection')}:{n}" for n in stem.split("_")}
        return out
    for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
        assert not people(a) & people(b), (a, b)
    # DeepFakeDetection: no official split; a fake stays with its two actors or is left out
    dfd = [x for x in lst.videos if x.method == "DeepFakeDetection"]
    for x in dfd:
        a, b = x.path.stem.split("__")[0].split("_")
        assert layouts._dfd_split(a) == layouts._dfd_split(b) == x.split


def test_ffpp_split_file_errors_are_one_line(tmp_path, clip):
    ff = _ffpp(tmp_path, clip, methods=("Deepfakes",))
    bad = {"train.json": '{"000": "003"}', "val.json": '[["71", "54"]]', "test.json": '[["100", "200"'}
    for name, text in bad.items():
        good = (ff / "splits" / name).read_text()
        (ff / "splits" / name).write_text(text)
        with pytest.raises(UserError) as e:
            layouts.faceforensics(ff)
        msg = str(e.value)
        assert "\n" not in msg and name in msg and "[target, source]" in msg, msg
        (ff / "splits" / name).write_text(good)
    (ff / "splits" / "val.json").write_text('[["000", "071"]]')  # 000 is in a train pair too
    with pytest.raises(UserError, match="official splits list each video once"):
        layouts.faceforensics(ff)
    shutil.rmtree(ff / "splits")
    with pytest.raises(UserError, match="ondyari/FaceForensics"):
        layouts.faceforensics(ff)


def test_celebdf_list_flag_one_means_real(root, tmp_path, clip):
    lst = layouts.celebdf(root / "Celeb-DF-v2")
    v = _by_video(lst)
    assert {k: (x.label, x.split) for k, x in v.items()} == {
        "Celeb-real/id0_0000": ("real", "train"), "Celeb-real/id1_0000": ("real", "test"),
        "YouTube-real/00001": ("real", "train"), "YouTube-real/00170": ("real", "test"),
        "Celeb-synthesis/id0_id1_0000": ("fake", "train"), "Celeb-synthesis/id1_id0_0000": ("fake", "test")}
    assert v["Celeb-synthesis/id1_id0_0000"].group == v["Celeb-real/id1_0000"].group == "id1_0000"
    c = _celebdf(tmp_path, clip)
    (c / "List_of_testing_videos.txt").write_text("0 YouTube-real/00170.mp4\n")  # 0 = fake, but it is real
    with pytest.raises(UserError, match="1 for real, 0 for fake"):
        layouts.celebdf(c)
    (c / "List_of_testing_videos.txt").write_text("1 YouTube-real/00170.mp4\nreal Celeb-real/id0_0000.mp4\n")
    with pytest.raises(UserError, match=r"List_of_testing_videos.txt:2: ") as e:
        layouts.celebdf(c)
    assert "\n" not in str(e.value)


def test_dfdc_metadata_originals_and_test_labels(root, tmp_path, clip):
    v = _by_video(layouts.dfdc(root / "DFDC"))
    assert {k: (x.label, x.split, x.group) for k, x in v.items()} == {
        "dfdc_train_part_0/aaa": ("real", "train", "aaa"), "dfdc_train_part_0/bbb": ("fake", "train", "aaa"),
        "dfdc_train_part_0/ccc": ("fake", "train", "aaa"), "test/ttt": ("real", "test", "ttt"),
        "test/uuu": ("fake", "test", "uuu")}
    d = _dfdc(tmp_path, clip)
    (d / "dfdc_train_part_0/metadata.json").write_text('{"aaa.mp4": {"label": "MAYBE"}}')
    with pytest.raises(UserError, match=r"metadata.json: entry 'aaa.mp4'") as e:
        layouts.dfdc(d)
    assert "\n" not in str(e.value)
    (d / "dfdc_train_part_0/metadata.json").write_text('{"aaa.mp4": ')
    with pytest.raises(UserError, match="not valid JSON"):
        layouts.dfdc(d)
    (d / "dfdc_train_part_0/metadata.json").unlink()
    (d / "test/labels.csv").write_text("filename,label\nttt.mp4,fake?\n")
    with pytest.raises(UserError, match=r"labels.csv:2: "):
        layouts.dfdc(d)


def test_dfdc_preview_sets(root, tmp_path, clip):
    v = _by_video(layouts.dfdc_preview(root / "dfdc_preview_set"))
    assert {k: (x.label, x.split, x.group) for k, x in v.items()} == {
        "original_videos/1000/1000_A_001": ("real", "train", "1000"),
        "method_A/1000/1000_1001_A/1000_1001_A_001": ("fake", "train", "1000"),
        "original_videos/2000/2000_B_002": ("real", "test", "2000"),
        "method_B/2000/2000_2001_B/2000_2001_B_002": ("fake", "test", "2000")}
    d = _dfdcp(tmp_path, clip)
    (d / "dataset.json").write_text('{"original_videos/1000/1000_A_001.mp4": {"label": "real", "set": "dev"}}')
    with pytest.raises(UserError, match="dataset.json: entry") as e:
        layouts.dfdc_preview(d)
    assert "\n" not in str(e.value)


def _rows(manifest: Path) -> list[dict]:
    with open(manifest, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _args(root: Path, out: Path, *more: str) -> list[str]:
    return ["--root", str(root), "--out", str(out), "--frames", str(FRAMES), "--size", str(SIZE), "--workers", "1",
            *more]


@pytest.fixture(scope="module")
def extracted(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("crops")
    assert datasets.main(_args(root, out, "--datasets", "ffpp", "celebdf")) == 0
    return out


def test_extracts_crops_and_manifest_with_splits(extracted):
    rows = _rows(extracted / "ffpp-c23" / "manifest.csv")
    assert list(rows[0]) == list(datasets.COLUMNS)
    per_video: dict[str, list[dict]] = {}
    for r in rows:
        per_video.setdefault(r["video"], []).append(r)
        assert (extracted / "ffpp-c23" / r["path"]).is_file()
    assert "FaceSwap/100_200" not in per_video  # damaged: skipped and recorded
    assert len(per_video) == 17 and all(len(v) == FRAMES for v in per_video.values())
    r0 = per_video["Deepfakes/003_000"][0]
    assert (r0["label"], r0["split"], r0["group"], r0["method"], r0["dataset"]) == (
        "fake", "train", "000_003", "Deepfakes", "ffpp-c23")
    progress = [json.loads(x) for x in (extracted / "ffpp-c23" / "progress.jsonl").read_text().splitlines()]
    assert sum(p["status"] == "damaged" for p in progress) == 1 and len(progress) == 18
    celeb = {r["video"]: r["split"] for r in _rows(extracted / "celebdf-v2" / "manifest.csv")}
    assert celeb["YouTube-real/00170"] == "test" and celeb["Celeb-real/id0_0000"] == "train"


def test_crops_are_the_runtime_crop(extracted, clip):
    import cv2

    from runtime.faces import DEFAULT_DETECTOR, make_detector
    from training.extract import video_crops

    # the runtime's default detector, as runtime.detect and training.extract use it
    want = [c for _, _, c in video_crops(clip, FRAMES, make_detector(DEFAULT_DETECTOR), SIZE,
                                         datasets.Settings().margin)]
    rows = [r for r in _rows(extracted / "celebdf-v2" / "manifest.csv") if r["video"] == "Celeb-real/id0_0000"]
    got = [cv2.imread(str(extracted / "celebdf-v2" / r["path"])) for r in rows]
    assert len(got) == len(want) == FRAMES and all(np.array_equal(a, b) for a, b in zip(got, want))


def test_interrupted_run_resumes(root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "crops"
    real = datasets.crop_video
    calls = {"n": 0}

    def stop_after_five(job):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(datasets, "crop_video", stop_after_five)
    with pytest.raises(KeyboardInterrupt):
        datasets.main(_args(root, out, "--datasets", "ffpp", "--methods", "Deepfakes"))
    manifest = out / "ffpp-c23" / "manifest.csv"
    first = _rows(manifest)
    assert len({r["video"] for r in first}) == 5 and len(first) == 5 * FRAMES
    # a hard kill between a video's rows and its progress record: rows of an unfinished video
    with open(manifest, "a", newline="") as f:
        f.write("fake/Deepfakes/100_200/000000.png,fake,Deepfakes/100_200,test,ffpp-c23,Deepfakes,100_200\n")
    monkeypatch.setattr(datasets, "crop_video", real)
    capsys.readouterr()
    assert datasets.main(_args(root, out, "--datasets", "ffpp", "--methods", "Deepfakes")) == 0
    assert "7 videos processed, 5 already done, 0 damaged" in capsys.readouterr().out
    rows = _rows(manifest)
    assert len(rows) == len({r["path"] for r in rows}) == 12 * FRAMES  # every video once, no duplicates
    assert all((out / "ffpp-c23" / r["path"]).is_file() for r in rows)
    with pytest.raises(UserError, match="other settings"):  # resuming with other options is refused
        datasets.main(_args(root, out, "--datasets", "ffpp", "--methods", "Deepfakes", "--frames", "5"))


def test_manifest_selects_by_split(extracted):
    from runtime.meta import Meta
    from training.dataspec import open_items

    meta = Meta(input_size=SIZE)
    spec = extracted / "ffpp-c23" / "manifest.csv"
    parts = {s: open_items(spec, meta, s, check_files=False) for s in ("train", "val", "test")}
    assert [len(set(parts[s].videos)) for s in ("train", "val", "test")] == [6, 6, 5]
    assert set(parts["test"].columns["split"]) == {"test"} and "method" in parts["test"].columns
    with pytest.raises(UserError, match="no row has split 'val'") as e:
        open_items(extracted / "celebdf-v2" / "manifest.csv", meta, "val", check_files=False)
    assert "\n" not in str(e.value)


def test_cli_parallel_workers_match_and_resume(root, tmp_path, extracted):
    res = run_module("training.datasets", *_args(root, tmp_path, "--datasets", "celebdf", "dfdcp", "--workers", "2"))
    assert res.returncode == 0, res.stderr
    key = sorted((r["path"], r["split"], r["group"]) for r in _rows(tmp_path / "celebdf-v2" / "manifest.csv"))
    assert key == sorted((r["path"], r["split"], r["group"]) for r in _rows(extracted / "celebdf-v2" / "manifest.csv"))
    rows = _rows(tmp_path / "dfdcp" / "manifest.csv")
    assert {(r["video"], r["split"]) for r in rows} == {
        ("original_videos/1000/1000_A_001", "train"), ("method_A/1000/1000_1001_A/1000_1001_A_001", "train"),
        ("original_videos/2000/2000_B_002", "test"), ("method_B/2000/2000_2001_B/2000_2001_B_002", "test")}
    again = run_module("training.datasets", *_args(root, tmp_path, "--datasets", "dfdcp", "--workers", "2"))
    assert again.returncode == 0 and "dfdcp: 0 videos processed, 4 already done" in again.stdout, again.stderr


def test_cli_malformed_metadata_is_one_line(tmp_path, clip):
    _dfdcp(tmp_path, clip)
    (tmp_path / "dfdc_preview_set/dataset.json").write_text("[1, 2]")
    res = run_module("training.datasets", "--root", tmp_path, "--list")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    err = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(err) == 1 and err[0].startswith("datasets: error: ") and "dataset.json" in err[0], res.stderr


needs_torch = pytest.mark.skipif(not (has_module("torch") and has_module("matplotlib")),
                                 reason="needs the train extra (torch, matplotlib)")


@needs_torch
def test_evaluate_protocol_table(extracted, tmp_path):
    import torch

    from training.checkpoint import save_checkpoint
    from training.model import build_model, default_meta

    torch.manual_seed(0)
    meta = default_meta("edge", SIZE)
    net = build_model(meta)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, net, meta.with_(model=net.config(), training={"data": "unit-test"}), epoch=0)
    res = run_module("training.evaluate", "--ckpt", ckpt, "--protocol", extracted, "--workers", 0,
                     "--out", tmp_path / "eval", "--threads", 1)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    names = [x.split()[0] for x in lines if x.startswith(("ffpp", "celebdf"))]
    assert names == ["ffpp-c23", "ffpp-c23/Deepfakes", "ffpp-c23/FaceSwap", "celebdf-v2"]
    head = next(x for x in lines if x.startswith("dataset"))
    assert head.split()[2] == "AUC" and "test split" in lines[0]
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())["datasets"]
    assert result["ffpp-c23"]["frame"]["n"] == 5 * FRAMES and result["ffpp-c23"]["video"]["n"] == 5
    assert result["ffpp-c23/Deepfakes"]["video"]["n_real"] == 2 and result["ffpp-c23/Deepfakes"]["video"]["n_fake"] == 2
    assert result["ffpp-c23/FaceSwap"]["video"]["n_fake"] == 1  # its 100_200 was damaged


@needs_torch
def test_class_balanced_sampler():
    from training.balance import ClassBalancedSampler, class_weights

    labels = [0] * 10 + [1] * 50  # FF++-like: 5 fakes per real
    w = class_weights(labels)
    assert float(w[:10].sum()) == pytest.approx(0.5) and float(w[10:].sum()) == pytest.approx(0.5)
    s = ClassBalancedSampler(labels, seed=3)
    s.set_epoch(1)
    drawn = [labels[i] for _ in range(20) for i in s]
    assert abs(np.mean(drawn) - 0.5) < 0.05 and len(s) == 60
    assert list(s) == list(s)  # same epoch, same draw
    ranks = [list(ClassBalancedSampler(labels, seed=3, rank=r, world=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 30
    s.set_epoch(2)
    assert list(s) != list(ClassBalancedSampler(labels, seed=3))


@needs_torch
def test_train_split_and_balance_recorded(extracted, tmp_path):
    from training.checkpoint import read_checkpoint

    spec = extracted / "ffpp-c23" / "manifest.csv"
    res = run_module("training.train", "--data", spec, "--split", "train", "--balance", "sampler", "--epochs", 1,
                     "--batch-size", 4, "--input-size", SIZE, "--workers", 0, "--threads", 1, "--no-augment",
                     "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    assert "18 train / 18 val items" in res.stderr  # official train pairs (6 videos) vs val pairs (6 videos)
    blob = read_checkpoint(tmp_path / "run" / "last.pt")
    assert blob["args"]["balance"] == "sampler" and blob["args"]["split"] == "train"
    assert blob["meta"]["training"]["balance"] == "sampler"


def test_list_and_split_filter(root, capsys):
    assert datasets.main(["--root", str(root), "--list", "--datasets", "celebdf", "dfdc", "--splits", "test"]) == 0
    err = capsys.readouterr().err
    assert "celebdf-v2: 3 videos (test 2 real + 1 fake)" in err and "dfdc: 2 videos (test 1 real + 1 fake)" in err
