"""Inference backends, chosen by the artifact's file suffix.

``.onnx`` → ONNX Runtime (:mod:`runtime.backends.onnxruntime`); ``.engine`` / ``.plan`` →
TensorRT (:mod:`runtime.backends.tensorrt`). Backend modules are imported only when a file of
their kind is opened, so this package imports without onnxruntime, tensorrt or pycuda.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from runtime.backends.base import Backend
from runtime.errors import UserError
from runtime.meta import ENGINE_SUFFIXES, missing_engine

__all__ = ["Backend", "artifact_file", "open_backend", "open_graph", "BACKENDS", "GRAPH_RUNNERS"]

# suffix -> (module, class name)
BACKENDS: dict[str, tuple[str, str]] = {
    ".onnx": ("runtime.backends.onnxruntime", "OnnxRuntimeBackend"),
    ".engine": ("runtime.backends.tensorrt", "TensorRTBackend"),
    ".plan": ("runtime.backends.tensorrt", "TensorRTBackend"),
}


# suffix -> (module, class name) of a runner for any graph by input/output names (a face detector)
GRAPH_RUNNERS: dict[str, tuple[str, str]] = {
    ".onnx": ("runtime.backends.onnxruntime", "OnnxRuntimeGraph"),
    ".engine": ("runtime.backends.tensorrt", "TensorRTGraph"),
    ".plan": ("runtime.backends.tensorrt", "TensorRTGraph"),
}


def _known_suffix(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in BACKENDS:
        raise UserError(f"{path}: unsupported model file type {suffix or '(no suffix)'!r}; expected "
                        "an ONNX model (.onnx) or a TensorRT engine (.engine/.plan)")
    return suffix


def backend_class(path: str | Path) -> type[Backend]:
    """The backend class for an artifact path (by suffix), imported on demand."""
    module, cls = BACKENDS[_known_suffix(path)]
    return getattr(importlib.import_module(module), cls)


def artifact_file(path: str | Path) -> Path:
    """The checks an artifact path gets before its backend opens it, without importing that backend:
    a known suffix and an existing file. A user error naming the path, or its Path."""
    p = Path(path)
    _known_suffix(p)
    if not p.exists():
        if p.suffix.lower() in ENGINE_SUFFIXES:
            raise missing_engine(path)
        raise UserError(f"{path}: no such file; pass the .onnx or .engine file to run")
    if not p.is_file():
        raise UserError(f"{path}: is not a file; pass the .onnx or .engine file to run")
    return p


def open_backend(path: str | Path, **options: Any) -> Backend:
    """Open an artifact with the backend its suffix names; ``options`` go to that backend."""
    cls = backend_class(path)
    return cls(str(artifact_file(path)), **options)


def open_graph(path: str | Path, **options: Any) -> Any:
    """A runner with ``run(feeds, names)`` for any graph (the face detector's networks), by suffix."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in GRAPH_RUNNERS:
        raise UserError(f"{path}: unsupported model file type {suffix or '(no suffix)'!r}; expected .onnx or .engine")
    if not p.is_file():
        raise UserError(f"{path}: no such file; pass the face detector's folder (python -m export.faces writes one)")
    module, cls = GRAPH_RUNNERS[suffix]
    return getattr(importlib.import_module(module), cls)(str(p), **options)
