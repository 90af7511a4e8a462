"""runtime.loop.FrameLoop: the one set-up of source → faces → pipeline → aggregator → outputs."""

from __future__ import annotations

import threading
import time
from typing import Iterator

import cv2
import numpy as np
import pytest

from runtime.backends import open_backend
from runtime.loop import Camera, Faces, FrameLoop, Outputs
from runtime.pipeline import STAGES
from runtime.sources import Frame, LiveSource, Source
from tests.helpers.media import lines
from tests.helpers.models import expected_prob, make_onnx

BOX = (20, 10, 40, 40)


class Grey(Source):
    """``n`` uniform frames of one grey level."""

    def __init__(self, n: int, level: int = 255) -> None:
        super().__init__("grey")
        self.n, self.level = n, level

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.n):
            if self._stop.is_set():
                return
            yield Frame(np.full((120, 160, 3), self.level, np.uint8), i, i / 25, self.spec, 0)


class CountingGuard:
    def __init__(self) -> None:
        self.begun = self.ended = 0

    def begin_frame(self) -> None:
        self.begun += 1

    def end_frame(self) -> None:
        self.ended += 1


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    b = open_backend(str(make_onnx(tmp_path_factory.mktemp("m") / "m.onnx")), threads=1)
    yield b
    b.close()


def test_given_faces_flow_to_the_jsonl_and_the_aggregate(backend, tmp_path):
    guard = CountingGuard()
    loop = FrameLoop(backend, Faces(given=[[BOX]] * 6), Outputs(jsonl=str(tmp_path / "o.jsonl")), max_frames=4,
                     guard=guard)
    try:
        loop.run(Grey(6))
    finally:
        tail = loop.close()
    recs = lines(tmp_path / "o.jsonl")
    assert [r["frame"] for r in recs] == [0, 1, 2, 3]
    assert all(r["faces"][0]["box"] == list(BOX) for r in recs)
    assert recs[0]["faces"][0]["prob"] == pytest.approx(expected_prob(255), abs=1e-4)
    assert loop.agg.frames == 4 and loop.agg.faces == 4 and [t["track"] for t in tail] == [1]
    assert loop.started <= loop.first_result and loop.faces_first == 1
    assert set(loop.pipeline.times.seconds) == set(STAGES) and loop.pipeline.times.seconds["output"] > 0
    assert guard.begun == 4 and guard.ended == 5  # once more after the loop: a late signal still counts


def test_faces_options_choose_the_detector_and_tracking():
    given = Faces(detect_every=5, given=[[BOX]]).tracker()
    assert given.detect_every == 1 and type(given.detector).__name__ == "GivenFaces"
    default = Faces(detect_every=5).tracker()
    assert default.detect_every == 5 and type(default.detector).__name__ == "MtcnnFaceDetector"
    assert type(Faces(kind="haar").tracker().detector).__name__ == "HaarFaceDetector"
    assert type(Faces(kind="none").tracker().detector).__name__ == "WholeFrameDetector"


def test_frames_past_the_given_boxes_have_no_face(backend):
    loop = FrameLoop(backend, Faces(given=[[BOX]]))
    try:
        loop.run(Grey(3))
    finally:
        loop.close()
    assert loop.agg.frames == 3 and loop.agg.frames_without_face == 2


def test_several_cameras_run_in_one_loop_and_a_view_reads_their_state(backend, tmp_path):
    loop = FrameLoop(backend, Faces(given=[[BOX]] * 8), Outputs(jsonl=str(tmp_path / "o.jsonl"), view=True))
    try:
        loop.run_cameras([Camera("a", Grey(8)), Camera("b", Grey(5, level=0), Faces(given=[[BOX]] * 5))])
    finally:
        loop.close()
    recs = lines(tmp_path / "o.jsonl")
    assert [r["frame"] for r in recs if r["camera"] == "a"] == list(range(8))
    assert [r["frame"] for r in recs if r["camera"] == "b"] == list(range(5))
    a, b = (loop.state.camera(n).snapshot() for n in ("a", "b"))
    assert loop.state.names() == ["a", "b"] and a["frames"] == 8 and b["faces"] == 5 and not a["up"]
    assert a["tracks"][0]["points"][-1][1] == pytest.approx(expected_prob(255), abs=1e-4)
    jpeg = loop.state.camera("a").frame_jpeg()
    assert jpeg[:2] == b"\xff\xd8" and cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (120, 160, 3)
    assert [c.status for c in loop.cameras] == ["ok", "ok"] and loop.pipeline is None and loop.agg is None


class FastCamera:
    """A capture (``cv2.VideoCapture``'s read/isOpened/get/release) that delivers ``n`` frames, one
    every ``interval`` seconds, then ends; ``done`` is set once the last one is read."""

    def __init__(self, n: int, interval: float) -> None:
        self.n, self.interval, self.sent = n, interval, 0
        self.done = threading.Event()

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def get(self, prop: int) -> float:
        return 0.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.sent == self.n:
            self.done.set()
            return False, None
        time.sleep(self.interval)
        self.sent += 1
        return True, np.full((120, 160, 3), 200, np.uint8)

    def release(self) -> None:
        pass


class HeldBackend:
    """The backend, held at its first call until ``go`` is set."""

    def __init__(self, inner) -> None:
        self.inner, self.go = inner, threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def infer(self, x, reconstruct=False):
        self.go.wait(30)
        return self.inner.infer(x, reconstruct)


def test_a_live_camera_behind_a_busy_classifier_drops_at_its_source_instead_of_queueing(backend, tmp_path):
    """A live camera's frames do not pile up in the loop's queues while inference is busy: the
    source keeps the newest and drops the rest, so what is scored is recent (a 24-frame lane held
    1.3 s of 20 cameras' frames on a loaded box)."""

    camera = FastCamera(80, 0.003)
    source = LiveSource("cam", "file", 0, opener=lambda: camera)
    held = HeldBackend(backend)
    loop = FrameLoop(held, Faces(kind="none"), Outputs(jsonl=str(tmp_path / "o.jsonl")))
    runner = threading.Thread(target=lambda: loop.run(source), daemon=True)
    runner.start()
    try:
        assert camera.done.wait(30)  # every frame delivered while the classifier was held
        taken = loop.pipeline.decoded
        held.go.set()
        runner.join(30)
    finally:
        held.go.set()
        loop.close()
    # in flight at most: a batch in inference, the lane's two, one waiting to enter it (files keep
    # a decode thread's frame and 4 + 24 queued, for throughput: 31 here)
    assert taken <= 1 + 2 + 1
    final = loop.pipeline.decoded  # and the newest frame, left at the source when it ended
    assert final - taken <= 1 and loop.agg.frames == final and source.stats.dropped == 80 - final
    assert len(lines(tmp_path / "o.jsonl")) == final  # what was taken was scored and written
