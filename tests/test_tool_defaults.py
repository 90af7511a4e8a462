"""Defaults every tool shares, checked across all of them: the face detector (crops are found by the
detector that serves) and what an output in a missing folder does (the folder is created)."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import pytest

from runtime.faces import DEFAULT_DETECTOR
from tests.helpers import ROOT

PACKAGES = ("runtime", "training", "export", "calibration", "benchmarks")


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command-line tool of the project: the modules with a ``build_parser``."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).glob("*.py")):
            if "def build_parser" in path.read_text(encoding="utf-8"):
                name = f"{pkg}.{path.stem}"
                out[name] = importlib.import_module(name).build_parser()
    return out


def test_every_tool_finds_faces_with_the_one_default_detector():
    from runtime.faces import detector_options, make_detector
    from runtime.loop import Faces
    from training.datasets import Settings

    with_faces = {}
    for name, parser in _parsers().items():
        action = next((a for a in parser._actions if "--faces" in a.option_strings), None)
        if action is not None:
            with_faces[name] = action.default
    # runtime.detect leaves it unset: a --face-model file means YuNet, otherwise the default
    assert with_faces.pop("runtime.detect") is None
    args = importlib.import_module("runtime.detect").build_parser().parse_args(["--engine", "m.onnx", "--source", "0"])
    assert detector_options(args)[0] == DEFAULT_DETECTOR
    assert {"training.extract", "training.datasets", "benchmarks.pipeline", "benchmarks.soak"} <= set(with_faces)
    assert with_faces == dict.fromkeys(with_faces, DEFAULT_DETECTOR), with_faces
    assert Settings().faces == Faces().kind == DEFAULT_DETECTOR
    assert type(make_detector()).__name__ == type(make_detector(DEFAULT_DETECTOR)).__name__ == "MtcnnFaceDetector"


def _nested(tmp_path: Path, name: str) -> Path:
    return tmp_path / "not" / "there" / name


def test_outputs_in_a_missing_folder_are_written_there_by_every_tool(tmp_path):
    """One rule for every tool: an output whose folder does not exist gets the folder created (as
    export and training always did); a file where a folder should be is refused in one line."""
    import cv2
    import numpy as np

    from benchmarks import report
    from runtime.detect import main as detect
    from runtime.sinks import check_writable
    from tests.helpers.models import make_onnx

    model = make_onnx(tmp_path / "m.onnx")
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.full((48, 48, 3), 120, np.uint8))
    outs = {k: _nested(tmp_path, f"detect/{k}") for k in ("o.jsonl", "s.json", "a.png")}
    assert detect(["--engine", str(model), "--source", str(image), "--faces", "none", "--quiet",
                   "--jsonl", str(outs["o.jsonl"]), "--summary", str(outs["s.json"]),
                   "--save", str(outs["a.png"])]) == 0
    assert all(p.is_file() for p in outs.values())
    assert json.loads(outs["s.json"].read_text())["status"] == "ok"
    for check in (lambda p: check_writable(str(p), "--jsonl"), lambda p: report.check_writable(str(p), "--json")):
        target = _nested(tmp_path, "bench/x.json")
        check(target)
        assert target.parent.is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    from runtime.errors import UserError

    for check in (lambda p: check_writable(str(p), "--jsonl"), lambda p: report.check_writable(str(p), "--json")):
        with pytest.raises(UserError, match="is a file, not a folder"):
            check(blocker / "sub" / "x.json")


def test_every_option_of_every_tool_says_what_it_does():
    """``--help`` describes every option (training.train's defaults are shown beside them)."""
    missing = [f"{name} {'/'.join(a.option_strings)}" for name, parser in _parsers().items()
               for a in parser._actions if a.dest != "help" and not (a.help or "").strip()]
    assert missing == []
    text = _parsers()["training.train"].format_help()
    for flag, default in (("--epochs", "20"), ("--lr", "0.001"), ("--optimizer", "adamw"), ("--weight-decay", "0.0001"),
                          ("--recon-loss", "mse"), ("--seed", "0")):
        block = text[text.index("\n  " + flag + " ") + 3:]
        block = block[: block.find("\n  -")]  # this option's lines only
        assert f"(default: {default})" in " ".join(block.split()), (flag, block)


def test_every_tools_command_line_mistakes_are_one_line(capsys):
    """argparse's own errors (a bad value, an unknown flag, a missing argument) are one line naming
    the flag and pointing to --help, exit code 2, like every other user error; not its usage block."""
    from runtime.errors import EXIT_USAGE, Parser

    direct = [str(p.relative_to(ROOT)) for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
              if "argparse.ArgumentParser(" in p.read_text(encoding="utf-8")]
    assert direct == []  # every tool builds runtime.errors.Parser, the tools without build_parser() too
    parsers = _parsers()
    assert len(parsers) > 20
    for name, parser in parsers.items():
        assert isinstance(parser, Parser), name
        with pytest.raises(SystemExit) as e:
            parser.parse_args(["--no-such-flag-here"])
        err = capsys.readouterr().err
        assert e.value.code == EXIT_USAGE, name
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].count("error:") == 1 and "--help" in lines[0], (name, err)
