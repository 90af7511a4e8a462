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

