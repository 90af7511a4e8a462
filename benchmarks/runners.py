"""What the benchmarks time: one small runner per way of running a model.

- ``runtime``: the product's own backend (:func:`runtime.backends.open_backend`), ONNX Runtime for
  ``.onnx``, TensorRT for ``.engine``/``.plan`` — what ``runtime.detect`` runs.
- ``bare``: a plain ``onnxruntime.InferenceSession`` on the same file with the same session
  options and threads, fed the same input: the yardstick for the runtime's overhead.
- ``torch``: the checkpoint in PyTorch eager mode, full model (``forward_full``, logit and
  reconstruction) under ``no_grad``, as research code runs it: the reference for speed-ups.

A runner is described by a :class:`Spec` (plain data, so a child process can rebuild it for the
memory measurement) and gives a zero-argument callable per input batch, so the timing loop
measures the call and nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from runtime.errors import UserError
from runtime.meta import Meta

KINDS = ("runtime", "bare", "torch")
UNBOUNDED_BATCH = 1 << 16


@dataclass(frozen=True)
class Spec:
    kind: str  # one of KINDS
    path: str  # artifact (.onnx/.engine/.plan) or checkpoint (torch)
    threads: int = 0  # intra-op threads (ONNX Runtime and torch); 0 = library default
    max_batch: int = 8  # largest batch the benchmark will feed (sizes dynamic ONNX sessions)
    provider: str = "cpu"  # ONNX Runtime execution provider (runtime and bare)
    label: str = ""
    reconstruct: bool | None = None  # None: run the reconstruction whenever the graph has it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Runner:
    """An opened model plus how to call it on one batch."""

    spec: Spec
    meta: Meta
    backend: str  # "onnxruntime", "tensorrt", "onnxruntime (bare)", "torch eager"
    max_batch: int
    closer: Callable[[], None]
    binder: Callable[[np.ndarray], Callable[[], Any]]
    info: dict[str, Any] = field(default_factory=dict)
    profile: Callable[[], dict[str, float] | None] = lambda: None

    @property
    def label(self) -> str:
        return self.spec.label or Path(self.spec.path).name

    @property
    def graph(self) -> str:
        return "full" if self.reconstructs else self.meta.graph

    @property
    def reconstructs(self) -> bool:
        return self.meta.has_recon if self.spec.reconstruct is None else self.spec.reconstruct

    def bind(self, x: np.ndarray) -> Callable[[], Any]:
        """A callable running this batch (input conversions happen here, outside the timing)."""
        return self.binder(x)

    def close(self) -> None:
        self.closer()

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.spec.kind, "backend": self.backend, "path": self.spec.path,
                "precision": self.meta.precision, "graph": self.graph, "encoder": self.meta.encoder,
                "input_size": self.meta.input_size, "max_batch": self.max_batch, **self.info}


def make_input(meta: Meta, batch: int, seed: int = 0) -> np.ndarray:
    """A batch of face-like network input: random uint8 crops through the runtime's own to_input."""
    from runtime.preprocess import to_input

    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, (batch, meta.input_size, meta.input_size, 3), dtype=np.uint8)
    return to_input(crops, meta)


def open_runner(spec: Spec) -> Runner:
    if spec.kind == "runtime":
        return _runtime(spec)
    if spec.kind == "bare":
        return _bare(spec)
    if spec.kind == "torch":
        return _torch(spec)
    raise ValueError(f"runner kind {spec.kind!r}, expected one of {KINDS}")


# --- the product's backend ---------------------------------------------------------------
def _runtime(spec: Spec) -> Runner:
    from runtime.backends import open_backend

    if Path(spec.path).suffix.lower() == ".onnx":
        opts: dict[str, Any] = {"provider": spec.provider, "threads": spec.threads, "max_batch": spec.max_batch}
    else:
        opts = {"profile": True}  # TensorRT: ask for the H2D / compute / D2H split (ignored if unsupported)
    try:
        backend = open_backend(spec.path, **opts)
    except UserError as e:
        if "fixed batch" not in str(e):
            raise
        opts.pop("max_batch")  # a static-batch ONNX: its own batch is the limit
        backend = open_backend(spec.path, **opts)
    rec = backend.meta.has_recon if spec.reconstruct is None else spec.reconstruct

    def bind(x: np.ndarray) -> Callable[[], Any]:
        return lambda: backend.infer(x, reconstruct=rec)

    def profile() -> dict[str, float] | None:
        d = getattr(backend, "last_profile", None)
        return dict(d) if d else None

    info = {k: v for k, v in backend.describe().items() if k not in ("path", "precision", "max_batch")}
    info.pop("backend", None)
    return Runner(spec, backend.meta, backend.name, backend.max_batch, backend.close, bind, info, profile)


# --- a bare ONNX Runtime session ---------------------------------------------------------
def ort_session(path: str, threads: int = 0, provider: str = "cpu") -> Any:
    """An InferenceSession with the options the runtime's backend uses (and nothing else)."""
    import onnxruntime as ort

    from runtime.backends.onnxruntime import PROVIDERS

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(path, sess_options=opts, providers=PROVIDERS[provider])


def _bare(spec: Spec) -> Runner:
    from runtime.meta import ONNX_KEY

    if Path(spec.path).suffix.lower() != ".onnx":
        raise UserError(f"{spec.path}: a bare onnxruntime session needs an .onnx file")
    sess = ort_session(spec.path, spec.threads, spec.provider)
    props = sess.get_modelmeta().custom_metadata_map
    if ONNX_KEY not in props:
        raise UserError(f"{spec.path}: no jrc-edge metadata ('{ONNX_KEY}'); benchmark ONNX files written by "
                        "python -m export.onnx or calibration.quantize")
    meta = Meta.from_json(props[ONNX_KEY], source=spec.path)
    inp = sess.get_inputs()[0]
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    dim = inp.shape[0]
    fixed = isinstance(dim, int) and dim > 0
    max_batch = dim if fixed else spec.max_batch
    rec = meta.has_recon if spec.reconstruct is None else spec.reconstruct
    names = ["logit", "recon"] if rec else ["logit"]

    def bind(x: np.ndarray) -> Callable[[], Any]:
        if fixed and len(x) < max_batch:  # a fixed-batch graph: pad, as the runtime does
            x = np.concatenate([x, np.zeros((max_batch - len(x),) + x.shape[1:], x.dtype)])
        feed = {inp.name: np.ascontiguousarray(x, dtype)}
        return lambda: sess.run(names, feed)

    return Runner(spec, meta, "onnxruntime (bare)", max_batch, lambda: None, bind,
                  {"provider": sess.get_providers()[0]})


# --- PyTorch eager, the research-code reference ------------------------------------------
def load_reference(path: str, threads: int = 0) -> tuple[Any, Meta]:
    """The checkpoint's model in eval mode; ``threads`` sets torch's intra-op threads."""
    try:
        import torch
    except ImportError:
        from runtime.errors import missing_dependency

        raise missing_dependency("torch", "train") from None
    from training.checkpoint import load_model

    if threads:
        torch.set_num_threads(int(threads))
    return load_model(path)


def _torch(spec: Spec) -> Runner:
    import torch

    model, meta = load_reference(spec.path, spec.threads)
    full = spec.reconstruct is not False

    def bind(x: np.ndarray) -> Callable[[], Any]:
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32))

        def run() -> Any:
            with torch.no_grad():
                return model.forward_full(t) if full else model(t)
        return run

    info = {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    label = spec.label or f"pytorch eager ({'full' if full else 'detect'})"
    spec = Spec(**{**spec.to_dict(), "label": label})
    return Runner(spec, meta.with_(graph="full" if full else "detect", outputs=("logit", "recon") if full
                                   else ("logit",)), "torch eager", UNBOUNDED_BATCH, lambda: None, bind, info)
