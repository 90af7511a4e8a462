"""The JRC network: joint unsupervised reconstruction and supervised classification.

Yan, Lu, Li, "Deepfake Detection via Joint Unsupervised Reconstruction and Supervised
Classification", arXiv 2211.13424; journal version "JRC", Neurocomputing 598 (2024).

    image ─► backbone ─► feature map ─► shared conv encoder ─► latent z ─┬─► classifier ─► logit
                                                                        └─► decoder ─► reconstruction

``forward`` is the detect path (what the edge devices run: no decoder); ``forward_full`` adds the
reconstruction of the normalised input. Backbones: ``xception`` at 299 (the paper's), ``edge``
(MobileNetV3-Small-sized, ≈ 0.08 GMACs for the detect path at 224; ≈ 0.1 with ``downsample="max"``;
``style="minimal"``: the paper's quantization-friendly variant, for INT8 on CPUs), ``plain`` (five
conv stages, for 64-128 px) and ``meso4`` / ``mesoinception4`` (MesoNet's convolutions at 256, its
design size; the authors' deepfake-trained weights load with ``--backbone-weights``).
"""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runtime.errors import UserError
from runtime.meta import ENCODERS, MAX_INPUT_SIZE, Meta
from training.backbones.edge import DOWNSAMPLE, STYLES

DEFAULT_SIZE = {"edge": 224, "xception": 299, "plain": 64, "meso4": 256, "mesoinception4": 256}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Xception's ImageNet weights were trained on inputs scaled to [-1, 1], MesoNet's on [0, 1].
UNIT_RANGE = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
NORMALISATION = {"edge": (IMAGENET_MEAN, IMAGENET_STD), "xception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                 "plain": (IMAGENET_MEAN, IMAGENET_STD), "meso4": UNIT_RANGE, "mesoinception4": UNIT_RANGE}
# MesoNet's backbones give 16 channels at stride 32 (training/backbones/meso.py): a narrower encoder.
_MESO_CONFIG = {"encoder_channels": 128, "latent_channels": 128, "hidden": 64, "dropout": 0.5,
                "decoder_channels": [128, 64, 32, 16, 16]}
DEFAULT_CONFIG: dict[str, dict[str, Any]] = {
    "edge": {"width": 1.0, "downsample": "stride", "style": "v3", "encoder_channels": 256, "latent_channels": 128,
             "hidden": 128, "dropout": 0.2, "decoder_channels": [128, 64, 32, 16, 16]},
    "xception": {"encoder_channels": 512, "latent_channels": 256, "hidden": 256,
                 "dropout": 0.5, "decoder_channels": [256, 128, 64, 32, 16]},
    # the plain five-stage CNN for small inputs (training/backbones/plain.py)
    "plain": {"width": 1.0, "encoder_channels": 256, "latent_channels": 128, "hidden": 128,
              "dropout": 0.2, "decoder_channels": [128, 64, 32, 16, 16]},
    "meso4": _MESO_CONFIG,
    "mesoinception4": _MESO_CONFIG,
}
MAX_DECODER_STAGES = 5  # one ×2 stage per halving in the backbone (stride 32)
MIN_INPUT = 32
STRIP_PREFIXES = ("module.", "_orig_mod.", "backbone.", "model.", "net.")  # DDP, compile, wrappers
KERAS_SUFFIXES = (".h5", ".hdf5")


class JRC(nn.Module):
    """JRC detector. ``JRC(encoder, input_size, **config)``; ``config()`` gives the kwargs back."""

    def __init__(self, encoder: str = "edge", input_size: int | None = None, **config: Any) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise UserError(f"encoder {encoder!r} is unknown; use one of {', '.join(ENCODERS)}")
        size = _input_size(encoder, input_size)
        self.encoder_name = encoder
        self.input_size = size
        self._config = _resolve_config(encoder, config)
        cfg = self._config

        self.backbone = _build_backbone(encoder, cfg)
        self.feature_channels = int(self.backbone.out_channels)
        self.encoder = _build_encoder(self.feature_channels, cfg["encoder_channels"], cfg["latent_channels"])
        self.head = ClassifierHead(cfg["latent_channels"], cfg["hidden"], cfg["dropout"])
        self.decoder = Decoder(cfg["latent_channels"], cfg["decoder_channels"], size)

    # --- the two paths ---------------------------------------------------------------------
    def forward_features(self, x: Tensor) -> Tensor:
        """Backbone feature map (N, C, ~S/32, ~S/32)."""
        return self.backbone(x)

    def encode(self, x: Tensor) -> Tensor:
        """Latent z (N, latent_channels, ~S/32, ~S/32), shared by classifier and decoder."""
        return self.encoder(self.forward_features(x))

    def forward_head(self, z: Tensor) -> Tensor:
        """Logit of "fake", (N, 1)."""
        return self.head(z)

    def decode(self, z: Tensor) -> Tensor:
        """Reconstruction of the normalised input, (N, 3, input_size, input_size)."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        """Detect path: logit only; the decoder is not run."""
        return self.forward_head(self.encode(x))

    def forward_full(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Both branches from one encoding: (logit (N,1), reconstruction (N,3,S,S))."""
        z = self.encode(x)
        return self.forward_head(z), self.decode(z)

    def config(self) -> dict[str, Any]:
        """Constructor kwargs besides encoder and input_size (JSON-able; stored in Meta.model)."""
        return copy.deepcopy(self._config)

    def extra_repr(self) -> str:
        return f"encoder={self.encoder_name!r}, input_size={self.input_size}"


class ClassifierHead(nn.Module):
    """Global average pool + a small MLP → one logit."""

    def __init__(self, channels: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, z: Tensor) -> Tensor:
        return self.fc2(self.drop(self.relu(self.fc1(torch.flatten(self.pool(z), 1)))))


class Decoder(nn.Module):
    """ConvTranspose2d(×2) + BN + ReLU stages, then a 3×3 conv to RGB (no activation).

    When the stages do not land exactly on ``size`` (Xception at 299: 10 → 320), one bilinear
    resize to ``size`` comes before the last conv; it exports as an ONNX Resize.
    """

    def __init__(self, latent: int, channels: list[int], size: int) -> None:
        super().__init__()
        self.size = size
        stages: list[nn.Module] = []
        cin = latent
        for cout in channels:
            stages += [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.to_rgb = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        y = self.stages(z)
        if y.shape[-2] != self.size or y.shape[-1] != self.size:
            y = F.interpolate(y, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.to_rgb(y)


class DetectGraph(nn.Module):
    """What the detect ONNX graph traces: image → logit."""

    def __init__(self, model: JRC) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)  # exporters restore the wrapper's mode onto the model afterwards

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class FullGraph(nn.Module):
    """What the full ONNX graph traces: image → (logit, reconstruction)."""

    def __init__(self, model: JRC) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.forward_full(x)


# --- construction --------------------------------------------------------------------------
def build_model(meta: Meta) -> JRC:
    """The network a checkpoint's or artifact's metadata describes (fresh weights)."""
    return JRC(meta.encoder, meta.input_size, **dict(meta.model))


def default_meta(encoder: str = "edge", input_size: int | None = None, downsample: str | None = None,
                 style: str | None = None) -> Meta:
    """Checkpoint metadata for a fresh model: size, normalisation and config for ``encoder``
    (``downsample``, ``style``: the edge encoder's options, as ``training.train --downsample`` and
    ``--edge-style``)."""
    if encoder not in ENCODERS:
        raise UserError(f"encoder {encoder!r} is unknown; use one of {', '.join(ENCODERS)}")
    if downsample and encoder != "edge":
        raise UserError(f"--downsample {downsample}: only the edge encoder has this option")
    if style and encoder != "edge":
        raise UserError(f"--edge-style {style}: only the edge encoder has this option")
    options = {k: v for k, v in (("downsample", downsample), ("style", style)) if v}
    mean, std = NORMALISATION[encoder]
    meta = Meta(encoder=encoder, input_size=_input_size(encoder, input_size),
                mean=mean, std=std, graph="checkpoint", outputs=("logit", "recon"),
                model=_resolve_config(encoder, options))
    meta.validate()
    return meta


def _input_size(encoder: str, input_size: Any) -> int:
    """``input_size`` (None: the encoder's default) checked; UserError naming the usable range."""
    size = DEFAULT_SIZE[encoder] if input_size is None else input_size
    if not isinstance(size, int) or isinstance(size, bool) or not MIN_INPUT <= size <= MAX_INPUT_SIZE:
        raise UserError(f"input_size {size!r} is not usable; give an integer in {MIN_INPUT}..{MAX_INPUT_SIZE} "
                        f"(default {DEFAULT_SIZE[encoder]} for {encoder})")
    return size


def _resolve_config(encoder: str, config: dict[str, Any]) -> dict[str, Any]:
    """Defaults for ``encoder`` overridden by ``config``; every value checked (it may come from a file)."""
    defaults = DEFAULT_CONFIG[encoder]
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise UserError(f"model config for {encoder}: unknown key(s) {', '.join(map(repr, unknown))}; "
                        f"known: {', '.join(sorted(defaults))}")
    cfg = {**copy.deepcopy(defaults), **config}

    def bad(key: str, want: str) -> UserError:
        return UserError(f"model config for {encoder}: {key}={cfg[key]!r} is not usable; expected {want}")

    for key in ("encoder_channels", "latent_channels", "hidden"):
        if not _is_int(cfg[key]) or not 1 <= cfg[key] <= 8192:
            raise bad(key, "an integer in 1..8192")
    if not _is_number(cfg["dropout"]) or not 0 <= cfg["dropout"] < 1:
        raise bad("dropout", "a number in [0, 1)")
    cfg["dropout"] = float(cfg["dropout"])
    dec = cfg["decoder_channels"]
    if (not isinstance(dec, (list, tuple)) or not 1 <= len(dec) <= MAX_DECODER_STAGES
            or not all(_is_int(c) and 1 <= c <= 8192 for c in dec)):
        raise bad("decoder_channels", f"a list of 1..{MAX_DECODER_STAGES} channel counts (one per ×2 stage)")
    cfg["decoder_channels"] = [int(c) for c in dec]
    if "downsample" in cfg and cfg["downsample"] not in DOWNSAMPLE:
        raise bad("downsample", f"one of {', '.join(DOWNSAMPLE)}")
    if "style" in cfg and cfg["style"] not in STYLES:
        raise bad("style", f"one of {', '.join(STYLES)}")
    if "width" in cfg:
        if not _is_number(cfg["width"]) or not 0.1 <= cfg["width"] <= 4:
            raise bad("width", "a multiplier in 0.1..4")
        cfg["width"] = float(cfg["width"])
    return cfg


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _build_backbone(encoder: str, cfg: dict[str, Any]) -> nn.Module:
    from training.backbones import EdgeNet, PlainNet, Xception
    from training.backbones.meso import BACKBONES as MESO

    if encoder in MESO:
        return MESO[encoder]()
    if encoder == "plain":
        return PlainNet(cfg["width"])
    return EdgeNet(cfg["width"], cfg["downsample"], cfg["style"]) if encoder == "edge" else Xception()


def _build_encoder(cin: int, mid: int, latent: int) -> nn.Sequential:
    """1×1 conv to narrow the backbone's channels, then a 3×3 conv to the latent (BN + ReLU each)."""
    enc = nn.Sequential(
        nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.Conv2d(mid, latent, 3, padding=1, bias=False), nn.BatchNorm2d(latent), nn.ReLU(inplace=True),
    )
    for m in enc:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return enc


# --- pretrained backbone weights -----------------------------------------------------------
def load_backbone_weights(model: nn.Module, path: str | Path, quiet: bool = False) -> dict[str, Any]:
    """Load what fits of a local state_dict file (e.g. ImageNet weights) into the backbone; an .h5
    file is read as MesoNet's Keras weights (``training.mesonet``).

    Keys are matched by name after stripping wrapper prefixes ('module.', 'backbone.', ...) and
    by shape (a pointwise weight stored as (out, in) fits (out, in, 1, 1)). Returns
    {"matched": n, "total": backbone tensors, "skipped": file keys not loaded, "missing": backbone
    keys left as they were}; refuses a file of which nothing fits.
    """
    target = getattr(model, "backbone", model)
    source = _read_state_dict(Path(path))
    own = target.state_dict()
    picked: dict[str, Tensor] = {}
    skipped: list[str] = []
    for key, value in source.items():
        name = _strip_prefixes(key)
        mine = own.get(name)
        if mine is None or not isinstance(value, Tensor) or name in picked:
            skipped.append(key)
        elif value.shape == mine.shape:
            picked[name] = value
        elif value.numel() == mine.numel() and _squeezed(value.shape) == _squeezed(mine.shape):
            picked[name] = value.reshape(mine.shape)
        else:
            skipped.append(f"{key} (shape {tuple(value.shape)} ≠ {tuple(mine.shape)})")
    if not picked:
        raise UserError(f"{path}: none of its {len(source)} tensors fits the backbone by name and shape "
                        f"(it expects keys such as {', '.join(list(own)[:2])}); pass ImageNet weights "
                        f"for this encoder, saved as a state_dict")
    target.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in picked.items()}})
    missing = [k for k in own if k not in picked]
    report = {"matched": len(picked), "total": len(own), "skipped": skipped, "missing": missing}
    if not quiet:
        print(f"{path}: loaded {len(picked)}/{len(own)} backbone tensors; "
              f"{len(skipped)} in the file skipped, {len(missing)} of the backbone's left as they were"
              + (f" (skipped: {', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''})" if skipped else ""))
    return report


def _read_state_dict(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: weights file not found; pass a local .pt/.pth state_dict")
    if path.suffix.lower() in KERAS_SUFFIXES:  # MesoNet's authors' Keras weights, read by h5py
        from training.mesonet import backbone_state_dict

        return backbone_state_dict(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" in str(e).lower():  # a class or function reference: arbitrary code on load
            raise UserError(f"{path}: refused, the file holds pickled objects that weights-only loading "
                            "does not allow; save the weights with torch.save(model.state_dict(), path)") from None
        raise UserError(f"{path}: not a readable PyTorch weights file (unpickling failed); "
                        "pass a .pt/.pth state_dict") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable PyTorch weights file ({str(e).splitlines()[0][:160]}); "
                        "pass a .pt/.pth state_dict") from None
    for _ in range(3):  # unwrap {"state_dict": {...}}, {"model": {...}} and the like
        if not isinstance(blob, dict):
            break
        inner = [blob[k] for k in ("state_dict", "model", "model_state_dict", "net", "weights")
                 if isinstance(blob.get(k), dict)]
        if inner:
            blob = inner[0]
        elif any(isinstance(v, Tensor) for v in blob.values()):
            return {str(k): v for k, v in blob.items()}
        else:
            break
    raise UserError(f"{path}: holds no state_dict (a dict of name → tensor); "
                    "save the weights with torch.save(model.state_dict(), path)")


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in STRIP_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def _squeezed(shape: torch.Size) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)
