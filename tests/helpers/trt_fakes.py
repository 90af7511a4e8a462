"""Fakes for the TensorRT tests on machines without TensorRT or a GPU.

- :class:`FakeTRT`: a ``tensorrt`` module for ONE release, built from ``trt-api/<release>.json``.
  Every class and member the release lists exists; anything else raises AttributeError, at module,
  class and instance level (also on assignment), and every name touched is recorded in ``used``.
  Enough behaviour is simulated (builder → JSON "plan" → engine → execution context) for the
  project's build and run code to go end to end; the arithmetic is ``logit = mean(x)``,
  ``recon = x / 2``. Where the real bindings refuse or fail, so does the fake: ``set_input_shape``
  outside the profile returns False, ``execute_async_v3`` takes an int stream handle (a pycuda
  ``Stream`` object is a TypeError) and only enqueues, ``build_serialized_network`` returns None
  (``build_ok = False``, a DLA profile with min != max, AMPERE_PLUS on a Jetson or below 8.0),
  ``create_timing_cache`` returns None for bytes that are not a cache, ``set_timing_cache(None, ...)``
  is a TypeError, a DLA plan only deserializes with ``Runtime.DLA_core`` set to its core (default -1,
  as the 8.5.3 and 10.x API docs say) and a version-compatible plan only with ``engine_host_code_allowed``;
  bytes that are not a plan give None after an error through the logger. Engine tensors keep the
  types the ONNX gave the network (FLOAT, HALF, INT8, UINT8...), and execution reads and writes them
  in those types. TensorRT keeps ONE logger per process: a builder or runtime given another one is
  recorded in ``logger_warnings`` (with TensorRT's warning), and messages go to the first.
  ``set_calibration_profile`` answers False for a profile that is not one fixed shape.
- :class:`FakeCuda` (``tests.helpers.fake_cuda``) is the ``pycuda`` these run against.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tests.helpers import TRT_API_DIR

if TYPE_CHECKING:
    from tests.helpers.fake_cuda import FakeCuda


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
        self._fake.created(type(self)._qual, self, args)

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
        if "_qual" not in type(self).__dict__:  # a Python subclass (a custom ILogger) has a __dict__
            object.__setattr__(self, name, value)
            return
        self._check(name)
        self._state[name] = value


class FakeTRT:
    """One release's ``tensorrt`` module (``.module``) with recorded names (``.used``)."""

    PROPERTIES = {"b_Builder_num_DLA_cores", "b_OnnxParser_num_errors", "b_ICudaEngine_num_io_tensors",
                  "b_Runtime_DLA_core", "b_Runtime_num_DLA_cores", "b_Runtime_engine_host_code_allowed",
                  "b_INetworkDefinition_num_inputs", "b_INetworkDefinition_num_outputs", "b_ITensor_name",
                  "b_ITensor_dtype"}

    def __init__(self, api_json: Path, cuda: FakeCuda | None = None) -> None:
        d = json.loads(Path(api_json).read_text())
        self.version: str = d["__version__"]
        self.top: dict[str, Any] = d["top"]
        self.used: set[str] = set()
        self.cuda = cuda
        self.deserialized = 0
        self.parse_ok = True
        self.build_ok = True
        self.dla_cores = 2
        self.device_cc = (8, 7)  # what the builder sees (hardware compatibility needs 8.0+)
        self.jetson = False  # hardware compatibility is not supported on JetPack
        self.built: list[dict[str, Any]] = []
        self.configs: list[Any] = []
        self.logger: Any = None  # the first logger a builder or runtime was given
        self.logger_warnings: list[str] = []
        self.calibration_profile_ok = True  # set_calibration_profile's answer for a valid profile
        m = _Module("tensorrt")
        object.__setattr__(m, "_fake", self)
        m.__version__ = self.version
        for name, members in self.top.items():
            if isinstance(members, list):
                setattr(m, name, self._make_class(name, members))
        m.nptype = self._nptype
        self.module = m

    SEVERITY = {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4}  # ILogger::Severity

    def _make_class(self, name: str, members: list[str]) -> type:
        ns: dict[str, Any] = {"_qual": name, "_members": frozenset(members), "_fake": self}
        if "name" in members and "value" in members:  # an enum
            for i, v in enumerate(x for x in members if x not in ("name", "value")):
                ns[v] = _EnumValue(name, v, i)
        if name in ("ILogger", "Logger"):  # Logger.WARNING is ILogger.Severity.WARNING (an int enum)
            ns.update({k: _EnumValue("ILogger.Severity", k, v) for k, v in self.SEVERITY.items()})
        return _ClassMeta(name, (_Obj,), ns)

    # --- the logger: one per process, as TensorRT keeps it --------------------------------------
    def created(self, qual: str, obj: Any, args: tuple) -> None:
        """A builder or runtime takes the logger; TensorRT keeps the first one for the process and
        warns when a later one differs (messages of the process keep going to the first)."""
        if qual not in ("Builder", "Runtime") or not args or args[0] is None:
            return
        logger = args[0]
        if self.logger is None:
            self.logger = logger
        elif logger is not self.logger:
            msg = (f"The logger passed into createInfer{qual} differs from one already provided for an existing "
                   "builder, runtime, or refitter. Uses of the global logger, returned by nvinfer1::getLogger(), "
                   "will return the existing value.")
            self.logger_warnings.append(msg)
            self.log("WARNING", msg)

    def log(self, severity: str, msg: str) -> None:
        """A message from TensorRT, through the process's logger (its ``log`` decides what shows)."""
        if self.logger is not None:
            self.logger.log(self.module.ILogger.__dict__[severity], msg)

    NPTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "UINT8": np.uint8,
               "BOOL": np.bool_, "INT64": np.int64}

    def _nptype(self, dtype: Any) -> Any:
        """``trt.nptype``: a TypeError for types numpy cannot hold (BF16, FP8, INT4...), as the real one."""
        if dtype.name not in self.NPTYPES:
            raise TypeError(f"Could not resolve TensorRT datatype to an equivalent numpy datatype: {dtype!r}")
        return self.NPTYPES[dtype.name]

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
        return self.dla_cores

    def b_IOptimizationProfile_set_shape(self, p: Any, name: str, lo: Any, opt: Any, hi: Any) -> None:
        p.shapes[name] = [list(lo), list(opt), list(hi)]

    def b_IBuilderConfig_set_flag(self, cfg: Any, flag: Any) -> None:
        cfg.flags_set.append(flag.name)

    def b_IBuilderConfig_add_optimization_profile(self, cfg: Any, p: Any) -> int:
        cfg.profiles.append(p)
        return len(cfg.profiles) - 1

    def b_IBuilderConfig_set_calibration_profile(self, cfg: Any, p: Any) -> bool:
        """False for a profile TensorRT cannot calibrate with (not one fixed shape), as the binding says."""
        shapes = list(p.shapes.values())
        ok = bool(shapes) and all(lo == opt == hi for lo, opt, hi in shapes) and self.calibration_profile_ok
        if ok:
            object.__setattr__(cfg, "calibration_profile", p)
        return ok

    def b_IBuilderConfig_set_memory_pool_limit(self, cfg: Any, pool: Any, n: int) -> None:
        cfg.pools[pool.name] = n

    TIMING_MAGIC = b"FAKE-TIMING-CACHE "

    def timing_blob(self, version: str | None = None) -> bytes:
        """The bytes of a timing cache made by ``version`` (default: this release)."""
        return self.TIMING_MAGIC + json.dumps({"tensorrt": version or self.version}).encode()

    def b_IBuilderConfig_create_timing_cache(self, cfg: Any, blob: bytes) -> Any:
        """Empty bytes: a new cache. Bytes that are not a cache: None (TensorRT logs an error)."""
        blob = bytes(blob)
        if not blob:
            blob = self.timing_blob()
        elif not blob.startswith(self.TIMING_MAGIC):
            return None
        try:
            made_by = json.loads(blob[len(self.TIMING_MAGIC):])["tensorrt"]
        except (ValueError, KeyError, TypeError):
            return None
        c = self.new("ITimingCache")
        object.__setattr__(c, "made_by", made_by)
        return c

    def b_IBuilderConfig_set_timing_cache(self, cfg: Any, cache: Any, ignore_mismatch: bool) -> bool:
        if cache is None or type(cache).__name__ != "ITimingCache":  # pybind: incompatible arguments
            raise TypeError("set_timing_cache(): incompatible function arguments; "
                            f"invoked with {cache!r}, {ignore_mismatch!r}")
        if cache.made_by != self.version and not ignore_mismatch:
            return False
        object.__setattr__(cfg, "cache", cache)
        return True

    def b_IBuilderConfig_get_timing_cache(self, cfg: Any) -> Any:
        return getattr(cfg, "cache", None)

    def b_ITimingCache_serialize(self, c: Any) -> bytes:
        return self.timing_blob()

    # ONNX elem_type -> TensorRT DataType name (what the parser gives the network's I/O tensors)
    ONNX_TYPES = {1: "FLOAT", 10: "HALF", 3: "INT8", 2: "UINT8", 6: "INT32", 7: "INT64", 9: "BOOL", 16: "BF16"}

    def b_OnnxParser_parse_from_file(self, parser: Any, path: str) -> bool:
        import onnx

        m = onnx.load(path)
        dims = lambda v: [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]  # noqa: E731
        kind = lambda v: self.ONNX_TYPES[v.type.tensor_type.elem_type]  # noqa: E731
        net = parser._args[0]
        object.__setattr__(net, "io", {"inputs": {i.name: dims(i) for i in m.graph.input},
                                       "outputs": {o.name: dims(o) for o in m.graph.output},
                                       "types": {v.name: kind(v) for v in [*m.graph.input, *m.graph.output]}})
        return self.parse_ok

    def _tensor(self, name: str, type_name: str) -> Any:
        t = self.new("ITensor")
        object.__setattr__(t, "io", (name, getattr(self.module.DataType, type_name)))
        return t

    def b_INetworkDefinition_num_inputs(self, net: Any) -> int:
        return len(net.io["inputs"])

    def b_INetworkDefinition_num_outputs(self, net: Any) -> int:
        return len(net.io["outputs"])

    def b_INetworkDefinition_get_input(self, net: Any, i: int) -> Any:
        name = list(net.io["inputs"])[i]
        return self._tensor(name, net.io["types"][name])

    def b_INetworkDefinition_get_output(self, net: Any, i: int) -> Any:
        name = list(net.io["outputs"])[i]
        return self._tensor(name, net.io["types"][name])

    def b_ITensor_name(self, t: Any) -> str:
        return t.io[0]

    def b_ITensor_dtype(self, t: Any) -> Any:
        return t.io[1]

    def b_OnnxParser_num_errors(self, parser: Any) -> int:
        return 0 if self.parse_ok else 1

    def b_OnnxParser_get_error(self, parser: Any, i: int) -> Any:
        return self.new("ParserError")

    def b_ParserError_desc(self, err: Any) -> str:
        return "Unsupported node FakeOp"

    def b_Builder_build_serialized_network(self, b: Any, net: Any, cfg: Any) -> bytes | None:
        """A JSON "plan", or None where TensorRT's build fails (after logging why)."""
        (name, dims), = net.io["inputs"].items()
        prof = cfg.profiles[0].shapes[name]
        state = cfg._state
        dla = state.get("DLA_core") if "default_device_type" in state else None
        hw = state.get("hardware_compatibility_level")
        if not self.build_ok:
            return None
        if dla is not None and not prof[0] == prof[1] == prof[2]:
            return None  # the DLA needs min = opt = max
        if hw is not None and getattr(hw, "name", "") == "AMPERE_PLUS" and (self.jetson or self.device_cc < (8, 0)):
            return None
        plan = {"inputs": {name: dims}, "outputs": net.io["outputs"], "profile": prof, "types": net.io["types"],
                "flags": cfg.flags_set, "network_flags": net._args[0], "state": sorted(state),
                "dla_core": dla, "version_compatible": "VERSION_COMPATIBLE" in cfg.flags_set}
        self.built.append(plan)
        return json.dumps(plan).encode()

    # --- runtime ----------------------------------------------------------------------------
    def b_Runtime_DLA_core(self, rt: Any) -> int:
        return -1  # "Sets the DLA core used by the network. Defaults to -1." (IRuntime, 8.5.3 to 10.x)

    def b_Runtime_num_DLA_cores(self, rt: Any) -> int:
        return self.dla_cores

    def b_Runtime_engine_host_code_allowed(self, rt: Any) -> bool:
        return False

    def b_Runtime_deserialize_cuda_engine(self, rt: Any, blob: bytes) -> Any:
        """An engine, or None where TensorRT refuses the plan (after logging why)."""
        self.deserialized += 1
        try:
            plan = json.loads(bytes(blob))
        except ValueError:
            self.log("ERROR", "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (Serialization assertion "
                              "magicTagRead == kMAGIC_TAG failed.Magic tag does not match)")
            return None
        if plan.get("dla_core") is not None and rt.DLA_core != plan["dla_core"]:
            self.log("ERROR", f"Error Code 1: Serialization (engine built for DLA core {plan['dla_core']}, the "
                              f"runtime is set to {rt.DLA_core})")
            return None  # a DLA plan runs on the core the runtime is set to
        if plan.get("version_compatible") and not rt.engine_host_code_allowed:
            self.log("ERROR", "Error Code 1: Serialization (the plan holds host code; allow it on the runtime)")
            return None  # the plan's lean runtime is host code
        eng = self.new("ICudaEngine")
        object.__setattr__(eng, "plan", plan)
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
        """The type the network gave the tensor (from the ONNX), as the engine keeps it."""
        return getattr(self.module.DataType, eng.plan.get("types", {}).get(name, "FLOAT"))

    def b_ICudaEngine_get_tensor_profile_shape(self, eng: Any, name: str, profile: int) -> tuple:
        return tuple(tuple(s) for s in eng.plan["profile"])

    def b_ICudaEngine_create_execution_context(self, eng: Any) -> Any:
        ctx = self.new("IExecutionContext")
        for k, v in {"engine_": eng, "addr": {}, "shapes": {}}.items():
            object.__setattr__(ctx, k, v)
        return ctx

    def b_IExecutionContext_set_input_shape(self, ctx: Any, name: str, shape: tuple) -> bool:
        """False (TensorRT logs an error) for a shape the engine or its profile does not allow."""
        plan = ctx.engine_.plan
        dims, (lo, _, hi) = plan["inputs"][name], plan["profile"]
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(dims) or any(d >= 0 and s != d for s, d in zip(shape, dims)):
            return False
        if any(not a <= s <= b for s, a, b in zip(shape, lo, hi)):
            return False
        ctx.shapes[name] = shape
        return True

    def b_IExecutionContext_set_tensor_address(self, ctx: Any, name: str, addr: int) -> bool:
        ctx.addr[name] = int(addr)
        return True

    def b_IExecutionContext_get_tensor_shape(self, ctx: Any, name: str) -> tuple:
        n = next(iter(ctx.shapes.values()))[0]
        return (n,) + tuple(ctx.engine_.plan["outputs"][name][1:])

    def b_IExecutionContext_execute_async_v3(self, ctx: Any, stream_handle: int) -> bool:
        """Enqueue on the stream with this handle (an int, as the binding requires); runs on sync."""
        if not isinstance(stream_handle, int) or isinstance(stream_handle, bool):
            raise TypeError("execute_async_v3(): incompatible function arguments; "
                            f"stream_handle must be an int, got {type(stream_handle).__name__}")
        cuda = self.cuda
        cuda.require_current()  # TensorRT runs in the thread's current CUDA context
        if set(ctx.shapes) != set(ctx.engine_.plan["inputs"]):
            return False  # an input shape was never set
        (name, shape), = ctx.shapes.items()
        addr = dict(ctx.addr)
        types = {n: self._nptype(getattr(self.module.DataType, t)) for n, t in ctx.engine_.plan.get("types", {}).items()}

        def run() -> None:  # each tensor read and written in the engine's own type
            x = cuda.read(addr[name], shape, types.get(name, np.float32)).astype(np.float32)
            logit = x.reshape(shape[0], -1).mean(axis=1, keepdims=True)
            cuda.write(addr["logit"], logit.astype(types.get("logit", np.float32)))
            if "recon" in addr:
                cuda.write(addr["recon"], (x / 2).astype(types.get("recon", np.float32)))

        cuda.stream_for(stream_handle).enqueue(run)
        return True


def trt_major(version: str) -> int:
    return int(str(version).split(".")[0])


def install_trt_fakes(monkeypatch: Any, release: str, gpu: tuple[str, str] = ("NVIDIA GeForce RTX 4090", "8.9")
                      ) -> FakeTRT:
    """Put a FakeTRT of ``release`` (``trt-api/tensorrt-<release>.json``) and a FakeCuda in
    ``sys.modules`` and make the CUDA probe find ``gpu`` (name, compute capability)."""
    import sys

    from runtime.backends import trt_compat
    from tests.helpers.fake_cuda import FakeCuda

    cuda = FakeCuda()
    fake = FakeTRT(TRT_API_DIR / f"tensorrt-{release}.json", cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    monkeypatch.setitem(sys.modules, "pycuda", cuda.module)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda.driver)
    monkeypatch.setattr(trt_compat, "probe_cuda_device",
                        lambda index=0, timeout=60.0: trt_compat.CudaDevice(0, gpu[0], gpu[1], 1 << 34))
    return fake

