"""A checkpoint carrying pickled objects is refused by weights-only loading, and its payload never
runs: the payload here would create a file when unpickled (proved by a positive control that
loads it the unsafe way), and every entry point that reads checkpoints must leave no such file."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, has_module, run_module

pytestmark = pytest.mark.skipif(not has_module("torch"), reason="needs torch (training side)")


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appearing proves code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil(folder: Path, kind: str) -> tuple[Path, Path]:
    import torch

    from tests.helpers.models import tiny_meta

    marker = folder / f"pwned-{kind}"
    path = folder / f"evil-{kind}.pt"
    if kind == "zip":  # what torch.save writes: a realistic checkpoint with one poisoned entry
        torch.save({"model": {"w": torch.zeros(2)}, "meta": tiny_meta().to_dict(), "extra": _Payload(marker)}, path)
    else:  # a bare pickle stream (the legacy format)
        path.write_bytes(pickle.dumps({"model": _Payload(marker), "meta": {}}))
    return path, marker


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    """{kind: (checkpoint, marker)}, each payload shown to work when loaded the unsafe way."""
    folder = tmp_path_factory.mktemp("evil")
    made = {kind: _evil(folder, kind) for kind in ("zip", "legacy")}
    code = "import sys, torch\nfor p in sys.argv[1:]:\n    torch.load(p, weights_only=False)\n"
    subprocess.run([sys.executable, "-c", code, *(str(p) for p, _ in made.values())], cwd=ROOT,
                   capture_output=True, timeout=120)
    for path, marker in made.values():  # positive control: otherwise the tests below prove nothing
        assert marker.exists(), f"{path.name}: the payload should run when loaded unsafely"
        marker.unlink()
    return made


def _one_line(stderr: str, prog: str, *needles: str) -> str:
    assert "Traceback" not in stderr
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.mark.parametrize("kind", ["zip", "legacy"])
def test_read_checkpoint_refuses_without_running_the_payload(evil, kind):
    import warnings

    from runtime.errors import UserError
    from training.checkpoint import read_checkpoint

    path, marker = evil[kind]
    with warnings.catch_warnings(record=True) as caught, pytest.raises(UserError) as e:
        warnings.simplefilter("always")
        read_checkpoint(path)
    msg = str(e.value)
    assert str(path) in msg and "refused" in msg and "\n" not in msg and "\x1b" not in msg
    assert ("GLOBAL io.open" in msg) if kind == "zip" else ("Unsupported operand" in msg)  # says what it found
    assert not caught  # nothing else printed beside the one line
    assert not marker.exists()


def test_export_onnx_refuses_and_keeps_earlier_outputs(evil, tmp_path):
    path, marker = evil["zip"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "detect.onnx").write_bytes(b"an earlier export")
    res = run_module("export.onnx", "--ckpt", path, "--out", out, timeout=180)
    assert res.returncode == 1
    _one_line(res.stderr, "export.onnx", path.name, "refused")
    assert not marker.exists()
    assert (out / "detect.onnx").read_bytes() == b"an earlier export" and sorted(out.iterdir()) == [out / "detect.onnx"]


def test_training_evaluate_refuses(evil, tmp_path):
    path, marker = evil["legacy"]
    res = run_module("training.evaluate", "--ckpt", path, "--data", "synthetic", "--out", tmp_path / "eval",
                     "--workers", "0", timeout=180)
    assert res.returncode == 1
    _one_line(res.stderr, "training.evaluate", path.name, "refused")
    assert not marker.exists() and not (tmp_path / "eval").exists()
