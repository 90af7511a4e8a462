"""The small interface every inference backend implements (ONNX Runtime, TensorRT).

A backend is opened from an artifact file, configures itself from the artifact's metadata
(:class:`runtime.meta.Meta`) and runs batches of preprocessed faces. Loading/building lives
elsewhere (export/); a backend only runs.

Threading contract: the pipeline opens a backend on the main thread, then calls :meth:`infer`
from one worker thread (never concurrently), then calls :meth:`close` on the main thread after
that worker has stopped. Backends that bind to a thread (CUDA contexts) push/pop around work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from runtime.errors import UserError
from runtime.meta import Meta

LOGIT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def check_logit_spec(path: str, dtype: Any, shape: Sequence[Any] | None, batch: int | None) -> None:
    """Refuse, when the model is opened, a ``logit`` output that cannot be (N, 1) floats.

    ``dtype`` is the declared numpy dtype (None: not a numeric type the backend could name),
    ``shape`` the declared dimensions (ints, or names/None for dynamic ones; None: rank unknown),
    ``batch`` the graph's fixed batch or None for a dynamic one. Shared by every backend.
    """
    try:
        ok = dtype is not None and np.dtype(dtype) in LOGIT_DTYPES
    except TypeError:  # a type numpy cannot name (ONNX strings, sequences, maps)
        ok = False
    if not ok:
        raise UserError(f"{path}: its 'logit' output is {dtype if dtype is not None else 'not a float tensor'}, "
                        "expected float32 or float16 (N×1); the model is not a JRC detector, re-export it")
    if shape is None:
        return
    dims = list(shape)
    fixed = [d if isinstance(d, int) and not isinstance(d, bool) and d >= 0 else None for d in dims]
    bad = (len(dims) not in (1, 2) or (len(dims) == 2 and fixed[1] not in (None, 1))
           or (fixed[0] is not None and fixed[0] != batch))
    if bad:
        raise UserError(f"{path}: its 'logit' output has shape {dims}, expected [N, 1] with N the batch "
                        f"({batch if batch else 'dynamic'}); the model is not a JRC detector, re-export it")


def check_logits(path: str, out: Any, n: int) -> np.ndarray:
    """A result's ``logit`` as an owned (n, 1) float32 array, or a one-line UserError saying what came back.

    Non-finite values pass through (the aggregator counts and reports them); a wrong type, an empty
    or scalar result, or a size other than one per input does not."""
    a = np.asarray(out)
    if a.dtype.kind != "f" or a.ndim not in (1, 2) or a.shape[0] != n or a.size != n:
        raise UserError(f"{path}: the model returned a 'logit' of {a.dtype} with shape {list(a.shape)} for a batch "
                        f"of {n}, expected {n}×1 floats; the model is broken, re-export it")
    return np.array(a, dtype=np.float32).reshape(n, 1)


class Backend(ABC):
    """Runs the classifier (and, when asked and available, the decoder) on NCHW float32 batches."""

    #: short name for logs and the summary ("onnxruntime", "tensorrt")
    name: str = "backend"

    @property
    def on_gpu(self) -> bool:
        """Whether inference runs on a GPU, where a batch of several faces costs about what one
        does (the camera box then waits a little to fill batches)."""
        return False

    def __init__(self, path: str, meta: Meta, max_batch: int) -> None:
        self.path = str(path)
        self.meta = meta
        self.max_batch = int(max_batch)

    @abstractmethod
    def infer(self, x: np.ndarray, reconstruct: bool = False) -> dict[str, np.ndarray]:
        """Run a batch ``x`` (N×3×S×S float32, 1 ≤ N ≤ max_batch).

        Returns ``{"logit": (N, 1) float32}``, plus ``"recon"`` (N×3×S×S float32, in the
        normalised input space) only when ``reconstruct`` is true. Without ``reconstruct`` the
        decoder output must not be requested from the graph. Arrays returned are owned by the
        caller (not views into buffers the backend will reuse).
        """

    def close(self) -> None:  # noqa: B027 - a backend with nothing to release need not override it
        """Release sessions, contexts and buffers. Safe to call twice."""

    def describe(self) -> dict[str, Any]:
        """What ran, for the summary (backend name, provider/device, precision, max batch)."""
        return {"backend": self.name, "path": self.path, "precision": self.meta.precision,
                "max_batch": self.max_batch}

    # --- shared checks ------------------------------------------------------------------
    def check_batch(self, x: np.ndarray, reconstruct: bool) -> np.ndarray:
        """Validate a batch against the metadata; returns it as contiguous float32."""
        s = self.meta.input_size
        if x.ndim != 4 or x.shape[1:] != (3, s, s):
            raise ValueError(f"batch of shape {x.shape}, expected N×3×{s}×{s}")
        if not 1 <= x.shape[0] <= self.max_batch:
            raise ValueError(f"batch of {x.shape[0]}, expected 1..{self.max_batch}")
        if reconstruct:
            self.require_recon()
        return np.ascontiguousarray(x, dtype=np.float32)

    def require_recon(self) -> None:
        """Raise the user-facing error for --reconstruct on a graph without a decoder output."""
        if not self.meta.has_recon:
            raise UserError(f"{self.path}: this is a '{self.meta.graph}' graph without the reconstruction "
                            "output; --reconstruct needs the full graph (export it with "
                            "python -m export.onnx --graph full, or drop --reconstruct)")

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, max_batch={self.max_batch})"
