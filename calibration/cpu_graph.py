"""The INT8 graph ONNX Runtime's CPU kernels run fastest: whole int8 blocks, few conversions.

ONNX Runtime turns a Q/DQ graph into integer kernels pattern by pattern (its QDQ transformer):
DQ → Conv → Q becomes QLinearConv, DQ → Add/Mul → Q becomes QLinearAdd/QLinearMul,
DQ → GlobalAveragePool → Q, DQ → LeakyRelu → Q (a 256-entry lookup table), DQ → Gemm [→ Q]
becomes QGemm, and Q/DQ around MaxPool and Flatten are dropped. Whatever matches no pattern runs in
float between a DequantizeLinear and a QuantizeLinear: a pass over the tensor for each. So the
placement here is written for those patterns (ONNX Runtime's generic quantizer wraps every
operator instead, which left 128 Q and 240 DQ around 54 convolutions of the edge encoder):

- a ReLU after a quantized layer disappears into the layer's output quantization (zero point 0:
  the integer kernel's saturation is the ReLU);
- a hard-sigmoid gate (squeeze-excite) disappears the same way: the producing layer's output is
  quantized with scale 1/(255·alpha) and zero point 255·beta, so saturation does the clipping,
  and the gate is read back with scale 1/255 (``HARD_SIGMOID_SCALE``);
- a hard-swish x·hardsigmoid(x) keeps x in int8: the gate is x re-quantized (x + 0 in QLinearAdd,
  whose saturation clips it; 3.6× faster than a LeakyRelu lookup table, measured) and multiplied
  in QLinearMul — ONNX Runtime has no int8 hard-swish, and its CPU provider splits HardSwish into
  HardSigmoid + Mul, neither of which its QDQ fusion covers;
- the logit (graph output) stays float: the last Gemm runs as QGemm with a float output.

Weights are int8, symmetric, per output channel (zero point 0: ONNX Runtime's symmetric
convolution kernels, whose requantisation is fused), optionally 7-bit (``reduce_range``, for CPUs
without VNNI whose 8-bit dot products can saturate); biases int32 at the input scale × the
weight scale; activations uint8, asymmetric, from the calibrated ranges of
:mod:`calibration.ranges`. Layers named in ``keep_float`` run in float with their inputs
dequantized. The graph stays standard ONNX (opset 13+ Q/DQ), so any runtime can read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

U8_MAX = 255
HARD_SIGMOID_SCALE = 1.0 / U8_MAX  # a gate quantized to 0..255 reads back as 0..1
WEIGHTED = ("Conv", "Gemm")
BINARY = ("Add", "Mul")
POOLS = ("GlobalAveragePool", "AveragePool")
ACTIVATIONS = ("Relu", "Clip", "HardSwish", "HardSigmoid", "Mul")
ABSORBED = ("Relu", "HardSigmoid")  # folded into the quantization of the layer before them
PASS_THROUGH = ("MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose")  # int8 in, same scale out


@dataclass(frozen=True)
class QParams:
    """uint8 quantization of one tensor: x ≈ scale · (q − zero_point)."""

    scale: float
    zero_point: int

    @staticmethod
    def from_range(lo: float, hi: float) -> QParams:
        """Asymmetric uint8 over [lo, hi] widened to hold 0 (so zero padding and ReLU are exact)."""
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo < 1e-8:
            return QParams(1e-8 if hi - lo < 1e-8 else 1.0, 0)
        scale = (hi - lo) / U8_MAX
        zp = int(min(U8_MAX, max(0, round(-lo / scale))))
        return QParams(scale, zp)

    @staticmethod
    def hard_sigmoid(alpha: float, beta: float) -> QParams:
        """Quantization whose saturation computes clip(alpha·x + beta, 0, 1) scaled to 0..255."""
        return QParams(1.0 / (U8_MAX * alpha), int(min(U8_MAX, max(0, round(U8_MAX * beta)))))


@dataclass
class Plan:
    """What the builder did, for the report: how many layers run in int8, what stayed float."""

    int8_nodes: list[str] = field(default_factory=list)  # every node written for an integer kernel
    int8_layers: list[str] = field(default_factory=list)  # the weighted ones among them (Conv, Gemm)
    float_nodes: list[str] = field(default_factory=list)
    absorbed: dict[str, int] = field(default_factory=dict)  # Relu / HardSigmoid folded into quantization
    hard_swish: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"int8_layers": len(self.int8_layers), "int8_ops": len(self.int8_nodes), "float_layers": self.float_nodes,
                "absorbed": dict(self.absorbed), "hard_swish": self.hard_swish}


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Builder:
    """Walks the float graph in order and writes the Q/DQ graph (one pass, no rewriting after)."""

    def __init__(self, model: Any, ranges: Mapping[str, tuple[float, float]], keep_float: Iterable[str],
                 reduce_range: bool) -> None:
        from onnx import numpy_helper

        self.model = model
        self.graph = model.graph
        self.ranges = ranges
        self.keep = set(keep_float)
        self.weight_max = 63 if reduce_range else 127
        self.inits = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in self.graph.node:
            for t in n.input:
                self.consumers.setdefault(t, []).append(n)
        self.outputs = {o.name for o in self.graph.output}
        self.nodes: list[Any] = []
        self.new_inits: list[Any] = []
        self.fp: dict[str, str] = {}  # tensor -> name of its float value in the new graph
        self.qp: dict[str, QParams] = {}  # tensor -> its uint8 quantization (a DQ of it exists)
        self.dq_name: dict[str, str] = {}  # tensor -> the DQ output that int8 consumers read
        self.skip: set[str] = set()  # nodes folded into a neighbour
        self.plan = Plan()
        self._const: dict[tuple[str, Any], str] = {}
        self._needs: dict[str, bool] = {}
        self._zero: str | None = None

    # --- small emitters -------------------------------------------------------------------
    def _scalar(self, value: float | int, dtype: Any) -> str:
        from onnx import numpy_helper

        key = (np.dtype(dtype).name, float(value))
        if key not in self._const:
            name = f"qc_{np.dtype(dtype).name}_{len(self._const)}"
            self.new_inits.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
            self._const[key] = name
        return self._const[key]

    def _node(self, op: str, inputs: list[str], outputs: list[str], name: str, **attrs: Any) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))

    def _q_dq(self, src: str, tensor: str, q: QParams, read_as: QParams | None = None) -> str:
        """Q(src) → DQ, registered as ``tensor``'s int8 form; returns the DQ output name."""
        read_as = read_as or q
        qname, dq = f"{tensor}_q8", f"{tensor}_dq"
        self._node("QuantizeLinear", [src, self._scalar(q.scale, np.float32), self._scalar(q.zero_point, np.uint8)],
                   [qname], f"{tensor}_Q")
        self._node("DequantizeLinear", [qname, self._scalar(read_as.scale, np.float32),
                                        self._scalar(read_as.zero_point, np.uint8)], [dq], f"{tensor}_DQ")
        self.qp[tensor] = read_as
        self.dq_name[tensor] = dq
        self.fp[tensor] = dq
        return dq

    def _zero_dq(self) -> str:
        """A uint8 zero (dequantized): the second operand of an Add that only re-quantizes."""
        if self._zero is None:
            self._zero = "qc_zero_dq"
            self._node("DequantizeLinear", [self._scalar(0, np.uint8), self._scalar(1.0, np.float32),
                                            self._scalar(0, np.uint8)], [self._zero], "qc_zero_DQ")
        return self._zero

    def _range(self, tensor: str) -> QParams:
        lo, hi = self.ranges.get(tensor, (math.nan, math.nan))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise KeyError(f"no calibrated range for tensor {tensor!r}")
        return QParams.from_range(lo, hi)

    def int8_input(self, tensor: str) -> str:
        """The DQ output an int8 consumer reads for ``tensor`` (quantizing its float value if needed)."""
        if tensor not in self.dq_name:
            self._q_dq(self.fp.get(tensor, tensor), tensor, self._range(tensor))
        return self.dq_name[tensor]

    def float_input(self, tensor: str) -> str:
        return self.fp.get(tensor, tensor)

    def _weight(self, node: Any, idx: int, axis: int) -> tuple[str, np.ndarray]:
        """int8 per-channel symmetric weight + its DQ; returns (DQ output, per-channel scales)."""
        from onnx import numpy_helper

        w = self.inits[node.input[idx]].astype(np.float32)
        moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        amax = np.abs(moved).max(axis=1)
        scale = np.where(amax > 0, amax / self.weight_max, 1.0).astype(np.float32)
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -self.weight_max, self.weight_max).astype(np.int8)
        base = f"{node.name}_w{idx}"
        self.new_inits += [numpy_helper.from_array(q, base + "_i8"), numpy_helper.from_array(scale, base + "_scale"),
                           numpy_helper.from_array(np.zeros(len(scale), np.int8), base + "_zp")]
        out = base + "_dq"
        self._node("DequantizeLinear", [base + "_i8", base + "_scale", base + "_zp"], [out], base + "_DQ", axis=axis)
        return out, scale

    def _bias(self, node: Any, idx: int, x_scale: float, w_scale: np.ndarray) -> str:
        from onnx import numpy_helper

        b = self.inits[node.input[idx]].astype(np.float64).reshape(-1)
        scale = (x_scale * w_scale.astype(np.float64)).astype(np.float32)
        q = np.clip(np.round(b / scale), -2**31, 2**31 - 1).astype(np.int32)
        base = f"{node.name}_b"
        self.new_inits += [numpy_helper.from_array(q, base + "_i32"), numpy_helper.from_array(scale, base + "_scale"),
                           numpy_helper.from_array(np.zeros(len(scale), np.int32), base + "_zp")]
        out = base + "_dq"
        self._node("DequantizeLinear", [base + "_i32", base + "_scale", base + "_zp"], [out], base + "_DQ", axis=0)
        return out

    # --- what follows a quantized layer -----------------------------------------------------
    def _sole_consumer(self, tensor: str) -> Any | None:
        users = self.consumers.get(tensor, [])
        if len(users) == 1 and tensor not in self.outputs and users[0].name not in self.keep:
            return users[0]
        return None

    def _raw(self, out: str) -> str:
        """The name a layer writes ``out`` under before its quantization (the logit keeps its name)."""
        return out if out in self.outputs else out + "_f"

    def _finish(self, node: Any, raw: str) -> None:
        """Quantize a layer's output ``raw`` (float in the graph, int8 in ONNX Runtime), folding a
        following ReLU or hard-sigmoid into the quantization when it is the only consumer."""
        out = node.output[0]
        if out in self.outputs:  # the logit stays float
            self.fp[out] = out
            return
        nxt = self._sole_consumer(out)
        if nxt is not None and nxt.op_type == "Relu":
            self.skip.add(nxt.name)
            self.plan.absorbed["Relu"] = self.plan.absorbed.get("Relu", 0) + 1
            self._q_dq(raw, nxt.output[0], self._range(nxt.output[0]))
            return
        if nxt is not None and nxt.op_type == "HardSigmoid" and not self._is_swish_gate(nxt):
            a = _attrs(nxt)
            self.skip.add(nxt.name)
            self.plan.absorbed["HardSigmoid"] = self.plan.absorbed.get("HardSigmoid", 0) + 1
            self._q_dq(raw, nxt.output[0], QParams.hard_sigmoid(a.get("alpha", 0.2), a.get("beta", 0.5)),
                       QParams(HARD_SIGMOID_SCALE, 0))
            return
        self._q_dq(raw, out, self._range(out))

    def _is_swish_gate(self, hs: Any, check_keep: bool = True) -> bool:
        """A HardSigmoid whose only use is Mul(x, HardSigmoid(x)): a hard-swish."""
        users = self.consumers.get(hs.output[0], [])
        return (len(users) == 1 and users[0].op_type == "Mul" and hs.input[0] in users[0].input
                and hs.output[0] in users[0].input and not (check_keep and users[0].name in self.keep))

    # --- per operator -----------------------------------------------------------------------
    def weighted(self, node: Any) -> None:
        a = _attrs(node)
        x = self.int8_input(node.input[0])
        if node.op_type == "Conv":
            axis = 0
        else:  # Gemm: y = A·B' (transB=1: B is [out, in]) or A·B ([in, out])
            axis = 0 if a.get("transB", 0) else 1
        w, w_scale = self._weight(node, 1, axis)
        inputs = [x, w]
        if len(node.input) > 2 and node.input[2]:
            inputs.append(self._bias(node, 2, self.qp[node.input[0]].scale, w_scale))
        raw = self._raw(node.output[0])
        self._node(node.op_type, inputs, [raw], node.name, **a)
        self.plan.int8_nodes.append(node.name)
        self.plan.int8_layers.append(node.name)
        self._finish(node, raw)

    def hard_swish(self, node: Any, x: str, alpha: float, beta: float, out: str) -> None:
        """x·hardsigmoid(x) with x in int8: the gate is x re-quantized (x + 0 in QLinearAdd, whose
        saturation clips it), then QLinearMul."""
        xdq = self.int8_input(x)
        g = QParams.hard_sigmoid(alpha, beta)
        gate_raw = f"{out}_gate_f"
        self._node("Add", [xdq, self._zero_dq()], [gate_raw], f"{node.name}_gate")
        gate = self._q_dq(gate_raw, f"{out}_gate", g, QParams(HARD_SIGMOID_SCALE, 0))
        raw = self._raw(out)
        self._node("Mul", [xdq, gate], [raw], node.name)
        self.plan.hard_swish += 1
        self.plan.int8_nodes.append(node.name)
        self._finish(self._alias(node, out), raw)

    @staticmethod
    def _alias(node: Any, out: str) -> Any:
        from onnx import helper

        return helper.make_node(node.op_type, list(node.input), [out], name=node.name)

    def elementwise(self, node: Any) -> None:
        inputs = [self.int8_input(t) for t in node.input]
        raw = self._raw(node.output[0])
        self._node(node.op_type, inputs, [raw], node.name, **_attrs(node))
        self.plan.int8_nodes.append(node.name)
        self._finish(node, raw)

    def pass_through(self, node: Any) -> None:
        """MaxPool, Flatten, …: ONNX Runtime drops their Q/DQ when scale and zero point match."""
        src = node.input[0]
        inputs = [self.int8_input(src)] + [self.float_input(t) for t in node.input[1:]]
        q = self.qp[src]
        raw = self._raw(node.output[0])
        self._node(node.op_type, inputs, [raw], node.name, **_attrs(node))
        out = node.output[0]
        if out in self.outputs:
            self.fp[out] = out
        else:
            self._q_dq(raw, out, q)

    def float_node(self, node: Any) -> None:
        from onnx import helper

        new = helper.make_node(node.op_type, [self.float_input(t) if t else t for t in node.input], list(node.output),
                               name=node.name, domain=node.domain or None)
        new.attribute.extend(node.attribute)
        self.nodes.append(new)
        if node.op_type not in ("Constant",):
            self.plan.float_nodes.append(node.name)
        for o in node.output:
            self.fp[o] = o

    # --- the walk ---------------------------------------------------------------------------
    def run(self) -> Any:
        from onnx import helper

        for node in self.graph.node:
            if node.name in self.skip:
                continue
            kind = self.kind(node)
            if kind == "weighted":
                self.weighted(node)
            elif kind == "hard_swish":
                a = _attrs(node)
                self.hard_swish(node, node.input[0], a.get("alpha", 1 / 6), a.get("beta", 0.5), node.output[0])
            elif kind == "swish_mul":
                hs = next(self.producer[t] for t in node.input if self.producer.get(t) is not None
                          and self.producer[t].op_type == "HardSigmoid")
                a = _attrs(hs)
                self.hard_swish(node, hs.input[0], a.get("alpha", 0.2), a.get("beta", 0.5), node.output[0])
            elif kind == "elementwise":
                self.elementwise(node)
            elif kind == "pass":
                self.pass_through(node)
            elif kind != "folded":
                self.float_node(node)
        g = self.graph
        graph = helper.make_graph(self.nodes, g.name, list(g.input), list(g.output),
                                  [i for i in g.initializer if self._used(i.name)] + self.new_inits)
        model = helper.make_model(graph, opset_imports=list(self.model.opset_import), ir_version=self.model.ir_version)
        model.metadata_props.extend(self.model.metadata_props)
        return model

    def _used(self, name: str) -> bool:
        return any(name in n.input for n in self.nodes)

    def kind(self, node: Any) -> str:
        """How a node is written: weighted / hard_swish / swish_mul / folded (int8 patterns),
        elementwise / pass (int8 only where an int8 layer reads the result) or float."""
        static = self._static_kind(node)
        if static in ("elementwise", "pass") and not self._needs_int8(node.output[0]):
            return "float"
        return static

    def _static_kind(self, node: Any) -> str:
        op = node.op_type
        if node.name in self.keep or node.domain not in ("", "ai.onnx"):
            return "float"
        if op in WEIGHTED and len(node.input) > 1 and node.input[1] in self.inits and \
                self.inits[node.input[1]].dtype == np.float32:
            if op == "Gemm" and _attrs(node).get("transA", 0):
                return "float"
            return "weighted"
        if self._after_float_layer(node):
            return "float"  # an activation of a float layer: ONNX Runtime fuses it into the layer
        if op == "HardSwish":
            return "hard_swish"
        if op == "HardSigmoid" and self._is_swish_gate(node):
            return "folded"  # emitted with its Mul
        if op == "Mul" and self._swish_source(node) is not None:
            return "swish_mul"
        if (op in BINARY and all(t not in self.inits for t in node.input)) or op in POOLS:
            return "elementwise"
        if op in PASS_THROUGH:
            return "pass"
        if op in ABSORBED:
            return "absorbable"
        return "float"

    def _needs_int8(self, tensor: str) -> bool:
        """Does an int8 layer read ``tensor`` (directly, or through ops that would then run in int8)?"""
        if tensor in self._needs:
            return self._needs[tensor]
        need = False
        for user in self.consumers.get(tensor, []):
            kind = self._static_kind(user)
            if kind in ("weighted", "hard_swish", "swish_mul", "folded") or \
                    (kind in ("elementwise", "pass", "absorbable") and self._needs_int8(user.output[0])):
                need = True
                break
        self._needs[tensor] = need
        return need

    def _after_float_layer(self, node: Any) -> bool:
        """An activation (ReLU, hard-swish and its parts) reading a layer that stays float."""
        if node.op_type not in ACTIVATIONS:
            return False
        src = self.producer.get(node.input[0])
        if node.op_type == "Mul":
            hs = self._swish_source(node)
            src = self.producer.get(hs.input[0]) if hs is not None else None
        elif node.op_type == "HardSigmoid" and self._is_swish_gate(node, check_keep=False):
            src = self.producer.get(node.input[0])
        return src is not None and src.op_type in WEIGHTED and src.name in self.keep

    def _swish_source(self, node: Any) -> Any | None:
        for t in node.input:
            hs = self.producer.get(t)
            if hs is not None and hs.op_type == "HardSigmoid" and self._is_swish_gate(hs):
                return hs
        return None


def named(model: Any) -> Any:
    """A copy of ``model`` in which every node has a unique name (the preprocessing pass leaves some
    unnamed; plans and the Q/DQ nodes refer to layers by name). Names already unique are kept."""
    import copy

    model = copy.deepcopy(model)
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    return model


def build(model: Any, ranges: Mapping[str, tuple[float, float]], keep_float: Iterable[str] = (),
          reduce_range: bool = False) -> tuple[Any, Plan]:
    """The CPU Q/DQ model of a (preprocessed, BN-folded, :func:`named`) float model, and what was done."""
    builder = _Builder(named(model), ranges, keep_float, reduce_range)
    out = builder.run()
    return out, builder.plan
