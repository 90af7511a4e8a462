"""The bundled CNN face detector (MTCNN) on real photos: boxes, confidence gating, landmarks,
tracking, and its refusals; Haar stays available as the fallback."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest

from runtime.detection import Detection
from runtime.errors import UserError
from runtime.faces import DEFAULT_DETECTOR, make_detector
from runtime.faces_cnn import BUNDLED, MtcnnFaceDetector, nms
from runtime.tracking import FaceTracker, iou
from tests.helpers.media import lines


def _photo(name: str) -> np.ndarray:
    from skimage import data

    img = np.asarray(getattr(data, name)())
    return cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


@pytest.fixture(scope="module")
def mtcnn():
    return make_detector("mtcnn")


def test_the_default_detector_is_the_bundled_cnn():
    assert DEFAULT_DETECTOR == "mtcnn"
    assert isinstance(make_detector(), MtcnnFaceDetector)


def test_bundled_files_match_their_recorded_hashes():
    for line in (BUNDLED / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((BUNDLED / name).read_bytes()).hexdigest() == digest, name
    assert (BUNDLED / "LICENSE-facenet-pytorch.md").is_file() and "MIT" in (BUNDLED / "README.md").read_text()


def test_one_box_on_the_astronauts_face_with_score_and_landmarks(mtcnn):
    frame = _photo("astronaut")
    boxes = mtcnn.detect(frame)
    assert len(boxes) == 1
    (b,) = boxes
    haar = make_detector("haar").detect(frame)[0]
    assert iou(b, haar) > 0.5  # the same face Haar finds
    assert b.score >= 0.9 and b.landmarks.shape == (5, 2)
    x, y, w, h = b
    lm = b.landmarks
    assert np.all((lm[:, 0] > x) & (lm[:, 0] < x + w) & (lm[:, 1] > y) & (lm[:, 1] < y + h))
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # left eye/mouth corner left of the right ones
    assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])  # eyes above nose above mouth


def test_a_face_haar_misses_is_found(mtcnn):
    frame = _photo("camera")  # the cameraman: a face turned a little, Haar finds nothing
    assert make_detector("haar").detect(frame) == []
    boxes = mtcnn.detect(frame)
    assert len(boxes) == 1 and boxes[0].score >= 0.9


@pytest.mark.parametrize("name", ["cell", "coffee", "chelsea", "rocket", "coins"])
def test_no_box_on_face_free_photos(mtcnn, name):
    assert mtcnn.detect(_photo(name)) == []


def test_haar_false_box_on_a_microscope_image_is_not_repeated(mtcnn):
    frame = cv2.resize(_photo("cell"), (1280, 1536))
    assert len(make_detector("haar").detect(frame)) >= 1  # Haar boxes a cell as a face
    assert mtcnn.detect(frame) == []


def test_the_face_threshold_gates_boxes():
    frame = _photo("astronaut")
    low = make_detector("mtcnn", face_threshold=0.0).detect(frame)
    assert all(b.score >= 0.0 for b in low) and len(low) >= 1
    for t in (0.5, 0.9, 0.999):
        assert all(b.score >= t for b in make_detector("mtcnn", face_threshold=t).detect(frame))
    with pytest.raises(UserError, match="face-threshold"):
        make_detector("mtcnn", face_threshold=1.5)


def test_detection_is_a_box_tuple_with_extras():
    d = Detection((1.4, 2.6, 10, 20), 0.95, np.zeros((5, 2), np.float32))
    x, y, w, h = d
    assert (x, y, w, h) == (1, 3, 10, 20) and d == (1, 3, 10, 20) and d.score == 0.95
    m = d.moved(100, 50, 2.0)
    assert tuple(m) == (102, 56, 20, 40) and np.allclose(m.landmarks, [[100, 50]] * 5)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    keep = nms(boxes, np.array([0.5, 0.9, 0.7]), 0.5)
    assert list(keep) == [1, 2]


def test_tracking_refits_a_moving_face_with_landmarks(mtcnn):
    frame = _photo("astronaut")
    face = mtcnn.detect(frame)[0]
    tr = FaceTracker(mtcnn, detect_every=1)
    tr.update(frame)
    tr._tracks[0].anchor += [0.1 * face[2], -0.1 * face[3], 0, 0]  # a prediction a little off
    faces, _ = tr.update(frame)
    assert len(faces) == 1 and faces[0].detected and iou(faces[0].box, face) > 0.7
    assert faces[0].score >= 0.9 and faces[0].landmarks.shape == (5, 2)
    # the window search with the whole cascade still works for the CNN (the tracker's fallback)
    from runtime.tracking import ROI_NEAR

    found = tr._search(frame, np.asarray(face[:4], float), *ROI_NEAR)
    assert len(found) == 1 and iou(found[0], face) > 0.7 and found[0].score >= 0.9


def test_refine_drops_a_box_with_no_face(mtcnn):
    frame = _photo("coffee")
    assert mtcnn.refine(frame, (100, 100, 120, 120)) == []


def test_face_model_folder_errors(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        make_detector("mtcnn", model=str(tmp_path / "nope"))
    with pytest.raises(UserError, match="missing"):
        make_detector("mtcnn", model=str(tmp_path))
    from tests.helpers.models import make_onnx

    for net in ("pnet", "rnet", "onet"):
        make_onnx(tmp_path / f"{net}.onnx")  # a classifier, not a face detector
    with pytest.raises(UserError, match="face-detector metadata"):
        make_detector("mtcnn", model=str(tmp_path))


def test_detect_jsonl_carries_face_score_and_landmarks_and_gates(tmp_path, tiny):
    from runtime.detect import main

    img = tmp_path / "astronaut.png"
    cv2.imwrite(str(img), _photo("astronaut"))
    out, summary = tmp_path / "o.jsonl", tmp_path / "s.json"
    assert main(["--engine", str(tiny["detect"]), "--source", str(img), "--quiet", "--jsonl", str(out),
                 "--summary", str(summary)]) == 0
    (rec,) = lines(out)
    (f,) = rec["faces"]
    assert f["face_score"] >= 0.9 and len(f["landmarks"]) == 5
    s = json.loads(summary.read_text())
    assert s["options"]["faces"] == "mtcnn" and s["face_detector"]["detector"] == "mtcnn"
    # a face threshold above any score: the face is never scored, the verdict is no_face
    assert main(["--engine", str(tiny["detect"]), "--source", str(img), "--quiet", "--jsonl", str(out),
                 "--summary", str(summary), "--face-threshold", "1.0"]) == 0
    assert lines(out)[0]["no_face"] and json.loads(summary.read_text())["verdict"] == "no_face"
    # Haar: boxes without a confidence
    assert main(["--engine", str(tiny["detect"]), "--source", str(img), "--quiet", "--jsonl", str(out),
                 "--faces", "haar"]) == 0
    (f,) = lines(out)[0]["faces"]
    assert f["face_score"] is None and "landmarks" not in f


def test_aligned_crop_puts_the_landmarks_on_the_template(mtcnn):
    from runtime.preprocess import ALIGN_TEMPLATE, align_face, face_crop

    frame = _photo("astronaut")
    (b,) = mtcnn.detect(frame)
    crop = align_face(frame, b.landmarks, 0.15, 112)
    assert crop.shape == (112, 112, 3)
    again = mtcnn.detect(cv2.resize(crop, (224, 224)))  # the aligned face is found again, landmarks in place
    assert len(again) == 1
    want = (ALIGN_TEMPLATE + 0.15) / 1.3 * 224
    assert np.abs(again[0].landmarks - want).max() < 224 * 0.06
    assert np.array_equal(face_crop(frame, b, None, 0.15, 64, "box"), face_crop(frame, b, b.landmarks, 0.15, 64))
    with pytest.raises(ValueError, match="aligned by landmarks"):
        face_crop(frame, b, None, 0.15, 64, "landmarks")


def test_a_model_trained_on_aligned_crops_gets_them_or_refuses(tmp_path, tiny):
    """Metadata face_align: landmarks → the runtime crops by landmarks; Haar (no landmarks) is refused."""
    import onnx

    from export.onnx_io import read_meta, set_meta
    from runtime.detect import main

    model = onnx.load(str(tiny["detect"]))
    set_meta(model, read_meta(model, "tiny").with_(face_align="landmarks"))
    aligned = tmp_path / "aligned.onnx"
    onnx.save(model, str(aligned))
    img = tmp_path / "astronaut.png"
    cv2.imwrite(str(img), _photo("astronaut"))
    out = tmp_path / "o.jsonl"
    assert main(["--engine", str(aligned), "--source", str(img), "--quiet", "--jsonl", str(out)]) == 0
    (f,) = lines(out)[0]["faces"]
    assert f["prob"] is not None and len(f["landmarks"]) == 5
    assert main(["--engine", str(aligned), "--source", str(img), "--quiet", "--faces", "haar"]) == 1


def test_a_photo_where_haar_adds_a_false_box_gets_one_box_on_the_face(tmp_path):
    """The astronaut above the microscope image (both real photos): Haar boxes the face and a cell,
    so the cell can decide the frame's score; the default detector gives one box, on the face,
    and the verdict is the face's own."""
    from benchmarks.faces import face_and_false_box
    from runtime.detect import main

    frame = face_and_false_box()
    haar = make_detector("haar").detect(frame)
    assert len(haar) == 2 and sum(b[1] > 640 for b in haar) == 1  # one of them on the cell image
    (b,) = make_detector().detect(frame)
    assert iou(b, haar[0] if haar[0][1] < 640 else haar[1]) > 0.5
    engine = BUNDLED.parent / "jrc_edge_detect.onnx"
    pair, alone = tmp_path / "pair.png", tmp_path / "alone.png"
    cv2.imwrite(str(pair), frame)
    cv2.imwrite(str(alone), frame[:640])
    faces = {}
    for name, path in (("pair", pair), ("alone", alone)):
        out = tmp_path / f"{name}.jsonl"
        assert main(["--engine", str(engine), "--source", str(path), "--quiet", "--jsonl", str(out)]) == 0
        (rec,) = lines(out)
        assert len(rec["faces"]) == 1 and rec["prob"] == rec["faces"][0]["prob"]  # the face decides
        faces[name] = rec["faces"][0]["box"]
    # the same face as in the photo alone (pyramid levels of another height resample it a little differently)
    assert iou(faces["pair"], faces["alone"]) > 0.85
