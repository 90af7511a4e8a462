"""Damaged, foreign or hostile checkpoints: the three tools that read them (``export.onnx``,
``training.evaluate``, ``training.train --resume``) each give one line and exit 1, never a traceback,
an argparse error (exit 2) or minutes of allocation. ``main`` runs in-process; one case goes
through the CLI to see the line and the exit code."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runtime.errors import UserError
from tests.helpers import has_module, run_module

pytestmark = pytest.mark.skipif(not has_module("torch"), reason="needs torch (training side)")


def _variants(folder: Path) -> dict[str, Path]:
    import torch

    from tests.helpers.models import make_checkpoint

    good = torch.load(make_checkpoint(folder / "good.pt", "edge"), weights_only=True)
    meta = good["meta"]
    big = {**meta["model"], "encoder_channels": 8192, "latent_channels": 8192, "hidden": 8192,
           "decoder_channels": [8192] * 5}
    state = dict(good["model"])
    state[next(iter(state))] = torch.zeros(3)
    blobs = {
        "state-list": {**good, "model": list(good["model"].values())},
        "state-wrong-shapes": {**good, "model": state},
        "state-missing-keys": {**good, "model": {}},
        "meta-int-keys": {**good, "meta": {**meta, 1: "one"}},
        "meta-model-int-keys": {**good, "meta": {**meta, "model": {**meta["model"], 2: 3}}},
        "meta-schema-str": {**good, "meta": {**meta, "schema": "1"}},
        "meta-input-name-list": {**good, "meta": {**meta, "input_name": []}},
        "meta-input-size-float": {**good, "meta": {**meta, "input_size": 224.0}},
        "meta-huge-network": {**good, "meta": {**meta, "model": big}},
        "top-list": [good["model"], meta],
    }
    paths = {"good": folder / "good.pt"}
    for name, blob in blobs.items():
        paths[name] = folder / f"{name}.pt"
        torch.save(blob, paths[name])
    (folder / "zero.pt").write_bytes(b"")
    paths["zero-bytes"] = folder / "zero.pt"
    raw = paths["good"].read_bytes()
    (folder / "cut.pt").write_bytes(raw[: len(raw) // 3])
    paths["truncated"] = folder / "cut.pt"
    for name, args in {"args-epochs-many": {"epochs": "many"}, "args-lr-list": {"lr": [1]},
                       "args-encoder-unknown": {"encoder": "resnet"}, "args-amp-str": {"amp": "yes"},
                       "args-epochs-float": {"epochs": 2.5}, "args-not-dict": [1, 2],
                       "args-epochs-zero": {"epochs": 0}}.items():
        paths[name] = folder / f"{name}.pt"
        torch.save({**good, "args": args}, paths[name])
    return paths


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return _variants(tmp_path_factory.mktemp("ckpts"))


BROKEN = ["zero-bytes", "truncated", "top-list", "state-list", "state-wrong-shapes", "state-missing-keys",
          "meta-int-keys", "meta-model-int-keys", "meta-schema-str", "meta-input-name-list", "meta-input-size-float",
          "meta-huge-network"]


def _tools(ckpt: Path, tmp: Path) -> dict:
    from export import onnx as export_onnx
    from training import evaluate, train

    return {
        "export.onnx": lambda: export_onnx.main(["--ckpt", str(ckpt), "--out", str(tmp / "out")]),
        "training.evaluate": lambda: evaluate.main(["--ckpt", str(ckpt), "--data", "synthetic:10", "--workers", "0",
                                                    "--out", str(tmp / "eval")]),
        "training.train": lambda: train.main(["--resume", str(ckpt), "--synthetic", "--workers", "0",
                                              "--out", str(tmp / "run")]),
    }


@pytest.mark.parametrize("case", BROKEN)
@pytest.mark.parametrize("tool", ["export.onnx", "training.evaluate", "training.train"])
def test_broken_checkpoint_is_one_user_error_in_every_tool(ckpts, tmp_path, tool, case):
    t0 = time.perf_counter()
    with pytest.raises(UserError) as e:
        _tools(ckpts[case], tmp_path)[tool]()
    msg = str(e.value)
    assert ckpts[case].name in msg and "\n" not in msg, msg
    assert time.perf_counter() - t0 < 20  # the huge network is refused before it is allocated
    if case.startswith("meta-") and case != "meta-huge-network" and "keys" not in case:
        assert any(f"'{f}'" in msg for f in ("schema", "input_name", "input_size")), msg
    if case == "meta-huge-network":
        assert "parameters" in msg
    assert not (tmp_path / "out").exists() and not (tmp_path / "eval").exists()


@pytest.mark.parametrize("case", ["args-epochs-many", "args-lr-list", "args-encoder-unknown", "args-amp-str",
                                  "args-epochs-float", "args-not-dict", "args-epochs-zero"])
def test_bad_stored_args_are_the_checkpoints_fault_not_the_command_lines(ckpts, tmp_path, case):
    from training import train

    with pytest.raises(UserError) as e:  # not SystemExit(2): argparse never sees the stored values as arguments
        train.main(["--resume", str(ckpts[case]), "--synthetic", "--workers", "0", "--out", str(tmp_path / "run")])
    assert str(ckpts[case]) in str(e.value) and "\n" not in str(e.value)


def test_read_checkpoint_says_what_it_found(ckpts):
    from training.checkpoint import read_checkpoint

    with pytest.raises(UserError, match="the file is empty"):
        read_checkpoint(ckpts["zero-bytes"])
    with pytest.raises(UserError, match="not a state dict"):
        read_checkpoint(ckpts["state-list"])
    with pytest.raises(UserError, match="found list"):
        read_checkpoint(ckpts["top-list"])


@pytest.mark.parametrize("module, args", [("export.onnx", ["--out", "{tmp}/out"]),
                                          ("training.train", ["--synthetic", "--out", "{tmp}/run"])])
def test_through_the_cli_one_line_exit_1(ckpts, tmp_path, module, args):
    flag = "--resume" if module == "training.train" else "--ckpt"
    case = "args-epochs-many" if module == "training.train" else "state-list"
    res = run_module(module, flag, ckpts[case], *[a.format(tmp=tmp_path) for a in args], timeout=180)
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 1 and "Traceback" not in res.stderr and len(lines) == 1, res.stderr
    assert lines[0].startswith(f"{module}: error: ") and ckpts[case].name in lines[0]


@pytest.mark.parametrize("module, flag, extra", [("export.onnx", "--ckpt", ["--out", "{tmp}/out"]),
                                                 ("training.evaluate", "--ckpt", ["--data", "synthetic"]),
                                                 ("training.train", "--resume", []),
                                                 ("benchmarks.families", "--ckpt", []),
                                                 ("benchmarks.loss_balance", "--ckpt", [])])
def test_missing_or_empty_checkpoint_is_refused_before_torch_is_imported(tmp_path, module, flag, extra):
    """The file checks come first: one line in a fraction of a second, not after PyTorch's import
    (about 3 s). Checked in a fresh process, so no test's earlier import hides it."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x08")  # an ONNX model passed where a checkpoint goes
    for name, why in (("missing.pt", "checkpoint not found"), ("empty.pt", "the file is empty"),
                      ("model.onnx", "not a PyTorch checkpoint")):
        code = (f"import runpy, sys; sys.argv = {[module, flag, str(tmp_path / name)] + [a.format(tmp=tmp_path) for a in extra]!r}\n"
                f"try:\n    runpy.run_module({module!r}, run_name='__main__')\n"
                "except SystemExit as e:\n    print('torch' in sys.modules, e.code)\n")
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.stdout.split() == ["False", "1"], (name, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{module}: error: {tmp_path / name}: ") and why in lines[0], r.stderr
