"""Checkpoints: weights + the ``runtime/meta.py`` metadata, loadable with ``weights_only=True``.

Everything stored is a tensor or a plain container (dict, list, str, number), so a checkpoint
never needs pickle to load, and one that does (a hostile or foreign file) is refused.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from runtime.errors import UserError
from runtime.fileio import replacing
from runtime.meta import Meta

# Parameters a checkpoint's config may describe: Xception-299 has 25 M, the edge model 1.8 M. A config
# within each field's limits can still describe billions (8192-channel layers), which would allocate
# for minutes and then fail in the allocator; it is refused before anything is built.
MAX_PARAMETERS = 100_000_000


def _first_line(e: BaseException, limit: int = 160) -> str:
    """The first non-empty line of an exception's message, or its type name when it has none."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return lines[0][:limit] if lines else type(e).__name__


def save_checkpoint(path: str | Path, model: Any, meta: Meta, **state: Any) -> Path:
    """Write atomically (``runtime.fileio.replacing``) so a crash never leaves a half checkpoint."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = getattr(model, "module", model)  # unwrap DDP
    blob = {"model": net.state_dict(), "meta": meta.to_dict(), **state}
    with replacing(path) as tmp:
        torch.save(blob, tmp)
    return path


RUNTIME_MODELS = (".onnx", ".engine", ".plan", ".trt")  # what a user may pass for a checkpoint by mistake


def checkpoint_file(path: str | Path) -> Path:
    """The checks a checkpoint path gets before PyTorch is imported (seconds): a missing or empty file,
    or a runtime model (ONNX, TensorRT) given for a checkpoint, is refused at once. A user error naming
    the file, or its Path."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: checkpoint not found; pass the .pt written by python -m training.train")
    if p.suffix.lower() in RUNTIME_MODELS:
        raise UserError(f"{p}: a runtime model ({p.suffix}), not a PyTorch checkpoint; pass the .pt written by "
                        "python -m training.train (runtime models go to the tools' --engine)")
    if p.stat().st_size == 0:
        raise UserError(f"{p}: not a readable PyTorch checkpoint (the file is empty); check the file or re-run training")
    return p


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; user errors for missing/foreign files."""
    import pickle
    import re
    import warnings

    p = checkpoint_file(path)
    with open(p, "rb") as f:
        head = f.read(2)
    if not (head == b"PK" or (head[:1] == b"\x80" and head[1:] in (b"\x02", b"\x03", b"\x04", b"\x05"))):
        raise UserError(f"{p}: not a PyTorch checkpoint (neither the zip archive torch.save writes nor a pickle: "
                        "damaged, or another kind of file); pass the .pt written by python -m training.train")

    import torch

    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: keep the error one line
            warnings.simplefilter("ignore")
            blob = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))  # torch's own line is advice
        found = re.search(r"GLOBAL (\S+)", detail.group(1)) if detail else None
        what = (f"GLOBAL {found.group(1)}" if found else  # the object's name, not torch's advice after it
                detail.group(1).split(". ")[0].strip().rstrip(".") if detail else _first_line(e))
        raise UserError(f"{p}: refused, the checkpoint holds pickled objects that weights-only loading "
                        f"does not allow ({what[:160]}); use a checkpoint written by python -m training.train") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError, TypeError, AttributeError,
            RecursionError, MemoryError) as e:  # torch's readers fail in many ways on damaged files
        raise UserError(f"{p}: not a readable PyTorch checkpoint ({_first_line(e)}); check the file or re-run training") from None
    if not isinstance(blob, dict) or "model" not in blob or "meta" not in blob:
        raise UserError(f"{p}: not a JRC checkpoint (expected a dict with keys 'model' and 'meta', found "
                        f"{type(blob).__name__}); use a checkpoint written by python -m training.train")
    state = blob["model"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise UserError(f"{p}: its 'model' entry is not a state dict (name -> tensor) but "
                        f"{type(state).__name__}; use a checkpoint written by python -m training.train")
    return blob


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """torch.nn.init as no-ops: random init on the meta device would import torch._dynamo (10 s)."""
    import torch

    saved = {k: v for k, v in vars(torch.nn.init).items() if k.endswith("_") and not k.startswith("_") and callable(v)}
    try:
        for k in saved:
            setattr(torch.nn.init, k, lambda t, *a, **kw: t)
        yield
    finally:
        for k, v in saved.items():
            setattr(torch.nn.init, k, v)


def build_network(meta: Meta, source: str | Path) -> Any:
    """The network ``meta`` describes, after bounding its size without allocating it (fresh weights)."""
    import torch

    from training.model import build_model

    with _no_init(), torch.device("meta"):
        shell = build_model(meta)
    count = sum(p.numel() for p in shell.parameters())
    if count > MAX_PARAMETERS:
        raise UserError(f"{source}: its model config describes {count:,} parameters, more than the "
                        f"{MAX_PARAMETERS:,} allowed (the largest network here has 25 M); the metadata is "
                        "damaged or hostile, use a checkpoint written by python -m training.train")
    return build_model(meta)


def load_weights(net: Any, state: Any, source: str | Path) -> None:
    """Load a state dict into ``net``; a UserError when it does not fit."""
    try:
        net.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise UserError(f"{source}: weights do not fit the network its metadata describes "
                        f"({_first_line(e)}); the checkpoint is damaged") from None


def load_model(path: str | Path, map_location: str = "cpu") -> tuple[Any, Meta]:
    """Rebuild the network from a checkpoint's metadata and load its weights (eval mode)."""
    blob = read_checkpoint(path, map_location)
    meta = Meta.from_dict(blob["meta"], source=str(path))
    model = build_network(meta, path)
    load_weights(model, blob["model"], path)
    model.eval()
    return model, meta
