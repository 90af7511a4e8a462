"""The steps of a training run (``python -m training.train``): DDP place and device, model, data
and loaders, ``--resume`` state, epochs with validation and threshold choice, checkpoints and the
metrics log.

:class:`_Run` holds what the epochs share; ``training.train.main`` calls :func:`_start`,
:func:`_build`, :func:`_restore`, :func:`_announce`, :func:`_epoch` once per epoch and
:func:`_finish`. Only rank 0 validates, prints and writes. torch is imported inside the steps, so
the command line's ``--help`` works without it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import UserError
from runtime.fileio import same_file
from training.dataspec import is_synthetic, parse_synthetic, synthetic_spec

SYNTHETIC_VAL = "synthetic:200"  # default validation for synthetic runs: 20 held-out faces, 5 forgeries each
GENERATED_VAL_ITEMS = 1000  # ... and for pool/selfblend runs: each held-out face in several camera views
# the settings a checkpoint stores; with --resume they become training.train's defaults
_ARG_KEYS = ("data", "val", "synthetic", "augment", "encoder", "input_size", "epochs", "batch_size", "lr", "optimizer",
             "weight_decay", "warmup", "lam", "recon_loss", "recon_real_only", "backbone_weights", "init", "seed",
             "workers", "amp", "sync_bn", "threshold", "split", "balance", "families")


def _distributed(device_arg: str) -> tuple[int, int, Any]:
    """(rank, world size, device); initialises the process group when launched by torchrun."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want = device_arg
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {device_arg}: no CUDA device is visible to PyTorch; use --device cpu")
        device = torch.device(f"cuda:{local}" if world > 1 else want)
        torch.cuda.set_device(device)
    elif want == "cpu":
        device = torch.device("cpu")
    else:
        raise UserError(f"--device {device_arg}: expected auto, cpu, cuda or cuda:N")
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _datasets(a: argparse.Namespace, meta: Any) -> tuple[Any, Any]:
    """Train/val sets. Without --val, the val split of --data (~20 % of its videos) is held out;
    a synthetic spec is always split by face (``training.dataspec.split_for``), so no face is in both."""
    from training.data import open_dataset
    from training.dataspec import split_for

    val_spec = a.val or (_synthetic_val(a.data) if is_synthetic(a.data) else a.data)
    train_split = a.split or (split_for(a.data, "train") if a.val else "train")
    val_split = split_for(val_spec, "validate") if a.val else "val"
    augment = None if a.augment else False
    train = open_dataset(a.data, meta, train=True, split=train_split, seed=a.seed, augment=augment)
    _check_training_classes(a, train.labels)
    val = open_dataset(val_spec, meta, train=False, split=val_split, seed=0)  # one fixed val set
    _check_both_classes(a, val.labels)
    return train, val


def _check_training_classes(a: argparse.Namespace, labels: list[int]) -> None:
    """Refuse, before any epoch, training data without real or without fake faces: a classifier
    trained on one class learns nothing about the other."""
    n_real, n_fake = labels.count(0), labels.count(1)
    if n_real and n_fake:
        return
    split = f" (its {a.split} split)" if a.split else ""
    raise UserError(f"--data {a.data}{split}: the training set holds {n_real} real and {n_fake} fake items; a "
                    "classifier needs both: add the missing class (a real/ or fake/ folder, or manifest rows "
                    "labelled 0 or 1)")


def _check_both_classes(a: argparse.Namespace, labels: list[int]) -> None:
    """Refuse, before any epoch, a validation set without real or without fake faces: its AUC is
    undefined, so best.pt would never be written and an 'eer' threshold never chosen."""
    n_real, n_fake = labels.count(0), labels.count(1)
    if n_real and n_fake:
        return
    what = f"--val {a.val}" if a.val else f"--data {a.data} (its held-out ~20% of videos)"
    raise UserError(f"{what}: the validation set holds {n_real} real and {n_fake} fake items; validation needs "
                    "both (best.pt is chosen by its AUC, --threshold eer at its equal-error point): pass a --val "
                    "with both classes")


def _val_name(a: argparse.Namespace) -> str:
    """The validation set, as checkpoints record it."""
    return a.val or (_synthetic_val(a.data) if is_synthetic(a.data) else a.data)


def _loaders(a: argparse.Namespace, train_ds: Any, val_ds: Any, world: int, device: Any) -> tuple[Any, Any, Any]:
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    from training.loop import worker_init

    if len(train_ds) < a.batch_size * world:
        raise UserError(f"training set: {len(train_ds)} items, fewer than one batch ({a.batch_size} x {world} "
                        "processes); lower --batch-size or add data")
    gen = torch.Generator()
    if a.balance == "sampler":
        from training.balance import ClassBalancedSampler

        rank = int(os.environ.get("RANK", "0")) if world > 1 else 0
        sampler = ClassBalancedSampler(train_ds.labels, a.seed, rank, world)
    else:
        sampler = (DistributedSampler(train_ds, shuffle=True, seed=a.seed, drop_last=True) if world > 1
                   else RandomSampler(train_ds, generator=gen))
    common = {"num_workers": a.workers, "pin_memory": device.type == "cuda", "worker_init_fn": worker_init}
    train = DataLoader(train_ds, batch_size=a.batch_size, sampler=sampler, drop_last=True, generator=gen, **common)
    val = DataLoader(val_ds, batch_size=a.batch_size, shuffle=False, **common) if val_ds is not None else None
    return train, val, gen


def _meta_and_model(a: argparse.Namespace, blob: dict[str, Any] | None) -> tuple[Any, Any]:
    from runtime.meta import Meta
    from training.checkpoint import build_network, load_weights
    from training.model import build_model, default_meta

    if blob is not None:
        meta = Meta.from_dict(blob["meta"], source=a.resume)
        if a.encoder != meta.encoder or (a.input_size or meta.input_size) != meta.input_size:
            raise UserError(f"--resume {a.resume}: the checkpoint is {meta.encoder} at {meta.input_size}; "
                            "resume with the same --encoder/--input-size or start a new run")
        _check_resumed_options(a, meta)
        net = build_network(meta, a.resume)
        load_weights(net, blob["model"], a.resume)
        return meta, net
    if a.init:
        from training.checkpoint import read_checkpoint

        start = read_checkpoint(a.init)
        meta = Meta.from_dict(start["meta"], source=a.init)
        if a.encoder != meta.encoder or (a.input_size or meta.input_size) != meta.input_size:
            raise UserError(f"--init {a.init}: the checkpoint is {meta.encoder} at {meta.input_size}; pass the same "
                            "--encoder/--input-size (or leave them out)")
        for flag, key, given in (("--edge-style", "style", a.edge_style), ("--downsample", "downsample", a.downsample)):
            has = (meta.model or {}).get(key)
            if given is not None and has is not None and given != has:
                raise UserError(f"--init {a.init}: the checkpoint's network has {key} {has}; leave {flag} out "
                                "(the starting network is kept)")
        net = build_network(meta, a.init)
        load_weights(net, start["model"], a.init)
        return Meta(encoder=meta.encoder, input_size=meta.input_size, color=meta.color, mean=meta.mean,
                    std=meta.std, face_margin=meta.face_margin, face_align=meta.face_align, model=meta.model), net
    meta = default_meta(a.encoder, a.input_size, a.downsample, a.edge_style).with_(face_align=a.face_align)
    net = build_model(meta)
    if a.backbone_weights:
        from training.model import load_backbone_weights

        load_backbone_weights(net, a.backbone_weights)
    return meta.with_(model=net.config()), net


def _check_resumed_options(a: argparse.Namespace, meta: Any) -> None:
    """An edge-network option given with --resume must be the checkpoint's (it cannot change mid-run;
    the encoder is the checkpoint's here, and training.train refuses these options for another)."""
    from training.model import DEFAULT_CONFIG

    for option, key, given in (("--downsample", "downsample", a.downsample), ("--edge-style", "style", a.edge_style)):
        if given is None:
            continue
        stored = meta.model.get(key, DEFAULT_CONFIG["edge"][key])  # older checkpoints: the default
        if given != stored:
            raise UserError(f"--resume {a.resume}: the checkpoint's edge network has {key} {stored!r}, not "
                            f"{option} {given}; leave {option} out or start a new run")


def _training_info(a: argparse.Namespace, world: int, epoch: int, best: float, best_epoch: int,
                   rule: dict[str, Any] | None = None) -> dict[str, Any]:
    val = a.val or (_synthetic_val(a.data) if is_synthetic(a.data) else f"{a.data} (held-out ~20% of videos)")
    info = {"data": a.data, "val": val,
            "epochs": a.epochs, "epochs_done": epoch, "lambda": a.lam, "recon_loss": a.recon_loss,
            "recon_real_only": a.recon_real_only, "optimizer": a.optimizer, "lr": a.lr,
            "split": a.split, "balance": a.balance,
            "batch_size": a.batch_size, "world_size": world, "seed": a.seed, "threshold": a.threshold,
            "best_val_auc": None if math.isnan(best) else best, "best_epoch": best_epoch or None}
    if is_synthetic(a.data):
        info["families"] = list(parse_synthetic(a.data)[1])
    if rule:
        info["threshold_rule"] = rule
    return info


def _synthetic_val(data: str) -> str:
    """The default validation set of synthetic training data: its held-out faces, same families."""
    n = int(SYNTHETIC_VAL.split(":")[1]) if data.strip().startswith("synthetic") else GENERATED_VAL_ITEMS
    return synthetic_spec(n, parse_synthetic(data)[1], like=data)


def _validate(net: Any, val_dl: Any, val_ds: Any, device: Any, amp: bool, threshold: float,
              rule: str = "") -> dict[str, float]:
    """Frame-level AUC/EER/AP/ACC/false-alarm rate (and video AUC) of the detect path on the validation
    set; with ``rule`` 'fpr:X' also the threshold meeting that false-alarm rate on its reals."""
    from tqdm import tqdm

    from training.loop import predict, video_ids
    from training.metrics import summary, threshold_at_fpr

    with tqdm(total=len(val_dl), desc="validate", leave=False, file=sys.stderr, dynamic_ncols=True) as bar:
        probs = predict(net, val_dl, len(val_ds), device, amp, progress=bar)
    s = summary(probs, val_ds.labels, video_ids(val_ds.labels, val_ds.videos), threshold)
    for note in s["notes"]:
        if note.startswith("frame"):
            print(f"training: validation {note}", file=sys.stderr)
    f = s["frame"]
    out = {"val_auc": f["auc"], "val_eer": f["eer"], "val_eer_threshold": f["eer_threshold"], "val_ap": f["ap"],
           "val_acc": f["acc"], "val_far": f["far"],
           "val_video_auc": (s["video"] or {}).get("auc", math.nan)}
    if rule.startswith("fpr:") and f["n_real"]:
        out["val_fpr_threshold"], out["val_fpr_achieved"] = threshold_at_fpr(probs, val_ds.labels, float(rule[4:]))
    return out


def _threshold(spec: str, record: dict[str, Any], current: float) -> float:
    """The decision threshold for this epoch's checkpoint: fixed, the validation EER point, or the
    validation reals' false-alarm-rate point (``fpr:X``)."""
    if spec not in ("eer",) and not spec.startswith("fpr:"):
        return float(spec)
    at = record.get("val_eer_threshold" if spec == "eer" else "val_fpr_threshold", math.nan)
    return current if at is None or not math.isfinite(at) else float(min(1.0, max(0.0, at)))


def _mean_over_ranks(parts: dict[str, float], device: Any) -> dict[str, float]:
    """Sample-weighted mean of the loss parts over all DDP processes."""
    import torch
    import torch.distributed as dist

    keys = ("loss", "bce", "recon")
    n = float(parts["samples"])
    t = torch.tensor([parts[k] * n for k in keys] + [n], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    total = max(1.0, float(t[-1]))
    return {**{k: float(t[i]) / total for i, k in enumerate(keys)}, "samples": int(t[-1])}


def _emit(out: Path, record: dict[str, Any]) -> None:
    """One JSON line (NaN → null) on stdout and appended to OUT/metrics.jsonl."""
    line = json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()})
    print(line, flush=True)
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write(line + "\n")


@dataclass
class _Run:
    """What the epochs share: the process's place in DDP, the data, the model and its optimiser."""

    args: argparse.Namespace
    out: Path
    rank: int
    world: int
    device: Any
    amp: bool
    meta: Any = None
    net: Any = None  # the JRC network (unwrapped: what checkpoints store)
    model: Any = None  # what the optimiser steps through: graph wrapper, maybe DDP
    train_ds: Any = None
    val_ds: Any = None
    train_dl: Any = None
    val_dl: Any = None
    gen: Any = None
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None
    start: int = 1
    best: float = math.nan
    best_epoch: int = 0
    rule: Any = None  # how the stored threshold was chosen (--threshold fpr:X)
    lock: Any = None  # the descriptor holding OUT/.train.lock (rank 0)
    rewind_from: int | None = None  # --rewind: the epoch of the later OUT/last.pt it discards
    saved_epoch: int | None = None  # the epoch OUT/last.pt holds
    best_file: Path | None = None  # where the best epoch's checkpoint is

    @property
    def main_proc(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Let another run write OUT (the kernel also does when the process ends)."""
        from training.run_folder import unlock

        unlock(self.lock)
        self.lock = None


def _start(args: argparse.Namespace, blob: dict[str, Any] | None) -> _Run:
    """Threads, DDP place and device, AMP availability; OUT made, locked (rank 0) and checked
    (``training.run_folder``: never another run's files, never a later state of this one)."""
    import torch

    from training import run_folder

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rank, world, device = _distributed(args.device)
    amp = bool(args.amp)
    if amp and device.type != "cuda":
        print("training: warning: --amp needs CUDA; training in fp32 on the CPU", file=sys.stderr)
        amp = False
    out = Path(args.out)
    run = _Run(args, out, rank, world, device, amp)
    try:
        check = (lambda: run_folder.check_new(out)) if blob is None else (
            lambda: run_folder.check_resume(out, args.resume, blob, args.rewind))
        if run.main_proc:
            run_folder.check_free(out)  # a run writing it now is named, not judged by its files
        check()  # before anything is written there, another run's folder included
        if run.main_proc:
            run_folder.prepare(out)
            run.lock = run_folder.lock(out)
        run.rewind_from = check()  # again, holding the lock: a run may have ended in between
    except BaseException:
        run.close()
        raise
    return run


def _build(run: _Run, blob: dict[str, Any] | None) -> None:
    """Model, datasets, loaders, DDP wrapping, optimiser, schedule and gradient scaler."""
    import torch

    from training.loop import cosine_schedule, seed_all
    from training.model import DetectGraph, FullGraph

    a = run.args
    seed_all(a.seed)
    run.meta, net = _meta_and_model(a, blob)
    run.train_ds, run.val_ds = _datasets(a, run.meta)
    run.train_dl, run.val_dl, run.gen = _loaders(a, run.train_ds, run.val_ds, run.world, run.device)
    if a.sync_bn and run.world > 1 and run.device.type == "cuda":  # PyTorch syncs BatchNorm on GPUs only
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    elif a.sync_bn and run.main_proc:
        print("training: warning: --sync-bn needs DDP on CUDA devices; ignored", file=sys.stderr)
    run.net = net.to(run.device)
    run.model = FullGraph(net) if a.lam > 0 else DetectGraph(net)  # λ = 0: the decoder is not run
    if run.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        run.model = DistributedDataParallel(run.model, device_ids=[run.device.index] if run.device.type == "cuda"
                                            else None, find_unused_parameters=a.lam == 0)
    opt_cls = torch.optim.AdamW if a.optimizer == "adamw" else torch.optim.Adam
    run.optimizer = opt_cls(net.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    steps = len(run.train_dl)
    run.scheduler = cosine_schedule(run.optimizer, a.epochs * steps, round(a.warmup * steps))
    run.scaler = torch.amp.GradScaler("cuda", enabled=run.amp)


def _restore(run: _Run, blob: dict[str, Any] | None) -> None:
    """With --resume: optimiser, schedule, scaler and the best epoch so far."""
    if blob is None:
        return
    try:
        run.optimizer.load_state_dict(blob["optimizer"])
        run.scheduler.load_state_dict(blob["scheduler"])
        if run.amp and blob.get("scaler"):
            run.scaler.load_state_dict(blob["scaler"])
        epoch, best, best_epoch = blob["epoch"], blob.get("best_auc", math.nan), blob.get("best_epoch", 0)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1_000_000 for v in (epoch, best_epoch)):
            raise ValueError(f"epoch {epoch!r} / best_epoch {best_epoch!r} are not epoch numbers")
        run.start, run.best, run.best_epoch = epoch + 1, float(best), best_epoch
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError) as e:
        detail = " ".join(str(e).split())[:160] or type(e).__name__
        raise UserError(f"--resume {run.args.resume}: its optimiser/schedule state does not fit this run ({detail}); "
                        "the checkpoint is damaged or from another version, start a new run") from None
    run.rule = ((blob.get("meta") or {}).get("training") or {}).get("threshold_rule")
    home = Path(run.args.resume).resolve().parent  # the checkpoint's own run folder
    if same_file(run.out, home):
        run.saved_epoch = epoch
    _find_best(run, home)


def _find_best(run: _Run, home: Path) -> None:
    """``run.best_file``: ``home/best.pt`` when it holds the best epoch so far (not another epoch's)."""
    from training.run_folder import best_epoch_of

    run.best_file = home / "best.pt" if run.best_epoch and best_epoch_of(home) == run.best_epoch else None


def _announce(run: _Run) -> None:
    if not run.main_proc:
        return
    if run.rewind_from is not None:
        from training.run_folder import rewind

        best = rewind(run.out, run.args.resume, run.start - 1, run.best_epoch)
        _find_best(run, run.out)
        later = f"epochs {run.start}..{run.rewind_from}" if run.rewind_from > 0 else "its unreadable last.pt"
        best = f"; {best}" if best else ""
        print(f"training: --rewind: {later} of {run.out} discarded{best}; continuing from epoch {run.start - 1}",
              file=sys.stderr)
    print(f"training: {run.meta.encoder} at {run.meta.input_size}px on {run.device} x{run.world}; "
          f"{len(run.train_ds)} train / {len(run.val_ds)} val items; epochs {run.start}..{run.args.epochs}; "
          f"out {run.out}", file=sys.stderr)


def _epoch(run: _Run, epoch: int, signals: Any = None) -> None:
    """Train one epoch; on rank 0 also validate, checkpoint and log it. ``signals``
    (``runtime.detect.StopSignals``): a stop asked for while the epoch is written waits until it is."""
    from tqdm import tqdm

    from training.loop import seed_all, train_one_epoch

    a, t0 = run.args, time.time()
    seed_all(a.seed * 1000 + epoch)  # per-epoch seeds: a resumed run replays the same epochs
    run.gen.manual_seed(a.seed * 1000 + epoch)
    run.train_ds.set_epoch(epoch)
    if hasattr(run.train_dl.sampler, "set_epoch"):  # DistributedSampler, ClassBalancedSampler
        run.train_dl.sampler.set_epoch(epoch)
    with tqdm(total=len(run.train_dl), desc=f"epoch {epoch}/{a.epochs}", disable=not run.main_proc, leave=False,
              file=sys.stderr, dynamic_ncols=True) as bar:
        try:
            parts = train_one_epoch(run.model, run.train_dl, run.optimizer, run.scheduler, run.scaler,
                                    device=run.device, lam=a.lam, recon_kind=a.recon_loss,
                                    real_only=a.recon_real_only, amp=run.amp, progress=bar)
        except FloatingPointError as e:
            raise UserError(f"epoch {epoch}: the {e}, so training stopped; {_kept(run)}; lower --lr (it is "
                            f"{a.lr:g}) or --lambda (it is {a.lam:g})") from None
    if run.world > 1:
        parts = _mean_over_ranks(parts, run.device)
    if not run.main_proc:
        return  # only rank 0 validates and writes; the others go on to the next epoch
    record: dict[str, Any] = {"epoch": epoch, "loss": parts["loss"], "bce": parts["bce"],
                              "recon": parts["recon"], "lr": run.optimizer.param_groups[0]["lr"]}
    record.update(_validate(run.net, run.val_dl, run.val_ds, run.device, run.amp, run.meta.threshold, a.threshold))
    improved = not math.isnan(record["val_auc"]) and (math.isnan(run.best) or record["val_auc"] > run.best)
    if improved:
        run.best, run.best_epoch = record["val_auc"], epoch
    record["seconds"] = round(time.time() - t0, 3)
    by_rule = a.threshold == "eer" or a.threshold.startswith("fpr:")
    if improved or not by_rule:
        run.meta = run.meta.with_(threshold=_threshold(a.threshold, record, run.meta.threshold))
        real_faces = len({v for v, y in zip(run.val_ds.videos, run.val_ds.labels) if y == 0})
        if a.threshold.startswith("fpr:") and "val_fpr_threshold" in record:
            run.rule = {"rule": a.threshold, "target_fpr": float(a.threshold[4:]),
                        "achieved_fpr": record["val_fpr_achieved"], "threshold": run.meta.threshold,
                        "chosen_on": _val_name(a), "split": "val", "real_items": run.val_ds.labels.count(0),
                        "real_faces": real_faces, "epoch": epoch}
        elif a.threshold == "eer" and math.isfinite(record.get("val_eer_threshold") or math.nan):
            run.rule = {"rule": "eer", "threshold": run.meta.threshold, "eer": record["val_eer"],
                        "chosen_on": _val_name(a), "split": "val", "real_items": run.val_ds.labels.count(0),
                        "fake_items": run.val_ds.labels.count(1), "real_faces": real_faces, "epoch": epoch}
    if by_rule and (run.rule is None or run.rule.get("fallback")):
        _fallback(run, epoch)
    if signals is not None:
        signals.begin_frame()  # the checkpoints and the metrics line are written whole
    _save(run, epoch, improved)
    _emit(run.out, record)
    if signals is not None:
        signals.end_frame()


def _kept(run: _Run) -> str:
    """What OUT/last.pt holds now, for a run that stops early."""
    if run.saved_epoch is None:
        return "no epoch finished, so nothing was saved"
    return f"{run.out / 'last.pt'} keeps epoch {run.saved_epoch}"


def _fallback(run: _Run, epoch: int) -> None:
    """The rule of --threshold could not be applied yet (validation gave no defined point): the
    checkpoint keeps the threshold it had, records that it fell back, and stderr says so once."""
    a = run.args
    if run.rule is None:
        print(f"training: warning: --threshold {a.threshold}: no {a.threshold} point on the validation set at epoch "
              f"{epoch} (AUC undefined); the checkpoints keep threshold {run.meta.threshold:g} until one is found "
              "(recorded as a fallback in their metadata)", file=sys.stderr)
    run.rule = {"rule": a.threshold, "fallback": True, "threshold": run.meta.threshold, "chosen_on": _val_name(a),
                "epoch": epoch}


def _save(run: _Run, epoch: int, improved: bool) -> None:
    """OUT/last.pt every epoch, OUT/best.pt when validation AUC improved."""
    from training.checkpoint import save_checkpoint

    a = run.args
    ckpt_meta = run.meta.with_(training=_training_info(a, run.world, epoch, run.best, run.best_epoch, run.rule))
    state = {"optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
             "scaler": run.scaler.state_dict() if run.amp else {}, "epoch": epoch, "best_auc": run.best,
             "best_epoch": run.best_epoch, "args": {k: getattr(a, k) for k in _ARG_KEYS}}
    save_checkpoint(run.out / "last.pt", run.net, ckpt_meta, **state)
    run.saved_epoch = epoch
    if improved:
        save_checkpoint(run.out / "best.pt", run.net, ckpt_meta, **state)
        run.best_file = run.out / "best.pt"


def _finish(run: _Run) -> None:
    if run.world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    if run.main_proc and run.start <= run.args.epochs:
        if not run.best_epoch:
            tail = "no validation AUC, so no best.pt"
        else:
            where = f"-> {run.best_file}" if run.best_file else f"(its checkpoint is not in {run.out})"
            tail = f"best val AUC {run.best:.4f} at epoch {run.best_epoch} {where}"
        if run.rule and run.rule.get("fallback"):
            tail += f"; threshold {run.meta.threshold:g} is a fallback, not the {run.args.threshold} point"
        print(f"training: done; {tail}; last -> {run.out / 'last.pt'}", file=sys.stderr)
