"""The TensorRT fakes (``tests.helpers.trt_fakes``) follow the API lists per release."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import TRT_API_DIR
from tests.helpers.trt_fakes import FakeTRT, api_files, api_ids


@pytest.mark.parametrize("api", api_files(), ids=api_ids())
def test_fake_refuses_names_the_release_lacks(api: Path) -> None:
    trt = FakeTRT(api).module
    with pytest.raises(AttributeError):
        _ = trt.NoSuchClass
    with pytest.raises(AttributeError):
        _ = trt.BuilderFlag.NO_SUCH_FLAG
    cfg = FakeTRT(api).new("IBuilderConfig")
    with pytest.raises(AttributeError):
        cfg.no_such_setting = 1
    with pytest.raises(AttributeError):
        cfg.no_such_method()


def test_fake_follows_the_lists_per_release() -> None:
    by = {p.stem: FakeTRT(p).module for p in api_files()}
    assert hasattr(by["tensorrt-8.5.3.1"].IBuilderConfig, "max_workspace_size")
    assert not hasattr(by["tensorrt-10.3.0"].IBuilderConfig, "max_workspace_size")
    assert hasattr(by["tensorrt-10.3.0"].BuilderFlag, "FP16")
    assert not hasattr(by["tensorrt-11.4"].BuilderFlag, "FP16")
    fake = FakeTRT(TRT_API_DIR / "tensorrt-11.4.json")
    fake.new("IBuilderConfig").builder_optimization_level = 3
    assert "IBuilderConfig.builder_optimization_level" in fake.used
    assert int(fake.module.NetworkDefinitionCreationFlag.STRONGLY_TYPED) >= 0



# --- the fakes refuse what the real bindings refuse (issue #15) ------------------------------
def _engine_ctx(fake: FakeTRT, profile: list, dims: list, **plan) -> tuple:
    import json

    rt = fake.new("Runtime", None)
    blob = json.dumps({"inputs": {"input": dims}, "outputs": {"logit": [dims[0], 1]}, "profile": profile,
                       **plan}).encode()
    eng = rt.deserialize_cuda_engine(blob)
    return rt, eng, (eng.create_execution_context() if eng is not None else None)


@pytest.mark.parametrize("api", api_files(), ids=api_ids())
def test_set_input_shape_refuses_shapes_outside_the_profile(api: Path) -> None:
    fake = FakeTRT(api)
    _, _, ctx = _engine_ctx(fake, [[2, 3, 8, 8], [4, 3, 8, 8], [8, 3, 8, 8]], [-1, 3, 8, 8])
    assert ctx.set_input_shape("input", (4, 3, 8, 8)) and ctx.set_input_shape("input", (2, 3, 8, 8))
    assert not ctx.set_input_shape("input", (1, 3, 8, 8)) and not ctx.set_input_shape("input", (9, 3, 8, 8))
    assert not ctx.set_input_shape("input", (4, 3, 8, 9))


def test_execution_needs_an_int_handle_and_a_synchronize() -> None:
    import numpy as np

    from tests.helpers.fake_cuda import FakeCuda

    cuda = FakeCuda()
    fake = FakeTRT(TRT_API_DIR / "tensorrt-10.3.0.json", cuda)
    drv = cuda.driver
    with pytest.raises(RuntimeError, match="without a current context"):
        drv.Stream()
    with pytest.raises(RuntimeError, match="without a current context"):
        drv.mem_alloc(16)
    ctx = drv.Device(0).retain_primary_context()
    ctx.push()
    _, _, ex = _engine_ctx(fake, [[1, 3, 2, 2]] * 3, [-1, 3, 2, 2])
    stream = drv.Stream()
    d_in, d_out = drv.mem_alloc(48), drv.mem_alloc(4)
    ex.set_tensor_address("input", int(d_in))
    ex.set_tensor_address("logit", int(d_out))
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
    drv.memcpy_htod_async(d_in, x, stream)
    with pytest.raises(TypeError, match="stream_handle must be an int"):
        ex.execute_async_v3(stream)  # the binding takes stream.handle, not the pycuda object
    assert not ex.execute_async_v3(stream.handle)  # input shape never set
    assert ex.set_input_shape("input", (1, 3, 2, 2)) and ex.execute_async_v3(stream.handle)
    host = np.full((1, 1), -1, np.float32)
    drv.memcpy_dtoh_async(host, d_out, stream)
    assert host[0, 0] == -1  # not there before synchronize()
    stream.synchronize()
    assert host[0, 0] == x.mean()
    ctx.pop()
    assert cuda.driver_stack() == []
    ctx.detach()
    assert cuda.driver_stack() == [ctx]  # pushed by detach(), released, never popped: stale
    d_in.free()  # pycuda activates the allocation's context; a detached one: the memory leaks
    del stream
    assert cuda.leaked == [f"alloc {int(d_in):#x}", f"stream {0x7000:#x}"] and cuda.live_streams() == []
    with pytest.raises(RuntimeError, match="freed twice"):
        d_in.free()


@pytest.mark.parametrize("api", api_files(), ids=api_ids())
def test_timing_cache_build_and_dla_failures(api: Path) -> None:
    fake = FakeTRT(api)
    cfg = fake.new("IBuilderConfig")
    assert cfg.create_timing_cache(b"\x00garbage") is None
    with pytest.raises(TypeError):
        cfg.set_timing_cache(None, False)
    assert not cfg.set_timing_cache(cfg.create_timing_cache(fake.timing_blob("1.0")), False)
    assert cfg.set_timing_cache(cfg.create_timing_cache(b""), False)
    rt, eng, _ = _engine_ctx(fake, [[2, 3, 8, 8]] * 3, [2, 3, 8, 8], dla_core=1)
    assert eng is None and rt.DLA_core == -1  # "Defaults to -1" (IRuntime::setDLACore, 8.5.3 and 10.x docs)
    rt.DLA_core = 1
    assert rt.deserialize_cuda_engine(b'{"inputs": {"input": [2]}, "outputs": {}, "profile": [], "dla_core": 1}')
    fake.build_ok = False
    b = fake.new("Builder", None)
    net = b.create_network(0)
    object.__setattr__(net, "io", {"inputs": {"input": [-1, 3, 8, 8]}, "outputs": {}})
    config = b.create_builder_config()
    prof = b.create_optimization_profile()
    prof.set_shape("input", (1, 3, 8, 8), (1, 3, 8, 8), (1, 3, 8, 8))
    config.add_optimization_profile(prof)
    assert b.build_serialized_network(net, config) is None


def test_fake_cuda_models_pycudas_context_stacks() -> None:
    """pycuda's cuda.hpp: push/pop keep the driver's stack in step with pycuda's; detach() of a
    context that is not current leaves it current (cuDevicePrimaryCtxRelease pops nothing); detach()
    on another thread than the retaining one releases nothing; pop without a push raises."""
    import threading

    from tests.helpers.fake_cuda import FakeCuda

    cuda = FakeCuda()
    drv = cuda.driver
    a, b = drv.Device(0).retain_primary_context(), drv.Device(1).retain_primary_context()
    a.push()
    b.push()
    assert cuda.stack() == [a, b] and cuda.driver_stack() == [b]  # the driver holds pycuda's top only
    b.pop()
    assert cuda.stack() == [a] and cuda.driver_stack() == [a]
    a.pop()
    assert cuda.stack() == [] and cuda.driver_stack() == []
    with pytest.raises(RuntimeError, match="cannot pop non-current context"):
        a.pop()
    a.push()
    a.detach()  # current: released while current; it stays on the driver stack
    assert cuda.retains[0] == 0 and cuda.driver_stack() == [a]
    with pytest.raises(RuntimeError, match="context is destroyed"):
        cuda.require_current()
    with pytest.raises(RuntimeError, match="dead context"):
        a.push()
    done: list = []
    t = threading.Thread(target=lambda: (b.detach(), done.append(list(cuda.driver_stack()))))
    t.start()
    t.join()
    assert done == [[]] and cuda.retains[1] == 1 and cuda.leaked == ["retain of device 1 (detached on another thread)"]
