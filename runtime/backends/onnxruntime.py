"""ONNX Runtime backend: CPU by default, CUDA or TensorRT execution providers when asked for.

The network input/output layout comes from the artifact's metadata (``metadata_props
["jrc_meta"]``). An ONNX file without it is accepted only when the caller supplies the
preprocessing (input size, mean, std); otherwise the error names the missing flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from runtime.backends.base import Backend, check_logit_spec, check_logits
from runtime.errors import UserError, missing_dependency
from runtime.meta import ONNX_KEY, Meta
from runtime.onnx_proto import check_external_data, graph_outputs, prune_outputs

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
DEFAULT_MAX_BATCH = 8  # for graphs with a dynamic batch dimension
MAX_FIXED_BATCH = 4096  # a graph's own fixed batch beyond this is hostile (padding would allocate it)
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise missing_dependency("onnxruntime", None, how="pip install onnxruntime "
                                 "(or onnxruntime-gpu for the CUDA/TensorRT providers)") from None
    return onnxruntime


def _ort_errors(ort: Any) -> tuple[type[BaseException], ...]:
    """ONNX Runtime's own exception classes (they derive from Exception directly)."""
    state = ort.capi.onnxruntime_pybind11_state
    found = [v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception)]
    return tuple(found) + (RuntimeError, ValueError)


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _read_model(path: str) -> bytes:
    """The model's bytes, after checking its external data stays inside its folder."""
    check_external_data(path)
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e}); check the path and permissions") from None


class OnnxRuntimeBackend(Backend):
    """An ``onnxruntime.InferenceSession`` on the artifact; runs only the outputs asked for."""

    name = "onnxruntime"

    def __init__(self, path: str, provider: str = "cpu", threads: int = 0, max_batch: int | None = None,
                 input_size: int | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, color: str | None = None,
                 reconstruct: bool = False) -> None:
        """``reconstruct=False`` loads the graph without its decoder (ONNX Runtime would otherwise
        run every node, fetched or not); a later ``infer(reconstruct=True)`` loads the full graph."""
        self._ort = ort = _import_ort()
        if provider not in PROVIDERS:
            raise UserError(f"--provider {provider!r} is unknown; use one of {', '.join(PROVIDERS)}")
        wanted = PROVIDERS[provider]
        available = ort.get_available_providers()
        if wanted[0] not in available:
            raise UserError(f"--provider {provider}: this ONNX Runtime has no {wanted[0]} (available: "
                            f"{', '.join(available)}); install onnxruntime-gpu with matching CUDA/TensorRT, "
                            "or use --provider cpu")
        self.provider, self._providers, self._threads = provider, wanted, threads
        data = _read_model(path)
        try:
            graph_outputs_ = graph_outputs(data)
            prune = not reconstruct and "logit" in graph_outputs_
            run_data = prune_outputs(data, {"logit"}) if prune else data
        except ValueError as e:
            raise UserError(f"{path}: not a valid ONNX model ({e}); the file is truncated or not ONNX, "
                            "re-export it") from None
        self.session = self._session(path, run_data)
        self._full_session = self.session if reconstruct or run_data is data else None
        meta = self._meta(path, input_size, mean, std, color, graph_outputs_)
        self._input = self._check_graph(path, meta, graph_outputs_)
        dim = self._input.shape[0]
        static = isinstance(dim, int) and dim > 0
        batch = dim if static else int(max_batch or DEFAULT_MAX_BATCH)
        if static and max_batch and max_batch != dim:
            raise UserError(f"{path}: the graph has a fixed batch of {dim}; drop --max-batch or re-export "
                            "with a dynamic batch")
        if static and dim > MAX_FIXED_BATCH:
            raise UserError(f"{path}: the graph has a fixed batch of {dim}, more than {MAX_FIXED_BATCH}; re-export "
                            "it with a dynamic batch")
        self._fixed_batch = dim if static else None
        self._check_outputs(path, self._fixed_batch)
        self._dtype = np.float16 if self._input.type == "tensor(float16)" else np.float32
        super().__init__(path, meta, batch)

    def _session(self, path: str, data: bytes) -> Any:
        ort = self._ort
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only: warnings would break the one-line console
        # loaded from bytes, so tell ORT where external data lives (it refuses paths escaping it)
        opts.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                      str(Path(path).resolve().parent))
        if self._threads:
            opts.intra_op_num_threads = int(self._threads)
        try:
            session = ort.InferenceSession(data, sess_options=opts, providers=self._providers)
        except _ort_errors(ort) as e:
            raise UserError(f"{path}: ONNX Runtime cannot load it ({_one_line(e)}); the file is damaged, "
                            "truncated or not an ONNX model, re-export it") from None
        if session.get_providers()[0] != self._providers[0]:
            raise UserError(f"--provider {self.provider}: {self._providers[0]} failed to initialise (it fell "
                            f"back to {session.get_providers()[0]}); check the CUDA/TensorRT libraries, "
                            "or use --provider cpu")
        return session

    # --- setup --------------------------------------------------------------------------
    def _meta(self, path: str, input_size: int | None, mean: Sequence[float] | None,
              std: Sequence[float] | None, color: str | None, graph_outputs_: list[str]) -> Meta:
        props = self.session.get_modelmeta().custom_metadata_map
        given = {"input_size": input_size, "mean": tuple(mean) if mean else None,
                 "std": tuple(std) if std else None, "color": color}
        given = {k: v for k, v in given.items() if v is not None}
        outputs = tuple(o for o in graph_outputs_ if o in ("logit", "recon"))
        if ONNX_KEY in props:
            meta = Meta.from_json(props[ONNX_KEY], source=f"{path} (metadata '{ONNX_KEY}')")
            clash = [k for k, v in given.items() if v != getattr(meta, k)]
            if clash:
                flags = ", ".join("--" + k.replace("_", "-") for k in clash)
                raise UserError(f"{path}: {flags} disagree with the model's own metadata "
                                f"({', '.join(f'{k}={getattr(meta, k)}' for k in clash)}); drop them")
        else:
            missing = [f"--{k.replace('_', '-')}" for k in ("input_size", "mean", "std") if k not in given]
            if missing:
                raise UserError(f"{path}: the model carries no jrc-edge metadata ('{ONNX_KEY}'); pass "
                                f"{' '.join(missing)} to describe its input, or re-export it with "
                                "python -m export.onnx")
            graph = "full" if "recon" in outputs else "detect"
            try:
                meta = Meta(graph=graph, outputs=outputs or ("logit",), input_name=self.session.get_inputs()[0].name,
                            **given)
                meta.validate()
            except (UserError, TypeError, ValueError) as e:
                raise UserError(f"{path}: {e}") from None
        return meta

    def _check_graph(self, path: str, meta: Meta, graph_outputs_: list[str]) -> Any:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = set(graph_outputs_)
        if meta.input_name not in inputs:
            raise UserError(f"{path}: the metadata names input {meta.input_name!r} but the graph has "
                            f"{sorted(inputs)}; re-export the model")
        if "logit" not in outputs or (meta.has_recon and "recon" not in outputs):
            raise UserError(f"{path}: the graph's outputs {sorted(outputs)} lack {list(meta.outputs)} that "
                            "its metadata promises; re-export the model")
        inp = inputs[meta.input_name]
        shape = list(inp.shape)
        s = meta.input_size
        want = [None, 3, s, s]
        if len(shape) != 4 or any(isinstance(d, int) and w is not None and d != w for d, w in zip(shape, want)):
            raise UserError(f"{path}: input {meta.input_name!r} has shape {shape}, expected [N, 3, {s}, {s}] "
                            "(NCHW at the metadata's input size); check --input-size or re-export")
        if inp.type not in ("tensor(float)", "tensor(float16)"):
            raise UserError(f"{path}: input {meta.input_name!r} is {inp.type}, expected float32 or float16")
        return inp

    def _check_outputs(self, path: str, batch: int | None) -> None:
        """The declared type and shape of ``logit`` (each result is checked again in :meth:`infer`)."""
        for o in self.session.get_outputs():
            if o.name == "logit":
                check_logit_spec(path, _NUMPY_TYPES.get(o.type, o.type if o.type else None), o.shape, batch)

    # --- running ------------------------------------------------------------------------
    def infer(self, x: np.ndarray, reconstruct: bool = False) -> dict[str, np.ndarray]:
        x = self.check_batch(x, reconstruct)
        n = len(x)
        if self._fixed_batch and n < self._fixed_batch:  # pad a fixed-batch graph, drop the padding after
            x = np.concatenate([x, np.zeros((self._fixed_batch - n,) + x.shape[1:], np.float32)])
        names = ["logit", "recon"] if reconstruct else ["logit"]
        feed = {self.meta.input_name: x if self._dtype is np.float32 else x.astype(self._dtype)}
        if reconstruct and self._full_session is None:
            self._full_session = self._session(self.path, _read_model(self.path))
        try:
            out = (self._full_session if reconstruct else self.session).run(names, feed)
        except _ort_errors(self._ort) as e:
            raise UserError(f"{self.path}: inference failed ({_one_line(e)}); the model is broken, "
                            "re-export it") from None
        result = {"logit": check_logits(self.path, out[0], len(x))[:n]}
        if reconstruct:
            result["recon"] = np.asarray(out[1], np.float32)[:n].copy()
        return result

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["provider"] = self.session.get_providers()[0] if getattr(self, "session", None) else self._providers[0]
        return d

    @property
    def on_gpu(self) -> bool:
        return self.provider in ("cuda", "tensorrt")

    def close(self) -> None:
        self.session = self._full_session = None  # type: ignore[assignment]


class OnnxRuntimeGraph:
    """Any ONNX graph by its input and output names (a face detector's networks): no classifier
    checks, the caller validates the metadata it reads from :attr:`props`."""

    name = "onnxruntime"

    def __init__(self, path: str, provider: str = "cpu", threads: int = 1) -> None:
        ort = _import_ort()
        if provider not in PROVIDERS:
            raise UserError(f"--provider {provider!r} is unknown; use one of {', '.join(PROVIDERS)}")
        self.path, self.provider, self._errors = str(path), provider, _ort_errors(ort)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        # input shapes change call by call (pyramid levels, windows, candidate counts): no memory
        # plan cached per shape and no arena that keeps the largest, so memory stays flat on long runs
        opts.enable_mem_pattern = False
        opts.enable_cpu_mem_arena = False
        try:
            self.session = ort.InferenceSession(_read_model(self.path), sess_options=opts,
                                                providers=PROVIDERS[provider])
        except self._errors as e:
            raise UserError(f"{path}: ONNX Runtime cannot load it ({_one_line(e)}); the file is damaged or "
                            "not an ONNX model, re-export it") from None
        self.props: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.inputs = {i.name: list(i.shape) for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
        try:
            return self.session.run(list(names), feeds)
        except self._errors as e:
            raise UserError(f"{self.path}: inference failed ({_one_line(e)}); re-export the model") from None

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "path": self.path, "provider": self.session.get_providers()[0]}

    def close(self) -> None:
        self.session = None
