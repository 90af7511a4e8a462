"""Prune a serialised ONNX model to some of its outputs, without the onnx package.

ONNX Runtime runs every node of a graph even when only some outputs are fetched (measured with
1.32), so a full graph (logit + recon) would always pay for the decoder. :func:`prune_outputs`
drops the unwanted graph outputs and the nodes only they need, editing the protobuf wire format
directly (the runtime never imports onnx tooling). External-data checks live in
:mod:`runtime.onnx_external`.
"""

from __future__ import annotations

from runtime.protobuf import Malformed as _Malformed
from runtime.protobuf import encode_varint as _encode_varint
from runtime.protobuf import fields as _fields

_MAX_DEPTH = 64  # subgraph nesting (If/Loop bodies) deeper than this is not a real model
# ONNX protobuf field numbers (onnx/onnx.proto): ModelProto.graph = 7; GraphProto.node = 1,
# .output = 12; NodeProto.input = 1, .output = 2, .attribute = 5; AttributeProto.g = 6, .graphs = 11;
# ValueInfoProto.name = 1


# --- pruning outputs --------------------------------------------------------------------------
def _key(number: int) -> bytes:
    return _encode_varint(number << 3 | 2)


def _strings(buf: memoryview, start: int, end: int, number: int) -> list[str]:
    return [bytes(buf[a:b]).decode("utf-8", "replace")
            for n, w, a, b, _ in _fields(buf, start, end) if n == number and w == 2]


def _subgraph_refs(buf: memoryview, start: int, end: int, depth: int = 0) -> set[str]:
    """Every name read by any node of a (sub)graph: what a control-flow node may use from outside."""
    if depth > _MAX_DEPTH:
        raise _Malformed("graphs nested too deeply")
    refs: set[str] = set()
    for n, w, a, b, _ in _fields(buf, start, end):
        if n == 1 and w == 2:  # node
            refs.update(_strings(buf, a, b, 1))
            refs.update(_node_subgraph_refs(buf, a, b, depth + 1))
    return refs


def _node_subgraph_refs(buf: memoryview, start: int, end: int, depth: int) -> set[str]:
    refs: set[str] = set()
    for n, w, a, b, _ in _fields(buf, start, end):
        if n == 5 and w == 2:  # attribute
            for an, aw, aa, ab, _ in _fields(buf, a, b):
                if an in (6, 11) and aw == 2:  # g, graphs
                    refs |= _subgraph_refs(buf, aa, ab, depth)
    return refs


def _prune_graph(buf: memoryview, start: int, end: int, keep: set[str]) -> bytes | None:
    fields = list(_fields(buf, start, end))
    nodes = [(i, set(_strings(buf, a, b, 2)), set(_strings(buf, a, b, 1)) | _node_subgraph_refs(buf, a, b, 1))
             for i, (n, w, a, b, _) in enumerate(fields) if n == 1 and w == 2]
    outputs = {i: _strings(buf, a, b, 1)[:1] for i, (n, w, a, b, _) in enumerate(fields) if n == 12 and w == 2}
    drop = {i for i, names in outputs.items() if not set(names) & keep}
    if not drop:
        return None
    needed = {name for i, names in outputs.items() if i not in drop for name in names}
    for i, produces, reads in reversed(nodes):  # ONNX nodes are stored in topological order
        if produces & needed:
            needed |= reads
        else:
            drop.add(i)
    return b"".join(bytes(buf[f[4]:f[3]]) for i, f in enumerate(fields) if i not in drop)


def graph_outputs(data: bytes) -> list[str]:
    """The names of the main graph's outputs."""
    buf = memoryview(data)
    try:
        for n, w, a, b, _ in _fields(buf, 0, len(buf)):
            if n == 7 and w == 2:
                return [name for on, ow, oa, ob, _ in _fields(buf, a, b) if on == 12 and ow == 2
                        for name in _strings(buf, oa, ob, 1)[:1]]
    except (_Malformed, IndexError) as e:
        raise ValueError(str(e)) from None
    return []


def prune_outputs(data: bytes, keep: set[str]) -> bytes:
    """The model with only the graph outputs named in ``keep`` and the nodes they depend on."""
    buf = memoryview(data)
    parts = []
    try:
        changed = False
        for n, w, a, b, first in _fields(buf, 0, len(buf)):
            graph = _prune_graph(buf, a, b, keep) if n == 7 and w == 2 else None
            if graph is None:
                parts.append(bytes(buf[first:b]))
            else:
                parts.append(_key(7) + _encode_varint(len(graph)) + graph)
                changed = True
    except (_Malformed, IndexError) as e:
        raise ValueError(str(e)) from None
    return b"".join(parts) if changed else data
