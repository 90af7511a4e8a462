"""TensorRT backend: runs a plan built by ``python -m export.engine`` through pycuda.

The plan is a plain TensorRT plan; its metadata lives in the sidecar ``<plan>.json``
(:func:`runtime.meta.read_sidecar`, which also checks the plan's sha256). Before anything touches
the GPU the sidecar is compared with this machine (TensorRT release, GPU model) and a usable CUDA
device is confirmed in a child process, so a wrong or unrunnable plan is a one-line error and
``deserialize_cuda_engine`` is never called without a device.

Buffers are sized once for the profile's max batch: pinned host memory and device memory per I/O
tensor, one stream, async copies, ``set_input_shape`` + ``set_tensor_address`` +
``execute_async_v3`` (the API common to TensorRT 8.5 through 11). TensorRT refuses a shape outside
the optimisation profile, and the pipeline sends partial batches, so a batch smaller than the
profile's minimum (a static batch, every DLA engine) is padded with zero rows up to it and only the
first rows come back, as the ONNX Runtime backend does with fixed-batch graphs. A DLA plan is
deserialized with ``IRuntime.DLA_core`` set to the core its sidecar names (as trtexec does). The CUDA context is the device's
primary context, retained once per process (:func:`trt_compat.primary_context`, never detached) and
pushed/popped around every call, so the backend can be opened on one thread and used and closed on
another, and nothing stays current after a close. TensorRT's messages go to the process's one logger.
Engine bindings must be float32 or float16 (anything else is refused when the plan is opened).
tensorrt and pycuda are imported when a backend is opened, never at module import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends import trt_compat
from runtime.backends.base import LOGIT_DTYPES, Backend, check_logit_spec, check_logits
from runtime.errors import UserError
from runtime.meta import read_sidecar


class TensorRTBackend(Backend):
    """A TensorRT plan + sidecar. Options: ``device`` (CUDA index, default 0), ``verify_hash``.

    The full graph's ``recon`` output needs a device buffer (TensorRT writes every output), but it
    is copied back only when ``infer(..., reconstruct=True)``; its pinned host buffer is allocated on
    first use. Unknown options (meant for other backends, e.g. ``provider``) are ignored.
    """

    name = "tensorrt"

    def __init__(self, path: str, device: int = 0, verify_hash: bool = True, **options: Any) -> None:
        meta, raw = read_sidecar(path, verify_hash=verify_hash)
        self._ctx = None
        self._allocs: list[Any] = []
        self._engine = self._context = self._stream = None
        self._trt, self._cuda, self.device, ctx = _device_context(path, raw, device)
        ctx.push()
        try:
            self._open(path, meta, raw)
        except BaseException:
            try:
                self._release()
            finally:  # popped even when freeing fails: pycuda aborts at exit on a non-empty stack
                ctx.pop()
            raise
        ctx.pop()
        self._ctx = ctx

    # --- setup ------------------------------------------------------------------------------
    def _open(self, path: str, meta: Any, raw: dict[str, Any]) -> None:
        trt, cuda = self._trt, self._cuda
        self._logger, runtime, engine = _deserialize(trt, path, raw)
        self._runtime, self._engine = runtime, engine
        self._context = engine.create_execution_context()
        tensors = {t.name: t for t in trt_compat.io_tensors(trt, engine)}
        inp = tensors.get(meta.input_name)
        if inp is None or not inp.is_input:
            raise UserError(f"{path}: the engine has no input {meta.input_name!r} (it has "
                            f"{sorted(tensors)}); rebuild it from an ONNX written by export.onnx")
        check_io_dtype(path, inp, trt_compat.rebuild_command(path, raw))
        missing = [o for o in meta.outputs if o not in tensors or tensors[o].is_input]
        if missing:
            raise UserError(f"{path}: the engine lacks the output(s) {missing} its sidecar lists; "
                            f"rebuild it with: {trt_compat.rebuild_command(path, raw)}")
        for o in meta.outputs:
            if o != "logit":  # the logit's type is checked with its shape below
                check_io_dtype(path, tensors[o], trt_compat.rebuild_command(path, raw))
        logit = tensors["logit"]
        check_logit_spec(path, logit.dtype, [d if d >= 0 else None for d in logit.shape],
                         inp.shape[0] if inp.shape[0] > 0 else None)
        s = meta.input_size
        if tuple(inp.shape[1:]) != (3, s, s):
            raise UserError(f"{path}: engine input is {inp.shape}, its sidecar says 3×{s}×{s}; "
                            f"rebuild it with: {trt_compat.rebuild_command(path, raw)}")
        max_batch = inp.shape[0] if inp.shape[0] > 0 else inp.profile[2][0]  # type: ignore[index]
        #: the smallest batch TensorRT accepts; smaller ones are zero-padded up to it
        self.min_batch = inp.shape[0] if inp.shape[0] > 0 else max(1, inp.profile[0][0])  # type: ignore[index]
        super().__init__(path, meta, max_batch)
        self._input = inp
        self._stream = cuda.Stream()
        self._host: dict[str, np.ndarray] = {}
        self._dev: dict[str, Any] = {}
        for t in tensors.values():
            full = (max_batch,) + tuple(d if d > 0 else 1 for d in t.shape[1:])
            if t.is_input and any(d < 0 for d in t.shape[1:]):
                full = (max_batch,) + tuple(inp.profile[2][1:])  # type: ignore[index]
            nbytes = int(np.prod(full)) * t.dtype.itemsize
            self._dev[t.name] = self._alloc(cuda.mem_alloc(nbytes))
            if t.is_input or t.name == "logit":
                self._host[t.name] = cuda.pagelocked_empty(full, t.dtype)
            self._context.set_tensor_address(t.name, int(self._dev[t.name]))
        self._outputs = {t.name: t for t in tensors.values() if not t.is_input}

    def _alloc(self, allocation: Any) -> Any:
        self._allocs.append(allocation)
        return allocation

    # --- running ----------------------------------------------------------------------------
    def infer(self, x: np.ndarray, reconstruct: bool = False) -> dict[str, np.ndarray]:
        if self._context is None:
            raise RuntimeError(f"{self.path}: backend is closed")
        x = self.check_batch(x, reconstruct)
        n, cuda, name = x.shape[0], self._cuda, self._input.name
        m = max(n, self.min_batch)  # rows TensorRT runs: padded up to the profile's minimum
        wanted = ["logit"] + (["recon"] if reconstruct else [])
        self._ctx.push()
        try:
            host_in = self._host[name][:m]
            np.copyto(host_in[:n], x, casting="unsafe")
            host_in[n:] = 0
            cuda.memcpy_htod_async(self._dev[name], host_in, self._stream)
            if not self._context.set_input_shape(name, tuple(host_in.shape)):
                raise RuntimeError(f"{self.path}: TensorRT refused input shape {host_in.shape} (profile "
                                   f"{self.min_batch}..{self.max_batch})")
            if not self._context.execute_async_v3(self._stream.handle):
                raise RuntimeError(f"{self.path}: TensorRT execution failed")
            views = {}
            for o in wanted:
                shape = tuple(int(d) for d in self._context.get_tensor_shape(o))
                host = self._host_buffer(o)
                views[o] = host.reshape(-1)[:int(np.prod(shape))].reshape(shape)
                cuda.memcpy_dtoh_async(views[o], self._dev[o], self._stream)
            self._stream.synchronize()
        finally:
            self._ctx.pop()
        out = {o: v[:n].astype(np.float32, copy=True) for o, v in views.items() if o != "logit"}
        out["logit"] = check_logits(self.path, views["logit"][:n], n)
        return out

    def _host_buffer(self, name: str) -> np.ndarray:
        """Pinned host memory for an output, allocated the first time it is wanted."""
        if name not in self._host:
            t = self._outputs[name]
            full = (self.max_batch,) + tuple(d if d > 0 else 1 for d in t.shape[1:])
            self._host[name] = self._cuda.pagelocked_empty(full, t.dtype)
        return self._host[name]

    @property
    def on_gpu(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(device=self.device.name, compute_capability=self.device.compute_capability,
                 tensorrt=trt_compat.trt_version(self._trt), min_batch=self.min_batch)
        return d

    # --- teardown ---------------------------------------------------------------------------
    def close(self) -> None:
        """Free the engine and its buffers inside the device's context, then pop it. The context
        itself stays retained for the process (:func:`trt_compat.primary_context`): nothing is left
        current on this thread, whichever thread opened the backend."""
        if self._ctx is None:
            return
        ctx, self._ctx = self._ctx, None
        ctx.push()
        try:
            self._release()
        finally:
            ctx.pop()

    def _release(self) -> None:
        """Free TensorRT objects, then the stream and the memory they use, inside the pushed context.

        The stream must be dropped here: pycuda destroys it by activating its context, which fails
        (a swallowed warning, the stream leaks) where that context is not current on a thread other
        than the one that retained it.
        """
        if self._stream is not None:
            self._stream.synchronize()
        self._context = self._engine = None
        self._runtime = None
        self._stream = None
        self._host = {}
        for a in self._allocs:
            a.free()
        self._allocs = []


class TensorRTGraph:
    """Any plan by its input and output names, with dynamic shapes (the face detector's networks,
    built by ``python -m export.engine`` with sidecars carrying their own metadata). Device
    buffers grow to the largest shapes seen; the CUDA context is handled as in
    :class:`TensorRTBackend`, so it may be opened on one thread and run on another."""

    name = "tensorrt"

    def __init__(self, path: str, device: int = 0, verify_hash: bool = True, **options: Any) -> None:
        import json

        from runtime.meta import FACE_KEY, face_meta_from_json, read_any_sidecar

        self.path = str(path)
        _, raw = read_any_sidecar(path, lambda b, source: face_meta_from_json(b, source), verify_hash)
        self.props = {FACE_KEY: json.dumps(raw)}
        self._ctx = None
        self._allocs: dict[str, tuple[Any, int]] = {}
        self._host: dict[str, np.ndarray] = {}
        self._stream = None
        trt, cuda, self.device, ctx = _device_context(path, raw, device)
        self._cuda, self._trt = cuda, trt
        ctx.push()
        try:
            self._logger, self._runtime, engine = _deserialize(trt, path, raw)
            self._engine, self._context = engine, engine.create_execution_context()
            self._tensors = {t.name: t for t in trt_compat.io_tensors(trt, engine)}
            for t in self._tensors.values():
                check_io_dtype(path, t)
            self._stream = cuda.Stream()
        except BaseException:
            try:
                self._release()
            finally:
                ctx.pop()
            raise
        ctx.pop()
        self._ctx = ctx

    def _buffers(self, name: str, shape: tuple[int, ...], dtype: Any) -> tuple[Any, np.ndarray]:
        """Device memory and a pinned host view for ``shape``; both grow when a larger shape comes."""
        n = int(np.prod(shape))
        have = self._allocs.get(name)
        if have is None or have[1] < n:
            if have is not None:
                have[0].free()
            self._allocs[name] = (self._cuda.mem_alloc(max(n, 1) * np.dtype(dtype).itemsize), n)
            self._host[name] = self._cuda.pagelocked_empty((max(n, 1),), dtype)
            self._context.set_tensor_address(name, int(self._allocs[name][0]))
        return self._allocs[name][0], self._host[name][:n].reshape(shape)

    def run(self, feeds: dict[str, np.ndarray], names: Any) -> list[np.ndarray]:
        """Outputs ``names`` for inputs ``feeds`` (float32 arrays of any shape the profile allows)."""
        cuda = self._cuda
        self._ctx.push()
        try:
            for name, x in feeds.items():
                t = self._tensors.get(name)
                if t is None or not t.is_input:
                    raise UserError(f"{self.path}: the engine has no input {name!r}; rebuild it")
                if not self._context.set_input_shape(name, tuple(x.shape)):
                    raise UserError(f"{self.path}: input shape {x.shape} is outside the engine's profile "
                                    f"{t.profile}; use a smaller --detect-width or rebuild it")
                dev, host = self._buffers(name, tuple(x.shape), t.dtype)
                np.copyto(host, x, casting="unsafe")
                cuda.memcpy_htod_async(dev, host, self._stream)
            views = {}
            for t in self._tensors.values():  # every output needs an address, wanted or not
                if not t.is_input:
                    shape = tuple(int(d) for d in self._context.get_tensor_shape(t.name))
                    views[t.name] = self._buffers(t.name, shape, t.dtype)
            if not self._context.execute_async_v3(self._stream.handle):
                raise RuntimeError(f"{self.path}: TensorRT execution failed")
            for name in names:
                dev, host = views[name]
                cuda.memcpy_dtoh_async(host, dev, self._stream)
            self._stream.synchronize()
        finally:
            self._ctx.pop()
        return [views[n][1].astype(np.float32, copy=True) for n in names]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "path": self.path, "device": self.device.name,
                "tensorrt": trt_compat.trt_version(self._trt)}

    def close(self) -> None:
        if self._ctx is None:
            return
        ctx, self._ctx = self._ctx, None
        ctx.push()
        try:
            self._release()
        finally:
            ctx.pop()

    def _release(self) -> None:
        """As :meth:`TensorRTBackend._release`: the stream is dropped inside its context, or it leaks."""
        if getattr(self, "_stream", None) is not None:
            self._stream.synchronize()
        self._context = self._engine = self._runtime = self._stream = None
        allocs, self._allocs, self._host = self._allocs, {}, {}
        for a, _ in allocs.values():
            a.free()


def check_io_dtype(path: str, tensor: trt_compat.TensorInfo, rebuild: str = "python -m export.engine") -> None:
    """Refuse an engine tensor that is not float32 or float16: float input copied into an INT8,
    UINT8 or INT32 binding would be truncated without a word."""
    if tensor.dtype is None or tensor.dtype not in LOGIT_DTYPES:
        kind = "input" if tensor.is_input else "output"
        raise UserError(f"{path}: the engine's {kind} {tensor.name!r} is {tensor.type_name}, expected FLOAT or HALF "
                        f"(float32/float16); rebuild it from a float ONNX with: {rebuild}")


def _device_context(path: str, raw: dict[str, Any], device: int) -> tuple[Any, Any, Any, Any]:
    """(tensorrt, pycuda.driver, the CUDA device, its primary context: retained once per process) for
    a plan whose sidecar matches this TensorRT release and GPU (checked before anything touches the
    device)."""
    trt = trt_compat.import_tensorrt()
    trt_compat.check_engine_matches(path, raw, trt_compat.trt_version(trt), None)  # cheap check first
    dev = trt_compat.probe_cuda_device(int(device))
    trt_compat.check_engine_matches(path, raw, trt_compat.trt_version(trt), dev)
    cuda = trt_compat.import_pycuda()
    return trt, cuda, dev, trt_compat.primary_context(cuda, int(device))


def _deserialize(trt: Any, path: str, raw: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(logger, runtime, engine) for the plan at ``path``, set up as its sidecar says (host code for
    a version-compatible plan, its DLA core); one line when TensorRT cannot load it. Call with the
    device's context pushed."""
    logger = trt_compat.shared_logger(trt)
    runtime = trt.Runtime(logger)
    if raw.get("version_compatible"):
        trt_compat.allow_host_code(runtime)
    trt_compat.set_dla_core(runtime, raw.get("dla_core"), path)
    # bytes that are not a plan make TensorRT log its own error line(s); the one-line error below
    # says it instead (the sidecar check already ruled out another release or GPU)
    with trt_compat.log_level(logger, "INTERNAL_ERROR"):
        engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
    if engine is None:
        raise UserError(f"{path}: TensorRT {trt_compat.trt_version(trt)} could not load this plan; rebuild it "
                        f"with: {trt_compat.rebuild_command(path, raw)}")
    return logger, runtime, engine
