"""The checks the calibration tools run on their output files before any face is read: no output is an
input or another output (exit 2), each can be written (a folder in the way, a file where a folder should
be, a place that takes no files: one line), and an earlier artifact being replaced is said, with the
files built from it beside it (engines, their sidecars, nvinfer configs), which it leaves out of date.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from runtime.errors import EXIT_USAGE, UserError

Named = tuple[str, "str | Path | None"]  # (flag, path) of an input or output


def check_outputs(prog: str, outputs: Sequence[Named], inputs: Sequence[Named],
                  built_upon: Sequence[Path] = (), say: bool = True) -> Callable[[], None]:
    """Refuse colliding or unwritable outputs; note the ones that replace earlier files (for those in
    ``built_upon``, artifacts that engines are built from, naming the files built from them): now, or
    with ``say=False`` when the returned function is called (once the inputs passed their checks too,
    so a bad input is the run's only line)."""
    from runtime.fileio import same_file
    from training.outputs import output_file

    outs = [(flag, Path(p)) for flag, p in outputs if p is not None]
    for flag, out in outs:
        for in_flag, given in inputs:
            if given is not None and os.path.isfile(given) and same_file(out, given):
                raise UserError(f"{flag} {out}: the same file as {in_flag} {given}, an input; writing it would "
                                "destroy what is read, choose another path", EXIT_USAGE)
    for i, (flag, out) in enumerate(outs):
        for other_flag, other in outs[i + 1:]:
            if same_file(out, other):
                raise UserError(f"{other_flag} {other}: the same file as {flag} {out}; one output would overwrite "
                                "the other, choose another path", EXIT_USAGE)
    for flag, out in outs:
        output_file(out, flag)

    def notes() -> None:
        for _, out in outs:
            note_replacing(prog, out, any(same_file(out, b) for b in built_upon))

    if say:
        notes()
        return lambda: None
    return notes


def note_replacing(prog: str, path: Path, siblings: bool = False) -> None:
    """Say that ``path`` (an earlier result) is replaced; with ``siblings``, name the files beside it
    whose names extend its stem (``detect.int8.engine`` of ``detect.int8.onnx``): built from it."""
    if not path.is_file():
        return
    stem = path.name[:-len(".onnx")] if siblings and path.name.endswith(".onnx") else None
    made = sorted(p.name for p in path.parent.glob(f"{stem}.*") if p.name != path.name and p.is_file()
                  and not p.name.startswith(".")) if stem else []
    stale = f"; built from the earlier one, rebuild them: {', '.join(made)}" if made else ""
    print(f"{prog}: note: replacing {path} (an earlier result){stale}", file=sys.stderr)
