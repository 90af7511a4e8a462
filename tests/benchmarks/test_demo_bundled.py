"""The bundled model on the demo clip. Its threshold is an operating point (at most 1 % of the
validation people's real faces called fake, chosen by calibration.threshold on the real-face pool),
so what must hold on the clip is: no false alarm on the real segment, the manipulated segment scored
above it, each verdict the one its score and the model's own threshold give, and the demo saying how
the threshold was chosen. Whether the manipulated segment reaches the threshold is not asserted: the
clip is one forgery of one face (of 20 such forgeries, 16 score above the real face and 7 reach the
threshold; runtime/assets/README.md)."""

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
    assert rule["chosen_on"].startswith("pool") and rule["split"] == "val"  # real people training never saw
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
