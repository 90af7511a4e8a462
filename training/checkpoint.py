"""Checkpoints: weights + the ``runtime/meta.py`` metadata, loadable with ``weights_only=True``.

Everything stored is a tensor or a plain container (dict, list, str, number), so a checkpoint
never needs pickle to load, and one that does (a hostile or foreign file) is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.errors import UserError
from runtime.fileio import replacing
from runtime.meta import Meta


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


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; user errors for missing/foreign files."""
    import pickle
    import re
    import warnings

    import torch

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: checkpoint not found; pass the .pt written by python -m training.train")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: keep the error one line
            warnings.simplefilter("ignore")
            blob = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))  # torch's own line is advice
        first = (re.split(r"\.\s", detail.group(1))[0] if detail else
                 str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content")
        raise UserError(f"{p}: refused, the checkpoint holds pickled objects that weights-only loading "
                        f"does not allow ({first[:160]}); use a checkpoint written by training.train") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise UserError(f"{p}: not a readable PyTorch checkpoint ({str(e).splitlines()[0][:160]}); "
                        "check the file or re-run training") from None
    if not isinstance(blob, dict) or "model" not in blob or "meta" not in blob:
        raise UserError(f"{p}: not a JRC checkpoint (expected keys 'model' and 'meta'); "
                        "use a checkpoint written by python -m training.train")
    return blob


def load_model(path: str | Path, map_location: str = "cpu") -> tuple[Any, Meta]:
    """Rebuild the network from a checkpoint's metadata and load its weights (eval mode)."""
    from training.model import build_model

    blob = read_checkpoint(path, map_location)
    meta = Meta.from_dict(blob["meta"], source=str(path))
    model = build_model(meta)
    try:
        model.load_state_dict(blob["model"])
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit the network its metadata describes "
                        f"({str(e).splitlines()[0][:160]}); the checkpoint is damaged") from None
    model.eval()
    return model, meta
