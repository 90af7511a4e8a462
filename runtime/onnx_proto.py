"""Reading ONNX models as raw protobuf, without the onnx package (the runtime never imports onnx tooling).

Three things the runtime needs from a model file before, or instead of, handing it to ONNX Runtime:

- a minimal protobuf wire-format walker (:func:`fields`, :func:`messages`); malformed input raises
  :class:`Malformed` (a ValueError), never an IndexError;
- the external-data containment check (:func:`check_external_data`): an ONNX tensor can keep its
  bytes in another file named by a path in the model. A hostile model could name ``/etc/shadow``
  or ``../../secret`` and have ONNX Runtime (or onnx.load) read it into the weights. Every
  external-data location in graphs, subgraphs, attributes, functions and training graphs is found,
  and paths that are absolute, leave the model's folder (also through symlinks) or do not exist are
  refused. Call it before handing a path to onnxruntime or onnx.load;
- output pruning (:func:`prune_outputs`): ONNX Runtime runs every node of a graph even when only
  some outputs are fetched (measured with 1.32), so a full graph (logit + recon) would always pay
  for the decoder. The unwanted graph outputs and the nodes only they need are dropped by editing
  the wire format directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from runtime.errors import UserError

_MAX_DEPTH = 64  # subgraph nesting (If/Loop bodies) deeper than this is not a real model

# ONNX protobuf field numbers (onnx/onnx.proto)
_MODEL_GRAPH, _MODEL_TRAINING, _MODEL_FUNCTIONS = 7, 20, 25
_GRAPH_NODE, _GRAPH_INIT, _GRAPH_OUTPUT, _GRAPH_SPARSE_INIT = 1, 5, 12, 15
_NODE_INPUT, _NODE_OUTPUT, _NODE_ATTR = 1, 2, 5
_VALUE_INFO_NAME = 1
_FUNCTION_NODE = 7
_TRAINING_GRAPHS = (1, 2)  # initialization, algorithm
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_TENSORS = (1, 2)  # values, indices
_TENSOR_EXTERNAL = 13
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


# --- wire format ------------------------------------------------------------------------------
class Malformed(ValueError):
    pass


def varint(buf: memoryview, i: int, end: int) -> tuple[int, int]:
    """The varint at ``i`` and the position after it."""
    shift = result = 0
    while True:
        if i >= end or shift > 63:
            raise Malformed("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def fields(buf: memoryview, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int, int, int]]:
    """(number, wire type, payload start, payload end, field start) of each field of a message.

    For varints the payload start is the value itself; the field's bytes end at payload end.
    """
    end = len(buf) if end is None else end
    i = start
    while i < end:
        first = i
        key, i = varint(buf, i, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i, end)
            yield number, wire, value, i, first
            continue
        if wire == 2:
            n, i = varint(buf, i, end)
            if i + n > end:
                raise Malformed("field runs past the end of its message")
            yield number, wire, i, i + n, first
            i += n
            continue
        if wire not in (1, 5):
            raise Malformed(f"unsupported wire type {wire}")
        i += 8 if wire == 1 else 4
        if i > end:
            raise Malformed("field runs past the end of its message")
        yield number, wire, i - (8 if wire == 1 else 4), i, first
    if i != end:
        raise Malformed("truncated field")


def messages(buf: memoryview, numbers: tuple[int, ...]) -> Iterator[memoryview]:
    """The length-delimited payloads of the fields numbered ``numbers``, as views."""
    for n, w, a, b, _ in fields(buf):
        if w == 2 and n in numbers:
            yield buf[a:b]


def _values(buf: memoryview) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, int value or memoryview of a length-delimited payload)."""
    for number, wire, a, b, _ in fields(buf):
        if wire == 0:
            yield number, wire, a
        elif wire == 2:
            yield number, wire, buf[a:b]


def _strings(buf: memoryview, start: int, end: int, number: int) -> list[str]:
    return [bytes(buf[a:b]).decode("utf-8", "replace")
            for n, w, a, b, _ in fields(buf, start, end) if n == number and w == 2]


# --- external data ----------------------------------------------------------------------------
def _tensor_locations(t: memoryview) -> Iterator[str]:
    for entry in messages(t, (_TENSOR_EXTERNAL,)):
        kv = {f: bytes(v).decode("utf-8", "replace") for f, w, v in _values(entry) if w == 2}
        if kv.get(_ENTRY_KEY) == "location":
            yield kv.get(_ENTRY_VALUE, "")


def _attr_locations(a: memoryview, depth: int) -> Iterator[str]:
    for field, wire, value in _values(a):
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
        raise Malformed("subgraphs nested too deeply")
    for field, wire, value in _values(g):
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
    for field, wire, value in _values(buf):
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
    except Malformed as e:
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


# --- pruning outputs --------------------------------------------------------------------------
def _key(number: int) -> bytes:
    return encode_varint(number << 3 | 2)


def _subgraph_refs(buf: memoryview, start: int, end: int, depth: int = 0) -> set[str]:
    """Every name read by any node of a (sub)graph: what a control-flow node may use from outside."""
    if depth > _MAX_DEPTH:
        raise Malformed("graphs nested too deeply")
    refs: set[str] = set()
    for n, w, a, b, _ in fields(buf, start, end):
        if n == _GRAPH_NODE and w == 2:
            refs.update(_strings(buf, a, b, _NODE_INPUT))
            refs.update(_node_subgraph_refs(buf, a, b, depth + 1))
    return refs


def _node_subgraph_refs(buf: memoryview, start: int, end: int, depth: int) -> set[str]:
    refs: set[str] = set()
    for n, w, a, b, _ in fields(buf, start, end):
        if n == _NODE_ATTR and w == 2:
            for an, aw, aa, ab, _ in fields(buf, a, b):
                if an in (_ATTR_G, _ATTR_GRAPHS) and aw == 2:
                    refs |= _subgraph_refs(buf, aa, ab, depth)
    return refs


def _prune_graph(buf: memoryview, start: int, end: int, keep: set[str]) -> bytes | None:
    parts = list(fields(buf, start, end))
    nodes = [(i, set(_strings(buf, a, b, _NODE_OUTPUT)),
              set(_strings(buf, a, b, _NODE_INPUT)) | _node_subgraph_refs(buf, a, b, 1))
             for i, (n, w, a, b, _) in enumerate(parts) if n == _GRAPH_NODE and w == 2]
    outputs = {i: _strings(buf, a, b, _VALUE_INFO_NAME)[:1]
               for i, (n, w, a, b, _) in enumerate(parts) if n == _GRAPH_OUTPUT and w == 2}
    drop = {i for i, names in outputs.items() if not set(names) & keep}
    if not drop:
        return None
    needed = {name for i, names in outputs.items() if i not in drop for name in names}
    for i, produces, reads in reversed(nodes):  # ONNX nodes are stored in topological order
        if produces & needed:
            needed |= reads
        else:
            drop.add(i)
    return b"".join(bytes(buf[f[4]:f[3]]) for i, f in enumerate(parts) if i not in drop)


def graph_outputs(data: bytes) -> list[str]:
    """The names of the main graph's outputs."""
    buf = memoryview(data)
    try:
        for n, w, a, b, _ in fields(buf, 0, len(buf)):
            if n == _MODEL_GRAPH and w == 2:
                return [name for on, ow, oa, ob, _ in fields(buf, a, b) if on == _GRAPH_OUTPUT and ow == 2
                        for name in _strings(buf, oa, ob, _VALUE_INFO_NAME)[:1]]
    except (Malformed, IndexError) as e:
        raise ValueError(str(e)) from None
    return []


def prune_outputs(data: bytes, keep: set[str]) -> bytes:
    """The model with only the graph outputs named in ``keep`` and the nodes they depend on."""
    buf = memoryview(data)
    parts = []
    try:
        changed = False
        for n, w, a, b, first in fields(buf, 0, len(buf)):
            graph = _prune_graph(buf, a, b, keep) if n == _MODEL_GRAPH and w == 2 else None
            if graph is None:
                parts.append(bytes(buf[first:b]))
            else:
                parts.append(_key(_MODEL_GRAPH) + encode_varint(len(graph)) + graph)
                changed = True
    except (Malformed, IndexError) as e:
        raise ValueError(str(e)) from None
    return b"".join(parts) if changed else data
