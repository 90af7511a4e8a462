"""Widen depthwise convolutions to a channel count ONNX Runtime's fast int8 kernel accepts.

ONNX Runtime's symmetric int8 depthwise kernel (requantisation fused, the one VNNI and NEON paths
use) takes only channel counts that are a multiple of 16 on x86 (8 on ARM64); any other count falls
back to a generic kernel two to three times slower (measured on the edge encoder: 72, 88 and 120
channels). MobileNet-style widths such as 72, 88 and 120 miss it.

:func:`pad_depthwise` adds zero channels, exactly: the layer that produces the depthwise input
gets extra output channels with zero weights and bias, the depthwise convolution extra zero
filters, a squeeze-excitation's reduce layer extra zero input columns and its expand layer extra
zero rows, and the layers that read the result extra zero input columns. The added channels are
zero (ReLU, hard-swish and the excitation product keep 0 at 0) or, where a gate reads a zero,
multiply a zero: the model's outputs do not change (tests/calibration/test_cpu_graph.py checks it).
Tensor names are kept, so calibrated ranges still apply.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CHANNEL_WISE = ("Relu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "LeakyRelu", "Mul", "Add",
                "GlobalAveragePool", "MaxPool", "AveragePool")


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _is_depthwise(node: Any, inits: dict[str, np.ndarray]) -> bool:
    if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
        return False
    w = inits[node.input[1]]
    group = _attrs(node).get("group", 1)
    return group > 1 and w.shape[0] == group and w.shape[1] == 1


def _weighted(node: Any, inits: dict[str, np.ndarray]) -> bool:
    return (node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in inits
            and _attrs(node).get("group", 1) == 1)


class _Component:
    """The tensors that share one depthwise layer's channels, and the layers at its edges."""

    def __init__(self, graph: Any, inits: dict[str, np.ndarray]) -> None:
        self.inits = inits
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in graph.node:
            for t in n.input:
                self.consumers.setdefault(t, []).append(n)
        self.ends = {i.name for i in graph.input} | {o.name for o in graph.output}

    def find(self, dw: Any) -> dict[str, list[Any]] | None:
        """{"produce": layers whose outputs widen, "read": layers whose inputs widen, "depthwise": …},
        or None when the channels reach something that cannot be widened (a graph input or output,
        a Flatten, a Gemm, a residual Add with a tensor from outside)."""
        todo, seen = [dw.input[0], dw.output[0]], set()
        parts: dict[str, dict[str, Any]] = {"produce": {}, "read": {}, "depthwise": {dw.name: dw}, "inner": {}}
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            if t in self.ends or t in self.inits:
                return None
            src = self.producer.get(t)
            if src is None:
                return None
            if not self._walk(src, t, todo, parts, upstream=True):
                return None
            for user in self.consumers.get(t, []):
                if not self._walk(user, t, todo, parts, upstream=False):
                    return None
        return {k: list(v.values()) for k, v in parts.items()}

    def _walk(self, node: Any, t: str, todo: list[str], parts: dict[str, dict[str, Any]], upstream: bool) -> bool:
        if _is_depthwise(node, self.inits):
            parts["depthwise"][node.name] = node
            todo += [node.input[0], node.output[0]]
            return True
        if _weighted(node, self.inits):
            parts["produce" if upstream else "read"][node.name] = node
            return True  # an edge: its other side keeps its width
        if node.op_type in CHANNEL_WISE:
            parts["inner"][node.name] = node
            todo += [i for i in node.input if i and i not in self.inits] + list(node.output)
            return True
        return False


def _pad_axis(a: np.ndarray, axis: int, extra: int) -> np.ndarray:
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, extra)
    return np.pad(a, widths)


def _widen_weights(graph: Any, parts: dict[str, list[Any]], inits: dict[str, np.ndarray], extra: int) -> None:
    """Zero output channels for producers and depthwise layers, zero input columns for readers.
    Each widened tensor is a new initializer (the old one may be shared with other layers)."""
    from onnx import numpy_helper

    def widen(node: Any, idx: int, axis: int) -> None:
        name = node.input[idx]
        new_name = f"{name}_pad{extra}_{node.name}"
        inits[new_name] = _pad_axis(inits[name], axis, extra)
        graph.initializer.append(numpy_helper.from_array(inits[new_name], new_name))
        node.input[idx] = new_name

    for node in parts["produce"] + parts["depthwise"]:
        widen(node, 1, 0)
        if len(node.input) > 2 and node.input[2]:
            widen(node, 2, 0)
    for node in parts["read"]:
        widen(node, 1, 1)


def _drop_unused(graph: Any) -> None:
    used = {t for n in graph.node for t in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def pad_depthwise(model: Any, multiple: int = 16) -> tuple[Any, list[dict[str, Any]]]:
    """A copy of ``model`` whose depthwise convolutions have a multiple of ``multiple`` channels
    (where the layers around them can be widened); and what was widened, for the report."""
    import copy

    from onnx import helper, numpy_helper

    model = copy.deepcopy(model)
    graph = model.graph
    done: list[dict[str, Any]] = []
    widened: set[str] = set()
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for dw in list(graph.node):
        if not _is_depthwise(dw, inits) or dw.name in widened:
            continue
        channels = inits[dw.input[1]].shape[0]
        extra = -channels % multiple
        if extra == 0:
            continue
        parts = _Component(graph, inits).find(dw)
        if parts is None or any(n.name in widened for k in ("produce", "read") for n in parts[k]) or \
                any(inits[n.input[1]].shape[0] != channels for n in parts["depthwise"]):
            continue
        _widen_weights(graph, parts, inits, extra)
        for node in parts["depthwise"]:
            for a in node.attribute:
                if a.name == "group":
                    a.CopyFrom(helper.make_attribute("group", channels + extra))
        widened.update(n.name for k in ("produce", "read", "depthwise") for n in parts[k])
        done.append({"depthwise": [n.name for n in parts["depthwise"]], "channels": int(channels),
                     "padded_to": int(channels + extra)})
    if done:
        _drop_unused(graph)
        _clear_shapes(graph)
    return model, done


def _clear_shapes(graph: Any) -> None:
    """Drop inferred intermediate shapes (some channel counts changed); ONNX Runtime re-infers them."""
    del graph.value_info[:]
