"""Which layers of the TensorRT Q/DQ artifact run in INT8: the earliest cut that holds fp32's scores.

The trt target quantizes symmetric int8 activations everywhere (``calibration.qdq``), and on a
v3-style edge model that moves probabilities a long way: max |Δprob| 0.17 against fp32 on 1,000
held-out real faces for the bundled model, still 0.07 with its 16 most sensitive layers left in
float, because the error builds up over the early, full-resolution blocks rather than in a few
layers. So, as for the cpu target (``calibration.cpu_plan``), the plan is a cut: the layers before
it stay float (TensorRT runs them in FP16 in an INT8 engine, which allows FP16), the layers after it
are int8. TensorRT's speed cannot be measured on a machine without a GPU, so the trt plan is chosen
by accuracy alone: of the same candidate cuts, the earliest (most INT8) whose max |Δprob| against
fp32 is within ``max_dprob`` on the faces ``calibration.quantize`` passes: the calibration faces and
its anchor's real faces (the calibration faces may be far from real ones), with a
quarter of its ``--max-dprob``: on the bundled model the trt artifact's worst change on other real
faces was 1.4-2.5 times the one on the calibration faces (``docs/measurements.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from calibration.cpu_plan import Candidate


def choose(cands: Sequence[Candidate], build: Callable[[Candidate], Path], reference: Path, x: np.ndarray,
           max_dprob: float, progress: Callable[[str], None] | None = None) -> Candidate:
    """The earliest of ``cands`` (ordered from the input on) whose artifact, built by ``build``,
    stays within ``max_dprob`` of ``reference`` on the inputs ``x``; the last one (most float) when
    none does. Each measured candidate's ``max_dprob`` and ``mean_dprob`` are filled in."""
    from calibration.report import predict

    ref = predict(reference, x)
    for i, c in enumerate(cands):
        if progress:
            progress(f"trt plan {i + 1}/{len(cands)}: float before {c.cut}")
        d = np.abs(predict(build(c), x) - ref)
        c.max_dprob, c.mean_dprob = float(d.max()), float(d.mean())
        if c.max_dprob <= max_dprob:
            return c
    return cands[-1]
