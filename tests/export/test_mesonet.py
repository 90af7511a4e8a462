"""export.mesonet and the committed MesoNet peers (benchmarks/assets/mesonet).

The peers are checked against what MesoNet's own Keras code gave on the same inputs
(docs/results/mesonet-keras-reference.json: TensorFlow run once, on the committed test images as the
runtime feeds them and on seeded uniform noise), through the runtime's own backend; the authors' four
test images are the smoke test the issue asks for. The converter runs end to end on a miniature
repository (generated weights, in a git checkout and a bare git directory), byte for byte the same
from both.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import numpy as np
import pytest

from tests.helpers import ROOT, has_module, run_in_process

pytestmark = pytest.mark.skipif(not has_module("onnxruntime"), reason="needs onnxruntime")

ASSETS = ROOT / "benchmarks" / "assets" / "mesonet"
KERAS = json.loads((ROOT / "docs" / "results" / "mesonet-keras-reference.json").read_text())
PEERS = ("Meso4_DF", "Meso4_F2F", "MesoInception_DF", "MesoInception_F2F")
IMAGES = [n for n in KERAS["inputs"] if n.startswith("test_images/")]


def _inputs() -> np.ndarray:
    from export.mesonet import input_meta, test_image_inputs

    x = test_image_inputs(ASSETS, IMAGES, input_meta())
    u = np.random.default_rng(7).uniform(0, 1, (2, 3, 256, 256)).astype(np.float32)
    return np.concatenate([x, u])


def _logits(name: str, x: np.ndarray) -> np.ndarray:
    from runtime.backends import open_backend

    with open_backend(str(ASSETS / f"{name}.onnx"), provider="cpu", threads=1) as b:
        return np.asarray(b.infer(x)["logit"], np.float64).reshape(-1)


def test_committed_peers_give_what_keras_gave() -> None:
    x = _inputs()
    assert len(x) == len(KERAS["inputs"]) == 6
    for name in PEERS:
        want = -np.asarray(KERAS["outputs"][name]["logit_real"])  # their output is p(real)
        got = _logits(name, x)
        assert np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))) < 1e-4, (name, got, want)
        p_fake = 1.0 / (1.0 + np.exp(-got))
        np.testing.assert_allclose(p_fake, 1.0 - np.asarray(KERAS["outputs"][name]["p_real"]), atol=1e-5)


def test_deepfake_weights_call_their_own_test_images_right() -> None:
    """The smoke test: the DF-trained peers call the two deepfakes fake and the two reals real at
    their threshold (0.5). The F2F-trained ones, made for another forgery, call all four real."""
    x = _inputs()[: len(IMAGES)]
    truth = np.array([n.startswith("test_images/fake/") for n in IMAGES])
    assert truth.sum() == 2 and (~truth).sum() == 2
    for name in ("Meso4_DF", "MesoInception_DF"):
        assert ((_logits(name, x) >= 0) == truth).all(), name
    for name in ("Meso4_F2F", "MesoInception_F2F"):
        assert (_logits(name, x) < 0).all(), name


def test_committed_folder_is_whole_and_described() -> None:
    from export.mesonet import FACE_MARGIN
    from export.onnx_io import file_meta

    lines = (ASSETS / "SHA256SUMS").read_text().splitlines()
    listed = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in lines}
    for rel, digest in listed.items():
        assert hashlib.sha256((ASSETS / rel).read_bytes()).hexdigest() == digest, rel
    assert {f"{n}.{e}" for n in PEERS for e in ("onnx", "pt")} | {"NOTICE", "LICENSE", "PROVENANCE.md"} <= set(listed)
    assert len([r for r in listed if r.startswith("test_images/")]) == 4
    provenance = (ASSETS / "PROVENANCE.md").read_text()
    assert "github.com/DariusAf/MesoNet (commit 2144d56a30e48cdcac1976ff13a1c5cdc86376c6)" in provenance
    assert "Apache License 2.0" in provenance and "Darius Afchar" in (ASSETS / "NOTICE").read_text()
    for name in PEERS:
        meta = file_meta(ASSETS / f"{name}.onnx")
        assert meta.encoder == ("meso4" if name.startswith("Meso4") else "mesoinception4")
        assert (meta.input_size, meta.color, meta.mean, meta.std) == (256, "RGB", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        assert (meta.graph, meta.outputs, meta.threshold, meta.face_margin) == ("detect", ("logit",), 0.5, FACE_MARGIN)
        assert meta.training["threshold_rule"]["threshold"] == 0.5 and "p(real)" in meta.training["output"]
        assert meta.source_sha256 in provenance  # the .h5 it was converted from


def _mini_repository(root, names: dict[str, str]) -> None:
    """A MesoNet-shaped git repository: generated weights, NOTICE, LICENSE, two test images."""
    import cv2

    from tests.helpers.keras_h5 import write_meso_h5

    (root / "weights").mkdir(parents=True)
    for i, (name, arch) in enumerate(names.items()):
        write_meso_h5(root / "weights" / f"{name}.h5", arch, seed=i)
    (root / "NOTICE").write_text("Mini MesoNet\nCopyright 2018, Someone\n")
    (root / "LICENSE").write_text("Apache License\nVersion 2.0\n")
    for folder, value in (("df", 60), ("real", 180)):
        (root / "test_images" / folder).mkdir(parents=True)
        cv2.imwrite(str(root / "test_images" / folder / f"{folder}0.jpg"), np.full((200, 200, 3), value, np.uint8))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(root)]
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "mini"]):
        subprocess.run(git + args, check=True, capture_output=True, timeout=60)


@pytest.mark.skipif(not (has_module("h5py") and shutil.which("git")), reason="needs h5py and git")
def test_converter_reproduces_its_folder_from_a_checkout_and_a_bare_directory(tmp_path) -> None:
    from export.mesonet import export_repository

    repo = tmp_path / "MesoNet"
    _mini_repository(repo, {"Meso4_DF": "meso4"})
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(tmp_path / "bare.git")], check=True, timeout=60)
    a = export_repository(repo, tmp_path / "a", names=("Meso4_DF",))
    export_repository(tmp_path / "bare.git", tmp_path / "b", rev="HEAD", names=("Meso4_DF",))
    files = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == ["LICENSE", "Meso4_DF.onnx", "Meso4_DF.pt", "NOTICE", "PROVENANCE.md", "SHA256SUMS",
                     "test_images/fake/df0.jpg", "test_images/real/real0.jpg"]
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert a[0]["parity"] < 1e-4 and set(a[0]["test_images"]) == {"test_images/fake/df0.jpg", "test_images/real/real0.jpg"}
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert f"(commit {commit})" in (tmp_path / "a" / "PROVENANCE.md").read_text()


@pytest.mark.parametrize("args, needle, code", [
    (["--repo", "{tmp}", "--out", "{tmp}/o"], "neither a MesoNet checkout", 1),
    (["--h5", "{tmp}/missing.h5", "--out", "{tmp}/o"], "--h5 {tmp}/missing.h5: no such file", 1),
    (["--h5", "{tmp}/x.h5", "--rev", "HEAD", "--out", "{tmp}/o"], "--rev needs --repo", 2),
    # every --h5 is checked before the first is converted (the first is not even an h5 file)
    (["--h5", "{tmp}/a/x.h5", "--h5", "{tmp}/missing.h5", "--out", "{tmp}/o"], "--h5 {tmp}/missing.h5: no such", 1),
    (["--h5", "{tmp}/a/x.h5", "--h5", "{tmp}/b/x.h5", "--out", "{tmp}/o"], "both would be written as x.onnx", 2),
    (["--h5", "{tmp}/a/x.h5", "--out", "{tmp}/a/x.h5/o"], "is a file, not a folder", 1),
    (["--h5", "{tmp}/a/x.h5", "--out", "/proc/jrc-x/o"], "nothing can be written in /proc", 1),
])
def test_cli_errors_are_one_line(tmp_path, args: list[str], needle: str, code: int) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.h5").write_bytes(b"not an h5 file")
    p = run_in_process("export.mesonet", *[a.format(tmp=tmp_path) for a in args])
    lines = p.stderr.strip().splitlines()
    assert p.returncode == code and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert needle.format(tmp=tmp_path) in lines[0]
    assert not (tmp_path / "o").exists()

