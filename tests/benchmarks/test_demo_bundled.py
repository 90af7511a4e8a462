"""The bundled model on the demo clip: the real segment below its threshold, the manipulated one
above it (the threshold is the model's own, chosen on validation data in training)."""

from __future__ import annotations

import pytest

pytest.importorskip("skimage")
demo = pytest.importorskip("benchmarks.demo")


@pytest.mark.slow
@pytest.mark.skipif(not demo.BUNDLED.is_file(), reason="no bundled model (make bundled-model)")
def test_bundled_model_tells_the_demo_segments_apart(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--threads", "1", "--quiet"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith(("real ", "manipulated "))}
    assert rows["real"][-1] == "real" and rows["manipulated"][-1] == "FAKE", rows
    assert float(rows["real"][3]) < float(rows["manipulated"][3])
