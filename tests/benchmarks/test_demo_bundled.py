"""The bundled model on the demo clip. Its threshold is an operating point (at most 1 % of held-out
real faces called fake, chosen by calibration.threshold), so a weak demonstration model flags
neither segment there: what must hold is that the manipulated segment scores above the real one,
that each verdict is the one its score and the model's own threshold give, and that the demo says
how the threshold was chosen."""

from __future__ import annotations

import pytest

pytest.importorskip("skimage")
demo = pytest.importorskip("benchmarks.demo")


@pytest.mark.slow
@pytest.mark.skipif(not demo.BUNDLED.is_file(), reason="no bundled model (make bundled-model)")
def test_bundled_model_ranks_the_demo_segments_at_an_honest_threshold(tmp_path, capsys):
    from export.onnx_io import file_meta

    meta = file_meta(demo.BUNDLED)
    rule = meta.training["threshold_rule"]
    assert rule["target_fpr"] <= 0.01 and rule["achieved_fpr"] <= rule["target_fpr"] and rule["real_items"] >= 1000
    assert demo.main(["--out", str(tmp_path), "--threads", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("real ", "manipulated "))}
    real, fake = float(rows["real"][3]), float(rows["manipulated"][3])
    assert real < fake, rows
    for row, p in ((rows["real"], real), (rows["manipulated"], fake)):
        assert row[-1] == ("FAKE" if p >= meta.threshold else "real"), (row, meta.threshold)
    assert rows["real"][-1] == "real"  # no false alarm on the real segment
    gap = next(line for line in out.splitlines() if line.startswith("score gap (manipulated − real): "))
    assert abs(float(gap.split(": ")[1].split()[0]) - (fake - real)) <= 0.0011  # the means are printed rounded
    assert "chosen for a false-alarm rate of at most 0.01" in out
