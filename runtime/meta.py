"""The one metadata schema carried by every artifact.

Checkpoints store it under the key ``meta``, ONNX files in ``metadata_props["jrc_meta"]`` (JSON),
TensorRT engines in the sidecar ``<plan>.json``. Training writes it, export copies it forward
(adding graph, precision, hashes, TensorRT fields) and the runtime configures itself from it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from runtime.errors import UserError

SCHEMA_VERSION = 1
ONNX_KEY = "jrc_meta"
MAX_META_BYTES = 64 * 1024  # metadata is a few hundred bytes; anything this big is hostile

ENCODERS = ("edge", "xception", "plain", "meso4", "mesoinception4")
GRAPHS = ("detect", "full", "checkpoint")
PRECISIONS = ("fp32", "fp16", "int8")
COLORS = ("RGB", "BGR")
MAX_INPUT_SIZE = 2048  # largest crop side a model may declare
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
        """Validate and build; ``source`` names the file in error messages. Unknown keys are ignored
        (newer writers may add fields); every known one is checked for type and range."""
        if not isinstance(d, dict):
            raise UserError(f"{source}: metadata is {type(d).__name__}, expected a JSON object; re-export the artifact")
        odd = [k for k in d if not isinstance(k, str)]
        if odd:
            raise UserError(f"{source}: invalid metadata: key {odd[0]!r} is {type(odd[0]).__name__}, expected a "
                            "string; re-export the artifact")
        schema = d.get("schema", SCHEMA_VERSION)
        if _is_int(schema) and schema > SCHEMA_VERSION:
            raise UserError(
                f"{source}: metadata schema {schema} is newer than this runtime's ({SCHEMA_VERSION}); upgrade jrc-edge")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        for key in ("mean", "std", "outputs"):
            if key in kwargs and isinstance(kwargs[key], list):
                kwargs[key] = tuple(kwargs[key])
        try:
            meta = cls(**kwargs)
            meta.validate()
        except UserError as e:
            raise UserError(f"{source}: {e}; the file is damaged or was edited, re-export it (a checkpoint: "
                            "re-train)") from None
        except (TypeError, ValueError, RecursionError) as e:
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
        """Check every field's type and range; a UserError naming the first bad field."""
        for name, check in _CHECKS.items():
            value = getattr(self, name)
            want = check(value)
            if want:
                raise UserError(f"invalid metadata: field '{name}' is {_show(value)}, expected {want}")
        size = len(self.to_json())
        if size > MAX_META_BYTES:
            raise UserError(f"invalid metadata: {size} bytes as JSON, more than the {MAX_META_BYTES} allowed")

    @property
    def has_recon(self) -> bool:
        return "recon" in self.outputs


# --- field checks: each returns what was expected, or "" when the value is fine -----------------
_MAX_TEXT = 256  # names, versions, devices
_MAX_DEPTH = 16  # nesting of the free-form dicts (model, training, profile)
_MAX_ITEMS = 4096  # values in one free-form dict, all levels together


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any, lo: float, hi: float) -> bool:
    """A real number (not a bool) in [lo, hi]; NaN and infinities fail the comparison."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi


def _show(v: Any) -> str:
    try:
        text = repr(v)
    except (ValueError, RecursionError):  # ints beyond Python's digit limit, absurd nesting
        text = "…"
    return (text if len(text) <= 60 else text[:60] + "…") + f" ({type(v).__name__})"


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    return lambda v: "" if isinstance(v, str) and v in choices else f"one of {', '.join(choices)}"


def _int_in(lo: int, hi: int) -> Callable[[Any], str]:
    return lambda v: "" if _is_int(v) and lo <= v <= hi else f"an integer in {lo}..{hi}"


def _number_in(lo: float, hi: float, what: str) -> Callable[[Any], str]:
    return lambda v: "" if _is_number(v, lo, hi) else what


def _triple(lo: float, hi: float) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        ok = isinstance(v, tuple) and len(v) == 3 and all(_is_number(x, lo, hi) for x in v)
        return "" if ok else f"three finite numbers in {lo:g}..{hi:g}"
    return check


def _text(optional: bool, limit: int = _MAX_TEXT) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if optional and v is None:
            return ""
        ok = isinstance(v, str) and 0 < len(v) <= limit and v.isprintable()
        return "" if ok else f"a printable string of 1..{limit} characters" + (" or null" if optional else "")
    return check


def _outputs(v: Any) -> str:
    return "" if v in (("logit",), ("logit", "recon")) and isinstance(v, tuple) else "['logit'] or ['logit', 'recon']"


def _plain(v: Any, depth: int = 0, budget: list[int] | None = None) -> str:
    """What is wrong with a free-form JSON value (str keys, JSON types, bounded), or ""."""
    budget = [_MAX_ITEMS] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0 or depth > _MAX_DEPTH:
        return f"at most {_MAX_ITEMS} values nested at most {_MAX_DEPTH} deep"
    if v is None or isinstance(v, (str, bool, int, float)):
        return ""
    if isinstance(v, (list, tuple)):
        return next((w for w in (_plain(x, depth + 1, budget) for x in v) if w), "")
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                return f"string keys (found key {k!r}, {type(k).__name__})"
            w = _plain(x, depth + 1, budget)
            if w:
                return w
        return ""
    return f"JSON values only (found {type(v).__name__})"


def _object(optional: bool) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if optional and v is None:
            return ""
        if not isinstance(v, dict):
            return "a JSON object" + (" or null" if optional else "")
        return _plain(v)
    return check


def _profile(v: Any) -> str:
    want = _object(optional=True)(v)
    if want or v is None:
        return want
    got = [v[k] for k in ("min", "opt", "max") if k in v]
    if not all(_is_int(x) and 1 <= x <= 65536 for x in got) or got != sorted(got):
        return "batch sizes min <= opt <= max, integers in 1..65536"
    return ""


_CHECKS: dict[str, Callable[[Any], str]] = {
    "encoder": _one_of(ENCODERS),
    "input_size": _int_in(16, MAX_INPUT_SIZE),
    "color": _one_of(COLORS),
    "mean": _triple(-1000.0, 1000.0),
    "std": _triple(1e-6, 1000.0),
    "face_margin": _number_in(0.0, 2.0, "a number in 0..2"),
    "face_align": _one_of(FACE_ALIGNS),
    "threshold": _number_in(0.0, 1.0, "a probability in 0..1"),
    "graph": _one_of(GRAPHS),
    "outputs": _outputs,
    "input_name": _text(optional=False),
    "precision": _one_of(PRECISIONS),
    "model": _object(optional=False),
    "source_sha256": _text(optional=True, limit=128),
    "tensorrt_version": _text(optional=True),
    "device": _text(optional=True),
    "compute_capability": _text(optional=True),
    "profile": _profile,
    "training": _object(optional=False),
    "schema": lambda v: "" if _is_int(v) and 1 <= v <= SCHEMA_VERSION else f"an integer 1..{SCHEMA_VERSION}",
}


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


ENGINE_SUFFIXES = (".engine", ".plan")


def missing_engine(engine: str | Path) -> UserError:
    """The one error for an engine file that does not exist: engines are built, on the device that
    runs them, from the ONNX (every tool that takes an engine says the same)."""
    return UserError(f"{engine}: no such engine; TensorRT engines are built on the machine that runs them "
                     f"(TensorRT and its GPU): python -m export.engine --onnx MODEL.onnx --out {engine}")


def read_sidecar(engine: str | Path, verify_hash: bool = True) -> tuple[Meta, dict[str, Any]]:
    """Read and check an engine's sidecar; returns (meta, raw dict including plan_sha256)."""
    return read_any_sidecar(engine, lambda raw, source: Meta.from_json(raw, source=source), verify_hash)


def read_any_sidecar(engine: str | Path, parse: Any, verify_hash: bool = True) -> tuple[Any, dict[str, Any]]:
    """An engine's sidecar of any model kind: size-checked, ``parse(raw, source)`` (the kind's own
    validation), then the plan's sha256 checked against it; returns (parsed, raw dict)."""
    if not Path(engine).exists():
        raise missing_engine(engine)
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
