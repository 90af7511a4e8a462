"""A ``pycuda`` and helpers for the GPU tests on machines without a GPU.

- :class:`FakeCuda`: a numpy-backed ``pycuda.driver``. Contexts follow pycuda's ``cuda.hpp``: a
  thread keeps two stacks, pycuda's own and the CUDA driver's (which holds at most pycuda's top, as
  ``context_push`` / ``Context.pop`` keep it); ``retain_primary_context`` counts a retain per device;
  ``detach()`` of a context that is not current pushes it on the driver stack and releases it
  (``cuDevicePrimaryCtxRelease`` pops nothing), so a stale entry stays current on that thread, and
  from another thread than the one that retained it, it does nothing (the retain leaks, recorded in
  ``leaked``). Memory operations and execution without a current context raise, so push/pop mistakes
  show. Async copies and kernels run at ``Stream.synchronize()`` (a device-to-host copy is not in
  host memory before it). Streams and allocations belong to the context current at creation;
  destroying or freeing them after that context was detached leaks them (pycuda warns and swallows
  the error), which ``leaked`` records; ``live_streams()`` lists streams not yet destroyed.
- :func:`write_crashing_tensorrt`: an importable stand-in ``tensorrt`` that records and kills the
  process if its Builder/Runtime/OnnxParser is reached (what must never happen without a GPU).
- :func:`has_cuda_driver`: whether a CUDA driver library is installed.
"""

from __future__ import annotations

import threading
import types
import weakref
from pathlib import Path
from typing import Any

import numpy as np


class FakeCuda:
    """pycuda.driver on numpy; ``module`` (pycuda) and ``driver`` go into sys.modules."""

    TOTAL = 1 << 33

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.freed: set[int] = set()
        self.leaked: list[str] = []  # "stream 0x.." / "alloc 0x..": destroyed after their context died
        self.dtoh: list[int] = []
        self.local = threading.local()
        self.contexts: list[Any] = []
        self.retains: dict[int, int] = {}  # device -> primary-context retains not yet released
        self.streams: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # handle -> Stream
        self.live: set[int] = set()  # handles of streams not yet destroyed
        self._next = 0x1000
        self._next_stream = 0x7000
        fake = self
        drv = types.ModuleType("pycuda.driver")

        class Context:
            """pycuda's primary_context: push/pop keep the driver stack in step with pycuda's."""

            def __init__(self, device: int) -> None:
                self.device, self.valid, self.thread = device, True, threading.get_ident()

            @property
            def detached(self) -> bool:
                return not self.valid

            def push(self) -> None:  # pycuda's context_push
                if not self.valid:
                    raise RuntimeError("cannot activate dead context")
                if fake.stack():  # prepare_context_switch: the driver holds only pycuda's top
                    fake.driver_pop()
                fake.driver_stack().append(self)
                fake.stack().append(self)

            def pop(self) -> None:  # pycuda's static Context.pop(): pops this thread's current
                if fake.stack():
                    fake.driver_pop()
                if not fake.stack():
                    raise RuntimeError("context::pop failed: cannot pop non-current context")
                fake.stack().pop()
                current = fake.current()
                if current is not None:
                    fake.driver_stack().append(current)

            def detach(self) -> None:
                if not self.valid:
                    raise RuntimeError("context::detach failed: cannot detach from invalid context")
                active = fake.current() is self
                if active:
                    fake.release(self)
                elif self.thread == threading.get_ident():
                    fake.driver_stack().append(self)  # cuCtxPushCurrent, then the release pops nothing
                    fake.release(self)
                else:  # pycuda skips the release of an out-of-thread context: the retain leaks
                    fake.leaked.append(f"retain of device {self.device} (detached on another thread)")
                self.valid = False
                if active:
                    current = fake.current(skip=self)
                    if current is not None:
                        fake.driver_stack().append(current)

        class Device:
            def __init__(self, i: int) -> None:
                self.i = i

            def retain_primary_context(self) -> Context:
                ctx = Context(self.i)
                fake.contexts.append(ctx)
                fake.retains[self.i] = fake.retains.get(self.i, 0) + 1
                return ctx

        class Alloc:
            def __init__(self, addr: int) -> None:
                self.addr, self.ctx, self.valid = addr, fake.current(), True

            def __int__(self) -> int:
                return self.addr

            def free(self) -> None:
                # pycuda activates the allocation's own context; a dead one: warning, memory leaked
                if not self.valid:
                    raise RuntimeError("device_allocation::free failed: invalid handle (freed twice)")
                self.valid = False
                if self.ctx.detached:
                    fake.leaked.append(f"alloc {self.addr:#x}")
                else:
                    fake.freed.add(self.addr)

        class Stream:
            def __init__(self, flags: int = 0) -> None:
                fake.require_context()
                self.ctx, self.pending = fake.current(), []
                self.handle = fake._next_stream
                fake._next_stream += 0x10
                fake.streams[self.handle] = self
                fake.live.add(self.handle)

            def enqueue(self, op: Any) -> None:
                self.pending.append(op)

            def synchronize(self) -> None:
                fake.require_context()
                ops, self.pending = self.pending, []
                for op in ops:
                    op()

            def __del__(self) -> None:
                # pycuda's ~stream activates the stream's context; a detached one fails, and the
                # error is swallowed with a warning: the stream leaks
                if "handle" not in self.__dict__:  # creation failed
                    return
                fake.live.discard(self.handle)
                if self.ctx.detached:
                    fake.leaked.append(f"stream {self.handle:#x}")

        def mem_alloc(n: int) -> Alloc:
            fake.require_context()
            addr, fake._next = fake._next, fake._next + n + 256
            fake.memory[addr] = np.zeros(n, np.uint8)
            return Alloc(addr)

        def pagelocked_empty(shape: Any, dtype: Any) -> np.ndarray:
            fake.require_context()
            return np.zeros(shape, dtype)

        def on(stream: Any, op: Any) -> None:
            if stream is None:
                op()
            elif not isinstance(stream, Stream):
                raise TypeError(f"stream must be a pycuda Stream, got {type(stream).__name__}")
            else:
                stream.enqueue(op)

        def htod(dev: Any, host: np.ndarray, stream: Any = None) -> None:
            fake.require_context()
            on(stream, lambda: fake.write(int(dev), host))  # reads the host memory when it runs

        def dtoh(host: np.ndarray, dev: Any, stream: Any = None) -> None:
            fake.require_context()
            fake.dtoh.append(int(dev))

            def copy() -> None:
                host[...] = fake.read(int(dev), host.shape, host.dtype)

            on(stream, copy)

        def mem_get_info() -> tuple[int, int]:
            fake.require_context()
            used = sum(m.size for a, m in fake.memory.items() if a not in fake.freed)
            return fake.TOTAL - used, fake.TOTAL

        for k, v in dict(init=lambda: None, Device=Device, Stream=Stream, mem_alloc=mem_alloc,
                         pagelocked_empty=pagelocked_empty, memcpy_htod_async=htod,
                         memcpy_dtoh_async=dtoh, mem_get_info=mem_get_info).items():
            setattr(drv, k, v)
        self.driver = drv
        self.module = types.ModuleType("pycuda")
        self.module.driver = drv

    def stream_for(self, handle: int) -> Any:
        if handle not in self.streams:
            raise RuntimeError(f"CUDA error: invalid resource handle (stream {handle:#x})")
        return self.streams[handle]

    def live_streams(self) -> list[int]:
        return sorted(self.live)

    def stack(self) -> list:
        """pycuda's context stack of this thread."""
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        return self.local.stack

    def driver_stack(self) -> list:
        """The CUDA driver's context stack of this thread (what cuCtxGetCurrent sees)."""
        if not hasattr(self.local, "driver"):
            self.local.driver = []
        return self.local.driver

    def driver_pop(self) -> None:
        if not self.driver_stack():
            raise RuntimeError("cuCtxPopCurrent failed: invalid context (the driver stack is empty)")
        self.driver_stack().pop()

    def current(self, skip: Any = None) -> Any:
        """pycuda's current context: the top of its stack, dropping dead entries (and ``skip``)."""
        stack = self.stack()
        while stack and (stack[-1] is skip or not stack[-1].valid):
            stack.pop()
        return stack[-1] if stack else None

    def release(self, ctx: Any) -> None:
        """cuDevicePrimaryCtxRelease: one retain less; the context stays on the driver stack."""
        self.retains[ctx.device] = self.retains.get(ctx.device, 0) - 1

    def require_current(self) -> None:
        """What CUDA itself (TensorRT) needs: a live context current on this thread's driver stack."""
        driver = self.driver_stack()
        if not driver:
            raise RuntimeError("CUDA call without a current context on this thread")
        if self.retains.get(driver[-1].device, 0) <= 0:
            raise RuntimeError("CUDA error: context is destroyed (the current primary context was released)")

    def require_context(self) -> None:
        """What a pycuda call needs: a context pycuda pushed, current in the driver too."""
        if self.current() is None:
            raise RuntimeError("CUDA call without a current context on this thread")
        self.require_current()

    def write(self, addr: int, arr: np.ndarray) -> None:
        raw = np.ascontiguousarray(arr).view(np.uint8).reshape(-1)
        mem = self.memory[addr]
        if raw.size > mem.size:
            raise RuntimeError(f"write of {raw.size} bytes into an allocation of {mem.size}")
        mem[:raw.size] = raw

    def read(self, addr: int, shape: Any, dtype: Any) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        mem = self.memory[addr]
        if n > mem.size:
            raise RuntimeError(f"read of {n} bytes from an allocation of {mem.size}")
        return mem[:n].view(dtype).reshape(shape).copy()


# --- self-tests of the fakes (they guard the API test against a lenient fake) ----------------


CRASHING_TRT = '''"""A stand-in tensorrt whose builder and runtime must never be reached (no GPU here)."""
import os
__version__ = "10.3.0"
MARKER = {marker!r}

def _reached(*args, **kwargs):
    with open(MARKER, "a") as f:
        f.write("reached\\n")
    os._exit(99)  # what a real deserialize without a device may do: take the process down

Builder = Runtime = OnnxParser = _reached

class _Anything:
    def __getattr__(self, name):
        return _Anything()
    def __int__(self):
        return 0

def __getattr__(name):
    return _Anything()
'''


def write_crashing_tensorrt(folder: Path, marker: Path) -> Path:
    """An importable fake ``tensorrt`` (put ``folder`` on PYTHONPATH) that records and dies if its
    Builder, Runtime or OnnxParser is ever called."""
    pkg = folder / "tensorrt"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(CRASHING_TRT.format(marker=str(marker)))
    return folder


def has_cuda_driver() -> bool:
    import ctypes.util

    return ctypes.util.find_library("cuda") is not None or Path("/usr/lib/x86_64-linux-gnu/libcuda.so.1").exists()


def orin_device() -> Any:
    """The CUDA device the fakes stand for (a Jetson AGX Orin, compute capability 8.7)."""
    from runtime.backends import trt_compat

    return trt_compat.CudaDevice(0, "NVIDIA Jetson AGX Orin", "8.7", 1 << 35)
