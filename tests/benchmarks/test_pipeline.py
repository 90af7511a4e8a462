"""benchmarks.clip and benchmarks.pipeline on a tiny model and a small generated clip."""

from __future__ import annotations

import cv2
import pytest

from runtime.detect import default_threads as runtime_default_threads
from tests.helpers import load_strict, run_module
from tests.helpers.models import make_onnx


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from benchmarks.pipeline import generate_clip

    return generate_clip(tmp_path_factory.mktemp("clip") / "small.mp4", 12, (320, 240))


def test_generated_clip_has_one_detectable_face_per_frame(clip):
    from runtime.faces import HaarFaceDetector

    cap = cv2.VideoCapture(str(clip))
    det, frames, found = HaarFaceDetector(), 0, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (240, 320, 3)
        frames += 1
        found += len(det.detect(frame)) == 1
    cap.release()
    assert frames == 12 and found == 12


def test_pipeline_json_stages_and_ratios(tiny, clip, tmp_path):
    out, png = tmp_path / "pipe.json", tmp_path / "pipe.png"
    other = make_onnx(tmp_path / "other.onnx")  # another model, its tracking run in the same rounds
    p = run_module("benchmarks.pipeline", "--engine", tiny["detect"], "--source", clip, "--frames", "12",
                   "--detect-every", "4", "--reference", tiny["ckpt"], "--repeats", "2", "--compare", other,
                   "--runs", "5", "--json", out, "--png", png, "--quiet")
    assert p.returncode == 0, p.stderr
    d = load_strict(out)
    assert d["tool"] == "benchmarks.pipeline" and d["settings"]["detect_every"] == 4
    # without --threads it measures what runtime.detect runs (one inference thread on two cores),
    # not ONNX Runtime on every core beside the loop's own threads
    assert d["settings"]["threads"] == runtime_default_threads()
    rows = {r["key"]: r for r in d["results"]}
    assert set(rows) == {"tracking", "no_tracking", "faces_given", "research", f"compare:{other}"}
    assert rows[f"compare:{other}"]["config"].endswith("(tracking), other.onnx")
    assert {r["frames"] for r in rows.values()} == {12}
    for r in rows.values():
        assert r["faces"] == r["frames"]  # one face in every frame of the clip, every path finds it
        assert set(r["stage_ms"]) == {"decode", "faces", "preprocess", "infer", "output"}
        assert all(v >= 0 for v in r["stage_ms"].values()) and r["stage_ms"]["infer"] > 0
        assert r["fps"] == pytest.approx(1000.0 / r["wall_ms_per_frame"], rel=0.02)
        assert len(r["fps_per_round"]) == 2
        # steady rate from the first result on; the wait for that result is reported apart
        assert 0 < r["first_result_ms"] < 1000.0 * r["seconds"] and 0 < r["fps_incl_start"]
    c = d["classifier"]
    assert c["b1_faces_per_s"] > 0 and c["bmax_faces_per_s"] > 0 and c["max_batch"] == 8
    kinds = [(x["kind"], x["config"]) for x in d["ratios"]]
    assert kinds.count(("fraction_of_classifier", "tracking")) == 2
    assert kinds.count(("fraction_of_classifier", "faces_given")) == 2
    # how much less the replayed boxes cost than detecting is a timing, reported by the benchmark and
    # never asserted here; that the replay runs no detector is tests/runtime/test_loop.py's to check
    assert rows["faces_given"]["config"] == "runtime, faces given (detector cost removed)"
    assert ("tracking_speedup", "tracking") in kinds and ("speedup_over_research", "tracking") in kinds
    assert ("model_ratio", f"compare:{other}") in kinds and "other.onnx / " in p.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "frames/s" in p.stdout and "end-to-end speed-up over research-style" in p.stdout


def test_pipeline_bad_source_is_one_line(tiny, tmp_path):
    p = run_module("benchmarks.pipeline", "--engine", tiny["detect"], "--source", tmp_path / "nope.mp4")
    assert p.returncode == 1
    assert p.stderr.strip() == f"benchmarks.pipeline: error: --source {tmp_path / 'nope.mp4'}: no such file or folder"
