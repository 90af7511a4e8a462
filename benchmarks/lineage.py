"""Which artifacts are siblings: made from the same model, so a speed ratio between them means
something (the int8 file quantized from that fp32 file, the full graph exported beside that detect
graph), and which are not (a user's int8 file beside the bundled fp32 model).

Every artifact's metadata names the file it was made from (``source_sha256``: an ONNX export the
checkpoint, an int8 or fp16 ONNX its fp32 ONNX, an engine its ONNX). Following those links through
the artifacts measured and the ONNX files beside them leads each artifact to its *root*, the first
file whose source is not among them (a checkpoint, for what ``export.onnx`` wrote). Two artifacts
are siblings when their roots are the same; an artifact without a recorded source is its own root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_BESIDE = 64  # ONNX files read beside each artifact to follow a link (a folder of exports)


def _digest(path: Path, cache: dict[Path, str]) -> str:
    """The file's sha256 (its resolved path where it cannot be read: its own identity all the same)."""
    from runtime.meta import sha256_file

    p = path.resolve()
    if p not in cache:
        try:
            cache[p] = sha256_file(p)
        except OSError:
            cache[p] = f"path:{p}"
    return cache[p]


def _source_of(path: Path) -> str | None:
    """The ``source_sha256`` an ONNX file's metadata records, or None (no or unreadable metadata)."""
    from export.onnx_io import file_meta
    from runtime.errors import UserError

    try:
        return file_meta(path).source_sha256
    except UserError:
        return None


def roots(artifacts: dict[str, tuple[Path, Any]]) -> dict[str, str]:
    """``label → root`` for ``label → (path, meta)``: the hash each one's chain of sources ends at."""
    cache: dict[Path, str] = {}
    source: dict[str, str | None] = {}  # digest of a known file → its recorded source
    for path, meta in artifacts.values():
        source[_digest(path, cache)] = getattr(meta, "source_sha256", None)
    folders = {path.resolve().parent for path, _ in artifacts.values() if path.is_file()}
    for folder in folders:
        for other in sorted(folder.glob("*.onnx"))[:MAX_BESIDE]:
            d = _digest(other, cache)
            if d not in source:
                source[d] = _source_of(other)
    out = {}
    for label, (path, _) in artifacts.items():
        at = _digest(path, cache)
        seen = {at}
        while source.get(at) and source[at] not in seen:  # follow the links; a loop ends where it closes
            at = source[at]  # type: ignore[assignment]
            seen.add(at)
        out[label] = at
    return out
