"""One track is one person, on real faces (benchmarks.people: the astronaut, Grace Hopper and the
cameraman, licence-clear photos): no track crosses a cut, no box off a face is scored, each person
keeps one id while visible; and what the JSONL and the summary say about faces that were not scored."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from runtime.tracking import FaceTracker, iou
from tests.helpers import has_module
from tests.helpers.models import make_onnx

pytestmark = pytest.mark.skipif(not (has_module("skimage") and has_module("matplotlib")),
                                reason="the real photos come with the train extra (scikit-image, matplotlib)")


@pytest.fixture(scope="module")
def mtcnn():
    from runtime.faces import make_detector

    return make_detector("mtcnn")


@pytest.fixture(scope="module")
def cuts():
    from benchmarks.people import cut_clip

    return cut_clip()


@pytest.fixture(scope="module")
def same_place():
    """Cuts where only the person changes: one background for every shot."""
    from benchmarks.people import cut_clip

    return cut_clip(same_background=True)


def _follow(clip, tracker):
    """Per frame: the faces the tracker confirmed, each with the real face it overlaps most."""
    out = []
    for i, frame in enumerate(clip.frames):
        faces, _ = tracker.update(frame, i)
        out.append([(f, max(clip.truth[i], key=lambda t: iou(t[1], f.box), default=None))
                    for f in faces if f.detected])
    return out


def _check_one_person_per_track(clip, followed, min_cover=0.6):
    shots, ids, seen = {}, {}, {}
    for i, faces in enumerate(followed):
        for f, real in faces:
            assert real is not None and iou(real[1], f.box) >= 0.5, (i, f.box, real)  # never off a face
            shots.setdefault(f.track, set()).add((clip.shot(i), real[0]))
            ids.setdefault((clip.shot(i), real[0]), set()).add(f.track)
            seen[(clip.shot(i), real[0])] = seen.get((clip.shot(i), real[0]), 0) + 1
    assert all(len(s) == 1 for s in shots.values()), shots  # a track: one person, in one shot
    present = {(clip.shot(i), p) for i, t in enumerate(clip.truth) for p, _ in t}
    assert set(ids) == present and all(len(v) == 1 for v in ids.values()), ids  # each person: one id
    for key, n in seen.items():  # ... while visible (most of the shot: a new shot may wait for a round)
        frames = sum(1 for i, t in enumerate(clip.truth) if clip.shot(i) == key[0] and any(p == key[1] for p, _ in t))
        assert n >= min_cover * frames, (key, n, frames)


@pytest.mark.parametrize("background", ["new-each-shot", "same"])
@pytest.mark.parametrize("scene_cuts", [True, False], ids=["cuts", "appearance-only"])
def test_no_track_crosses_a_cut_and_no_box_off_a_face_is_scored(mtcnn, cuts, same_place, scene_cuts, background):
    """Shots of three people cut at the same place in the frame, and a shot with nobody. A cut to a
    new background is seen as a cut; where only the person changes (or without the cut detector),
    appearance alone keeps the next person out of the last one's track."""
    clip = cuts if background == "new-each-shot" else same_place
    tracker = FaceTracker(mtcnn, detect_every=5, cuts=scene_cuts)
    followed = _follow(clip, tracker)
    _check_one_person_per_track(clip, followed)
    empty = [i for i, t in enumerate(clip.truth) if not t]
    assert empty and not any(followed[i] for i in empty)  # the shot with nobody: nothing scored
    assert tracker.scene_cuts == (len(clip.cuts) if scene_cuts and background != "same" else 0)


def test_two_people_side_by_side_keep_their_ids(mtcnn):
    from benchmarks.people import pair_clip

    clip = pair_clip(frames=40)
    tracker = FaceTracker(mtcnn, detect_every=5)
    followed = _follow(clip, tracker)
    _check_one_person_per_track(clip, followed, min_cover=0.9)
    assert tracker.still > 0 and tracker.refits > 0  # both kinds of confirmation were used, never off a face


def test_a_jump_is_not_motion():
    """A move of more than a quarter of the face a frame re-anchors the box without carrying it on."""

    class Moves:
        def __init__(self, xs):
            self.xs = list(xs)

        def detect(self, frame, sizes=None, coarse=False):
            return [(self.xs.pop(0), 40, 100, 100)] if self.xs else []

    frame = np.zeros((240, 480, 3), np.uint8)
    # detections two frames apart, the boxes overlapping (IoU ≥ 0.3) either way: 15 px a frame is
    # motion, 26 px a frame on a 100 px face is a jump
    for move, carried in ((30, True), (52, False)):
        tr = FaceTracker(Moves([10, 10 + move]), detect_every=2, cuts=False)
        xs = [tr.update(frame, n)[0][0].box[0] for n in (0, 1, 2, 3)]
        assert xs[:3] == [10, 10, 10 + move]  # frame 1: no velocity yet, lost (not scored); frame 2: detected
        assert xs[3] == (10 + move + move // 2 if carried else 10 + move), (move, xs)


def test_faces_not_confirmed_are_listed_unscored_and_never_counted(tmp_path, same_place):
    """runtime.detect on the cut clip with one background (the cut to nobody is not a cut of the
    layout): a box carried into the shot with nobody is listed with ``scored`` false and no
    probability; the verdicts rest on the scored faces only; no track is scored in two shots."""
    from runtime.detect import main

    cuts = same_place
    video = cuts.write(tmp_path / "cuts.mp4")
    model = make_onnx(tmp_path / "m.onnx")
    assert main(["--engine", str(model), "--source", str(video), "--quiet", "--detect-every", "5",
                 "--jsonl", str(tmp_path / "o.jsonl"), "--summary", str(tmp_path / "s.json")]) == 0
    recs = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    s = json.loads((tmp_path / "s.json").read_text())
    scored = [(r, f) for r in recs for f in r["faces"] if f["scored"]]
    lost = [(r, f) for r in recs for f in r["faces"] if not f["scored"]]
    assert lost and all(f["prob"] is None and f["logit"] is None and f["fake"] is False for _, f in lost)
    assert s["faces_unscored"] == len(lost) and s["faces"] == len(scored) + len(lost)
    assert all(f["prob"] is not None for _, f in scored)
    shots = {}
    for r, f in scored:
        shots.setdefault(f["track"], set()).add(cuts.shot(r["frame"]))
        real = [b for _, b in cuts.truth[r["frame"]]]
        assert real and max(iou(b, f["box"]) for b in real) >= 0.5  # on a face (the video is compressed)
    assert all(len(v) == 1 for v in shots.values()), shots
    frame_probs = [r["prob"] for r in recs if r["prob"] is not None]
    assert len(frame_probs) == s["frames_scored"] and math.isclose(s["prob"], np.mean(frame_probs), rel_tol=1e-5)
    for t in s["tracks"]:
        probs = [f["prob"] for r, f in scored if f["track"] == t["track"]]
        assert t["scored_frames"] == len(probs)
        assert (t["prob"] is None) if not probs else math.isclose(t["prob"], np.mean(probs), rel_tol=1e-5)
