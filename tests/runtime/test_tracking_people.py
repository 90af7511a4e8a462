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


def _follow(clip, tracker, stride=1):
    """Per processed frame (every ``stride``-th, at its position in the clip, as ``--stride`` runs):
    its index and the faces the tracker confirmed, each with the real face it overlaps most."""
    out = []
    for i in range(0, len(clip.frames), stride):
        faces, _ = tracker.update(clip.frames[i], i)
        out.append((i, [(f, max(clip.truth[i], key=lambda t: iou(t[1], f.box), default=None))
                        for f in faces if f.detected]))
    return out


def _check_one_person_per_track(clip, followed, min_cover=0.6):
    shots, ids, seen = {}, {}, {}
    for i, faces in followed:
        for f, real in faces:
            assert real is not None and iou(real[1], f.box) >= 0.5, (i, f.box, real)  # never off a face
            shots.setdefault(f.track, set()).add((clip.shot(i), real[0]))
            ids.setdefault((clip.shot(i), real[0]), set()).add(f.track)
            seen[(clip.shot(i), real[0])] = seen.get((clip.shot(i), real[0]), 0) + 1
    assert all(len(s) == 1 for s in shots.values()), shots  # a track: one person, in one shot
    processed = [i for i, _ in followed]
    present = {(clip.shot(i), p) for i in processed for p, _ in clip.truth[i]}
    assert set(ids) == present and all(len(v) == 1 for v in ids.values()), ids  # each person: one id
    for key, n in seen.items():  # ... while visible (most of the shot: a new shot may wait for a round)
        frames = sum(1 for i in processed if clip.shot(i) == key[0] and any(p == key[1] for p, _ in clip.truth[i]))
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
    assert empty and not any(followed[i][1] for i in empty)  # the shot with nobody: nothing scored
    assert tracker.scene_cuts == (len(clip.cuts) if scene_cuts and background != "same" else 0)


def test_two_people_side_by_side_keep_their_ids(mtcnn):
    from benchmarks.people import pair_clip

    clip = pair_clip(frames=40)
    tracker = FaceTracker(mtcnn, detect_every=5)
    followed = _follow(clip, tracker)
    _check_one_person_per_track(clip, followed, min_cover=0.9)
    assert tracker.still > 0 and tracker.refits > 0  # both kinds of confirmation were used, never off a face


STRIDES = range(1, 13)


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory):
    """The demo clip (benchmarks.demo: the astronaut panning and zooming over a gradient, 100 frames,
    720p), as written to mp4 and read back."""
    from benchmarks.demo import make_clip
    from benchmarks.people import read_clip

    path = tmp_path_factory.mktemp("demo") / "clip.mp4"
    make_clip(path)
    return path, read_clip(path).frames


@pytest.mark.parametrize("kind", ["mtcnn", "haar"])
def test_a_moving_face_is_one_track_at_every_stride(demo_clip, kind):
    """Frames apart (``--stride``), the face moves further than the overlap rule allows and the
    layout changes more than a cut check one frame apart allows: it is still one face, in one track,
    confirmed on (almost: Haar's window misses a few frames) every processed frame, and no cut is seen."""
    from runtime.faces import make_detector

    det = make_detector(kind)
    frames = demo_clip[1]
    for stride in STRIDES:
        tracker = FaceTracker(det, detect_every=5)
        per_frame = [tracker.update(frames[i], i)[0] for i in range(0, len(frames), stride)]
        assert {f.track for faces in per_frame for f in faces} == {1}, (stride, per_frame)
        confirmed = sum(len(faces) == 1 and faces[0].detected for faces in per_frame)
        assert confirmed >= 0.95 * len(per_frame), (stride, confirmed, len(per_frame))
        assert tracker.scene_cuts == 0, stride


@pytest.mark.parametrize("face", [80, 140], ids=["apart", "close"])
def test_two_people_keep_their_ids_at_every_stride(mtcnn, face):
    """Two people drifting side by side (their centres 2-3 face sides apart, or 1.2-1.9 with larger
    faces, within the reach a long gap allows): at every stride each keeps one id, and no track ever
    holds the other."""
    from benchmarks.people import pair_clip

    clip = pair_clip(frames=60, face=face)
    for stride in STRIDES:
        _check_one_person_per_track(clip, _follow(clip, FaceTracker(mtcnn, detect_every=5), stride), min_cover=0.9)


@pytest.mark.parametrize("stride", [2, 5, 7, 12])
def test_cuts_end_tracks_at_a_stride(mtcnn, cuts, same_place, stride):
    """Frames apart, a cut to another person at the same place is still a cut (the next person does
    not continue the last one's face), and appearance keeps them apart where the layout hides it."""
    tracker = FaceTracker(mtcnn, detect_every=5)
    _check_one_person_per_track(cuts, _follow(cuts, tracker, stride))
    assert tracker.scene_cuts == len(cuts.cuts)
    _check_one_person_per_track(same_place, _follow(same_place, FaceTracker(mtcnn, detect_every=5), stride))


def test_detect_at_a_stride_reports_one_track_for_one_face(tmp_path, demo_clip):
    """``runtime.detect --stride 10`` on the demo clip: one track, every processed frame scored."""
    from runtime.detect import main

    model = make_onnx(tmp_path / "m.onnx")
    assert main(["--engine", str(model), "--source", str(demo_clip[0]), "--quiet", "--stride", "10",
                 "--summary", str(tmp_path / "s.json")]) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert [(t["frames"], t["scored_frames"]) for t in s["tracks"]] == [(10, 10)], s["tracks"]


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


@pytest.mark.parametrize("step", [3, 8, 12])
def test_a_live_source_that_drops_frames_keeps_one_track_and_its_detection_cadence(demo_clip, step):
    """A loaded live source hands the tracker every ``step``-th frame (the rest dropped): motion is
    measured in the source's frames (one track, as at a stride; measured in frames received, the face
    split into 6 tracks at step 8), and detection rounds never come more often than one per
    ``detect_every`` frames received or ``detect_every`` positions of the source, whichever is rarer
    per second of the source (a loaded box does not detect more than an unloaded one)."""
    from runtime.faces import make_detector

    frames = demo_clip[1]
    tracker = FaceTracker(make_detector("mtcnn"), detect_every=5)
    taken = list(range(0, len(frames), step))
    per_frame = [tracker.update(frames[i], i, cadence=k)[0] for k, i in enumerate(taken)]
    assert {f.track for faces in per_frame for f in faces} == {1}, step
    assert tracker.scene_cuts == 0
    assert tracker._rounds <= taken[-1] // 5 + 1, (tracker._rounds, taken[-1])  # at most the unloaded rate
    if step < 5:
        assert tracker._rounds <= len(taken) // 5 + 1  # and one in detect_every frames received
