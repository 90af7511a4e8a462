"""Per-layer INT8 sensitivity: which weighted layers hurt most when quantized alone.

For each weighted layer (Conv, Gemm, MatMul) of the preprocessed fp32 model, a variant is built
in which only that layer's inputs (activation and weights) pass through the Q/DQ pair the full
INT8 model gives them; every other layer stays in float. The variant's logits are compared with
fp32 on the calibration samples. One calibration serves all variants (the scales are read from the
quantized model), so the analysis costs one inference pass per layer and no recalibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from calibration.qdq import weighted_nodes


@dataclass
class LayerSensitivity:
    node: str
    op_type: str
    mean_abs_dlogit: float  # mean |logit(variant) − logit(fp32)| over the samples
    max_abs_dprob: float  # max |sigmoid(·) difference|

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op_type": self.op_type, "mean_abs_dlogit": self.mean_abs_dlogit,
                "max_abs_dprob": self.max_abs_dprob}


def _copy_init(src: dict[str, Any], dst: Any, name: str, have: set[str]) -> None:
    if name and name not in have and name in src:
        dst.graph.initializer.append(src[name])
        have.add(name)


def single_layer_variant(fp32: Any, qdq: Any, node_name: str) -> Any | None:
    """A copy of ``fp32`` with Q/DQ (from ``qdq``) on the inputs of ``node_name`` only.

    None when the quantized model left that layer in float (nothing to measure).
    """
    import copy

    from onnx import helper

    qnode = next((n for n in qdq.graph.node if n.name == node_name), None)
    if qnode is None:
        return None
    producer = {o: n for n in qdq.graph.node for o in n.output}
    q_inits = {i.name: i for i in qdq.graph.initializer}
    model = copy.deepcopy(fp32)
    target = next(n for n in model.graph.node if n.name == node_name)
    have = {i.name for i in model.graph.initializer}
    added, changed = [], False
    for idx, qname in enumerate(qnode.input):
        dq = producer.get(qname)
        if dq is None or dq.op_type != "DequantizeLinear" or idx >= len(target.input):
            continue
        for name in dq.input[1:]:
            _copy_init(q_inits, model, name, have)
        tag = f"{node_name}__sens{idx}"
        source = producer.get(dq.input[0])
        if dq.input[0] in q_inits:  # weights: the stored integer tensor
            _copy_init(q_inits, model, dq.input[0], have)
            dq_in = dq.input[0]
        elif source is not None and source.op_type == "QuantizeLinear":  # activation: Q then DQ
            for name in source.input[1:]:
                _copy_init(q_inits, model, name, have)
            dq_in = tag + "_q"
            added.append(helper.make_node("QuantizeLinear", [target.input[idx], *source.input[1:]], [dq_in],
                                          name=tag + "_Q", domain=source.domain))
            added[-1].attribute.extend(source.attribute)
        else:
            continue
        out = tag + "_dq"
        added.append(helper.make_node("DequantizeLinear", [dq_in, *dq.input[1:]], [out], name=tag + "_DQ",
                                      domain=dq.domain))
        added[-1].attribute.extend(dq.attribute)
        target.input[idx] = out
        changed = True
    if not changed:
        return None
    # insert right before the target so the node list stays topologically sorted
    nodes = list(model.graph.node)
    pos = next(i for i, n in enumerate(nodes) if n.name == node_name)
    del model.graph.node[:]
    model.graph.node.extend(nodes[:pos] + added + nodes[pos:])
    for o in qdq.opset_import:  # Q/DQ need opset ≥ 13 (per-channel axis); keep the quantizer's
        for mine in model.opset_import:
            if (mine.domain or "") == (o.domain or "") and mine.version < o.version:
                mine.version = o.version
    return model


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def run_logits(model: Any, x: np.ndarray, input_name: str, batch: int = 32) -> np.ndarray:
    """Logits of an in-memory ONNX model on CPU (first output, flattened to N)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    out = [sess.run(None, {input_name: x[i:i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(out).reshape(len(x), -1)[:, 0].astype(np.float64)


def analyse(fp32: Any, qdq: Any, x: np.ndarray, input_name: str,
            progress: Callable[[Sequence[str]], Any] | None = None) -> list[LayerSensitivity]:
    """Sensitivity of every weighted layer, most sensitive first."""
    ref = run_logits(fp32, x, input_name)
    ops = {n.name: n.op_type for n in fp32.graph.node}
    names = weighted_nodes(fp32)
    rows = []
    for name in (progress(names) if progress else names):
        variant = single_layer_variant(fp32, qdq, name)
        if variant is None:
            continue
        got = run_logits(variant, x, input_name)
        rows.append(LayerSensitivity(name, ops[name], float(np.mean(np.abs(got - ref))),
                                     float(np.max(np.abs(_sigmoid(got) - _sigmoid(ref))))))
    rows.sort(key=lambda r: r.mean_abs_dlogit, reverse=True)
    return rows


def format_rows(rows: Sequence[LayerSensitivity], top: int = 10) -> str:
    lines = [f"{'layer (most sensitive first)':<56} {'op':<6} {'mean|Δlogit|':>12} {'max|Δprob|':>10}"]
    for r in rows[:top]:
        name = r.node if len(r.node) <= 56 else "…" + r.node[-55:]
        lines.append(f"{name:<56} {r.op_type:<6} {r.mean_abs_dlogit:>12.5f} {r.max_abs_dprob:>10.5f}")
    return "\n".join(lines)
