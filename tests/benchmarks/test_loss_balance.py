"""benchmarks.loss_balance: each loss's gradient reaches the shared encoder through its own branch only."""

from __future__ import annotations

import math

import pytest

from benchmarks.fixtures import TINY_SIZE
from tests.helpers import load_strict, run_in_process, run_module

torch = pytest.importorskip("torch")


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 32, 32, generator=g), torch.tensor([0.0, 1.0, 0.0, 1.0])


def test_gradient_ratio_measures_each_branch_on_the_shared_encoder():
    from benchmarks.loss_balance import gradient_ratio, shared_parameters
    from training.model import JRC

    torch.manual_seed(0)
    net = JRC("edge", 32).train()
    x, y = _batch()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(1)  # the same dropout mask in every call
    base = gradient_ratio(net, x, y)
    assert base["grad_bce"] > 0 and base["grad_recon"] > 0
    assert base["ratio"] == pytest.approx(base["grad_recon"] / base["grad_bce"])
    assert all(p.grad is None for p in net.parameters()), "measuring must not leave gradients behind"
    assert len(shared_parameters(net)) == len(list(net.backbone.parameters())) + len(list(net.encoder.parameters()))

    with torch.no_grad():  # the classifier cut off: no BCE gradient reaches the encoder, reconstruction's unchanged
        net.head.fc2.weight.zero_()
    torch.manual_seed(1)
    cut = gradient_ratio(net, x, y)
    assert cut["grad_bce"] == 0 and math.isinf(cut["ratio"])
    assert cut["grad_recon"] == pytest.approx(base["grad_recon"], rel=1e-5)

    net.load_state_dict(state)
    with torch.no_grad():  # the decoder cut off: the reverse
        net.decoder.to_rgb.weight.zero_()
    torch.manual_seed(1)
    cut = gradient_ratio(net, x, y)
    assert cut["grad_recon"] == 0 and cut["ratio"] == 0
    assert cut["grad_bce"] == pytest.approx(base["grad_bce"], rel=1e-5)


def test_cli_fresh_and_checkpoint(tiny, tmp_path):
    out = tmp_path / "lb.json"
    p = run_module("benchmarks.loss_balance", "--input-size", "32", "--downsample", "max", "--data", "synthetic:40", "--seeds", "0,1",
                   "--batches", "2", "--batch-size", "4", "--lambdas", "0.1,1", "--json", out)
    assert p.returncode == 0, p.stderr
    d = load_strict(out)
    assert d["tool"] == "benchmarks.loss_balance" and d["fresh"] and (d["encoder"], d["input_size"]) == ("edge", 32)
    assert d["model"]["downsample"] == "max"  # the network measured is the one asked for
    assert [(r["seed"], r["batch"]) for r in d["rows"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    ratios = [r["ratio"] for r in d["rows"]]
    assert all(math.isfinite(r) and r > 0 for r in ratios)
    assert len(set(ratios)) == 4, "each seed draws its own network and batches"
    assert d["ratio_mean"] == pytest.approx(sum(ratios) / 4)
    assert [q["pull"] for q in d["pulls"]] == pytest.approx([0.1 * d["ratio_mean"], d["ratio_mean"]])

    p = run_module("benchmarks.loss_balance", "--ckpt", tiny["ckpt"], "--data", "synthetic:40", "--seeds", "0",
                   "--batches", "1", "--batch-size", "4", "--json", out)
    assert p.returncode == 0, p.stderr
    d = load_strict(out)
    assert not d["fresh"] and d["input_size"] == TINY_SIZE and len(d["rows"]) == 1


@pytest.mark.parametrize("args, needle", [
    (("--seeds", "a,b"), "--seeds a,b"),
    (("--batches", "0"), "--batches 0"),
    (("--encoder", "resnet"), "resnet"),
    (("--encoder", "xception", "--downsample", "max"), "only the edge encoder"),
    (("--ckpt", "nowhere.pt"), "nowhere.pt"),
    (("--ckpt", "nowhere.pt", "--encoder", "edge", "--input-size", "64"), "drop --encoder, --input-size"),
    (("--input-size", "32", "--data", "synthetic:6", "--batch-size", "8"), "fewer than --batch-size 8"),
])
def test_bad_input_is_one_line(args, needle):
    p = run_in_process("benchmarks.loss_balance", *args)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("benchmarks.loss_balance: error:") and needle in lines[0], p.stderr
