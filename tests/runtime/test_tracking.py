"""Face tracking between detections (scripted detectors, and Haar on a real face) and the verdict aggregation."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from runtime.aggregate import Aggregator, verdict
from runtime.pipeline import Face, Result, sigmoid
from runtime.sources import Frame
from runtime.tracking import FaceTracker, iou

FRAME = np.zeros((240, 320, 3), np.uint8)


class Scripted:
    """A detector that returns the boxes scripted for each call, and counts the calls."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0

    def detect(self, frame, sizes=None):
        boxes = self.script[self.calls] if self.calls < len(self.script) else []
        self.calls += 1
        return list(boxes)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert math.isclose(iou((0, 0, 10, 10), (5, 0, 10, 10)), 50 / 150)


def test_detector_runs_every_n_frames_and_motion_is_predicted():
    # a face moving 4 px per frame to the right; detections on frames 0, 3, 6
    det = Scripted([[(10, 50, 40, 40)], [(22, 50, 40, 40)], [(34, 50, 40, 40)]])
    tr = FaceTracker(det, detect_every=3)
    out = [tr.update(FRAME) for _ in range(8)]
    assert det.calls == 3
    ids = {f.track for faces, _ in out for f in faces}
    assert ids == {1}
    xs = [faces[0].box[0] for faces, _ in out]
    # frames 1-2: no velocity yet; frame 3 detected at 22; frames 4-5 predicted 26, 30; 6 detected; 7 predicted
    assert xs[:4] == [10, 10, 10, 22]
    assert xs[4:6] == [26, 30]
    assert xs[6] == 34 and xs[7] == 38
    assert [faces[0].detected for faces, _ in out] == [True, False, False, True, False, False, True, False]


def test_tracks_end_after_missed_detections_and_are_freed():
    det = Scripted([[(10, 10, 50, 50)], [], [], []])
    tr = FaceTracker(det, detect_every=1, max_missed=2)
    faces, ended = tr.update(FRAME)
    assert [f.track for f in faces] == [1] and ended == []
    for _ in range(2):  # coasting: not reported, not ended yet
        faces, ended = tr.update(FRAME)
        assert faces == [] and ended == []
    faces, ended = tr.update(FRAME)
    assert ended == [1] and tr.live_tracks == 0


def test_brief_dropout_keeps_the_id():
    box = (100, 60, 60, 60)
    det = Scripted([[box], [], [box]])
    tr = FaceTracker(det, detect_every=1, max_missed=2)
    ids = [[f.track for f in tr.update(FRAME)[0]] for _ in range(3)]
    assert ids == [[1], [], [1]]


def test_two_faces_keep_distinct_ids_and_new_faces_get_new_ones():
    a, b, c = (10, 10, 50, 50), (200, 100, 60, 60), (120, 150, 40, 40)
    det = Scripted([[a, b], [b, a], [b, a, c]])
    tr = FaceTracker(det, detect_every=1)
    first = {f.box: f.track for f in tr.update(FRAME)[0]}
    second = {f.box: f.track for f in tr.update(FRAME)[0]}
    third = {f.box: f.track for f in tr.update(FRAME)[0]}
    assert first == second
    assert third[a] == first[a] and third[b] == first[b] and third[c] not in first.values()


def test_track_leaving_the_frame_ends():
    det = Scripted([[(250, 50, 60, 60)], [(280, 50, 60, 60)]])  # 30 px per detection → 10 px per frame
    tr = FaceTracker(det, detect_every=3)
    ended_at = None
    for i in range(12):
        _, ended = tr.update(FRAME)
        if ended:
            ended_at = i
            break
    assert ended_at is not None and tr.live_tracks == 0


class Windowed:
    """A window-capable detector: a full-frame call returns ``scene``, a coarse scan
    ``coarse_scene`` (default: the same); window calls are replaced by the tests."""

    supports_roi = True

    def __init__(self, scene, coarse_scene=None):
        self.scene, self.coarse_scene = list(scene), coarse_scene
        self.calls = []  # "full" | "coarse"

    def detect(self, frame, sizes=None, coarse=False):
        assert sizes is None, "window searches are stubbed in these tests"
        self.calls.append("coarse" if coarse else "full")
        return list(self.coarse_scene if coarse and self.coarse_scene is not None else self.scene)


def test_window_search_falls_back_to_a_wider_window(monkeypatch):
    import runtime.tracking as T

    box = (100, 60, 40, 40)
    looked = []

    def search(self, frame, b, sides, face_px, sizes):  # what each window round asks for
        looked.append(sides)
        return [box] if sides >= T.ROI_WIDE[0] else []  # the near window misses, the wide one finds

    monkeypatch.setattr(T.FaceTracker, "_search", search)
    tr = FaceTracker(Windowed([box]), detect_every=1, full_every=100)
    ids = [[f.track for f in tr.update(FRAME)[0]] for _ in range(3)]
    assert ids == [[1], [1], [1]]
    assert looked == [T.ROI_NEAR[0], T.ROI_WIDE[0]] * 2 and T.ROI_WIDE[0] > T.ROI_NEAR[0]


def test_window_search_finds_a_real_face_in_frame_coordinates():
    """The near window around a tracked face, shrunk and searched by the Haar detector, gives
    back the face's box in frame pixels (the tracker's coordinate bookkeeping)."""
    from runtime.faces import HaarFaceDetector
    from runtime.tracking import ROI_NEAR, ROI_WIDE
    from training.sample_faces import astronaut_bgr

    frame = astronaut_bgr()
    det = HaarFaceDetector()
    face = det.detect(frame)[0]
    tr = FaceTracker(det, detect_every=1)
    for dx, dy, roi in ((0.1, 0.1, ROI_NEAR), (-0.1, 0.0, ROI_NEAR), (0.15, -0.1, ROI_WIDE)):
        off = np.asarray(face, float) + [dx * face[2], dy * face[3], 0, 0]  # a prediction a little off
        found = tr._search(frame, off, *roi)
        assert len(found) == 1 and iou(found[0], face) > 0.7, (dx, dy, found)
    # a face at the edge of the near window (missed there) is still found by the round, through the wide one
    tr.update(frame)
    tr._tracks[0].anchor += [0.15 * face[2], -0.1 * face[3], 0, 0]
    faces, _ = tr.update(frame)
    assert len(faces) == 1 and faces[0].track == 1 and faces[0].detected and iou(faces[0].box, face) > 0.7


def test_coarse_scans_for_new_faces_do_not_count_as_misses():
    """Beside a live track, every ``full_every``-th round is a coarse full-frame scan for new faces:
    a tracked face it misses is still confirmed by its own window; a face it finds that no track
    covers starts a track."""
    a, b = (40, 40, 50, 50), (200, 120, 50, 50)
    det = Windowed([a], coarse_scene=[b])  # the coarse scan misses a, finds the newcomer b
    tr = FaceTracker(det, detect_every=1, full_every=2, max_missed=0)
    tr._search = lambda frame, box, *args: [tuple(int(v) for v in box)]  # windows re-find every track
    first = tr.update(FRAME)[0]
    second = tr.update(FRAME)[0]  # a window round
    third = tr.update(FRAME)[0]  # a coarse scan: misses a (its window confirms it), finds b
    assert det.calls == ["full", "coarse"]
    assert [f.track for f in first] == [f.track for f in second] == [1]
    assert sorted(f.track for f in third) == [1, 2]
    assert {f.track: f.detected for f in third} == {1: True, 2: True}


def test_reset_ends_everything():
    tr = FaceTracker(Scripted([[(10, 10, 50, 50), (100, 100, 50, 50)]]), detect_every=1)
    tr.update(FRAME)
    assert sorted(tr.reset()) == [1, 2] and tr.live_tracks == 0


def test_sigmoid_is_stable():
    np.testing.assert_allclose(sigmoid(np.array([0.0, 2.0, -800.0, 800.0])),
                               [0.5, 1 / (1 + math.exp(-2)), 0.0, 1.0], atol=1e-12)


def _result(item, index, faces, ended=(), source="s"):
    return Result(Frame(None, index, index / 25, source, item),
                  [Face(t, (0, 0, 10, 10), True, prob=p) for t, p in faces], list(ended))


def test_aggregation_means_per_track_and_source():
    agg = Aggregator(threshold=0.5)
    agg.add(_result(0, 0, [(1, 0.9), (2, 0.1)]))
    agg.add(_result(0, 1, [(1, 0.7), (2, 0.3)]))
    agg.add(_result(0, 2, []))
    done = agg.add(_result(0, 3, [(1, 0.8)], ended=[2]))
    assert done == [{"track": 2, "source": "s", "first_frame": 0, "last_frame": 1, "frames": 2, "scored_frames": 2, "prob": 0.2,
                     "max_prob": 0.3, "verdict": "real"}]
    agg.add(_result(1, 0, [], source="t"))  # a new item: track 1 and source "s" end
    tail = agg.finish()
    assert tail == []
    s = agg.summary()
    assert s["frames"] == 5 and s["frames_without_face"] == 2 and s["faces"] == 5
    t1 = next(t for t in s["tracks"] if t["track"] == 1)
    assert t1["frames"] == 3 and math.isclose(t1["prob"], 0.8) and t1["verdict"] == "fake"
    src_s, src_t = s["sources"]
    # frame probability = most suspicious face: 0.9, 0.7, 0.8
    assert math.isclose(src_s["prob"], 0.8) and src_s["verdict"] == "fake" and src_s["tracks"] == 2
    assert src_t["verdict"] == "no_face" and src_t["prob"] is None and src_t["frames_without_face"] == 1
    assert s["verdict"] == "fake" and math.isclose(s["prob"], 0.8)


def test_aggregation_lists_are_capped_but_totals_exact():
    agg = Aggregator(threshold=0.5, max_listed=3)
    for i in range(10):
        agg.add(_result(i, 0, [(i + 1, 0.2)], source=f"img{i}"))
    agg.finish()
    s = agg.summary()
    assert len(s["tracks"]) == 3 and s["tracks_total"] == 10
    assert len(s["sources"]) == 3 and s["sources_total"] == 10
    assert s["verdict"] == "real"


@pytest.mark.parametrize("p, want", [(0.5, "fake"), (0.4999, "real"), (None, "no_face"), (float("nan"), "no_face")])
def test_verdict_threshold(p, want):
    assert verdict(p, 0.5) == want


def test_shrink_matches_area_resampling_closely():
    from runtime.tracking import shrink
    from training.sample_faces import astronaut_bgr

    img = astronaut_bgr()[40:400, 100:460]  # 360×360
    for w, h in ((96, 96), (50, 70), (360, 360), (200, 180)):
        got = shrink(img, w, h)
        want = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        assert got.shape == want.shape
        assert np.abs(got.astype(float) - want).mean() < 6.0


def test_a_coarse_scan_never_lifts_the_number_of_faces_above_max_faces():
    tracked, new = [(10, 10, 40, 40), (100, 10, 40, 40)], [(10, 150, 60, 60), (100, 150, 50, 50)]
    det = Windowed(tracked, coarse_scene=new)  # the coarse scan misses both tracked faces, finds two new
    tr = FaceTracker(det, detect_every=1, full_every=2, max_faces=3)
    tr._search = lambda frame, box, *args: [tuple(int(v) for v in box)]
    tr.update(FRAME)
    tr.update(FRAME)
    faces, _ = tr.update(FRAME)  # the coarse round
    assert det.calls == ["full", "coarse"] and len(faces) == 3
    assert {f.box for f in faces} == {*tracked, new[0]}  # the larger newcomer takes the free place


def test_recent_verdicts_cover_the_last_window_seconds_per_track_and_source():
    """A camera running for months reports what it sees now: with a 1.25 s window, the recent verdict
    is the mean of the last 1.25 s of frame time, while the verdict since the start keeps everything."""
    agg = Aggregator(threshold=0.5, window=1.25)
    probs = [0.9] * 10 + [0.1] * 10  # fake for 2.5 s, then real for 2.5 s (8 frames a second)
    last = None
    for i, p in enumerate(probs):
        r = Result(Frame(None, i, i / 8, "cam", 0), [Face(1, (0, 0, 10, 10), True, prob=p)], [])
        agg.add(r)
        last = r
    face = last.faces[0]
    assert face.recent == {"seconds": 1.25, "frames": 10, "prob": 0.1, "verdict": "real"}  # t in (1.125, 2.375]
    assert last.recent["verdict"] == "real" and last.recent["frames"] == 10
    early = Result(Frame(None, 0, 0.0, "cam", 1), [Face(2, (0, 0, 10, 10), True, prob=0.9)], [])
    agg.add(early)  # a new item: its own windows
    assert early.recent == {"seconds": 1.25, "frames": 1, "prob": 0.9, "verdict": "fake"}
    agg.finish()
    s = agg.summary()
    t1 = s["tracks"][0]
    assert math.isclose(t1["prob"], 0.5) and t1["recent"]["verdict"] == "real" and s["window_s"] == 1.25
    assert s["sources"][0]["recent"]["prob"] == 0.1
    lost = Result(Frame(None, 1, 0.1, "cam", 1), [Face(2, (0, 0, 10, 10), False, scored=False)], [])
    agg2 = Aggregator(threshold=0.5)
    agg2.add(lost)
    assert lost.recent is None and lost.faces[0].recent is None  # no window: nothing added
    assert agg2.faces_unscored == 1 and agg2.nonfinite_logits == 0 and agg2.summary()["prob"] is None
