"""runtime.batcher: faces of several cameras in shared batches, fair between cameras, in each camera's order."""

from __future__ import annotations

import threading
import time

import numpy as np

from runtime.batcher import Batcher, CameraEnded
from runtime.pipeline import Face, Result
from runtime.sources import Frame


class Backend:
    """Logit = the input's first value; records every batch's size."""

    def __init__(self, max_batch: int = 4) -> None:
        self.max_batch = max_batch
        self.sizes: list[int] = []

    def infer(self, x: np.ndarray, reconstruct: bool = False) -> dict[str, np.ndarray]:
        self.sizes.append(len(x))
        return {"logit": x[:, :1, 0, 0].astype(np.float32)}


def result(camera_value: float, index: int, faces: int = 1) -> Result:
    fs = [Face(track=1, box=(0, 0, 4, 4), detected=True) for _ in range(faces)]
    x = np.full((faces, 3, 2, 2), camera_value + index / 1000, np.float32) if faces else None
    return Result(Frame(None, index, index / 25, "src", 0), fs, [], x)


def drain(b: Batcher) -> list:
    out = []
    while True:
        item = b.out.get(timeout=10)
        if item is None:
            return out
        out.append(item)


def test_faces_of_two_cameras_share_batches_and_keep_each_cameras_order():
    backend = Backend(max_batch=4)
    b = Batcher(backend)
    a_lane, b_lane = b.lane("a", 16), b.lane("b", 16)
    for i in range(6):
        a_lane.put(result(1.0, i))
        b_lane.put(result(2.0, i))
    a_lane.close()
    b_lane.close()
    b.start()
    out = drain(b)
    b.stop()
    results = [r for r in out if isinstance(r, Result)]
    assert [r.frame.index for r in results if r.camera == "a"] == list(range(6))
    assert [r.frame.index for r in results if r.camera == "b"] == list(range(6))
    assert all(abs(f.logit - (1.0 if r.camera == "a" else 2.0) - r.frame.index / 1000) < 1e-5
               for r in results for f in r.faces)  # each face got its own score back
    assert backend.sizes == [4, 4, 4] and b.mean_batch == 4.0  # mixed batches, never above the max
    ends = [i for i, r in enumerate(out) if isinstance(r, CameraEnded)]
    assert {out[i].camera for i in ends} == {"a", "b"}
    for i in ends:  # a camera's end comes after its last result
        cam = out[i].camera
        assert all(not (isinstance(r, Result) and r.camera == cam) for r in out[i + 1:])


def test_a_busy_camera_does_not_starve_a_quiet_one():
    backend = Backend(max_batch=2)
    b = Batcher(backend)
    busy, quiet = b.lane("busy", 64), b.lane("quiet", 64)
    for i in range(40):
        busy.put(result(1.0, i))
    quiet.put(result(2.0, 0))
    quiet.put(result(2.0, 1))
    busy.close()
    quiet.close()
    b.start()
    out = [r for r in drain(b) if isinstance(r, Result)]
    b.stop()
    where = [i for i, r in enumerate(out) if r.camera == "quiet"]
    assert where[-1] < 6  # both quiet frames within the first three batches, not after the busy 40


def test_frames_without_faces_pass_without_inference_and_in_order():
    backend = Backend()
    b = Batcher(backend)
    lane = b.lane("a", 16)
    for i in range(5):
        lane.put(result(1.0, i, faces=i % 2))
    lane.close()
    b.start()
    out = [r for r in drain(b) if isinstance(r, Result)]
    b.stop()
    assert [r.frame.index for r in out] == list(range(5)) and sum(backend.sizes) == 2


def test_waits_for_other_cameras_to_fill_a_batch_but_not_longer_than_needed():
    backend = Backend(max_batch=8)
    b = Batcher(backend, wait_s=2.0)
    a_lane, b_lane = b.lane("a", 4), b.lane("b", 4)
    b.start()
    a_lane.put(result(1.0, 0))
    t0 = time.perf_counter()
    threading.Timer(0.1, lambda: b_lane.put(result(2.0, 0))).start()
    first = b.out.get(timeout=10)
    second = b.out.get(timeout=10)
    waited = time.perf_counter() - t0
    a_lane.close()
    b_lane.close()
    drain(b)
    b.stop()
    assert {first.camera, second.camera} == {"a", "b"} and backend.sizes[0] == 2  # one batch for both
    assert waited < 1.5  # every running camera had given a frame: no need to wait the full 2 s


def test_without_a_wait_a_batch_takes_what_is_ready():
    backend = Backend(max_batch=8)
    b = Batcher(backend, wait_s=0.0)
    a_lane, b_lane = b.lane("a", 4), b.lane("b", 4)
    b.start()
    a_lane.put(result(1.0, 0))
    assert b.out.get(timeout=10).camera == "a"
    b_lane.put(result(2.0, 0))
    assert b.out.get(timeout=10).camera == "b"
    a_lane.close()
    b_lane.close()
    drain(b)
    b.stop()
    assert backend.sizes == [1, 1]


def test_an_inference_error_ends_the_stage_and_is_kept():
    class Broken(Backend):
        def infer(self, x, reconstruct=False):
            raise RuntimeError("device lost")

    b = Batcher(Broken())
    lane = b.lane("a", 4)
    lane.put(result(1.0, 0))
    b.start()
    assert drain(b) == [] and isinstance(b.error, RuntimeError)
    b.stop()
