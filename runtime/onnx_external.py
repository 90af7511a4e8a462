"""Safe loading of ONNX files: external data must stay inside the model's folder.

An ONNX tensor can keep its bytes in another file named by a path in the model ("external
data"). A hostile model could name ``/etc/shadow`` or ``../../secret`` and have ONNX Runtime (or
onnx.load) read it into the weights. :func:`check_external_data` reads the model's protobuf
with a small wire-format walker (no onnx package: the runtime never imports onnx tooling), finds
every external-data location in graphs, subgraphs, attributes, functions and training graphs,
and refuses paths that are absolute, leave the model's folder (also through symlinks) or do not
exist. Call it before handing a path to onnxruntime or onnx.load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from runtime.errors import UserError
from runtime.protobuf import Malformed as _Malformed
from runtime.protobuf import fields, messages

# ONNX protobuf field numbers (onnx/onnx.proto) that can lead to a TensorProto
_MODEL_GRAPH, _MODEL_TRAINING, _MODEL_FUNCTIONS = 7, 20, 25
_GRAPH_NODE, _GRAPH_INIT, _GRAPH_SPARSE_INIT = 1, 5, 15
_NODE_ATTR = 5
_FUNCTION_NODE = 7
_TRAINING_GRAPHS = (1, 2)  # initialization, algorithm
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_TENSORS = (1, 2)  # values, indices
_TENSOR_EXTERNAL, _TENSOR_LOCATION = 13, 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_MAX_DEPTH = 64


def _fields(buf: memoryview) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, int value or memoryview of a length-delimited payload)."""
    for number, wire, a, b, _ in fields(buf):
        if wire == 0:
            yield number, wire, a
        elif wire == 2:
            yield number, wire, buf[a:b]


def _tensor_locations(t: memoryview) -> Iterator[str]:
    for entry in messages(t, (_TENSOR_EXTERNAL,)):
        kv = {f: bytes(v).decode("utf-8", "replace") for f, w, v in _fields(entry) if w == 2}
        if kv.get(_ENTRY_KEY) == "location":
            yield kv.get(_ENTRY_VALUE, "")


def _attr_locations(a: memoryview, depth: int) -> Iterator[str]:
    for field, wire, value in _fields(a):
        if wire != 2:
            continue
        if field in (_ATTR_T, _ATTR_TENSORS):
            yield from _tensor_locations(value)  # type: ignore[arg-type]
        elif field in (_ATTR_G, _ATTR_GRAPHS):
            yield from _graph_locations(value, depth + 1)  # type: ignore[arg-type]
        elif field in (_ATTR_SPARSE, _ATTR_SPARSES):
            for t in messages(value, _SPARSE_TENSORS):  # type: ignore[arg-type]
                yield from _tensor_locations(t)


def _nodes_locations(nodes: Iterator[memoryview], depth: int) -> Iterator[str]:
    for node in nodes:
        for attr in messages(node, (_NODE_ATTR,)):
            yield from _attr_locations(attr, depth)


def _graph_locations(g: memoryview, depth: int) -> Iterator[str]:
    if depth > _MAX_DEPTH:
        raise _Malformed("subgraphs nested too deeply")
    for field, wire, value in _fields(g):
        if wire != 2:
            continue
        if field == _GRAPH_INIT:
            yield from _tensor_locations(value)  # type: ignore[arg-type]
        elif field == _GRAPH_SPARSE_INIT:
            for t in messages(value, _SPARSE_TENSORS):  # type: ignore[arg-type]
                yield from _tensor_locations(t)
        elif field == _GRAPH_NODE:
            yield from _nodes_locations(iter([value]), depth)  # type: ignore[list-item]


def external_locations(model_bytes: bytes) -> list[str]:
    """Every external-data location string named anywhere in a serialized ModelProto."""
    buf = memoryview(model_bytes)
    found: list[str] = []
    for field, wire, value in _fields(buf):
        if wire != 2:
            continue
        if field == _MODEL_GRAPH:
            found += _graph_locations(value, 0)  # type: ignore[arg-type]
        elif field == _MODEL_TRAINING:
            for g in messages(value, _TRAINING_GRAPHS):  # type: ignore[arg-type]
                found += _graph_locations(g, 0)
        elif field == _MODEL_FUNCTIONS:
            found += _nodes_locations(messages(value, (_FUNCTION_NODE,)), 0)  # type: ignore[arg-type]
    return found


def check_external_data(model_path: str | Path) -> list[Path]:
    """Refuse an ONNX model whose external data lies outside its folder; return the data files."""
    path = Path(model_path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the model ({e.strerror or e}); check the path") from None
    try:
        locations = external_locations(data)
    except _Malformed as e:
        raise UserError(f"{path}: not a valid ONNX model ({e}); re-export it") from None
    folder = path.resolve().parent
    files: list[Path] = []
    for loc in dict.fromkeys(locations):
        target = (folder / loc).resolve()
        if not loc or Path(loc).is_absolute() or (folder not in target.parents):
            raise UserError(f"{path}: refused, its external data {loc!r} lies outside the model's folder "
                            f"{folder}; keep the data file beside the model (or re-export a single file)")
        if not target.is_file():
            raise UserError(f"{path}: its external data file {loc!r} is missing; copy it beside the model")
        files.append(target)
    return files
