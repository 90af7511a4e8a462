"""training.evaluate says "note: replacing OUT/metrics.json" only once the checkpoint and every dataset
opened: with an earlier evaluation in OUT and a bad input, stderr is the run's one error line (the note
with good inputs: test_evaluate.test_threshold_override_and_one_class_data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import has_module, run_in_process

pytestmark = pytest.mark.skipif(not has_module("torch"), reason="needs torch")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers.models import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "e.pt", "edge")


@pytest.mark.parametrize("case", ["garbage-ckpt", "missing-data", "missing-second-data"])
def test_a_bad_input_is_the_only_line_with_an_earlier_evaluation(case: str, ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "D"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("garbage\n")
    argv, error = {
        "garbage-ckpt": (["--ckpt", garbage, "--data", "synthetic:64"], "not a PyTorch checkpoint"),
        "missing-data": (["--ckpt", ckpt, "--data", "/nonexistent"], "/nonexistent: not found"),
        # the second dataset is opened before the first is scored, not minutes later
        "missing-second-data": (["--ckpt", ckpt, "--data", "synthetic:4", "/nonexistent"], "/nonexistent: not found"),
    }[case]
    r = run_in_process("training.evaluate", *map(str, argv), "--out", str(out), "--workers", "0")
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith("training.evaluate: error:") and error in lines[0], r.stderr
    assert (out / "metrics.json").read_text() == "{}"
