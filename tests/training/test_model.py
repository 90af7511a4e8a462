"""The JRC network: shapes and sizes of both encoders on both paths, the detect path's independence
from the decoder, gradient flow, MAC counting, backbone weight loading and metadata round trips."""

from __future__ import annotations

import contextlib
import json
from typing import Iterator

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from runtime.errors import UserError  # noqa: E402
from runtime.meta import Meta  # noqa: E402
from tests.helpers import has_module  # noqa: E402
from training.backbones import EdgeNet, Xception  # noqa: E402
from training.macs import count_macs, count_params  # noqa: E402
from training.model import (  # noqa: E402
    JRC,
    DetectGraph,
    FullGraph,
    build_model,
    default_meta,
    load_backbone_weights,
)


@pytest.fixture(scope="module")
def edge64() -> JRC:
    torch.manual_seed(0)
    return JRC("edge", 64).eval()


@contextlib.contextmanager
def _calls(module: nn.Module) -> Iterator[list[str]]:
    """Record the names of the submodules of ``module`` that run while inside the block."""
    seen: list[str] = []
    handles = [m.register_forward_pre_hook(lambda mod, args, name=name: seen.append(name))
               for name, m in module.named_modules()]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


# --- shapes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size, grid", [(64, 2), (224, 7), (100, 4)])
def test_edge_shapes_both_paths(size: int, grid: int) -> None:
    model = JRC("edge", size).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        feats = model.forward_features(x)
        z = model.encode(x)
        logit = model(x)
        logit_full, recon = model.forward_full(x)
    assert feats.shape == (2, 576, grid, grid)
    assert z.shape == (2, model.config()["latent_channels"], grid, grid)
    assert logit.shape == (2, 1) and logit_full.shape == (2, 1)
    assert recon.shape == (2, 3, size, size)  # 100 is not a multiple of 32: resized to exact
    torch.testing.assert_close(logit, logit_full)  # one encoding feeds both branches
    assert torch.isfinite(recon).all()


def test_xception_at_299_both_paths() -> None:
    torch.manual_seed(0)
    model = JRC("xception").eval()
    assert model.input_size == 299
    feats: list[torch.Tensor] = []
    model.backbone.register_forward_hook(lambda m, i, o: feats.append(o))
    x = torch.randn(2, 3, 299, 299)
    with torch.no_grad(), _calls(model.decoder) as decoder_calls:
        logit = model(x)
        assert decoder_calls == []
        logit_full, recon = model.forward_full(x)
    assert feats[0].shape == (2, 2048, 10, 10)
    assert logit.shape == (2, 1) and recon.shape == (2, 3, 299, 299)
    torch.testing.assert_close(logit, logit_full)
    # A fresh net stays in a sane range in eval mode (matters for fp16 exports of untrained nets).
    assert feats[0].abs().max() < 1e3 and torch.isfinite(recon).all()
    assert logit[0] != logit[1]


# --- sizes ----------------------------------------------------------------------------------
def test_parameter_counts() -> None:
    xception = count_params(Xception())
    assert 20e6 <= xception <= 23e6  # 20.8 M in Chollet's paper (22.9 M with the ImageNet fc)
    edge = EdgeNet()
    assert 0.5e6 <= count_params(edge) <= 1.5e6
    assert edge.out_channels == 576
    half = EdgeNet(width=0.5)
    assert count_params(half) < count_params(edge) / 2 and half.out_channels == 288
    model = JRC("edge", 64)
    assert count_params(model) < 3e6
    parts = sum(count_params(m) for m in (model.backbone, model.encoder, model.head, model.decoder))
    assert parts == count_params(model)


def test_edge_macs_within_budget() -> None:
    model = JRC("edge", 224)
    detect = count_macs(model, 224)
    full = count_macs(model, 224, method="forward_full")
    assert detect <= 0.5e9
    assert 40e6 <= count_macs(model.backbone, 224) <= 80e6  # MobileNetV3-Small: ~56 M
    pooled = JRC("edge", 224, downsample="max")
    assert 40e6 <= count_macs(pooled.backbone, 224) <= 80e6  # max-pool downsampling: ~77 M
    assert count_macs(pooled, 224) <= 0.5e9
    assert full > detect + 50e6  # the decoder works at full resolution
    assert count_macs(DetectGraph(model), 224) == detect
    assert count_macs(model, 224, batch=2) == 2 * detect
    assert model.training  # count_macs restores the mode it found


def test_count_macs_by_hand() -> None:
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8))
    assert count_macs(conv, 16) == 16 * 16 * 8 * 3 * 9 + 16 * 16 * 8 * 1 * 9
    deconv = nn.ConvTranspose2d(3, 4, 4, stride=2, padding=1)
    assert count_macs(deconv, 8) == 8 * 8 * 3 * 4 * 16
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    assert count_macs(lin, 4, batch=3) == 3 * 48 * 5
    with pytest.raises(UserError, match="no method"):
        count_macs(conv, 16, method="nope")


# --- paths and gradients ------------------------------------------------------------------
def test_detect_path_skips_decoder(edge64: JRC) -> None:
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), _calls(edge64.decoder) as calls:
        edge64(x)
        DetectGraph(edge64)(x)
        assert calls == []
        logit, recon = FullGraph(edge64)(x)
    assert "" in calls and "to_rgb" in calls
    assert recon.shape == (1, 3, 64, 64)


def test_graph_wrappers_keep_the_model_mode(edge64: JRC) -> None:
    assert not DetectGraph(edge64).training and not FullGraph(edge64).training
    assert not edge64.training


@pytest.mark.parametrize("encoder", ["edge", "xception"])
def test_both_losses_reach_the_backbone(encoder: str) -> None:
    torch.manual_seed(0)
    model = JRC(encoder, 64).train()
    x = torch.randn(2, 3, 64, 64)
    first = next(p for n, p in model.backbone.named_parameters() if n.endswith("weight"))

    logit, recon = model.forward_full(x)
    nn.functional.binary_cross_entropy_with_logits(logit, torch.tensor([[0.0], [1.0]])).backward()
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.decoder.parameters())  # classification only

    model.zero_grad(set_to_none=True)
    logit, recon = model.forward_full(x)
    nn.functional.mse_loss(recon, x).backward()
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.head.parameters())  # reconstruction only


# --- configuration and metadata -------------------------------------------------------------
@pytest.mark.parametrize("encoder, size, mean", [("edge", 224, (0.485, 0.456, 0.406)),
                                                 ("xception", 299, (0.5, 0.5, 0.5))])
def test_default_meta(encoder: str, size: int, mean: tuple) -> None:
    meta = default_meta(encoder)
    assert (meta.encoder, meta.input_size, tuple(meta.mean)) == (encoder, size, mean)
    assert meta.graph == "checkpoint" and tuple(meta.outputs) == ("logit", "recon")
    json.dumps(meta.model)  # JSON-able
    assert default_meta(encoder, 128).input_size == 128
    with pytest.raises(UserError, match=r"input_size 100000 is not usable"):  # not "invalid metadata"
        default_meta(encoder, 100000)


def test_default_meta_downsample() -> None:
    assert default_meta("edge", 64, "max").model["downsample"] == "max"
    assert build_model(default_meta("edge", 64, "max")).config()["downsample"] == "max"
    with pytest.raises(UserError, match="--downsample max: only the edge encoder"):
        default_meta("xception", 64, "max")


def test_build_model_round_trip(edge64: JRC) -> None:
    meta = default_meta("edge", 64).with_(model=edge64.config())
    again = Meta.from_json(meta.to_json(), "test")
    rebuilt = build_model(again).eval()
    assert rebuilt.config() == edge64.config() and rebuilt.input_size == 64
    rebuilt.load_state_dict(edge64.state_dict())  # same architecture, strict
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), edge64(x))

    narrow = build_model(default_meta("edge", 64).with_(model={"width": 0.5, "decoder_channels": [32, 16]}))
    assert narrow.backbone.out_channels == 288
    with torch.no_grad():
        assert narrow.forward_full(torch.randn(1, 3, 64, 64))[1].shape == (1, 3, 64, 64)


@pytest.mark.parametrize("args, kwargs, match", [
    (("resnet",), {}, "unknown"),
    (("edge", 16), {}, "input_size"),
    (("edge", 4096), {}, r"input_size 4096 .* 32\.\.2048"),
    (("edge", 64), {"depth": 3}, "unknown key"),
    (("xception", 64), {"width": 0.5}, "unknown key"),
    (("edge", 64), {"dropout": 1.5}, "dropout"),
    (("edge", 64), {"decoder_channels": []}, "decoder_channels"),
    (("edge", 64), {"width": "wide"}, "width"),
    (("edge", 64), {"downsample": "avg"}, "downsample"),
])
def test_bad_config_is_a_user_error(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        JRC(*args, **kwargs)


def test_edge_downsample_modes_and_older_metadata() -> None:
    """Max-pool downsampling keeps the strided layout's shapes and parameters; metadata without
    the key (written before the option existed) rebuilds the strided network it describes."""
    pooled, strided = JRC("edge", 100, downsample="max"), JRC("edge", 100)
    assert pooled.config()["downsample"] == "max" and strided.config()["downsample"] == "stride"
    assert any(isinstance(m, nn.MaxPool2d) for m in pooled.backbone.modules())
    assert not any(isinstance(m, nn.MaxPool2d) for m in strided.backbone.modules())
    assert {k: v.shape for k, v in pooled.state_dict().items()} == {k: v.shape for k, v in strided.state_dict().items()}
    x = torch.randn(1, 3, 100, 100)
    assert pooled.eval().forward_features(x).shape == strided.eval().forward_features(x).shape == (1, 576, 4, 4)
    old = {k: v for k, v in pooled.config().items() if k != "downsample"}
    assert build_model(default_meta("edge", 64).with_(model=old)).config()["downsample"] == "stride"


# --- backbone weights ---------------------------------------------------------------------
def test_load_backbone_weights_round_trip(tmp_path, edge64: JRC, capsys) -> None:
    state = {"module." + k: v for k, v in edge64.backbone.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(1000, 576)  # an ImageNet classifier: skipped
    path = tmp_path / "imagenet.pth"
    torch.save({"state_dict": state}, path)

    torch.manual_seed(1)
    fresh = JRC("edge", 64)
    report = load_backbone_weights(fresh, path)
    assert report["matched"] == report["total"] == len(edge64.backbone.state_dict())
    assert report["skipped"] == ["module.fc.weight"] and report["missing"] == []
    for k, v in edge64.backbone.state_dict().items():
        assert torch.equal(fresh.backbone.state_dict()[k], v), k
    assert "loaded" in capsys.readouterr().out


def test_load_xception_with_2d_pointwise_weights(tmp_path) -> None:
    """Some ImageNet Xception files store pointwise weights as (out, in); they still load."""
    torch.manual_seed(0)
    source = Xception()
    state = {k: (v.flatten(1) if k.endswith("pointwise.weight") else v) for k, v in source.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    torch.save(state, tmp_path / "xception.pth")
    target = Xception()
    report = load_backbone_weights(target, tmp_path / "xception.pth", quiet=True)
    assert report["matched"] == len(source.state_dict()) and report["missing"] == []
    assert sorted(report["skipped"]) == ["fc.bias", "fc.weight"]
    key = "block5.rep.4.pointwise.weight"
    assert torch.equal(target.state_dict()[key], source.state_dict()[key])


def test_load_backbone_weights_errors(tmp_path, edge64: JRC) -> None:
    with pytest.raises(UserError, match="not found"):
        load_backbone_weights(edge64, tmp_path / "missing.pth")
    foreign = tmp_path / "foreign.pth"
    torch.save({"layer.weight": torch.zeros(3, 3), "features.0.0.weight": torch.zeros(2, 2)}, foreign)
    with pytest.raises(UserError, match="none of its 2 tensors"):
        load_backbone_weights(edge64, foreign)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="not a readable"):
        load_backbone_weights(edge64, junk)
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": nn.Linear(2, 2)}, pickled)  # a whole module: needs pickle
    with pytest.raises(UserError, match="refused"):
        load_backbone_weights(edge64, pickled)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(UserError, match="no state_dict"):
        load_backbone_weights(edge64, empty)


# --- export-friendliness of the edge detect graph -----------------------------------------
TENSORRT_SAFE = {"Conv", "Relu", "HardSwish", "HardSigmoid", "GlobalAveragePool", "MaxPool", "Mul", "Add",
                 "Gemm", "Flatten", "Identity"}


@pytest.mark.skipif(not has_module("onnx"), reason="needs onnx")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_edge_detect_graph_uses_tensorrt_safe_ops(tmp_path, edge64: JRC) -> None:
    import onnx

    path = tmp_path / "detect.onnx"
    torch.onnx.export(DetectGraph(edge64), torch.randn(1, 3, 64, 64), str(path), opset_version=17,
                      input_names=["input"], output_names=["logit"], dynamo=False)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ops <= TENSORRT_SAFE, ops - TENSORRT_SAFE
    assert "Conv" in ops and "HardSwish" in ops
    assert not edge64.training  # the exporter put the model's own mode back


# --- the edge encoder's minimal style ---------------------------------------------------------
def test_minimal_style_is_convolutions_and_relus() -> None:
    """MobileNetV3's minimalistic variant: 3×3 depthwise kernels, ReLU, no squeeze-excitation; its
    depthwise widths are multiples of 16 (72/88/120 → 80/96/128) at every width multiplier."""
    for width in (1.0, 0.5, 0.25):
        net = EdgeNet(width, style="minimal")
        kinds = {type(m) for m in net.modules()}
        assert nn.Hardswish not in kinds and nn.Hardsigmoid not in kinds and nn.AdaptiveAvgPool2d not in kinds
        depthwise = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
        assert len(depthwise) == 11 and all(m.kernel_size == (3, 3) for m in depthwise)
        assert all(m.groups % 16 == 0 for m in depthwise), [m.groups for m in depthwise]
    full = EdgeNet(style="minimal")
    assert [m.groups for m in full.modules() if isinstance(m, nn.Conv2d) and m.groups > 1] == \
        [16, 80, 96, 96, 240, 240, 128, 144, 288, 576, 576]
    assert full.out_channels == 576 and count_params(full) < count_params(EdgeNet()) / 2  # no excitation layers
    assert 40e6 <= count_macs(full, 224) <= 60e6  # as MobileNetV3-Small's ~56 M
    v3 = EdgeNet()
    assert any(isinstance(m, nn.Hardswish) for m in v3.modules())  # the default is unchanged
    assert sorted({m.kernel_size for m in v3.modules() if isinstance(m, nn.Conv2d) and m.groups > 1}) == [(3, 3), (5, 5)]


def test_minimal_style_in_metadata_and_older_metadata_is_v3() -> None:
    meta = default_meta("edge", 64, style="minimal")
    assert meta.model["style"] == "minimal" and default_meta("edge", 64).model["style"] == "v3"
    again = build_model(Meta.from_json(meta.to_json(), "test"))
    assert again.config()["style"] == "minimal"
    assert not any(isinstance(m, nn.Hardswish) for m in again.modules())
    old = {k: v for k, v in default_meta("edge", 64).model.items() if k != "style"}  # written before the option
    assert build_model(default_meta("edge", 64).with_(model=old)).config()["style"] == "v3"
    with pytest.raises(UserError, match="--edge-style minimal: only the edge encoder"):
        default_meta("xception", 64, style="minimal")
    with pytest.raises(UserError, match=r"style='tiny' is not usable; expected one of v3, minimal"):
        JRC("edge", 64, style="tiny")


def test_fresh_minimal_network_keeps_its_scale() -> None:
    """A fresh network in eval mode (the untrained speed fixtures, the export parity gate) gives
    logits of order one in both styles: the ReLU gain on layers that read no ReLU output made the
    minimal style's logits −30 to −100."""
    x = torch.randn(4, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    for downsample in ("stride", "max"):
        for style in ("v3", "minimal"):
            torch.manual_seed(0)
            net = JRC("edge", 128, style=style, downsample=downsample).eval()
            with torch.no_grad():
                assert net(x).abs().max() < 8, (style, downsample)
