"""End to end: ``runtime.detect`` on generated videos, images and folders with ONNX Runtime."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.detect import main
from tests.helpers.media import face_video, gray_video, lines
from tests.helpers.models import expected_prob, make_onnx

FACE_KEYS = {"track", "box", "detected", "scored", "face_score", "landmarks", "logit", "prob", "fake"}
FRAME_KEYS = {"schema", "camera", "source", "frame", "time", "no_face", "prob", "faces", "tracks_ended", "dropped"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"detect": make_onnx(d / "detect.onnx"), "full": make_onnx(d / "full.onnx", full=True)}


def test_video_with_a_face_jsonl_schema_tracking_and_summary(tmp_path, models, capsys):
    clip = face_video(tmp_path / "clip.mp4", frames=20)
    rc = main(["--engine", str(models["detect"]), "--source", str(clip), "--detect-every", "5", "--quiet",
               "--jsonl", str(tmp_path / "o.jsonl"), "--summary", str(tmp_path / "s.json")])
    assert rc == 0
    recs = lines(tmp_path / "o.jsonl")
    assert [r["frame"] for r in recs] == list(range(20))
    for r in recs:
        assert set(r) == FRAME_KEYS and r["schema"] == 1 and r["source"] == str(clip)
        assert not r["no_face"] and len(r["faces"]) == 1
        f = r["faces"][0]
        assert set(f) == FACE_KEYS
        assert math.isclose(f["prob"], 1 / (1 + math.exp(-f["logit"])), rel_tol=1e-5)
        assert f["fake"] == (f["prob"] >= 0.5) and r["prob"] == f["prob"]
    assert {r["faces"][0]["track"] for r in recs} == {1}
    # the detector runs every 5th frame; in between, MTCNN re-fits the face (confirmed, so scored)
    assert all(r["faces"][0]["detected"] and r["faces"][0]["scored"] for r in recs)
    xs = [r["faces"][0]["box"][0] for r in recs]
    assert xs[-1] > xs[0] + 40  # the box follows the face
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["status"] == "ok" and s["exit_code"] == 0 and s["frames"] == 20 and s["faces"] == 20
    assert s["backend"]["backend"] == "onnxruntime" and s["backend"]["provider"] == "CPUExecutionProvider"
    assert s["tracks_total"] == 1 and s["tracks"][0]["frames"] == 20
    mean = sum(r["prob"] for r in recs) / 20
    assert math.isclose(s["prob"], mean, rel_tol=1e-5) and math.isclose(s["tracks"][0]["prob"], mean, rel_tol=1e-5)
    assert set(s["timing_ms_per_frame"]) == {"decode", "faces", "preprocess", "infer", "output"}
    assert str(clip) in capsys.readouterr().out


def test_scores_follow_the_content(tmp_path, models):
    clip = face_video(tmp_path / "clip.mp4", frames=20, brighten_from=10)
    assert main(["--engine", str(models["detect"]), "--source", str(clip), "--detect-every", "1", "--quiet",
                 "--jsonl", str(tmp_path / "o.jsonl")]) == 0
    p = [r["prob"] for r in lines(tmp_path / "o.jsonl")]
    assert min(p[12:]) > max(p[:9]) + 0.05  # the brighter face scores higher with the tiny model


def test_frames_without_faces_are_reported(tmp_path, models, capsys):
    clip = face_video(tmp_path / "clip.mp4", frames=12, blank_from=6)
    assert main(["--engine", str(models["detect"]), "--source", str(clip), "--detect-every", "2", "--quiet",
                 "--jsonl", str(tmp_path / "o.jsonl"), "--summary", str(tmp_path / "s.json")]) == 0
    recs = lines(tmp_path / "o.jsonl")
    assert [r["no_face"] for r in recs] == [False] * 6 + [True] * 6
    assert all(r["faces"] == [] and r["prob"] is None for r in recs[6:])
    ended = [t for r in recs for t in r["tracks_ended"]]
    assert [t["track"] for t in ended] == [1] and ended[0]["frames"] == 6
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["frames_with_face"] == 6 and s["frames_without_face"] == 6
    blank = gray_video(tmp_path / "blank.mp4", [90] * 5, size=(160, 120))
    assert main(["--engine", str(models["detect"]), "--source", str(blank), "--quiet",
                 "--summary", str(tmp_path / "s2.json")]) == 0
    s2 = json.loads((tmp_path / "s2.json").read_text())
    assert s2["verdict"] == "no_face" and s2["frames_without_face"] == 5
    assert "no face found in 5 frame(s)" in capsys.readouterr().out


def test_folder_of_face_crops_exact_scores(tmp_path, models):
    folder = tmp_path / "crops"
    folder.mkdir()
    grays = {"a.png": 0, "b.png": 255, "c.jpg": 191}
    for name, v in grays.items():
        cv2.imwrite(str(folder / name), np.full((40, 48, 3), v, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    assert main(["--engine", str(models["detect"]), "--source", str(folder), "--faces", "none", "--quiet",
                 "--jsonl", str(tmp_path / "o.jsonl"), "--summary", str(tmp_path / "s.json")]) == 0
    recs = lines(tmp_path / "o.jsonl")
    assert [Path(r["source"]).name for r in recs] == ["a.png", "b.png", "c.jpg"]
    for r in recs:
        assert math.isclose(r["prob"], expected_prob(grays[Path(r["source"]).name]), abs_tol=0.01)
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["sources_total"] == 3
    assert [x["verdict"] for x in s["sources"]] == ["real", "fake", "fake"]
    assert len({r["faces"][0]["track"] for r in recs}) == 3  # a new item starts new tracks


def test_nested_crops_as_extract_writes_them_are_read(tmp_path, models):
    """``training.extract`` writes crops/real|fake/<video>/<frame>.png: --faces none reads them all,
    in path order, without entering a symlinked folder twice."""
    grays = {"real/clip01/0000.png": 0, "real/clip01/0001.png": 0, "fake/clip02/0000.png": 255}
    for rel, v in grays.items():
        (tmp_path / "crops" / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "crops" / rel), np.full((40, 40, 3), v, np.uint8))
    (tmp_path / "crops" / "real" / "loop").symlink_to(tmp_path / "crops")
    assert main(["--engine", str(models["detect"]), "--source", str(tmp_path / "crops"), "--faces", "none",
                 "--quiet", "--jsonl", str(tmp_path / "o.jsonl")]) == 0
    recs = lines(tmp_path / "o.jsonl")
    assert [str(Path(r["source"]).relative_to(tmp_path / "crops")) for r in recs] == sorted(grays)
    for r in recs:
        assert math.isclose(r["prob"], expected_prob(grays[str(Path(r["source"]).relative_to(tmp_path / "crops"))]),
                            abs_tol=0.01)


def test_glob_video_with_stride_and_threshold(tmp_path, models):
    gray_video(tmp_path / "v1.mp4", [20] * 10 + [235] * 10)
    assert main(["--engine", str(models["detect"]), "--source", str(tmp_path / "v*.mp4"), "--faces", "none",
                 "--stride", "2", "--threshold", "0.95", "--quiet", "--jsonl", str(tmp_path / "o.jsonl"),
                 "--summary", str(tmp_path / "s.json")]) == 0
    recs = lines(tmp_path / "o.jsonl")
    assert [r["frame"] for r in recs] == list(range(0, 20, 2))
    assert all(math.isclose(r["prob"], expected_prob(20), abs_tol=0.02) for r in recs[:5])
    assert all(math.isclose(r["prob"], expected_prob(235), abs_tol=0.02) for r in recs[5:])
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["threshold"] == 0.95
    # mean of (0.03, 0.96) ≈ 0.5 < 0.95
    assert s["verdict"] == "real"
    assert [r["faces"][0]["fake"] for r in recs] == [False] * 5 + [True] * 5


@pytest.mark.parametrize("kind", ["gray", "rgba", "16bit"])
def test_unusual_images_are_converted(tmp_path, models, kind):
    img = {"gray": np.full((30, 30), 255, np.uint8), "rgba": np.full((30, 30, 4), 255, np.uint8),
           "16bit": np.full((30, 30, 3), 65535, np.uint16)}[kind]
    cv2.imwrite(str(tmp_path / "x.png"), img)
    assert main(["--engine", str(models["detect"]), "--source", str(tmp_path / "x.png"), "--faces", "none",
                 "--quiet", "--jsonl", str(tmp_path / "o.jsonl")]) == 0
    assert math.isclose(lines(tmp_path / "o.jsonl")[0]["prob"], expected_prob(255), abs_tol=1e-3)


def test_reconstruct_reports_error_and_saves_maps(tmp_path, models):
    clip = gray_video(tmp_path / "g.mp4", [255] * 6, size=(96, 64))
    out = tmp_path / "annotated.mp4"
    assert main(["--engine", str(models["full"]), "--source", str(clip), "--faces", "none", "--reconstruct",
                 "--quiet", "--jsonl", str(tmp_path / "o.jsonl"), "--save", str(out)]) == 0
    recs = lines(tmp_path / "o.jsonl")
    # recon = x / 2, so the mean squared error is x²/4 with x ≈ 1 for white
    assert all(math.isclose(r["faces"][0]["recon_error"], 0.25, abs_tol=0.02) for r in recs)
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 6
    # without --reconstruct no error is reported
    assert main(["--engine", str(models["full"]), "--source", str(clip), "--faces", "none", "--quiet",
                 "--jsonl", str(tmp_path / "p.jsonl")]) == 0
    assert all("recon_error" not in r["faces"][0] for r in lines(tmp_path / "p.jsonl"))


def test_live_mode_on_a_file_counts_every_frame_as_processed_or_dropped(tmp_path, models):
    clip = gray_video(tmp_path / "g.mp4", [128] * 30)
    assert main(["--engine", str(models["detect"]), "--source", str(clip), "--faces", "none", "--live", "yes",
                 "--quiet", "--summary", str(tmp_path / "s.json")]) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["live"] is True and s["frames"] > 0
    assert s["frames"] + s["dropped"] == 30


def test_bad_folder_items_are_skipped_and_counted(tmp_path, models):
    cv2.imwrite(str(tmp_path / "good.png"), np.full((20, 20, 3), 255, np.uint8))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG but not really")
    assert main(["--engine", str(models["detect"]), "--source", str(tmp_path), "--faces", "none", "--quiet",
                 "--summary", str(tmp_path / "s.json")]) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["frames"] == 1 and s["skipped"] == [str(tmp_path / "bad.png")]


def test_max_frames_and_onnx_without_metadata(tmp_path):
    bare = make_onnx(tmp_path / "bare.onnx", meta=False)
    clip = gray_video(tmp_path / "g.mp4", [255] * 10)
    assert main(["--engine", str(bare), "--source", str(clip), "--faces", "none", "--input-size", "32",
                 "--mean", "0.5", "0.5", "0.5", "--std", "0.5", "0.5", "0.5", "--max-frames", "4", "--quiet",
                 "--summary", str(tmp_path / "s.json")]) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["frames"] == 4 and s["verdict"] == "fake"


def test_decoder_runs_only_with_reconstruct(tmp_path):
    # the poisoned decoder fails whenever it runs: the run succeeds only if it is never run
    poison = make_onnx(tmp_path / "poison.onnx", full=True, poison_recon=True)
    clip = gray_video(tmp_path / "g.mp4", [255] * 3)
    args = ["--engine", str(poison), "--source", str(clip), "--faces", "none", "--quiet"]
    assert main(args) == 0
    assert main(args + ["--reconstruct"]) == 1


def test_default_threads_follow_the_cpu_affinity(monkeypatch):
    """A process pinned to one core (taskset, a container's cpuset) gets one inference thread,
    however many cores the machine has."""
    from runtime.detect import default_threads

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert default_threads() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    assert default_threads() == 4


def test_window_adds_recent_verdicts_to_jsonl_and_summary(tmp_path, models):
    clip = face_video(tmp_path / "clip.mp4", frames=10)
    assert main(["--engine", str(models["detect"]), "--source", str(clip), "--quiet", "--window", "0.2",
                 "--jsonl", str(tmp_path / "o.jsonl"), "--summary", str(tmp_path / "s.json")]) == 0
    recs = lines(tmp_path / "o.jsonl")
    assert all(r["recent"]["seconds"] == 0.2 and r["faces"][0]["recent"]["frames"] <= 5 for r in recs)
    assert recs[-1]["recent"]["frames"] == 5  # 25 fps: the frames of the last 0.2 s
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["window_s"] == 0.2 and s["options"]["window"] == 0.2 and s["tracks"][0]["recent"]["frames"] == 5
    assert main(["--engine", str(models["detect"]), "--source", str(clip), "--quiet",
                 "--jsonl", str(tmp_path / "p.jsonl")]) == 0
    assert all("recent" not in r for r in lines(tmp_path / "p.jsonl"))  # a file: none unless asked
    assert main(["--engine", str(models["detect"]), "--source", str(clip), "--window", "-1"]) == 2


def test_live_yes_on_a_folder_is_refused_in_one_line(tmp_path, models, capsys):
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), np.full((32, 32, 3), 90, np.uint8))
    for source in (tmp_path / "imgs", tmp_path / "imgs" / "*.png"):
        assert main(["--engine", str(models["detect"]), "--source", str(source), "--live", "yes", "--quiet"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "--live yes" in err and str(source) in err


def test_a_verdict_on_a_live_source_says_how_many_frames_were_dropped():
    from runtime.sinks import verdict_line

    s = {"verdict": "real", "prob": 0.2, "frames": 12, "frames_with_face": 7, "frames_without_face": 5,
         "faces": 7, "tracks": 1}
    assert "dropped" not in verdict_line("http://cam/x.avi", s, 0.5)
    line = verdict_line("http://cam/x.avi", s, 0.5, dropped=258)
    assert "258 frame(s) dropped" in line and "rests on the 12 processed" in line
