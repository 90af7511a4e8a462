"""Shared output of the benchmark CLIs: machine description, text tables, JSON, PNG charts."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from runtime import cpu
from runtime.errors import EXIT_USAGE, UserError
from runtime.fileio import write_atomic
from runtime.pipeline import usable_cores


def artifact_labels(paths: Sequence[str | Path]) -> dict[str, str]:
    """File names, qualified by their folder where two artifacts share a name (``v3/detect.onnx``,
    ``minimal/detect.onnx``): what a table shows and a kept artifact's folder is named after."""
    names = [Path(p).name for p in paths]
    return {str(p): (f"{Path(p).parent.name}/{n}" if names.count(n) > 1 else n) for p, n in zip(paths, names)}


def machine() -> dict[str, Any]:
    """What the numbers were measured on (the same dict goes into every JSON report)."""
    # name, SIMD flags, VNNI and the CPUID mask (benchmarks.cpu_mask) as this process sees them
    d: dict[str, Any] = {**cpu.describe(), "cores": os.cpu_count(), "usable_cores": usable_cores(),
                         "arch": platform.machine(), "os": platform.platform(), "python": platform.python_version()}
    try:
        d["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    for mod in ("numpy", "onnxruntime", "torch", "tensorrt", "cv2"):
        m = sys.modules.get(mod)
        if m is not None:
            d[mod] = getattr(m, "__version__", "?")
    return d


def describe_cpu(machine_info: dict[str, Any]) -> str:
    """The CPU of a report in a few words: its name, its SIMD flags, and a CPUID mask when one was on."""
    flags = ", ".join(machine_info.get("cpu_flags", [])) or "no SIMD flags read"
    mask = machine_info.get("cpuid_mask")
    return f"{machine_info.get('cpu', '?')} ({flags}{f'; CPUID masked to {mask}' if mask else ''})"


def busy_note(machine_info: dict[str, Any], threads: int) -> str | None:
    """A warning when the machine was busy: load above the cores makes timings noisy, and
    multi-threaded ones suffer most (spin-waiting threads lose their core mid-run)."""
    load, cores = machine_info.get("loadavg_1m"), machine_info.get("usable_cores") or 1
    if load is None or load <= cores:
        return None
    hint = "; with several threads per run, try --threads 1" if threads > 1 else ""
    return (f"the machine was busy (load average {load} on {cores} cores) when the run started: "
            f"absolute timings are noisy, interleaved ratios less so{hint}")


def default_threads() -> int:
    return usable_cores()


MAX_BATCH = 1024  # a larger --batch only runs the machine out of memory


def parse_batches(text: str) -> list[int]:
    try:
        out = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--batch {text!r}: expected comma-separated positive integers, e.g. 1,8") from None
    if not out or any(b < 1 for b in out):
        raise UserError(f"--batch {text!r}: expected comma-separated positive integers, e.g. 1,8")
    if max(out) > MAX_BATCH:
        raise UserError(f"--batch {text!r}: at most {MAX_BATCH} faces a batch (a batch of 224 px faces takes "
                        "0.6 MB each before the model's own activations); measure smaller batches", EXIT_USAGE)
    return sorted(set(out))


def parse_list(text: str, kind: type, flag: str) -> list[Any]:
    """``"0,1,2"`` as ``[kind(v), ...]``; UserError naming ``flag`` when a value does not parse or none is given."""
    try:
        out = [kind(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} {text}: expected comma-separated {kind.__name__} values") from None
    if not out:
        raise UserError(f"{flag} {text}: empty")
    return out


def check_positive(**values: int) -> None:
    for name, v in values.items():
        if v is not None and v < 1:
            raise UserError(f"--{name.replace('_', '-')} {v}: must be at least 1")


def parse_size(text: str, flag: str = "--size") -> tuple[int, int]:
    """``1280x720`` → (1280, 720); anything else is a one-line error."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected WxH, e.g. 1280x720") from None
    if w < 1 or h < 1:
        raise UserError(f"{flag} {text!r}: both sides must be at least 1")
    return w, h


def check_files(paths: Sequence[str], flag: str) -> None:
    for p in paths:
        if not Path(p).is_file():
            raise UserError(f"{flag} {p}: no such file")


def check_writable(path: str | None, flag: str, inputs: Sequence[tuple[str, str | None]] = ()) -> None:
    """An output's folder is created when missing (the rule of every tool); a file in the way, a
    folder at the path, or an input at it (``inputs``: (flag, path) of what the tool reads; an
    image or video written into a folder input would be read as one of its items) is a one-line
    error before any work."""
    if not path:
        return
    from runtime.fileio import make_folder, same_file
    from runtime.media import MEDIA_EXTS

    out = Path(path).expanduser()
    if out.is_dir() or str(path).endswith(os.sep):
        raise UserError(f"{flag} {path}: is a folder; pass a file name")
    for in_flag, in_path in inputs:
        if not in_path or not os.path.exists(in_path):
            continue
        inside = os.path.isdir(in_path) and Path(in_path).resolve() in out.resolve().parents
        if same_file(out, in_path) or (inside and out.suffix.lower() in MEDIA_EXTS):
            raise UserError(f"{flag} {path}: {'inside' if os.path.isdir(in_path) else 'the same file as'} {in_flag} "
                            f"{in_path}, an input; writing it would destroy or change what is read, choose another path",
                            EXIT_USAGE)
    make_folder(out.parent, flag, path)


def check_paths(engines: Sequence[str], reference: str | None, json_out: str | None, png_out: str | None,
                inputs: Sequence[tuple[str, str | None]] = ()) -> None:
    """The checks every benchmark CLI runs first: its models exist, and its outputs can be written and
    are none of its inputs (``inputs``: what else it reads, besides the engines and the reference)."""
    check_files(engines, "--engine")
    if reference:
        check_files([reference], "--reference")
    read = [("--engine", e) for e in engines] + [("--reference", reference)] + list(inputs)
    check_writable(json_out, "--json", read)
    check_writable(png_out, "--png", read + [("--json", json_out)])


# --- text -----------------------------------------------------------------------------------
def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "n/a"
        return f"{v:.{digits}f}" if abs(v) < 1e5 else f"{v:.3g}"
    return str(v)


def table(rows: list[dict[str, Any]], columns: Sequence[tuple[str, str]], digits: int = 2) -> str:
    """A plain, aligned text table; ``columns`` = (key, header)."""
    cells = [[h for _, h in columns]] + [[fmt(r.get(k), digits) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = []
    for n, c in enumerate(cells):
        lines.append("  ".join(s.ljust(w) if i == 0 else s.rjust(w) for i, (s, w) in enumerate(zip(c, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: str, data: dict[str, Any]) -> None:
    """Strict JSON (NaN and infinities become null), written atomically."""
    write_atomic(path, json.dumps(strict(data), indent=2, allow_nan=False, default=_jsonable) + "\n")


def strict(o: Any) -> Any:
    """A copy with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: strict(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [strict(v) for v in o]
    if hasattr(o, "to_dict"):
        return strict(o.to_dict())
    if hasattr(o, "tolist"):
        return strict(o.tolist())
    return o


def _jsonable(o: Any) -> Any:
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def envelope(tool: str, argv: Sequence[str] | None, settings: dict[str, Any]) -> dict[str, Any]:
    """The common head of every JSON report."""
    return {"schema": 1, "tool": tool, "command": f"python -m {tool} " + " ".join(argv or sys.argv[1:]),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), "settings": settings}


def save_png(path: str, draw: Callable[[Any], None], size: tuple[float, float] = (10, 4.5)) -> None:
    """Draw a figure with matplotlib's Agg backend (no display needed) and save it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from runtime.errors import missing_dependency

        raise missing_dependency("matplotlib", "train") from None
    fig = plt.figure(figsize=size)
    try:
        draw(fig)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


class Progress:
    """One console line on stderr, rewritten in place (quiet when not a terminal or asked)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if force or now - self._last > 0.2:
            self._last = now
            sys.stderr.write("\r\x1b[K" + text)
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def note(text: str) -> None:
    print(text, file=sys.stderr)


def emit(result: dict, printer: Callable[[dict], None], json_path: str | None, png_path: str | None,
         plotter: Callable[[dict, str], None]) -> None:
    """The end of every benchmark CLI: the table on stdout, then the JSON and the PNG if asked for."""
    printer(result)
    if json_path:
        write_json(json_path, result)
    if png_path:
        plotter(result, png_path)
