"""`--faces none`: a face crop reaches the model exactly as training's dataset feeds it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from benchmarks.fixtures import make_tiny_artifacts
from runtime.detect import main
from runtime.meta import ONNX_KEY, Meta
from runtime.preprocess import to_input
from tests.helpers.media import head


def test_crop_input_matches_training_preprocessing(tmp_path: Path) -> None:
    model = make_tiny_artifacts(tmp_path / "m")["detect"]
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = Meta.from_json(sess.get_modelmeta().custom_metadata_map[ONNX_KEY])
    crop = head(100)  # not the model's input size: both sides resize it the same way
    cv2.imwrite(str(tmp_path / "face.png"), crop)
    assert main(["--engine", str(model), "--source", str(tmp_path / "face.png"), "--faces", "none", "--quiet",
                 "--threads", "1", "--jsonl", str(tmp_path / "o.jsonl")]) == 0
    got = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[0])["faces"][0]["logit"]
    # what training.data gives the network for the same crop file: to_input of the decoded image
    want = sess.run(["logit"], {"input": to_input(cv2.imread(str(tmp_path / "face.png")), meta)})[0][0, 0]
    assert abs(got - float(want)) < 1e-4
    # and a margin added around the crop (the detected-face path) would change what the model sees
    padded = cv2.copyMakeBorder(crop, 15, 15, 15, 15, cv2.BORDER_REPLICATE)
    other = sess.run(["logit"], {"input": to_input(padded, meta)})[0][0, 0]
    assert not np.isclose(other, want, atol=1e-4)


def test_to_input_is_the_documented_normalisation_in_nchw() -> None:
    """(pixel / 255 - mean) / std per channel, RGB order when the metadata says so, NCHW; the same
    values when written into a caller's buffer."""
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    for color in ("RGB", "BGR"):
        meta = Meta(input_size=16, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), color=color)
        px = crops[..., ::-1] if color == "RGB" else crops
        want = ((px / 255.0 - np.array(meta.mean)) / np.array(meta.std)).transpose(0, 3, 1, 2)
        got = to_input(crops, meta)
        assert got.dtype == np.float32 and got.shape == (3, 3, 16, 16) and got.flags.c_contiguous
        assert np.abs(got - want).max() < 1e-5
        buf = np.full((5, 3, 16, 16), np.nan, np.float32)
        view = to_input(crops[:2], meta, out=buf)
        assert np.array_equal(view, got[:2]) and np.shares_memory(view, buf) and np.isnan(buf[2:]).all()
