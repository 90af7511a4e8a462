"""What Triton does with a ``config.pbtxt`` of ours: parse it, and (for a TensorRT plan) the load-time
checks of its TensorRT backend, replayed on the engine's tensors.

:func:`parse_config` reads the text strictly against the subset of Triton's ``ModelConfig`` schema
that :mod:`export.triton` writes (names and nesting of ``model_config.proto``), so a field Triton
would not know fails here. :func:`check_plan_config` follows triton-inference-server/tensorrt_backend
(``tensorrt_model_instance.cc``, ``loader.cc``, ``instance_state.cc``, ``tensorrt_utils.cc``): GPU
instances only; the DLA core only from one ``KIND_NVDLA`` secondary device (else -1), checked
against the device's cores and set on the runtime before the plan is deserialized; then each config
input and output must be an engine tensor of the same direction, the same data type, and dims that
``CompareDimsSupported`` and ``ValidateDimension`` accept against the engine's shape and profile.
protobuf comes with onnx (imported when a config is parsed).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Sequence

from runtime.backends.trt_compat import TensorInfo
from runtime.errors import UserError

DATA_TYPES = ["TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64", "TYPE_INT8",
              "TYPE_INT16", "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_STRING",
              "TYPE_BF16"]
# TensorRT DataType name -> Triton data_type, as the backend converts an engine tensor's type
TRT_TO_TRITON = {"FLOAT": "TYPE_FP32", "HALF": "TYPE_FP16", "BF16": "TYPE_BF16", "INT8": "TYPE_INT8",
                 "UINT8": "TYPE_UINT8", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64", "BOOL": "TYPE_BOOL"}


@lru_cache(maxsize=1)
def model_config_class() -> Any:
    """ModelConfig (the subset we write), built from a descriptor so text_format parses strictly."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="jrc_model_config_subset.proto", package="inference",
                                             syntax="proto3")
    dt = fdp.enum_type.add(name="DataType")
    for i, n in enumerate(DATA_TYPES):
        dt.value.add(name=n, number=i)

    def msg(name: str, fields: list, parent: Any = None) -> Any:
        m = (parent.nested_type if parent else fdp.message_type).add(name=name)
        for num, (fname, ftype, label, tname) in enumerate(fields, 1):
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                f.type_name = tname
        return m

    OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    tensor = [("name", F.TYPE_STRING, OPT, None), ("data_type", F.TYPE_ENUM, OPT, ".inference.DataType"),
              ("dims", F.TYPE_INT64, REP, None)]
    msg("ModelInput", tensor)
    msg("ModelOutput", tensor)
    ig = msg("ModelInstanceGroup", [
        ("count", F.TYPE_INT32, OPT, None), ("kind", F.TYPE_ENUM, OPT, ".inference.ModelInstanceGroup.Kind"),
        ("secondary_devices", F.TYPE_MESSAGE, REP, ".inference.ModelInstanceGroup.SecondaryDevice")])
    kind = ig.enum_type.add(name="Kind")
    for i, n in enumerate(["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"]):
        kind.value.add(name=n, number=i)
    sd = msg("SecondaryDevice", [
        ("kind", F.TYPE_ENUM, OPT, ".inference.ModelInstanceGroup.SecondaryDevice.SecondaryDeviceKind"),
        ("device_id", F.TYPE_INT64, OPT, None)], parent=ig)
    sd.enum_type.add(name="SecondaryDeviceKind").value.add(name="KIND_NVDLA", number=0)
    msg("ModelDynamicBatching", [("preferred_batch_size", F.TYPE_INT32, REP, None),
                                 ("max_queue_delay_microseconds", F.TYPE_UINT64, OPT, None)])
    msg("ModelParameter", [("string_value", F.TYPE_STRING, OPT, None)])
    cfg = msg("ModelConfig", [("name", F.TYPE_STRING, OPT, None), ("platform", F.TYPE_STRING, OPT, None),
                              ("max_batch_size", F.TYPE_INT32, OPT, None),
                              ("input", F.TYPE_MESSAGE, REP, ".inference.ModelInput"),
                              ("output", F.TYPE_MESSAGE, REP, ".inference.ModelOutput"),
                              ("instance_group", F.TYPE_MESSAGE, REP, ".inference.ModelInstanceGroup"),
                              ("dynamic_batching", F.TYPE_MESSAGE, OPT, ".inference.ModelDynamicBatching"),
                              ("parameters", F.TYPE_MESSAGE, REP, ".inference.ModelConfig.ParametersEntry")])
    entry = msg("ParametersEntry", [("key", F.TYPE_STRING, OPT, None),
                                    ("value", F.TYPE_MESSAGE, OPT, ".inference.ModelParameter")], parent=cfg)
    entry.options.map_entry = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


def parse_config(text: str, source: str = "config.pbtxt") -> Any:
    """The config as a ModelConfig message; a UserError naming ``source`` where it does not parse."""
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, model_config_class()())
    except text_format.ParseError as e:
        raise UserError(f"{source}: not a valid Triton model config ({e})") from None


class TritonRefusal(UserError):
    """Triton would not load the model; the message is the backend's own."""


def check_plan_config(config: Any, load: Callable[[int], Sequence[TensorInfo] | None], dla_cores: int) -> int:
    """Replay the TensorRT backend's load-time checks of ``config`` (a ModelConfig) for every instance
    group. ``load(dla_core)`` deserializes the plan with ``IRuntime.DLA_core`` set as the backend sets it
    (-1: none) and returns its I/O tensors, or None when TensorRT refuses the plan. Returns the DLA
    core the instances run on (-1: the GPU); raises :class:`TritonRefusal` where Triton would refuse."""
    name = config.name
    cores = set()
    for group in config.instance_group:
        if group.kind != 1:  # KIND_GPU
            raise TritonRefusal(f"unable to load model '{name}', TensorRT backend supports only GPU device")
        if len(group.secondary_devices) > 1:
            raise TritonRefusal(f"instance of model {name} must have either zero or or one secondary devices")
        cores.add(group.secondary_devices[0].device_id if group.secondary_devices else -1)
    for core in sorted(cores) or [-1]:
        if core != -1 and core >= dla_cores:
            raise TritonRefusal(f"unable to create TensorRT runtime with DLA Core ID: {core}, available number of "
                                f"DLA cores: {dla_cores}")
        tensors = load(core)
        if tensors is None:
            raise TritonRefusal(f"unable to create TensorRT engine for {name} (DLA core {core}): the plan does not "
                                "deserialize with the runtime set so")
        _check_io(config, {t.name: t for t in tensors})
    return max(cores) if cores else -1


def _check_io(config: Any, tensors: dict[str, TensorInfo]) -> None:
    batching = config.max_batch_size > 0
    for io, want_input in ((config.input, True), (config.output, False)):
        for t in io:
            kind = "input" if want_input else "output"
            engine = tensors.get(t.name)
            if engine is None:
                raise TritonRefusal(f"{kind} '{t.name}' not found for {config.name}")
            if engine.is_input != want_input:
                raise TritonRefusal(f"{kind} '{t.name}' is expected to be an {'input' if engine.is_input else 'output'}"
                                    f" in model for {config.name}")
            have = TRT_TO_TRITON.get(engine.type_name, "TYPE_INVALID")
            want = DATA_TYPES[t.data_type]
            if have == "TYPE_INVALID" or have != want:
                raise TritonRefusal(f"unexpected datatype {have} for inference {kind} '{t.name}', expecting {want} "
                                    f"for {config.name}")
            _compare_dims(config.name, t.name, engine.shape, list(t.dims), batching)
            if want_input and engine.profile is not None:
                _within_profile(config.name, t.name, list(t.dims), engine.profile, batching)


def _compare_dims(model: str, tensor: str, engine: Sequence[int], dims: list[int], batching: bool) -> None:
    """tensorrt_utils.cc CompareDimsSupported (compare_exact false): -1 on either side matches anything."""
    full = [-1, *dims] if batching else dims
    ok = len(engine) == len(full) and all(e == -1 or c == -1 or e == c for e, c in zip(engine, full))
    if not ok:
        raise TritonRefusal(f"model '{model}', tensor '{tensor}': the model expects {len(engine)} dimensions (shape "
                            f"{list(engine)}) but the model configuration specifies {len(full)} dimensions (shape "
                            f"{full})")


def _within_profile(model: str, tensor: str, dims: list[int], profile: Sequence[Sequence[int]], batching: bool) -> None:
    """ValidateDimension: the config shape (batch dim -1 when batching) within the profile's min..max."""
    full = [-1, *dims] if batching else dims
    lo, _, hi = profile
    for i, (d, a, b) in enumerate(zip(full, lo, hi)):
        if d != -1 and not a <= d <= b:
            raise TritonRefusal(f"model configuration specified invalid shape for input '{tensor}' for model {model}. "
                                f"Error details: model expected the shape of dimension {i} to be between {a} and {b} "
                                f"but received {d}")
