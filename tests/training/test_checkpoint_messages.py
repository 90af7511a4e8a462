"""training.checkpoint's one-line refusals say what the file is: not a checkpoint at all (damaged, or
another kind of file), or a checkpoint holding a pickled object, named without PyTorch's advice."""

from __future__ import annotations

import os

import pytest

from runtime.errors import UserError
from tests.helpers import has_module

pytestmark = pytest.mark.skipif(not has_module("torch"), reason="needs the train extra (torch)")


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes_are_not_a_checkpoint(tmp_path, seed):
    import numpy as np

    from training.checkpoint import read_checkpoint

    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(seed).bytes(4000))
    with pytest.raises(UserError) as e:
        read_checkpoint(path)
    assert str(e.value).startswith(f"{path}: not a PyTorch checkpoint (")
    assert "pickled objects" not in str(e.value)


def test_a_pickled_object_is_named_without_torchs_advice(tmp_path):
    import torch

    from training.checkpoint import read_checkpoint

    path = tmp_path / "objects.pt"
    torch.save({"model": {}, "meta": {}, "extra": os.path.join}, path)
    with pytest.raises(UserError) as e:
        read_checkpoint(path)
    assert str(e.value) == (f"{path}: refused, the checkpoint holds pickled objects that weights-only loading does "
                            "not allow (GLOBAL posixpath.join); use a checkpoint written by python -m training.train")
