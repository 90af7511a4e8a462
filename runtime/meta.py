"""The one metadata schema carried by every artifact.

Checkpoints store it under the key ``meta``, ONNX files in ``metadata_props["jrc_meta"]`` (JSON),
TensorRT engines in the sidecar ``<plan>.json``. Training writes it, export copies it forward
(adding graph, precision, hashes, TensorRT fields) and the runtime configures itself from it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from runtime.errors import UserError

SCHEMA_VERSION = 1
ONNX_KEY = "jrc_meta"
MAX_META_BYTES = 64 * 1024  # metadata is a few hundred bytes; anything this big is hostile

ENCODERS = ("edge", "xception")
GRAPHS = ("detect", "full", "checkpoint")
PRECISIONS = ("fp32", "fp16", "int8")
COLORS = ("RGB", "BGR")
FACE_ALIGNS = ("box", "landmarks")  # crop around the detector's box, or aligned by its five landmarks
OUTPUTS = {"detect": ["logit"], "full": ["logit", "recon"], "checkpoint": ["logit", "recon"]}


@dataclass(frozen=True)
class Meta:
    """What an artifact is and how to feed it. Probabilities are sigmoid(logit) of "fake"."""

    encoder: str = "edge"
    input_size: int = 224
    color: str = "RGB"  # channel order the network expects (frames are decoded as BGR)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    face_margin: float = 0.15  # crop side = (1 + 2 * margin) * max(face w, h)
    face_align: str = "box"  # "landmarks": crops aligned by the detector's five landmarks (trained so)
    threshold: float = 0.5  # on the probability of fake
    graph: str = "checkpoint"
    outputs: tuple[str, ...] = ("logit", "recon")
    input_name: str = "input"
    precision: str = "fp32"
    model: dict[str, Any] = field(default_factory=dict)  # constructor arguments of the network
    source_sha256: str | None = None  # hash of the artifact this one was made from
    tensorrt_version: str | None = None  # engines only
    device: str | None = None  # engines only: GPU name
    compute_capability: str | None = None  # engines only, "8.7"
    profile: dict[str, Any] | None = None  # engines only: {"min": 1, "opt": 4, "max": 8}
    training: dict[str, Any] = field(default_factory=dict)  # data, epochs, validation AUC
    schema: int = SCHEMA_VERSION

    # --- conversions ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"], d["outputs"] = list(self.mean), list(self.std), list(self.outputs)
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any, source: str = "metadata") -> Meta:
        """Validate and build; ``source`` names the file in error messages."""
        if not isinstance(d, dict):
            raise UserError(f"{source}: metadata is {type(d).__name__}, expected a JSON object; re-export the artifact")
        known = {f.name for f in fields(cls)}
        if int(d.get("schema", SCHEMA_VERSION)) > SCHEMA_VERSION:
            raise UserError(
                f"{source}: metadata schema {d.get('schema')} is newer than this runtime's "
                f"({SCHEMA_VERSION}); upgrade jrc-edge")
        kwargs = {k: v for k, v in d.items() if k in known}
        for key in ("mean", "std", "outputs"):
            if key in kwargs and isinstance(kwargs[key], list):
                kwargs[key] = tuple(kwargs[key])
        try:
            meta = cls(**kwargs)
            meta.validate()
        except UserError as e:
            raise UserError(f"{source}: {e}") from None
        except (TypeError, ValueError) as e:
            raise UserError(f"{source}: malformed metadata ({e}); re-export the artifact") from None
        return meta

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "metadata") -> Meta:
        if len(text) > MAX_META_BYTES:
            raise UserError(f"{source}: metadata is {len(text)} bytes, more than the {MAX_META_BYTES} allowed; "
                            "the file is damaged or not ours, re-export it")
        try:
            d = json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: "[[[[..." nesting
            raise UserError(f"{source}: metadata is not valid JSON ({e}); re-export the artifact") from None
        return cls.from_dict(d, source)

    def with_(self, **changes: Any) -> Meta:
        """A copy with some fields changed, validated."""
        m = replace(self, **changes)
        m.validate()
        return m

    def for_graph(self, graph: str) -> Meta:
        return self.with_(graph=graph, outputs=tuple(OUTPUTS[graph]))

    # --- checks --------------------------------------------------------------------------
    def validate(self) -> None:
        def bad(what: str) -> UserError:
            return UserError(f"invalid metadata: {what}")

        if self.encoder not in ENCODERS:
            raise bad(f"encoder {self.encoder!r}, expected one of {ENCODERS}")
        if not isinstance(self.input_size, int) or not 16 <= self.input_size <= 2048:
            raise bad(f"input_size {self.input_size!r}, expected an integer in 16..2048")
        if self.color not in COLORS:
            raise bad(f"color {self.color!r}, expected one of {COLORS}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if len(v) != 3 or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v):
                raise bad(f"{name} {v!r}, expected three finite numbers")
        if any(s <= 0 for s in self.std):
            raise bad(f"std {self.std!r} must be positive")
        if not isinstance(self.face_margin, (int, float)) or not 0 <= self.face_margin <= 2:
            raise bad(f"face_margin {self.face_margin!r}, expected 0..2")
        if self.face_align not in FACE_ALIGNS:
            raise bad(f"face_align {self.face_align!r}, expected one of {FACE_ALIGNS}")
        if not isinstance(self.threshold, (int, float)) or not 0 <= self.threshold <= 1:
            raise bad(f"threshold {self.threshold!r}, expected a probability 0..1")
        if self.graph not in GRAPHS:
            raise bad(f"graph {self.graph!r}, expected one of {GRAPHS}")
        if not self.outputs or self.outputs[0] != "logit" or not set(self.outputs) <= {"logit", "recon"}:
            raise bad(f"outputs {self.outputs!r}, expected ['logit'] or ['logit', 'recon']")
        if self.precision not in PRECISIONS:
            raise bad(f"precision {self.precision!r}, expected one of {PRECISIONS}")
        if not isinstance(self.model, dict) or not isinstance(self.training, dict):
            raise bad("model and training must be JSON objects")

    @property
    def has_recon(self) -> bool:
        return "recon" in self.outputs


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sidecar_path(engine: str | Path) -> Path:
    """``detect.fp16.engine`` → ``detect.fp16.engine.json``."""
    p = Path(engine)
    return p.with_name(p.name + ".json")


def write_sidecar(engine: str | Path, meta: Meta, extra: dict[str, Any] | None = None) -> Path:
    """Write the engine's sidecar: the metadata plus the plan's sha256 (and any extra fields)."""
    d = meta.to_dict()
    d["plan_sha256"] = sha256_file(engine)
    d.update(extra or {})
    out = sidecar_path(engine)
    out.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")
    return out


def read_sidecar(engine: str | Path, verify_hash: bool = True) -> tuple[Meta, dict[str, Any]]:
    """Read and check an engine's sidecar; returns (meta, raw dict including plan_sha256)."""
    return read_any_sidecar(engine, lambda raw, source: Meta.from_json(raw, source=source), verify_hash)


def read_any_sidecar(engine: str | Path, parse: Any, verify_hash: bool = True) -> tuple[Any, dict[str, Any]]:
    """An engine's sidecar of any model kind: size-checked, ``parse(raw, source)`` (the kind's own
    validation), then the plan's sha256 checked against it; returns (parsed, raw dict)."""
    side = sidecar_path(engine)
    if not side.is_file():
        raise UserError(f"{engine}: no sidecar {side.name} beside the engine; rebuild it with "
                        f"python -m export.engine, which writes both")
    size = side.stat().st_size  # checked before reading: a hostile sidecar can be huge
    if size > MAX_META_BYTES:
        raise UserError(f"{side}: metadata is {size} bytes, more than the {MAX_META_BYTES} allowed; the file "
                        "is damaged or not ours, rebuild the engine")
    raw = side.read_bytes()
    parsed = parse(raw, str(side))
    d = json.loads(raw)
    if verify_hash:
        want = d.get("plan_sha256")
        got = sha256_file(engine)
        if want != got:
            raise UserError(f"{engine}: sha256 {got[:12]}… does not match its sidecar ({str(want)[:12]}…); "
                            "the plan or the sidecar was replaced or damaged, rebuild the engine")
    return parsed, d


# --- the face detector's metadata (a second model kind, run by the same backends) ---------
FACE_KEY = "jrc_face_meta"
FACE_NETS: dict[str, tuple[str, ...]] = {"pnet": ("prob", "reg"), "rnet": ("prob", "reg"),
                                         "onet": ("prob", "reg", "landmarks")}
FACE_INPUT = {"pnet": None, "rnet": 24, "onet": 48}  # P-Net is fully convolutional: any H, W


def face_meta_from_json(text: str | bytes, source: str = "metadata") -> dict[str, Any]:
    """The validated metadata of one face-detector network (``kind: face_detector``)."""
    if len(text) > MAX_META_BYTES:
        raise UserError(f"{source}: face-detector metadata is {len(text)} bytes, more than the "
                        f"{MAX_META_BYTES} allowed; the file is damaged or not ours")
    try:
        d = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise UserError(f"{source}: face-detector metadata is not valid JSON ({e}); re-run python -m export.faces") from None
    if not isinstance(d, dict) or d.get("kind") != "face_detector":
        raise UserError(f"{source}: not a face-detector network (metadata kind {d.get('kind') if isinstance(d, dict) else d!r}); "
                        "pass the folder written by python -m export.faces")
    if int(d.get("schema", SCHEMA_VERSION)) > SCHEMA_VERSION:
        raise UserError(f"{source}: face-detector metadata schema {d.get('schema')} is newer than this runtime's; "
                        "upgrade jrc-edge")
    net = d.get("net")
    if d.get("family") != "mtcnn" or net not in FACE_NETS:
        raise UserError(f"{source}: face detector {d.get('family')!r}/{net!r} is unknown; expected mtcnn pnet/rnet/onet")
    if tuple(d.get("outputs", ())) != FACE_NETS[net] or d.get("input_size") != FACE_INPUT[net]:
        raise UserError(f"{source}: {net} metadata promises outputs {d.get('outputs')} at input size "
                        f"{d.get('input_size')}, expected {list(FACE_NETS[net])} at {FACE_INPUT[net]}; re-export it")
    if d.get("color") != "BGR" or d.get("pixels") != "0-255":
        raise UserError(f"{source}: {net} expects {d.get('color')} {d.get('pixels')} input; this runtime feeds BGR 0-255")
    return d
