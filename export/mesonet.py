"""``python -m export.mesonet --repo DIR --out DIR``: MesoNet's published weights as ONNX peers.

MesoNet (Afchar et al., WIFS 2018; github.com/DariusAf/MesoNet, Apache-2.0) is a small detector
trained on real deepfake and Face2Face video frames. This converts its four Keras weight files
(``weights/Meso4_DF.h5``, ``Meso4_F2F.h5``, ``MesoInception_DF.h5``, ``MesoInception_F2F.h5``) with
the project's own code (``training.mesonet``: h5py, no TensorFlow) into, per file:

- ``<name>.onnx``: the authors' classifier as a detect graph the runtime runs as it is: input
  ``input`` (N×3×256×256, RGB, pixels / 255: mean 0, std 1 in 0-1 units), output ``logit`` = the
  logit of fake (the authors' sigmoid is p(real); the conversion negates it), metadata
  (``runtime.meta``) with the face crop margin, threshold 0.5 (their own decision rule) and where the
  weights came from. Checked against PyTorch before it is written.
- ``<name>.pt``: the same network as a PyTorch state_dict; ``training.train --encoder meso4
  --backbone-weights <name>.pt`` starts a JRC model from its convolutions.

With ``--repo`` (a MesoNet checkout, or its bare git directory) the folder also gets the
repository's NOTICE and LICENSE, its four test images (``test_images/df`` as ``fake/``,
``test_images/real`` as ``real/``: a labelled crops folder for ``benchmarks.accuracy``), a
PROVENANCE.md and SHA256SUMS. The committed copy in ``benchmarks/assets/mesonet/`` is this command's
output (``make mesonet``), byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from runtime.errors import EXIT_USAGE, Parser, UserError, run_cli
from runtime.fileio import write_atomic
from runtime.meta import Meta

PROG = "export.mesonet"
REPOSITORY = "github.com/DariusAf/MesoNet"
WEIGHTS = ("Meso4_DF", "Meso4_F2F", "MesoInception_DF", "MesoInception_F2F")
TEST_FOLDERS = {"df": "fake", "real": "real"}  # the repository's folder → this project's label folder
# Face crop margin: MesoNet's pipeline.py cuts a square of side 2.86 × max(eye distance, eyes-to-mouth)
# around the nose, aligned by dlib landmarks. The runtime's MTCNN run on the authors' four test crops
# puts that side at (1 + 2m) × the box's longer side with m = 0.14, 0.11, 0.01, 0.02 (mean 0.07); their
# crops also sit about 7 % of a side lower than the box's centre, which a box crop cannot follow.
FACE_MARGIN = 0.07
PARITY_TOL = 1e-4  # relative to max(1, |logit|): MesoInception's logits reach ~100 on some inputs
TRAINED_ON = {"DF": "the authors' Deepfake set (faces from online videos; WIFS 2018, Table 1)",
              "F2F": "Face2Face forgeries (the FaceForensics set of 2018, as the authors' paper reports)"}


# --- reading the repository -----------------------------------------------------------------------
class Repository:
    """A MesoNet checkout or its bare git directory: ``read(path)`` gives a file's bytes at ``rev``
    (through git), or as the checkout has it when no ``rev`` is given."""

    def __init__(self, root: str | Path, rev: str | None = None) -> None:
        self.root = Path(root).expanduser()
        if (self.root / "weights").is_dir() or (self.root / ".git").exists():
            self.git = ["-C", str(self.root)]
        elif (self.root / "HEAD").is_file() and (self.root / "objects").is_dir():
            self.git = ["--git-dir", str(self.root)]
            rev = rev or "HEAD"  # a bare directory has no files to read but through git
        else:
            raise UserError(f"--repo {self.root}: neither a MesoNet checkout (with weights/) nor a git directory; "
                            f"git clone https://{REPOSITORY} and pass its folder")
        self.rev = rev
        self.commit = self._git("rev-parse", "--verify", f"{rev or 'HEAD'}^{{commit}}", required=rev is not None)

    def _git(self, *args: str, required: bool = True) -> str | None:
        r = self._run(*args)
        if r is None or r.returncode != 0:
            if not required:
                return None
            raise UserError(f"--repo {self.root}: git {' '.join(args)} failed"
                            + (f" ({r.stderr.decode(errors='replace').strip().splitlines()[-1][:160]})"
                               if r is not None and r.stderr.strip() else "")
                            + "; is git installed, and is this MesoNet's repository with that revision?")
        return r.stdout.decode().strip()

    def _run(self, *args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(["git", *self.git, *args], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None

    def read(self, path: str) -> bytes:
        if self.rev is None:
            f = self.root / path
            if not f.is_file():
                raise UserError(f"--repo {self.root}: {path} is missing; pass a full MesoNet checkout")
            return f.read_bytes()
        r = self._run("show", f"{self.rev}:{path}")
        if r is None or r.returncode != 0:
            raise UserError(f"--repo {self.root}: {path} is not in revision {self.rev}; pass MesoNet's repository")
        return r.stdout

    def listdir(self, folder: str) -> list[str]:
        if self.rev is None:
            return sorted(p.name for p in (self.root / folder).glob("*.jpg"))
        names = self._git("ls-tree", "--name-only", f"{self.rev}:{folder}") or ""
        return sorted(n for n in names.splitlines() if n.endswith(".jpg"))


# --- one weights file ---------------------------------------------------------------------------
def input_meta(arch: str = "meso4") -> Meta:
    """How a MesoNet is fed: 256 px crops at :data:`FACE_MARGIN`, RGB, pixels / 255."""
    return Meta(encoder=arch, input_size=256, color="RGB", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                face_margin=FACE_MARGIN, face_align="box")


def peer_meta(arch: str, name: str, h5_sha256: str, keras_version: str | None) -> Meta:
    """The runtime metadata of a converted MesoNet: how to feed it and where it came from."""
    kind = name.rsplit("_", 1)[-1]
    rule = {"rule": "MesoNet's own: fake when its p(real) < 0.5", "threshold": 0.5,
            "chosen_on": "the authors' training (not re-chosen here; calibration.threshold re-chooses it)"}
    training = {"peer": f"MesoNet {name} (Afchar et al., WIFS 2018)", "source": f"{REPOSITORY} weights/{name}.h5",
                "licence": "Apache-2.0 (NOTICE kept beside this file)", "keras_version": keras_version,
                "trained_on": TRAINED_ON.get(kind, "the authors' data"),
                "output": "logit of fake = minus the authors' pre-sigmoid output (their sigmoid is p(real))",
                "face_margin": f"{FACE_MARGIN}: the authors' crop scale measured on their test crops with the "
                "runtime's MTCNN (0.01-0.14); their crops are landmark-aligned and centred on the nose",
                "threshold_rule": rule}
    return input_meta(arch).with_(threshold=0.5, graph="detect", outputs=("logit",), precision="fp32",
                                  model={"network": "mesonet", "weights": name}, source_sha256=h5_sha256,
                                  training=training)


def _uniform(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, 3, 256, 256)).astype(np.float32)


def check_parity(net: Any, path: Path, extra: np.ndarray | None = None) -> float:
    """Largest |Δlogit| / max(1, |logit|) between ONNX Runtime and PyTorch, on [0, 1] inputs at batch 1
    and 4 (and ``extra``, e.g. the test images)."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in (_uniform(1, 0), _uniform(4, 1), *(() if extra is None else (extra,))):
        got = sess.run(["logit"], {"input": x})[0]
        with torch.no_grad():
            want = net(torch.from_numpy(x)).numpy()
        worst = max(worst, float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))))
    return worst


def state_dict_bytes(net: Any) -> bytes:
    """``torch.save`` of the state_dict, through memory: the archive's inner folder name is then
    always "archive", so the bytes do not depend on where the file is written."""
    import torch

    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return buf.getvalue()


def read_net(blob: bytes, label: str) -> tuple[Any, dict[str, Any]]:
    """The network of one .h5 and its attributes (``label`` names the file in errors): every file is
    read before the first conversion, so a bad one is said before anything is written."""
    from training.mesonet import from_layers, read_layers

    layers, attrs = read_layers(blob, label)
    return from_layers(layers, label), attrs


def convert(blob: bytes, name: str, out_dir: Path, images: np.ndarray | None = None,
            label: str | None = None, read: tuple[Any, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One .h5 → ``out_dir/<name>.onnx`` and ``<name>.pt``; returns what was written and measured
    (``label`` names the file in errors; ``read``: what :func:`read_net` made of ``blob`` already)."""
    from export.onnx import torch_to_onnx
    from training.mesonet import ARCH_NAMES

    label = label or f"weights/{name}.h5"
    net, attrs = read or read_net(blob, label)
    digest = hashlib.sha256(blob).hexdigest()
    meta = peer_meta(net.arch, name, digest, attrs.get("keras_version"))
    path = out_dir / f"{name}.onnx"
    doc = f"MesoNet {ARCH_NAMES[net.arch]} ({name}.h5, Afchar et al. 2018): logit of fake"
    torch_to_onnx(net, meta, "detect", path, doc=doc)
    worst = check_parity(net, path, images)
    if not worst <= PARITY_TOL:
        bad = path.with_name(path.name + ".failed")
        path.replace(bad)
        raise UserError(f"{path}: ONNX Runtime and PyTorch disagree by {worst:.2e} (relative, allowed "
                        f"{PARITY_TOL:.0e}); kept as {bad.name}; this is a bug in the conversion, please report it")
    pt = out_dir / f"{name}.pt"
    write_atomic(pt, state_dict_bytes(net))
    return {"name": name, "arch": net.arch, "onnx": path, "pt": pt, "h5_sha256": digest, "parity": worst,
            "keras_version": attrs.get("keras_version")}


# --- the whole folder ---------------------------------------------------------------------------
def test_image_inputs(folder: Path, names: list[str], meta: Meta) -> np.ndarray:
    """Crop files as the runtime feeds them to a model (read as a crops folder is, resized, normalised)."""
    from runtime.preprocess import resize_square, to_input
    from training.dataspec import read_crop

    return to_input(np.stack([resize_square(read_crop(folder / n), meta.input_size) for n in names]), meta)


def provenance(repo: Repository, sources: dict[str, bytes], results: list[dict[str, Any]], notice: str) -> str:
    commit = repo.commit or "unknown (not a git checkout)"
    lines = [
        "# MesoNet peers: provenance",
        "",
        f"- Source repository: https://{REPOSITORY} (commit {commit})",
        "- Licence: Apache License 2.0 (`LICENSE`, copied unchanged); the repository's `NOTICE` is copied",
        "  unchanged beside these files, as section 4(d) of the licence asks.",
        "- Authors: Darius Afchar, Vincent Nozick, Junichi Yamagishi, Isao Echizen, \"MesoNet: a Compact Facial",
        "  Video Forgery Detection Network\", IEEE WIFS 2018, arXiv 1809.00888.",
        "- Made by: `python -m export.mesonet --repo <MesoNet repository> --out benchmarks/assets/mesonet`",
        "  (`make mesonet`); h5py reads the weights, the project's own PyTorch modules",
        "  (`training/backbones/meso.py`, `training/mesonet.py`) hold them, `export.onnx` writes the graphs.",
        "",
        "## What was changed (modifications, as the licence asks them stated)",
        "",
        "- Keras weights converted to PyTorch and ONNX (kernels transposed, the first dense layer's rows",
        "  permuted from (H, W, C) to (C, H, W) flatten order). Scores are unchanged.",
        "- The output is the logit of *fake*: the authors' sigmoid is p(real) (their example.py labels the",
        "  folders `df` = 0, `real` = 1), so the last dense layer is negated.",
        "- `test_images/df/` is stored as `test_images/fake/` (this project's label folder names). They are",
        "  the authors' four test crops from their own dataset, kept as a smoke test only.",
        "",
        "Meso4's two files list no LeakyReLU layer (MesoInception's do), while `classifiers.py` has had",
        "`LeakyReLU(0.1)` after Meso4's 16-unit dense layer since its first commit: the conversion follows",
        "`classifiers.py`, the code the weights are published with, and matches it (TensorFlow's outputs on the",
        "same inputs: `docs/results/mesonet-keras-reference.json`).",
        "",
        "## Files",
        "",
        "| file | from | sha256 of the source |",
        "|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['name']}.onnx, {r['name']}.pt | weights/{r['name']}.h5 (Keras {r['keras_version']}) "
                     f"| {r['h5_sha256']} |")
    for rel, blob in sorted(sources.items()):
        lines.append(f"| {rel} | {_source_path(rel)} | {hashlib.sha256(blob).hexdigest()} |")
    lines += ["", "## NOTICE (as in the repository)", "", "```text", notice.rstrip(), "```", ""]
    return "\n".join(lines)


def _source_path(rel: str) -> str:
    if rel.startswith("test_images/"):
        _, folder, name = rel.split("/")
        back = {v: k for k, v in TEST_FOLDERS.items()}[folder]
        return f"test_images/{back}/{name}"
    return rel


def export_repository(repo_dir: str | Path, out_dir: str | Path, rev: str | None = None,
                      names: tuple[str, ...] = WEIGHTS) -> list[dict[str, Any]]:
    """The weights files ``names`` (all four by default), NOTICE, LICENSE, test images, PROVENANCE.md and
    SHA256SUMS into ``out_dir`` (from revision ``rev`` of the repository, or its files as they are)."""
    repo = Repository(repo_dir, rev)
    out = Path(out_dir)
    say_replacing = check_out(out, names)
    sources: dict[str, bytes] = {"NOTICE": repo.read("NOTICE"), "LICENSE": repo.read("LICENSE")}
    images: dict[str, bytes] = {}
    for folder, label in TEST_FOLDERS.items():
        for name in repo.listdir(f"test_images/{folder}"):
            images[f"test_images/{label}/{name}"] = repo.read(f"test_images/{folder}/{name}")
    sources.update(images)
    blobs = {name: repo.read(f"weights/{name}.h5") for name in names}
    nets = {name: read_net(blob, f"weights/{name}.h5") for name, blob in blobs.items()}
    say_replacing()  # every file of the repository read: a bad one is the run's only line
    out.mkdir(parents=True, exist_ok=True)
    for rel, blob in sources.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out / rel, blob)
    image_names = sorted(images)
    x = test_image_inputs(out, image_names, input_meta()) if image_names else None
    results = []
    for name in names:
        r = convert(blobs[name], name, out, x, read=nets[name])
        if x is not None:
            r["test_images"] = dict(zip(image_names, _probabilities(r["onnx"], x)))
        results.append(r)
    write_atomic(out / "PROVENANCE.md", provenance(repo, sources, results, sources["NOTICE"].decode("utf-8", "replace")))
    written = [f"{r['name']}.{ext}" for r in results for ext in ("onnx", "pt")] + sorted(sources) + ["PROVENANCE.md"]
    sums = "".join(f"{hashlib.sha256((out / rel).read_bytes()).hexdigest()}  {rel}\n" for rel in written)
    write_atomic(out / "SHA256SUMS", sums)
    return results


def _probabilities(onnx_path: Path, x: np.ndarray) -> list[float]:
    """p(fake) for each input, through the runtime's own backend (what runtime.detect would give)."""
    from runtime.backends import open_backend

    with open_backend(str(onnx_path), provider="cpu", threads=1) as b:
        logits = np.asarray(b.infer(x)["logit"], np.float64).reshape(-1)
    return [float(v) for v in 1.0 / (1.0 + np.exp(-logits))]


def check_out(out: Path, names: tuple[str, ...] | list[str]) -> Callable[[], None]:
    """Before any conversion: ``out`` takes files and no ``<name>.onnx``/``.pt`` in it is a folder.
    Returns the function that says earlier conversions are replaced, to call once the inputs passed."""
    from training.outputs import files_in

    paths = files_in(out, [out / f"{n}.{ext}" for n in names for ext in ("onnx", "pt")])

    def say_replacing() -> None:
        earlier = [p.name for p in paths if p.is_file()]
        if earlier:
            print(f"{PROG}: note: replacing {', '.join(earlier)} in {out} (earlier conversions)", file=sys.stderr)

    return say_replacing


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description="Convert MesoNet's Keras weights (Afchar et "
                                "al. 2018, Apache-2.0) to ONNX peers the runtime runs (logit of fake, 256 px RGB / 255) "
                                "and PyTorch state_dicts for training.train --backbone-weights.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--repo", help=f"a MesoNet checkout (git clone https://{REPOSITORY}) or its bare git directory: "
                     "all four weights, NOTICE, LICENSE, test images, PROVENANCE.md, SHA256SUMS")
    src.add_argument("--h5", action="append", metavar="FILE", help="one Keras weights file of Meso4 or "
                     "MesoInception4 (repeatable): FILE's name.onnx and name.pt only")
    p.add_argument("--rev", help="with --repo: read this git revision (make mesonet pins the committed copy's); "
                   "default: the checkout's files as they are (a bare git directory: HEAD)")
    p.add_argument("--out", required=True, help="output folder (the committed copy: benchmarks/assets/mesonet)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    out = Path(a.out)
    if a.rev and not a.repo:
        raise UserError("--rev needs --repo (a git repository to read the revision from)", EXIT_USAGE)
    if a.repo:
        results = export_repository(a.repo, out, a.rev)
    else:
        paths = {}
        for f in a.h5:  # every file checked before the first conversion
            path = Path(f).expanduser()
            if not path.is_file():
                raise UserError(f"--h5 {f}: no such file; pass one of MesoNet's weights/*.h5")
            if path.stem in paths:
                raise UserError(f"--h5 {f}: its name {path.stem} is also {paths[path.stem]}'s, and both would be "
                                f"written as {path.stem}.onnx; pass one of them, or rename one", EXIT_USAGE)
            paths[path.stem] = path
        say_replacing = check_out(out, list(paths))
        blobs = {stem: p.read_bytes() for stem, p in paths.items()}
        nets = {stem: read_net(blobs[stem], str(paths[stem])) for stem in paths}  # all read before any is written
        say_replacing()
        out.mkdir(parents=True, exist_ok=True)
        results = [convert(blobs[stem], stem, out, label=str(p), read=nets[stem]) for stem, p in paths.items()]
    for r in results:
        print(f"{PROG}: wrote {r['onnx']} and {r['pt']} ({r['arch']}); ONNX Runtime vs PyTorch: max relative "
              f"|Δlogit| {r['parity']:.1e}")
        for rel, p in r.get("test_images", {}).items():
            print(f"    {rel}: p(fake) {p:.4f} → {'fake' if p >= 0.5 else 'real'}")
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
