"""The README as a path a user walks: its commands run, in order, as printed, so it cannot rot.

Conventions README.md is written to:

* Only fenced blocks tagged ```bash are commands. ```text, ```json and untagged fences, and
  indented blocks, are examples and are not run. (```sh, ```shell, ```console and ```zsh are
  refused: tag a block bash to run it or text to show it.)
* In a bash block a line ending in ``\\`` continues on the next; ``#`` starts a comment (at the
  start of a word, outside quotes) and comments are dropped; each remaining line is one command,
  run on its own with ``bash -c`` (so ``cd`` and ``export`` lines, which would not carry over to
  the next command, are refused).
* The commands run in README order, in a temporary folder that holds symlinks to the packages
  (runtime, training, export, calibration, benchmarks) and nothing else: ``python -m ...`` and
  ``runtime/assets/jrc_edge_detect.onnx`` resolve, and every output lands in the temporary folder
  (the repository is checked unchanged afterwards). ``python`` is the interpreter running the
  tests (its folder comes first on PATH).
* ``<!-- readme-test: skip: REASON -->`` on the line before a bash block (blank lines between
  are allowed, text is not): the block is not run. For ``make``, ``pip install``, ``sudo``,
  Jetson-only steps, torchrun with several processes, tritonserver / deepstream-app. Every skip
  needs a reason, and at least MIN_RUN (60 %) of the bash command lines must run.
* ``<!-- readme-test: refused -->`` before a block: on a machine without TensorRT and a CUDA GPU
  each of its commands must refuse the way such a machine refuses: exit code 1, stderr exactly one
  line ``prog: error: ...`` naming TensorRT, tensorrt, GPU or CUDA, no traceback. A command that
  uses a ``.engine``/``.plan`` file, ``export.engine`` or ``benchmarks.gpu_check`` is treated so
  without the marker. Where TensorRT and a GPU exist, those commands must exit 0 instead.
* Every other command must exit 0, with no "Traceback" on stderr.
* Only sizes are turned down, by KNOBS: exact substring substitutions (epochs, items, frames,
  repeats). Each must match at least once in the commands that run (a knob the README no longer
  has is an error to fix here); nothing else in a command is changed. One knob opens a check
  instead: ``calibration.quantize`` gets ``--max-auc-drop 1 --max-dprob 1``, because the walk's model has
  trained one epoch on 64 faces and its fp32-vs-INT8 AUC differences are noise (the gate itself
  is tested in tests/calibration/).

The parser and the checks are unit-tested on small fixture READMEs (fast); the walk of README.md
itself is marked ``slow`` and ``long`` but runs in ``make test``, first, then the trained-run test on the
same worker while the other worker takes the short tests (work stealing evens them out): about 150 s
of the suite's 5:09-5:56 on an otherwise idle 2-core AMD EPYC, 2026-12-01; the knobs are chosen
for that.
A failure names the README line, the command as run and the last lines of its stderr.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.helpers import ROOT, has_gpu

README = ROOT / "README.md"
PACKAGES = ("runtime", "training", "export", "calibration", "benchmarks")
MIN_RUN = 0.6  # the skipped: make, set-up (pip, sudo), multi-GPU torchrun, the datasets nobody may ship
COMMAND_TIMEOUT = 600
# Sizes only: what a user runs, made small enough for the test suite.
KNOBS = {
    "--out samples --videos": "--out samples --videos --frames 8 --size 640x360",
    "--frames 32": "--frames 2",
    "synthetic:1600": "synthetic:64",
    "synthetic:200": "synthetic:40",
    "--epochs 16": "--epochs 1",
    "--epochs 20": "--epochs 2",
    "--families all": "--families sbi,i2g --folds i2g",
    "--seeds 0,1,2,3,4": "--seeds 0",
    "--lambdas 0.1,0": "--lambdas 0.1",
    "--items 1600": "--items 64 --val-items 32",
    "--test-items 4000": "--test-items 40",
    "--calib-size 256": "--calib-size 16 --eval-size 40 --speed-rounds 3 --max-auc-drop 1 --max-dprob 1 --plan-candidates 3 "
                        "--plan-rounds 2",  # gate: see docstring
    "--calib synthetic,photos,mix": "--calib synthetic,photos --calib-size 16 --eval-size 20 --photos 2 --cpu-plan all",
    "--json acc.json": "--runs 5 --json acc.json",
    "--frames 50000": "--frames 200 --warmup 100",
    "--frames 200 --rounds 4": "--frames 20 --rounds 1 --cost-rounds 1 --lfw 10",
    "--runs 100": "--runs 3 --warmup 1",
    "--repeats 3": "--repeats 1 --frames 30",
    "--frames 150 --rounds 3": "--frames 6 --rounds 1 --cameras 1,2 --size 320x180",
    "pool:3200:camera=off": "pool:48:camera=off",
    "pool:4800:ramp=3": "pool:48:ramp=3",
    "--val pool:600": "--val pool:24",
    "--val pool:900": "--val pool:24",
    "--epochs 12": "--epochs 1",
    "pool:4000": "pool:40",
    "--items 1000": "--items 40",
    "--test-items 2000": "--test-items 40",
    "--rounds 6 --json liveview.json": "--rounds 1 --window 0.5 --warmup 0 --frames 40 --repeat 150 --size 320x180 "
                                       "--json liveview.json",
}

MARKER = re.compile(r"^\s*<!--\s*readme-test:\s*(?P<body>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
SHELL_TAGS = ("sh", "shell", "console", "zsh")
TRT_USE = re.compile(r"\.(engine|plan)\b|\bexport\.engine\b|\bbenchmarks\.gpu_check\b")
REFUSAL = re.compile(r"^\S.*?: error: .*(TensorRT|tensorrt|GPU|CUDA)")


@dataclass(frozen=True)
class Command:
    line: int  # README line where the command starts
    text: str  # joined, comments dropped
    block: int  # README line of the block's opening fence
    skip: str | None = None  # the reason, when the block is skipped
    refused: bool = False  # the block is marked refused


def strip_comment(line: str) -> str:
    """``line`` without its ``#`` comment (a ``#`` at the start of a word, outside quotes)."""
    quote, escaped = "", False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def split_commands(body: list[str], first: int) -> tuple[list[tuple[int, str]], list[str]]:
    """(line, command) for a bash block's lines (``first``: the README line of ``body[0]``), and problems."""
    out, problems, parts, start = [], [], [], None
    for k, raw in enumerate(body):
        text = raw.strip()
        if not parts and (not text or text.startswith("#")):
            continue
        start = first + k if start is None else start
        if text.endswith("\\"):
            parts.append(text[:-1].strip())
            continue
        parts.append(text)
        cmd = strip_comment(" ".join(p for p in parts if p)).strip()
        if cmd:
            out.append((start, cmd))
        parts, start = [], None
    if parts:
        problems.append(f"README line {start}: the block ends inside a continued line (trailing \\)")
    return out, problems


def parse(text: str) -> tuple[list[Command], list[str]]:
    """Every bash command of a README (skipped ones too, with their reason), and the problems found."""
    lines = text.splitlines()
    commands: list[Command] = []
    problems: list[str] = []
    pending: tuple[int, str | None, bool] | None = None  # (line, skip reason, refused)
    i = 0
    while i < len(lines):
        line, no = lines[i], i + 1
        marker = MARKER.match(line)
        fence = FENCE.match(line)
        if marker:
            if pending:
                problems.append(f"README line {pending[0]}: readme-test marker not followed by a bash block")
            body = marker["body"]
            if body == "refused":
                pending = (no, None, True)
            elif re.fullmatch(r"skip\s*(:.*)?", body):
                reason = body.partition(":")[2].strip()
                if not reason:
                    problems.append(f"README line {no}: skip without a reason (write <!-- readme-test: skip: WHY -->)")
                pending = (no, reason or "?", False)
            else:
                problems.append(f"README line {no}: unknown readme-test marker {body!r} (skip: REASON or refused)")
                pending = None
            i += 1
            continue
        if fence:
            mark, indent = fence["fence"], len(fence["indent"])
            end = next((j for j in range(i + 1, len(lines))
                        if lines[j].strip().startswith(mark[0] * len(mark)) and not lines[j].strip().strip(mark[0])),
                       None)
            if end is None:
                problems.append(f"README line {no}: fence never closed")
                end = len(lines)
            tag = fence["info"].lower()
            if tag == "bash":
                body = [b[indent:] if b[:indent].isspace() else b.lstrip() for b in lines[i + 1:end]]
                found, bad = split_commands(body, no + 1)
                problems += bad
                skip, refused = (pending[1], pending[2]) if pending else (None, False)
                commands += [Command(at, cmd, no, skip, refused) for at, cmd in found]
            else:
                if pending:
                    problems.append(f"README line {pending[0]}: readme-test marker before a ```{tag} block, "
                                    "not a bash one")
                if tag in SHELL_TAGS:
                    problems.append(f"README line {no}: ```{tag} block: tag it bash (run by this test) or text "
                                    "(shown, not run)")
            pending = None
            i = end + 1
            continue
        if pending and line.strip():
            problems.append(f"README line {pending[0]}: readme-test marker not directly before a bash block")
            pending = None
        i += 1
    if pending:
        problems.append(f"README line {pending[0]}: readme-test marker not followed by a bash block")
    for c in commands:
        if c.skip is None and re.match(r"(cd|export|pushd|popd|source)\s", c.text + " "):
            problems.append(f"README line {c.line}: {c.text!r} runs on its own, so it does not carry over "
                            "to the next command; fold it into the commands that need it")
    return commands, problems


def apply_knobs(commands: list[Command], knobs: dict[str, str]) -> tuple[list[Command], list[str]]:
    """The commands with each knob substituted (skipped commands untouched), and the knobs that never matched."""
    used = dict.fromkeys(knobs, 0)
    out = []
    for c in commands:
        text = c.text
        if c.skip is None:
            for old, new in knobs.items():
                used[old] += text.count(old)
                text = text.replace(old, new)
        out.append(replace(c, text=text))
    return out, [k for k, n in used.items() if n == 0]


def expects_refusal(cmd: Command) -> bool:
    return cmd.refused or bool(TRT_USE.search(cmd.text))


def check(cmd: Command, rc: int, stderr: str, gpu: bool) -> str | None:
    """What is wrong with a command's outcome, or None."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    if "Traceback (most recent call last)" in stderr:
        return f"exit {rc} with a traceback"
    if expects_refusal(cmd) and not gpu:
        if rc != 1:
            return f"exit {rc}; expected the refusal of a machine without TensorRT/GPU (exit 1)"
        if len(lines) != 1:
            return f"stderr has {len(lines)} lines; expected exactly one 'prog: error: ...' naming TensorRT, GPU or CUDA"
        if not REFUSAL.match(lines[0]):
            return "its stderr line is not the refusal of a machine without TensorRT/GPU ('prog: error: ...' naming " \
                   "TensorRT, GPU or CUDA)"
        return None
    return None if rc == 0 else f"exit {rc}; expected 0"


def sandbox(folder: Path) -> Path:
    """The temporary folder: symlinks to the packages and nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in PACKAGES:
        (folder / name).symlink_to(ROOT / name, target_is_directory=True)
    return folder


def run_command(cmd: Command, cwd: Path, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        return subprocess.run(["bash", "-c", cmd.text], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return subprocess.CompletedProcess(cmd.text, -9, "", err + f"\n(timed out after {timeout:.0f} s)")


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def walk(commands: list[Command], cwd: Path, gpu: bool, readme: str = "README.md") -> tuple[list[str], list[str]]:
    """Run the commands that are not skipped, in order; (failures, timings)."""
    failures, timings = [], []
    for c in commands:
        if c.skip is not None:
            continue
        t, cpu = time.perf_counter(), _children_cpu()
        r = run_command(c, cwd)
        timings.append(f"{time.perf_counter() - t:6.1f} s ({_children_cpu() - cpu:5.1f} s CPU)  {readme}:{c.line}  "
                       f"{c.text[:90]}")
        problem = check(c, r.returncode, r.stderr, gpu)
        if problem:
            tail = "\n".join("    " + ln for ln in r.stderr.replace("\r", "\n").strip().splitlines()[-8:])
            failures.append(f"{readme}:{c.line}: {problem}\n  command: {c.text}\n  stderr (last lines):\n{tail}")
    return failures, timings


def repo_state(since: float) -> set[str]:
    """What git reports as changed or untracked (ignored folders included), and files written since
    ``since``, leaving out sources (.py/.md: other work goes on in the tree) and caches."""
    r = subprocess.run(["git", "status", "--porcelain", "--ignored=matching", "--untracked-files=all"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    state = set(r.stdout.splitlines())
    skip_dirs = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}
    for base, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip_dirs and not os.path.islink(os.path.join(base, d))]
        for f in files:
            p = Path(base, f)
            try:
                if p.stat().st_mtime >= since:
                    state.add(f"written {p.relative_to(ROOT)}")
            except OSError:
                continue
    return {s for s in state if not re.search(r"\.(py|md)$|__pycache__|\.pytest_cache|\.ruff_cache", s)}


# --- the parser and the checks, on fixture READMEs -----------------------------------------------
FIXTURE = """\
# Title

```bash
python -m training.train --data synthetic:1600 --epochs 16 \\
    --out runs/x      # a comment
# a whole-line comment
echo '# not a comment' "a # b" x#y
```

```text
python -m not.run
```

<!-- readme-test: skip: needs sudo -->
```bash
sudo reboot
```

<!-- readme-test: refused -->

```bash
python -m export.engine --onnx m.onnx
```

    python -m indented.not.run

```bash
python -m runtime.detect --engine models/x.fp16.engine --source clip.mp4
```
"""


def test_parser_reads_bash_blocks_only_with_joins_comments_and_markers():
    commands, problems = parse(FIXTURE)
    assert problems == []
    assert [(c.line, c.text, c.block, c.skip, c.refused) for c in commands] == [
        (4, "python -m training.train --data synthetic:1600 --epochs 16 --out runs/x", 3, None, False),
        (7, "echo '# not a comment' \"a # b\" x#y", 3, None, False),
        (16, "sudo reboot", 15, "needs sudo", False),
        (22, "python -m export.engine --onnx m.onnx", 21, None, True),
        (28, "python -m runtime.detect --engine models/x.fp16.engine --source clip.mp4", 27, None, False),
    ]
    assert [expects_refusal(c) for c in commands] == [False, False, False, True, True]


@pytest.mark.parametrize("text, problem", [
    ("<!-- readme-test: skip -->\n```bash\nmake\n```\n", "skip without a reason"),
    ("<!-- readme-test: skip:   -->\n```bash\nmake\n```\n", "skip without a reason"),
    ("<!-- readme-test: skip: x -->\nsome words\n```bash\nmake\n```\n", "not directly before a bash block"),
    ("<!-- readme-test: refused -->\n```text\nx\n```\n", "before a ```text block"),
    ("<!-- readme-test: refused -->\n", "not followed by a bash block"),
    ("<!-- readme-test: skipped: x -->\n```bash\nmake\n```\n", "unknown readme-test marker"),
    ("```sh\nls\n```\n", "tag it bash"),
    ("```bash\nls \\\n```\n", "ends inside a continued line"),
    ("```bash\nls\n", "never closed"),
    ("```bash\ncd models\n```\n", "does not carry over"),
])
def test_parser_reports_what_the_conventions_forbid(text, problem):
    _, problems = parse(text)
    assert len(problems) == 1 and problem in problems[0], problems


def test_knobs_substitute_exactly_and_report_the_unused():
    commands, _ = parse(FIXTURE)
    out, unused = apply_knobs(commands, {"synthetic:1600": "synthetic:64", "--epochs 16": "--epochs 1",
                                         "--frames 32": "--frames 2", "reboot": "halt"})
    assert out[0].text == "python -m training.train --data synthetic:64 --epochs 1 --out runs/x"
    assert out[1:] == commands[1:]  # everything else as printed; skipped blocks untouched
    assert unused == ["--frames 32", "reboot"]


def test_refusal_is_one_line_naming_tensorrt_or_the_gpu():
    trt, plain = Command(1, "python -m export.engine --onnx m.onnx", 1), Command(2, "python -m x", 1)
    one = "export.engine: error: tensorrt is not installed: ...; pip install tensorrt\n"
    assert check(trt, 1, one, gpu=False) is None
    assert "exit 0" in check(trt, 0, "", gpu=False)
    assert "exactly one" in check(trt, 1, "warning: x\n" + one, gpu=False)
    assert "not the refusal" in check(trt, 1, "export.engine: error: m.onnx: no such file\n", gpu=False)
    assert "traceback" in check(trt, 1, "Traceback (most recent call last):\n" + one, gpu=False)
    assert check(trt, 0, "", gpu=True) is None and "expected 0" in check(trt, 1, one, gpu=True)
    assert check(plain, 0, "progress\n", gpu=False) is None and "expected 0" in check(plain, 2, "", gpu=False)


def test_walk_runs_in_a_sandbox_and_names_the_failing_line(tmp_path):
    text = """\
```bash
python -c "import sys; print(sys.executable)" > which.txt
test -f runtime/assets/jrc_edge_detect.onnx && mkdir -p out && echo ok > out/ok.txt
python -c "import sys; sys.exit(3)"
```
"""
    commands, problems = parse(text)
    assert problems == []
    cwd = sandbox(tmp_path / "walk")
    failures, timings = walk(commands, cwd, gpu=False)
    assert len(timings) == 3
    assert Path((cwd / "which.txt").read_text().strip()) == Path(sys.executable)
    assert (cwd / "out" / "ok.txt").read_text() == "ok\n"
    assert len(failures) == 1 and failures[0].startswith("README.md:4: exit 3; expected 0"), failures
    assert sorted(p.name for p in cwd.iterdir()) == sorted([*PACKAGES, "which.txt", "out"])


# --- the walk ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.long
def test_readme_commands_work_as_printed(tmp_path):
    commands, problems = parse(README.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)
    skips = [c for c in commands if c.skip is not None]
    ran = len(commands) - len(skips)
    assert commands and ran >= MIN_RUN * len(commands), (
        f"only {ran} of {len(commands)} README bash lines run; skipped:\n"
        + "\n".join(f"README.md:{c.line} ({c.skip}): {c.text}" for c in skips))
    commands, unused = apply_knobs(commands, KNOBS)
    assert not unused, f"size knobs that no README command has any more (update KNOBS): {unused}"

    start = time.time() - 1  # file times can be a little coarse
    before = repo_state(start)
    cwd = sandbox(tmp_path / "user")
    failures, timings = walk(commands, cwd, gpu=has_gpu())
    print("\n".join(timings))
    changed = sorted(repo_state(start) - before)
    assert not failures, f"{len(failures)} README command(s) failed:\n\n" + "\n\n".join(failures)
    assert not changed, "README commands wrote into the repository (they must write into the cwd):\n" + "\n".join(
        changed)
