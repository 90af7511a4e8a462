"""The pieces of one training epoch: the JRC loss, the LR schedule, seeding, and prediction.

Kept apart from the CLI (training/train.py) and the run steps (training/run.py) so each can be read and tested on its own.
loss = BCE(logit, label) + λ · reconstruction error of the normalised input (MSE or L1), the
reconstruction optionally measured on real faces only (as RECCE does: the decoder then learns
what real faces look like, and fakes reconstruct worse).
"""

from __future__ import annotations

import math
import random
from contextlib import nullcontext
from typing import Any, Iterable, Sequence

import numpy as np


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init(worker_id: int) -> None:
    """DataLoader workers: numpy/python seeds derived from torch's per-worker seed. SIGTERM to the
    whole process group (systemd, ``kill -- -PGID``) is the main process's to act on: it stops at a
    safe point and shuts its workers down; a worker killed first would turn the stop into an error."""
    import signal

    import torch

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def cosine_schedule(optimizer: Any, total_steps: int, warmup_steps: int = 0) -> Any:
    """LambdaLR: linear warmup from ~0 to the base LR, then cosine decay to 0 at ``total_steps``.

    Stepped once per optimizer step, so short runs still get a smooth curve.
    """
    import torch

    total = max(1, int(total_steps))
    warm = max(0, min(int(warmup_steps), total - 1))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        t = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def jrc_loss(logit: Any, recon: Any | None, x: Any, y: Any, lam: float, kind: str = "mse",
             real_only: bool = False) -> tuple[Any, Any, Any]:
    """(total, bce, recon) for a batch. ``recon`` is None when λ = 0 (the decoder is not run).

    With ``real_only`` the reconstruction term averages over the real faces of the batch only;
    a batch without real faces contributes 0 (but stays in the graph, which DDP needs).
    """
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logit.reshape(-1).float(), y.float())
    if recon is None or lam == 0:
        zero = bce.new_zeros(())
        return bce, bce, zero
    diff = recon.float() - x.float()
    per = (diff.abs() if kind == "l1" else diff.square()).flatten(1).mean(1)
    if real_only:
        w = (y < 0.5).float()
        rec = (per * w).sum() / w.sum().clamp(min=1.0)
    else:
        rec = per.mean()
    return bce + lam * rec, bce, rec


def train_one_epoch(model: Any, loader: Iterable, optimizer: Any, scheduler: Any, scaler: Any, *,
                    device: Any, lam: float, recon_kind: str, real_only: bool, amp: bool,
                    progress: Any = None, grad_clip: float = 0.0) -> dict[str, float]:
    """One pass over ``loader``; ``model`` returns (logit, recon) when λ > 0, logit otherwise.

    Returns mean loss parts over the samples seen by this process.
    """
    import torch

    model.train()
    sums = {"loss": 0.0, "bce": 0.0, "recon": 0.0}
    seen = 0
    for x, y, _ in loader:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True).float()
        ctx = torch.autocast("cuda", dtype=torch.float16) if amp else nullcontext()
        with ctx:
            out = model(x)
        logit, recon = out if isinstance(out, (tuple, list)) else (out, None)
        loss, bce, rec = jrc_loss(logit, recon, x, y, lam, recon_kind, real_only)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()}")  # the caller says what to do
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        n = x.shape[0]
        seen += n
        for k, v in (("loss", loss), ("bce", bce), ("recon", rec)):
            sums[k] += float(v.detach()) * n
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{sums['loss'] / seen:.4f}", refresh=False)
    means = {k: v / max(1, seen) for k, v in sums.items()}
    return {**means, "samples": seen}


def video_ids(labels: Sequence[int], videos: Sequence[str]) -> list[str]:
    """Video ids with a label prefix for ids that occur under both labels (``real/x``, ``fake/x``).

    Synthetic datasets name a face's real crop and its self-blend by the same face id; for
    video-level metrics they are two different "videos".
    """
    both = {v for v, y in zip(videos, labels) if y} & {v for v, y in zip(videos, labels) if not y}
    return [f"{'fake' if y else 'real'}/{v}" if v in both else str(v) for v, y in zip(videos, labels)]


def predict(net: Any, loader: Iterable, size: int, device: Any, amp: bool = False,
            progress: Any = None) -> np.ndarray:
    """Probabilities of "fake" (sigmoid of the detect-path logit) for a whole dataset, by index.

    Items the loader never yields stay NaN, so a caller can tell a partial pass.
    """
    import torch

    net.eval()
    probs = np.full(size, np.nan, dtype=np.float64)
    ctx = torch.autocast("cuda", dtype=torch.float16) if amp else nullcontext()
    with torch.inference_mode(), ctx:
        for x, _, idx in loader:
            logit = net(x.to(device, non_blocking=True))
            probs[np.asarray(idx, dtype=np.int64)] = torch.sigmoid(logit.float().reshape(-1)).cpu().numpy()
            if progress is not None:
                progress.update(1)
    return probs
