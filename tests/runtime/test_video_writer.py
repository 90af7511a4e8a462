"""Videos browsers play (runtime.video_writer): --save .mp4 and event clips are H.264 through PyAV where
it is installed, else VP8 WebM (clips) or MPEG-4 part 2 with a note (--save .mp4); a clip is only
ever seen under its final name once whole."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import runtime.video_writer as vw
from runtime.event_media import EventMedia
from runtime.events import EventOptions, Events
from runtime.pipeline import Face, Result
from runtime.sinks import VideoSink
from runtime.sources import Frame


def frames(n: int, size=(161, 121)) -> list[np.ndarray]:
    w, h = size
    return [np.full((h, w, 3), 20 + 8 * i, np.uint8) for i in range(n)]


def read_back(path) -> tuple[list[np.ndarray], str]:
    cap = cv2.VideoCapture(str(path))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1").lower()
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out, fourcc


@pytest.fixture
def without_pyav(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    vw.pyav_h264.cache_clear()
    yield
    vw.pyav_h264.cache_clear()


def test_save_mp4_is_h264_through_pyav_every_frame_odd_sizes_padded(tmp_path, capsys):
    pytest.importorskip("av", reason="PyAV is not installed (the box extra)")
    assert vw.pyav_h264()
    sink = VideoSink(str(tmp_path / "o.mp4"), 25.0)
    for f in frames(12):
        sink.write(f)
    sink.close()
    got, fourcc = read_back(tmp_path / "o.mp4")
    assert fourcc in ("avc1", "h264") and sink.report()["codec"] == "h264" and sink.report()["plays_in_browsers"]
    assert len(got) == 12 and got[0].shape == (122, 162, 3)  # 161×121 padded by one black pixel a side
    # what OpenCV writes with mp4v comes back as far off (grey levels through limited-range YUV)
    assert [abs(float(g[:121, :161].mean()) - (20 + 8 * i)) < 5 for i, g in enumerate(got)] == [True] * 12
    assert float(got[0][121, :161].mean()) < 5 and capsys.readouterr().err == ""
    data = (tmp_path / "o.mp4").read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")  # the index first: a browser plays before it has it all


def test_without_pyav_save_mp4_is_mpeg4_with_a_note_and_webm_is_vp8(tmp_path, capsys, without_pyav):
    assert not vw.pyav_h264()
    sink = VideoSink(str(tmp_path / "o.mp4"), 25.0)
    for f in frames(5, (160, 120)):
        sink.write(f)
    sink.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert sink.codec in ("mp4v", "avc1") and len(read_back(tmp_path / "o.mp4")[0]) == 5
    if sink.codec == "mp4v":  # an OpenCV without H.264 (the pip wheel): said once, with what to install
        assert len(err) == 1 and "browsers do not play" in err[0] and "pip install av" in err[0]
    webm = VideoSink(str(tmp_path / "o.webm"), 25.0)
    for f in frames(5, (160, 120)):
        webm.write(f)
    webm.close()
    got, fourcc = read_back(tmp_path / "o.webm")
    assert webm.codec == "VP80" and fourcc == "vp80" and len(got) >= 4  # VP8 may hold back its last frame
    assert vw.pick_clip_codec(tmp_path) == ("VP80", ".webm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4", "o.webm"]  # the probes left nothing


def test_an_event_clip_appears_under_its_name_only_when_whole(tmp_path):
    opts = EventOptions(frames=2, update_s=3600, media=str(tmp_path), clip_s=0.2)
    ev = Events(opts, threshold=0.5, fps={"door": 25.0})
    expected = {"h264": ".mp4", "avc1": ".mp4", "VP80": ".webm", "mp4v": ".mp4"}[ev.media.codec]

    def add(i: int, prob: float | None) -> list[dict]:
        faces = [] if prob is None else [Face(track=1, box=(20, 20, 40, 40), detected=True, prob=prob)]
        img = np.full((120, 160, 3), 50 + i, np.uint8)
        return ev.add("door", Result(Frame(img, i, i / 25, "cam.mp4", 0), faces, [], camera="door"), [])

    msgs = []
    for i in range(12):
        msgs += add(i, 0.9)
    clip = tmp_path / "door" / f"{msgs[0]['event']['id']}{expected}"
    partial = clip.with_name(f"{clip.stem}.writing{expected}")
    deadline = time.monotonic() + 10
    while not partial.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert partial.exists() and not clip.exists()  # being written: not under its name yet
    msgs += ev.add("door", Result(Frame(np.zeros((120, 160, 3), np.uint8), 12, 0.48, "cam.mp4", 0), [], [],
                                  camera="door"), [{"track": 1}])
    for i in range(13, 30):
        add(i, None)
    ev.close()
    assert msgs[-1]["event"]["clip"] == str(clip) and clip.exists() and not partial.exists()
    assert len(read_back(clip)[0]) >= 15


def test_a_clip_that_cannot_be_written_is_given_up_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    import runtime.event_media as em

    class Broken:
        def isOpened(self):  # noqa: N802 - cv2.VideoWriter's name
            return True

        def write(self, img):
            raise OSError("disk full")

        def release(self):
            pass

    def broken_writer(path, *args):
        path.write_bytes(b"half a clip")
        return Broken()

    monkeypatch.setattr(em, "open_writer", broken_writer)
    media = EventMedia(str(tmp_path), clip_s=0.1, fps={"door": 25.0})
    ev = SimpleNamespace(id="door-1", camera="door", clip=None, end_reason="shutdown")
    r = Result(Frame(np.zeros((60, 80, 3), np.uint8), 0, 0.0, "cam.mp4", 0), [], [], camera="door")
    media.feed("door", r)
    media.start_clip(ev)
    for _ in range(3):
        media.feed("door", r)
    media.end_clip(ev)
    media.close()
    assert capsys.readouterr().err.count("disk full") == 1  # one warning, not one per frame
    assert list((tmp_path / "door").iterdir()) == []
