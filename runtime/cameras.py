"""The cameras of a box: ``--source [NAME=]SRC`` (repeatable) and ``--cameras FILE.toml``.

A name before ``=`` names the camera (``door=rtsp://…``); unnamed sources are ``cam1``, ``cam2``, …
by position. A TOML file names cameras as tables, with per-camera options; the command line's
options are the defaults of every camera::

    [cameras.door]
    source = "rtsp://10.0.0.5/stream1"
    max_reconnects = "forever"

    [cameras.lobby]
    source = "lobby.mp4"        # relative paths are relative to this file's folder
    stride = 2
    faces = "haar"

TOML is read with ``tomllib`` (Python 3.11+) or, on older Pythons (JetPack 5.1 ships 3.8, 6.x
3.10), the ``tomli`` package it came from (``pip install tomli``, in the ``box`` extra).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import EXIT_USAGE, UserError

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")  # safe in MQTT topics, metric labels and file names (fullmatch)
_NAMED = re.compile(r"([A-Za-z][A-Za-z0-9_-]{0,63})=(.+)", re.DOTALL)  # fullmatch: nothing after the name's end
FOREVER = 10**9  # --max-reconnects forever: a reconnect every 10 s at most, for as long as the box runs

# per-camera keys: (type, check, the message's expectation)
_KEYS: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "source": ((str,), lambda v: bool(v.strip()), "a non-empty string"),
    "stride": ((int,), lambda v: v >= 1, "an integer of at least 1"),
    "live": ((str,), lambda v: v in ("auto", "yes", "no"), "one of auto, yes, no"),
    "max_reconnects": ((int, str), lambda v: v == "forever" if isinstance(v, str) else v >= 0,
                       "an integer of at least 0, or \"forever\""),
    "timeout": ((int, float), lambda v: math.isfinite(v) and v > 0, "a positive number of seconds"),
    "faces": ((str,), lambda v: v in ("mtcnn", "haar", "yunet", "none"), "one of mtcnn, haar, yunet, none"),
    "face_model": ((str,), lambda v: bool(v.strip()), "a path"),
    "face_threshold": ((int, float), lambda v: 0.0 <= v <= 1.0, "a probability between 0 and 1"),
    "detect_every": ((int,), lambda v: v >= 1, "an integer of at least 1"),
    "detect_width": ((int,), lambda v: v >= 0, "an integer of at least 0"),
    "min_face": ((int,), lambda v: v >= 1, "an integer of at least 1"),
    "max_faces": ((int,), lambda v: v >= 1, "an integer of at least 1"),
    "scan_every": ((int,), lambda v: v >= 1, "an integer of at least 1"),
}
CAMERA_KEYS = tuple(_KEYS)


@dataclass(frozen=True)
class CameraSpec:
    """One camera: its name, its source string and the options that differ from the command line's."""

    name: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    origin: str = "--source"  # where it was given (messages)

    def option(self, args: Any, key: str) -> Any:
        """This camera's value of ``key``: its own, else the command line's."""
        return self.options[key] if key in self.options else getattr(args, key)


def reconnects(text: str) -> int:
    """``--max-reconnects``: a count, or ``forever``."""
    if str(text).strip().lower() in ("forever", "inf", "infinite"):
        return FOREVER
    try:
        return int(text)
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"expected a count or 'forever', got {text!r}") from None


def split_name(spec: str) -> tuple[str | None, str]:
    """``door=rtsp://…`` → ("door", "rtsp://…"); a string that is an existing path, or whose part
    before ``=`` is not a name (URLs, pipelines: ``v4l2src device=…``), has no name."""
    m = _NAMED.fullmatch(spec.strip())
    if m is None or os.path.exists(spec):
        return None, spec
    return m.group(1), m.group(2)


def _check_unnamed(raw: str, name: str | None) -> None:
    """``--source 'a b=x.jpg'``: no such file, and the part before ``=`` is no camera name; say both
    (a bare "no such file" would hide the name the user meant)."""
    from runtime.source_specs import is_glob, live_kind

    head = raw.split("=", 1)[0].strip()
    if name is not None or "=" not in raw or not head or os.path.exists(raw) or live_kind(raw) is not None:
        return
    if "/" in head or os.sep in head or is_glob(raw):  # a path or pattern with '=' in it (date=2024-01-01/…)
        return
    if not NAME.fullmatch(head):
        raise UserError(f"--source {raw}: no such file, and {head!r} is not a camera name (a letter, then letters, "
                        "digits, '_' or '-', at most 64); name the camera like door=SRC", EXIT_USAGE)


def from_sources(sources: list[str], taken: set[str] = frozenset()) -> list[CameraSpec]:  # type: ignore[assignment]
    """Cameras of ``--source`` strings; an unnamed one is ``cam<its position>`` (the next free
    number when that name is taken)."""
    named = [split_name(raw) for raw in sources]
    for raw, (name, _) in zip(sources, named):
        _check_unnamed(raw, name)
    used = set(taken) | {n for n, _ in named if n}
    out = []
    for i, (raw, (name, spec)) in enumerate(zip(sources, named), 1):
        if name is None:
            k = i
            while f"cam{k}" in used:
                k += 1
            name = f"cam{k}"
            used.add(name)
        out.append(CameraSpec(name, spec, origin=f"--source {raw}"))
    return out


def load_toml(path: str) -> dict[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        try:
            import tomli as tomllib  # the same parser, for Python 3.8-3.10
        except ImportError:
            raise UserError(f"--cameras {path}: reading TOML on Python < 3.11 needs the tomli package; install it "
                            "with: pip install tomli (or pip install 'jrc-edge[box]')") from None
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"--cameras {path}: no such file", EXIT_USAGE) from None
    except IsADirectoryError:
        raise UserError(f"--cameras {path}: is a folder; pass a .toml file", EXIT_USAGE) from None
    except OSError as e:
        raise UserError(f"--cameras {path}: cannot be read ({e.strerror or e})", EXIT_USAGE) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"--cameras {path}: not valid TOML ({e}); see the README's camera box section",
                        EXIT_USAGE) from None


def from_toml(path: str) -> list[CameraSpec]:
    """The ``[cameras.NAME]`` tables of ``path``, in file order; every key checked."""
    doc = load_toml(path)
    extra = [k for k in doc if k != "cameras"]
    if extra:
        raise UserError(f"--cameras {path}: unknown top-level key(s) {', '.join(map(repr, extra))}; cameras go in "
                        "[cameras.NAME] tables", EXIT_USAGE)
    cams = doc.get("cameras")
    if not isinstance(cams, dict) or not cams:
        raise UserError(f"--cameras {path}: no cameras; add a [cameras.NAME] table with a source", EXIT_USAGE)
    from runtime.source_specs import is_glob, live_kind

    folder = Path(path).resolve().parent
    out = []
    for name, table in cams.items():
        where = f"--cameras {path}: camera {name!r}"
        if not NAME.fullmatch(name):
            raise UserError(f"{where}: a name is a letter, then letters, digits, '_' or '-' (at most 64)", EXIT_USAGE)
        if not isinstance(table, dict):
            raise UserError(f"{where}: expected a table ([cameras.{name}]) with a source", EXIT_USAGE)
        opts: dict[str, Any] = {}
        for key, value in table.items():
            if key not in _KEYS:
                raise UserError(f"{where}: unknown key {key!r}; the keys are {', '.join(CAMERA_KEYS)}", EXIT_USAGE)
            types, ok, expect = _KEYS[key]
            if isinstance(value, bool) or not isinstance(value, types) or not ok(value):
                raise UserError(f"{where}: {key} = {value!r}: expected {expect}", EXIT_USAGE)
            opts[key] = value
        if "source" not in opts:
            raise UserError(f"{where}: no source; add source = \"rtsp://…\" (or a camera index, file, URL, pipeline)",
                            EXIT_USAGE)
        source = opts.pop("source").strip()
        if live_kind(source) is None and not os.path.isabs(source):
            given, source = source, str(folder / source)  # a file, folder or glob: relative to the TOML file
            if not os.path.exists(source) and not is_glob(source) and os.path.exists(given):
                raise UserError(f"{where}: source {given!r} is read relative to {path}'s folder ({source}: no such "
                                "file); the one in the current folder is not used, give its absolute path", EXIT_USAGE)
        if opts.get("max_reconnects") == "forever":
            opts["max_reconnects"] = FOREVER
        if "face_model" in opts and not os.path.isabs(opts["face_model"]):
            opts["face_model"] = str(folder / opts["face_model"])
        out.append(CameraSpec(name, source, opts, origin=f"--cameras {path} [cameras.{name}]"))
    return out


def camera_specs(sources: list[str] | None, cameras_file: str | None) -> list[CameraSpec]:
    """Every camera of the command line: the TOML file's first, then ``--source``'s; names unique."""
    specs = from_toml(cameras_file) if cameras_file else []
    specs += from_sources(sources or [], {s.name for s in specs})
    seen: dict[str, CameraSpec] = {}
    for s in specs:
        if s.name in seen:
            raise UserError(f"camera name {s.name!r} is given twice ({seen[s.name].origin}; {s.origin}); "
                            "give each camera its own name", EXIT_USAGE)
        seen[s.name] = s
    return specs
