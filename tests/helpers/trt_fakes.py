"""Fakes for the TensorRT tests on machines without TensorRT or a GPU.

- :class:`FakeTRT`: a ``tensorrt`` module for ONE release, built from ``trt-api/<release>.json``.
  Every class and member the release lists exists; anything else raises AttributeError, at module,
  class and instance level (also on assignment), and every name touched is recorded in ``used``.
  Enough behaviour is simulated (builder → JSON "plan" → engine → execution context) for the
  project's build and run code to go end to end; the arithmetic is ``logit = mean(x)``,
  ``recon = x / 2``.
- :class:`FakeCuda`: a numpy-backed ``pycuda.driver`` with per-thread context stacks; memory
  operations and execution without a pushed context raise, so push/pop mistakes show.
- :func:`write_crashing_tensorrt`: an importable stand-in ``tensorrt`` that records and kills the
  process if its Builder/Runtime/OnnxParser is reached (what must never happen without a GPU).
- :func:`has_cuda_driver`: whether a CUDA driver library is installed.
"""

from __future__ import annotations

import json
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np

from tests.helpers import TRT_API_DIR


def api_files() -> list[Path]:
    return sorted(TRT_API_DIR.glob("tensorrt-*.json"))


def api_ids() -> list[str]:
    return [p.stem.replace("tensorrt-", "") for p in api_files()]


class _Sym:
    """A non-enum class attribute (e.g. Logger.WARNING)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


class _EnumValue:
    def __init__(self, owner: str, name: str, value: int) -> None:
        self.owner, self.name, self.value = owner, name, value

    def __int__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _EnumValue) and (other.owner, other.name) == (self.owner, self.name)

    def __hash__(self) -> int:
        return hash((self.owner, self.name))

    def __repr__(self) -> str:
        return f"{self.owner}.{self.name}"


class _Module(types.ModuleType):
    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            fake = types.ModuleType.__getattribute__(self, "_fake")
            if name not in fake.top:
                raise AttributeError(f"tensorrt.{name} does not exist in TensorRT {fake.version}")
            fake.used.add(name)
        return types.ModuleType.__getattribute__(self, name)


class _ClassMeta(type):
    def __getattribute__(cls, name: str) -> Any:
        if name.startswith("_"):
            return type.__getattribute__(cls, name)
        qual, members, fake = (type.__getattribute__(cls, k) for k in ("_qual", "_members", "_fake"))
        if name not in members:
            raise AttributeError(f"tensorrt.{qual}.{name} does not exist in TensorRT {fake.version}")
        fake.used.add(f"{qual}.{name}")
        try:
            return type.__getattribute__(cls, name)
        except AttributeError:
            return _Sym(f"{qual}.{name}")


class _Obj(metaclass=_ClassMeta):
    """Instances check member names on get and set; behaviour comes from FakeTRT.b_<Class>_<member>."""

    _qual = "object"
    _members: frozenset = frozenset()
    _fake: Any = None

    def __init__(self, *args: Any) -> None:
        object.__setattr__(self, "_args", args)
        object.__setattr__(self, "_state", {})

    def _check(self, name: str) -> str:
        qual = type(self)._qual
        if name not in type(self)._members:
            raise AttributeError(f"tensorrt.{qual}.{name} does not exist in TensorRT {self._fake.version}")
        self._fake.used.add(f"{qual}.{name}")
        return f"b_{qual}_{name}"

    def __getattr__(self, name: str) -> Any:  # only called for names not set on the object
        if name.startswith("_"):
            raise AttributeError(name)
        key = self._check(name)
        if name in self._state:
            return self._state[name]
        impl = getattr(self._fake, key, None)
        if impl is None:
            return lambda *a, **k: None
        if key in self._fake.PROPERTIES:
            return impl(self)
        return lambda *a, **k: impl(self, *a, **k)

    def __setattr__(self, name: str, value: Any) -> None:
        self._check(name)
        self._state[name] = value


class FakeTRT:
    """One release's ``tensorrt`` module (``.module``) with recorded names (``.used``)."""

    PROPERTIES = {"b_Builder_num_DLA_cores", "b_OnnxParser_num_errors", "b_ICudaEngine_num_io_tensors"}

    def __init__(self, api_json: Path, cuda: FakeCuda | None = None) -> None:
        d = json.loads(Path(api_json).read_text())
        self.version: str = d["__version__"]
        self.top: dict[str, Any] = d["top"]
        self.used: set[str] = set()
        self.cuda = cuda
        self.deserialized = 0
        self.parse_ok = True
        self.built: list[dict[str, Any]] = []
        self.configs: list[Any] = []
        m = _Module("tensorrt")
        object.__setattr__(m, "_fake", self)
        m.__version__ = self.version
        for name, members in self.top.items():
            if isinstance(members, list):
                setattr(m, name, self._make_class(name, members))
        m.nptype = self._nptype
        self.module = m

    def _make_class(self, name: str, members: list[str]) -> type:
        ns: dict[str, Any] = {"_qual": name, "_members": frozenset(members), "_fake": self}
        if "name" in members and "value" in members:  # an enum
            for i, v in enumerate(x for x in members if x not in ("name", "value")):
                ns[v] = _EnumValue(name, v, i)
        return _ClassMeta(name, (_Obj,), ns)

    def _nptype(self, dtype: Any) -> Any:
        return {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32}[dtype.name]

    def new(self, cls: str, *args: Any) -> Any:
        return getattr(self.module, cls)(*args)

    # --- builder ----------------------------------------------------------------------------
    def b_Builder_create_network(self, b: Any, flags: int = 0) -> Any:
        net = self.new("INetworkDefinition")
        object.__setattr__(net, "_args", (int(flags),))
        return net

    def b_Builder_create_builder_config(self, b: Any) -> Any:
        cfg = self.new("IBuilderConfig")
        for k, v in {"flags_set": [], "profiles": [], "pools": {}}.items():
            object.__setattr__(cfg, k, v)
        self.configs.append(cfg)
        return cfg

    def b_Builder_create_optimization_profile(self, b: Any) -> Any:
        p = self.new("IOptimizationProfile")
        object.__setattr__(p, "shapes", {})
        return p

    def b_Builder_num_DLA_cores(self, b: Any) -> int:
        return 2

    def b_IOptimizationProfile_set_shape(self, p: Any, name: str, lo: Any, opt: Any, hi: Any) -> None:
        p.shapes[name] = [list(lo), list(opt), list(hi)]

    def b_IBuilderConfig_set_flag(self, cfg: Any, flag: Any) -> None:
        cfg.flags_set.append(flag.name)

    def b_IBuilderConfig_add_optimization_profile(self, cfg: Any, p: Any) -> int:
        cfg.profiles.append(p)
        return len(cfg.profiles) - 1

    def b_IBuilderConfig_set_memory_pool_limit(self, cfg: Any, pool: Any, n: int) -> None:
        cfg.pools[pool.name] = n

    def b_IBuilderConfig_create_timing_cache(self, cfg: Any, blob: bytes) -> Any:
        c = self.new("ITimingCache")
        object.__setattr__(c, "blob", bytes(blob) + b"+")
        return c

    def b_IBuilderConfig_set_timing_cache(self, cfg: Any, cache: Any, ignore_mismatch: bool) -> bool:
        object.__setattr__(cfg, "cache", cache)
        return True

    def b_IBuilderConfig_get_timing_cache(self, cfg: Any) -> Any:
        return cfg.cache

    def b_ITimingCache_serialize(self, c: Any) -> bytes:
        return c.blob

    def b_OnnxParser_parse_from_file(self, parser: Any, path: str) -> bool:
        import onnx

        m = onnx.load(path)
        dims = lambda v: [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]  # noqa: E731
        net = parser._args[0]
        object.__setattr__(net, "io", {"inputs": {i.name: dims(i) for i in m.graph.input},
                                       "outputs": {o.name: dims(o) for o in m.graph.output}})
        return self.parse_ok

    def b_OnnxParser_num_errors(self, parser: Any) -> int:
        return 0 if self.parse_ok else 1

    def b_OnnxParser_get_error(self, parser: Any, i: int) -> Any:
        return self.new("ParserError")

    def b_ParserError_desc(self, err: Any) -> str:
        return "Unsupported node FakeOp"

    def b_Builder_build_serialized_network(self, b: Any, net: Any, cfg: Any) -> bytes:
        (name, dims), = net.io["inputs"].items()
        prof = cfg.profiles[0].shapes[name]
        plan = {"inputs": {name: dims}, "outputs": net.io["outputs"], "profile": prof,
                "flags": cfg.flags_set, "network_flags": net._args[0], "state": sorted(cfg._state)}
        self.built.append(plan)
        return json.dumps(plan).encode()

    # --- runtime ----------------------------------------------------------------------------
    def b_Runtime_deserialize_cuda_engine(self, rt: Any, blob: bytes) -> Any:
        self.deserialized += 1
        eng = self.new("ICudaEngine")
        object.__setattr__(eng, "plan", json.loads(bytes(blob)))
        names = list(eng.plan["inputs"]) + list(eng.plan["outputs"])
        object.__setattr__(eng, "names", names)
        return eng

    def b_ICudaEngine_num_io_tensors(self, eng: Any) -> int:
        return len(eng.names)

    def b_ICudaEngine_get_tensor_name(self, eng: Any, i: int) -> str:
        return eng.names[i]

    def b_ICudaEngine_get_tensor_mode(self, eng: Any, name: str) -> Any:
        io = self.module.TensorIOMode
        return io.INPUT if name in eng.plan["inputs"] else io.OUTPUT

    def b_ICudaEngine_get_tensor_shape(self, eng: Any, name: str) -> tuple:
        p = eng.plan
        return tuple(p["inputs"].get(name) or p["outputs"][name])

    def b_ICudaEngine_get_tensor_dtype(self, eng: Any, name: str) -> Any:
        return self.module.DataType.FLOAT

    def b_ICudaEngine_get_tensor_profile_shape(self, eng: Any, name: str, profile: int) -> tuple:
        return tuple(tuple(s) for s in eng.plan["profile"])

    def b_ICudaEngine_create_execution_context(self, eng: Any) -> Any:
        ctx = self.new("IExecutionContext")
        for k, v in {"engine_": eng, "addr": {}, "shapes": {}}.items():
            object.__setattr__(ctx, k, v)
        return ctx

    def b_IExecutionContext_set_input_shape(self, ctx: Any, name: str, shape: tuple) -> bool:
        ctx.shapes[name] = tuple(shape)
        return True

    def b_IExecutionContext_set_tensor_address(self, ctx: Any, name: str, addr: int) -> bool:
        ctx.addr[name] = int(addr)
        return True

    def b_IExecutionContext_get_tensor_shape(self, ctx: Any, name: str) -> tuple:
        n = next(iter(ctx.shapes.values()))[0]
        return (n,) + tuple(ctx.engine_.plan["outputs"][name][1:])

    def b_IExecutionContext_execute_async_v3(self, ctx: Any, stream: int) -> bool:
        cuda = self.cuda
        cuda.require_context()
        (name, shape), = ctx.shapes.items()
        x = cuda.read(ctx.addr[name], shape, np.float32)
        cuda.write(ctx.addr["logit"], x.reshape(shape[0], -1).mean(axis=1, keepdims=True))
        if "recon" in ctx.addr:
            cuda.write(ctx.addr["recon"], x / 2)
        return True


class FakeCuda:
    """pycuda.driver on numpy; ``module`` (pycuda) and ``driver`` go into sys.modules."""

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.freed: set[int] = set()
        self.dtoh: list[int] = []
        self.local = threading.local()
        self.contexts: list[Any] = []
        self._next = 0x1000
        fake = self
        drv = types.ModuleType("pycuda.driver")

        class Context:
            detached = False

            def push(self) -> None:
                fake.stack().append(self)

            def pop(self) -> None:
                if not fake.stack():
                    raise RuntimeError("pop without a current context")
                fake.stack().pop()

            def detach(self) -> None:
                self.detached = True

        class Device:
            def __init__(self, i: int) -> None:
                self.i = i

            def retain_primary_context(self) -> Context:
                ctx = Context()
                fake.contexts.append(ctx)
                return ctx

        class Alloc:
            def __init__(self, addr: int) -> None:
                self.addr = addr

            def __int__(self) -> int:
                return self.addr

            def free(self) -> None:
                fake.freed.add(self.addr)

        class Stream:
            handle = 0xBEEF

            def synchronize(self) -> None:
                fake.require_context()

        def mem_alloc(n: int) -> Alloc:
            fake.require_context()
            addr, fake._next = fake._next, fake._next + n + 256
            fake.memory[addr] = np.zeros(n, np.uint8)
            return Alloc(addr)

        def pagelocked_empty(shape: Any, dtype: Any) -> np.ndarray:
            fake.require_context()
            return np.zeros(shape, dtype)

        def htod(dev: Any, host: np.ndarray, stream: Any = None) -> None:
            fake.require_context()
            fake.write(int(dev), host)

        def dtoh(host: np.ndarray, dev: Any, stream: Any = None) -> None:
            fake.require_context()
            fake.dtoh.append(int(dev))
            host[...] = fake.read(int(dev), host.shape, host.dtype)

        for k, v in dict(init=lambda: None, Device=Device, Stream=Stream, mem_alloc=mem_alloc,
                         pagelocked_empty=pagelocked_empty, memcpy_htod_async=htod,
                         memcpy_dtoh_async=dtoh).items():
            setattr(drv, k, v)
        self.driver = drv
        self.module = types.ModuleType("pycuda")
        self.module.driver = drv

    def stack(self) -> list:
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        return self.local.stack

    def require_context(self) -> None:
        if not self.stack():
            raise RuntimeError("CUDA call without a current context on this thread")

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
    from runtime.backends import _trt

    return _trt.CudaDevice(0, "NVIDIA Jetson AGX Orin", "8.7", 1 << 35)
