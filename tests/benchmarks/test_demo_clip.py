"""The demo: a generated clip with a real and a manipulated segment, scored per segment."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage")
demo = pytest.importorskip("benchmarks.demo")

from runtime.errors import UserError  # noqa: E402
from runtime.preprocess import square_box  # noqa: E402
from tests.helpers.models import make_onnx  # noqa: E402


def test_manipulation_changes_only_the_face():
    head = demo._astronaut_head()
    fake = demo.manipulate(head, margin=0.15, size=96, seed=1)
    from runtime.faces import make_detector

    x0, y0, x1, y1 = square_box(make_detector().detect(head)[0], 0.15)  # the detector manipulate() uses
    diff = np.abs(fake.astype(int) - head.astype(int)).sum(axis=2)
    outside = diff.copy()
    outside[y0:y1, x0:x1] = 0
    assert outside.max() == 0  # untouched outside the face crop
    assert (diff[y0:y1, x0:x1] > 6).mean() > 0.15  # a visible part of the face was replaced


def test_demo_runs_and_prints_both_segments(tmp_path, capsys):
    model = make_onnx(tmp_path / "m.onnx")
    rc = demo.main(["--engine", str(model), "--frames", "6", "--size", "480x270", "--out", str(tmp_path / "out"),
                    "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("real ", "manipulated "))}
    assert set(rows) == {"real", "manipulated"}
    for row in rows.values():
        assert row[1] == "6" and row[2] == "6", row  # six frames, a face in each
        assert 0.0 <= float(row[3]) <= 1.0
    assert (tmp_path / "out" / "demo.mp4").is_file() and (tmp_path / "out" / "demo.jsonl").is_file()


def test_missing_bundled_model_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="demo model is missing"):
        demo.main(["--engine", str(tmp_path / "absent.onnx")])
