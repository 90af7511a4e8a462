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
from typing import Any

import numpy as np

from runtime.errors import UserError
from runtime.meta import Meta


class Backend(ABC):
    """Runs the classifier (and, when asked and available, the decoder) on NCHW float32 batches."""

    #: short name for logs and the summary ("onnxruntime", "tensorrt")
    name: str = "backend"

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
