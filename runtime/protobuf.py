"""A minimal protobuf wire-format reader, enough to walk ONNX models without the onnx package.

Shared by :mod:`runtime.onnx_external` (external-data checks) and
:mod:`runtime.backends._onnx_proto` (pruning a graph's outputs): the runtime never imports onnx
tooling. Malformed input raises :class:`Malformed` (a ValueError), never an IndexError.
"""

from __future__ import annotations

from typing import Iterator


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
