"""Reading ONNX models as raw protobuf, without the onnx package (the runtime never imports onnx tooling).

Three things the runtime needs from a model file before, or instead of, handing it to ONNX Runtime:

- a minimal protobuf wire-format walker (:func:`fields`, :func:`messages`); malformed input raises
  :class:`Malformed` (a ValueError), never an IndexError;
- the check every tool runs before opening a model (:func:`check_external_data`): an ONNX tensor
  can keep its bytes in another file named by a path in the model. A hostile model could name
  ``/etc/shadow`` or ``../../secret`` and have ONNX Runtime (or onnx.load) read it into the weights.
  Every tensor in graphs, subgraphs, attributes, functions and training graphs is found; external
  paths that are absolute, leave the model's folder (also through symlinks) or do not exist are
  refused, and so are declared sizes that do not add up (absurd or negative dimensions, offsets or
  lengths beyond the data file, raw data that disagrees with the shape), which would otherwise fail
  inside onnx or ONNX Runtime with a traceback or a huge allocation. Call it before handing a path
  to onnxruntime, onnx.load, TensorRT's parser or Polygraphy;
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


# --- external data and declared sizes ---------------------------------------------------------
_TENSOR_DIMS, _TENSOR_TYPE, _TENSOR_NAME, _TENSOR_RAW, _TENSOR_LOCATION = 1, 2, 8, 9, 14
_GRAPH_VALUE_INFOS = (11, 12, 13)  # input, output, value_info
_VALUE_INFO_TYPE, _TYPE_TENSOR, _TENSOR_TYPE_SHAPE, _SHAPE_DIM, _DIM_VALUE = 2, 1, 2, 1, 1
# bytes per element of the fixed-size ONNX data types (TensorProto.DataType); 4-bit and string types are left out
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2,
             17: 1, 18: 1, 19: 1, 20: 1}
MAX_DIM = 2**31 - 1  # one dimension (TensorRT's limit too); negative int64 dims read as larger than this
MAX_ELEMENTS = 2**31  # one tensor: 8 GB of float32, far beyond any model here


class _Tensor:
    """What the checks need from one TensorProto."""

    def __init__(self, t: memoryview) -> None:
        self.name, self.dims, self.dtype, self.raw, self.external = "", [], 0, None, False
        self.entries: dict[str, str] = {}
        for number, wire, a, b, _ in fields(t):
            if number == _TENSOR_DIMS:
                if wire not in (0, 2):
                    raise Malformed(f"tensor {self.name!r} has dimensions of wire type {wire}")
                self.dims += [a] if wire == 0 else [v for v, _ in _varints(t, a, b)]
            elif number == _TENSOR_TYPE and wire == 0:
                self.dtype = a
            elif number == _TENSOR_NAME and wire == 2:
                self.name = bytes(t[a:b]).decode("utf-8", "replace")[:100]
            elif number == _TENSOR_RAW and wire == 2:
                self.raw = b - a
            elif number == _TENSOR_LOCATION and wire == 0:
                self.external = a == 1
            elif number == _TENSOR_EXTERNAL and wire == 2:
                self.external = True
                kv = {f: bytes(v).decode("utf-8", "replace") for f, w, v in _values(t[a:b]) if w == 2}
                key = kv.get(_ENTRY_KEY, "")
                if key in self.entries:  # readers disagree on which one wins: refuse rather than guess
                    raise Malformed(f"tensor {self.name!r} repeats its external-data key {key[:40]!r}")
                self.entries[key] = kv.get(_ENTRY_VALUE, "")
        self.elements = 1
        for d in self.dims:
            if d > MAX_DIM:
                raise Malformed(f"tensor {self.name!r} declares dimension {_signed(d)}")
            self.elements *= d
            if self.elements > MAX_ELEMENTS:
                raise Malformed(f"tensor {self.name!r} declares more than {MAX_ELEMENTS} elements")
        size = _ITEMSIZE.get(self.dtype)
        self.nbytes = None if size is None else self.elements * size
        if self.raw is not None and self.nbytes is not None and self.raw != self.nbytes:
            raise Malformed(f"tensor {self.name!r} declares {self.nbytes} bytes but holds {self.raw}")
        self.offset = self._number("offset", 0)
        self.length = self._number("length", None)
        if self.length is not None and self.nbytes is not None and self.length != self.nbytes:
            raise Malformed(f"tensor {self.name!r} declares {self.nbytes} bytes but external length {self.length}")

    @property
    def location(self) -> str | None:
        return self.entries.get("location", "") if self.external or self.entries else None

    def _number(self, key: str, default: int | None) -> int | None:
        text = self.entries.get(key)
        if text is None:
            return default
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            raise Malformed(f"tensor {self.name!r} has external {key} {text[:40]!r}, not a byte count")
        return int(text)


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _varints(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int]]:
    i = start
    while i < end:
        v, i = varint(buf, i, end)
        yield v, i


def _check_value_info(v: memoryview) -> None:
    """Dimensions declared for graph inputs, outputs and intermediate values must be sane too."""
    for t in messages(v, (_VALUE_INFO_TYPE,)):
        for tt in messages(t, (_TYPE_TENSOR,)):
            for shape in messages(tt, (_TENSOR_TYPE_SHAPE,)):
                for dim in messages(shape, (_SHAPE_DIM,)):
                    for number, wire, value, _, _ in fields(dim):
                        if number == _DIM_VALUE and wire == 0 and value > MAX_DIM:
                            raise Malformed(f"a graph value declares dimension {_signed(value)}")


def _attr_tensors(a: memoryview, depth: int) -> Iterator[memoryview]:
    for field, wire, value in _values(a):
        if wire != 2:
            continue
        if field in (_ATTR_T, _ATTR_TENSORS):
            yield value  # type: ignore[misc]
        elif field in (_ATTR_G, _ATTR_GRAPHS):
            yield from _graph_tensors(value, depth + 1)  # type: ignore[arg-type]
        elif field in (_ATTR_SPARSE, _ATTR_SPARSES):
            yield from messages(value, _SPARSE_TENSORS)  # type: ignore[arg-type]


def _nodes_tensors(nodes: Iterator[memoryview], depth: int) -> Iterator[memoryview]:
    for node in nodes:
        for attr in messages(node, (_NODE_ATTR,)):
            yield from _attr_tensors(attr, depth)


def _graph_tensors(g: memoryview, depth: int) -> Iterator[memoryview]:
    if depth > _MAX_DEPTH:
        raise Malformed("subgraphs nested too deeply")
    for field, wire, value in _values(g):
        if wire != 2:
            continue
        if field == _GRAPH_INIT:
            yield value  # type: ignore[misc]
        elif field == _GRAPH_SPARSE_INIT:
            yield from messages(value, _SPARSE_TENSORS)  # type: ignore[arg-type]
        elif field == _GRAPH_NODE:
            yield from _nodes_tensors(iter([value]), depth)  # type: ignore[list-item]
        elif field in _GRAPH_VALUE_INFOS:
            _check_value_info(value)  # type: ignore[arg-type]


def model_tensors(model_bytes: bytes) -> Iterator[memoryview]:
    """Every TensorProto of a serialized ModelProto: initializers, constants and attributes in graphs,
    subgraphs, functions and training graphs (the value infos' dimensions are checked on the way)."""
    buf = memoryview(model_bytes)
    for field, wire, value in _values(buf):
        if wire != 2:
            continue
        if field == _MODEL_GRAPH:
            yield from _graph_tensors(value, 0)  # type: ignore[arg-type]
        elif field == _MODEL_TRAINING:
            for g in messages(value, _TRAINING_GRAPHS):  # type: ignore[arg-type]
                yield from _graph_tensors(g, 0)
        elif field == _MODEL_FUNCTIONS:
            yield from _nodes_tensors(messages(value, (_FUNCTION_NODE,)), 0)  # type: ignore[arg-type]


def external_locations(model_bytes: bytes) -> list[str]:
    """Every external-data location string named anywhere in a serialized ModelProto."""
    found = []
    for t in model_tensors(model_bytes):
        for entry in messages(t, (_TENSOR_EXTERNAL,)):
            kv = {f: bytes(v).decode("utf-8", "replace") for f, w, v in _values(entry) if w == 2}
            if kv.get(_ENTRY_KEY) == "location":
                found.append(kv.get(_ENTRY_VALUE, ""))
    return found


def check_external_data(model_path: str | Path) -> list[Path]:
    """The one check before any tool hands an ONNX file to onnx, ONNX Runtime, TensorRT or Polygraphy.

    Refuses a model that is not protobuf, declares absurd sizes (a dimension beyond 2^31 - 1 or
    negative, a tensor beyond 2^31 elements, raw data or an external length that disagrees with the
    shape, a non-numeric offset or length), or whose external data lies outside its folder (checked
    before any data file is opened) or beyond the end of its data file. Returns the data files.
    """
    path = Path(model_path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the model ({e.strerror or e}); check the path") from None
    try:
        tensors = [_Tensor(t) for t in model_tensors(data)]
    except Malformed as e:
        raise UserError(f"{path}: not a valid ONNX model ({e}); the file is truncated, damaged or not ONNX, "
                        "re-export it") from None
    folder = path.resolve().parent
    files: dict[str, Path] = {}
    for t in tensors:
        loc = t.location
        if loc is None:
            continue
        if loc not in files:
            plain = bool(loc) and "\0" not in loc and not Path(loc).is_absolute() and ".." not in Path(loc).parts
            target = (folder / loc).resolve() if plain else folder
            if folder not in target.parents:  # a NUL, an absolute path, a '..' part, or a link leading out
                raise UserError(f"{path}: refused, its external data {loc!r} lies outside the model's folder "
                                f"{folder} (or is no plain path in it); keep the data file beside the model (or "
                                "re-export a single file)")
            if not target.is_file():
                raise UserError(f"{path}: its external data file {loc!r} is missing; copy it beside the model")
            files[loc] = target
        size = files[loc].stat().st_size
        need = t.length if t.length is not None else (t.nbytes or 0)
        if t.offset + need > size:
            raise UserError(f"{path}: tensor {t.name!r} declares bytes {t.offset}..{t.offset + need} of {loc!r}, "
                            f"which holds {size}; the data file is truncated or not this model's, re-export it")
    return list(files.values())


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
