"""Train the JRC detector: ``python -m training.train --synthetic --out runs/demo``.

loss = BCE(logit, label) + λ · reconstruction loss (Yan et al., arXiv 2211.13424); ``--lambda 0``
is the classification-only ablation. Writes OUT/last.pt every epoch, OUT/best.pt at the best
validation frame AUC (both with weights + runtime/meta.py metadata), and one JSON line per epoch
to stdout and OUT/metrics.jsonl. Multi-GPU: ``torchrun --nproc_per_node=N -m training.train ...``
(DDP; --batch-size is per process; only rank 0 validates, prints and writes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from runtime.errors import UserError, run_cli
from runtime.meta import FACE_ALIGNS

SYNTHETIC_VAL = "synthetic:200"  # default validation for synthetic runs: 20 held-out faces, 5 forgeries each
_ARG_KEYS = ("data", "val", "synthetic", "augment", "encoder", "input_size", "epochs", "batch_size", "lr", "optimizer",
             "weight_decay", "warmup", "lam", "recon_loss", "recon_real_only", "backbone_weights", "seed",
             "workers", "amp", "sync_bn", "threshold")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except for on/off flags and options without one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 or action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0],
                                formatter_class=_Help)
    src = p.add_argument_group("data")
    src.add_argument("--data", help="training set: folder with real/ and fake/, a CSV manifest (path,label,video), "
                     "or synthetic[:N]")
    src.add_argument("--val", help="validation set (same forms); default: hold out ~20%% of --data's videos "
                     f"({SYNTHETIC_VAL} for synthetic data: the held-out faces, 5 forgeries each)")
    src.add_argument("--synthetic", action="store_true",
                     help="same as --data synthetic: self-blended forgeries of the offline sample faces")
    src.add_argument("--no-augment", dest="augment", action="store_false",
                     help="no flip/colour/blur/JPEG augmentation (tiny data sets learn faster without)")
    m = p.add_argument_group("model")
    m.add_argument("--encoder", choices=("edge", "xception"), default="edge")
    m.add_argument("--input-size", type=int, default=None, help="crop size (default: 224 edge, 299 xception)")
    m.add_argument("--face-align", choices=FACE_ALIGNS, default="box", help="train on crops around the face "
                   "detector's box (default) or aligned by its five landmarks; recorded in the model's metadata, "
                   "so the runtime serves the same (extract the crops with python -m training.extract --align)")
    m.add_argument("--backbone-weights", metavar="FILE", help="local backbone state dict (e.g. ImageNet)")
    m.add_argument("--downsample", choices=("stride", "max"), default=None,
                   help="edge encoder: halve the resolution with strided convolutions (MobileNetV3's; default) "
                   "or with 2x2 max-pools after stride-1 ones, which keep pixel-scale blending traces")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=20)
    o.add_argument("--batch-size", type=int, default=32, help="per process")
    o.add_argument("--lr", type=float, default=1e-3)
    o.add_argument("--optimizer", choices=("adam", "adamw"), default="adamw")
    o.add_argument("--weight-decay", type=float, default=1e-4)
    o.add_argument("--warmup", type=float, default=0.0, help="linear warmup, in epochs, before the cosine decay")
    o.add_argument("--lambda", dest="lam", type=float, default=1.0,
                   help="weight of the reconstruction loss (0 = classification only)")
    o.add_argument("--recon-loss", choices=("mse", "l1"), default="mse")
    o.add_argument("--recon-real-only", action="store_true", help="reconstruct real faces only (RECCE-style)")
    o.add_argument("--threshold", default="0.5", metavar="P|eer",
                   help="decision threshold stored in the checkpoint's metadata: a probability, or 'eer' for the "
                   "equal-error point of the validation set at the best epoch")
    r = p.add_argument_group("run")
    r.add_argument("--out", default="runs/jrc", help="output folder (default for --resume: the checkpoint's)")
    r.add_argument("--resume", metavar="CKPT", help="continue from OUT/last.pt (stored settings are the defaults)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="data loader processes")
    r.add_argument("--amp", action="store_true", help="mixed precision (CUDA only; ignored with a warning on CPU)")
    r.add_argument("--sync-bn", action="store_true", help="synchronise BatchNorm statistics across DDP processes (CUDA only)")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (torchrun: cuda:LOCAL_RANK)")
    r.add_argument("--threads", type=int, default=0,
                   help="CPU threads for PyTorch (0 = its default; 1 is fastest on a shared, busy CPU)")
    return p


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any] | None]:
    """Parse; with --resume, the checkpoint's stored settings become the defaults."""
    parser = build_parser()
    args = parser.parse_args(argv)
    blob = None
    if args.resume:
        from training.checkpoint import read_checkpoint

        blob = read_checkpoint(args.resume)
        stored = blob.get("args") if isinstance(blob.get("args"), dict) else {}
        parser.set_defaults(**{k: v for k, v in stored.items() if k in _ARG_KEYS},
                            out=str(Path(args.resume).resolve().parent))
        args = parser.parse_args(argv)
    _check_args(args)
    return args, blob


def _check_args(a: argparse.Namespace) -> None:
    if (a.data and a.synthetic and not a.resume) or not (a.data or a.synthetic):
        raise UserError("training data: give exactly one of --data SPEC or --synthetic")
    if a.synthetic:
        a.data, a.synthetic = "synthetic", False
    for name, value, low in (("--epochs", a.epochs, 1), ("--batch-size", a.batch_size, 2), ("--workers", a.workers, 0),
                             ("--threads", a.threads, 0)):
        if value < low:
            raise UserError(f"{name} {value}: must be at least {low}")
    if not (a.lr > 0 and math.isfinite(a.lr)):
        raise UserError(f"--lr {a.lr}: must be a positive number")
    if a.lam < 0 or a.weight_decay < 0 or a.warmup < 0:
        raise UserError("--lambda, --weight-decay and --warmup must not be negative")
    a.threshold = str(a.threshold).strip().lower()
    if a.threshold != "eer":
        try:
            p = float(a.threshold)
        except ValueError:
            p = math.nan
        if not 0 <= p <= 1:
            raise UserError(f"--threshold {a.threshold}: expected a probability in 0..1 or 'eer'")
    if a.backbone_weights and not Path(a.backbone_weights).is_file():
        raise UserError(f"--backbone-weights {a.backbone_weights}: file not found")


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


def _is_synthetic(spec: str) -> bool:
    return str(spec).strip().split(":")[0] == "synthetic"


def _datasets(a: argparse.Namespace, meta: Any) -> tuple[Any, Any]:
    """Train/val sets. Without --val, a stable ~80/20 split of --data by video (face) id; synthetic
    specs always use that split (they draw on the same faces), so no face is in both."""
    from training.data import open_dataset

    val_spec = a.val or (SYNTHETIC_VAL if _is_synthetic(a.data) else a.data)
    train_split = "train" if not a.val or _is_synthetic(a.data) else None
    val_split = "val" if not a.val or _is_synthetic(val_spec) else None
    augment = None if a.augment else False
    return (open_dataset(a.data, meta, train=True, split=train_split, seed=a.seed, augment=augment),
            open_dataset(val_spec, meta, train=False, split=val_split, seed=0))  # one fixed val set


def _loaders(a: argparse.Namespace, train_ds: Any, val_ds: Any, world: int, device: Any) -> tuple[Any, Any, Any]:
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    from training.loop import worker_init

    if len(train_ds) < a.batch_size * world:
        raise UserError(f"training set: {len(train_ds)} items, fewer than one batch ({a.batch_size} x {world} "
                        "processes); lower --batch-size or add data")
    gen = torch.Generator()
    sampler = (DistributedSampler(train_ds, shuffle=True, seed=a.seed, drop_last=True) if world > 1
               else RandomSampler(train_ds, generator=gen))
    common = {"num_workers": a.workers, "pin_memory": device.type == "cuda", "worker_init_fn": worker_init}
    train = DataLoader(train_ds, batch_size=a.batch_size, sampler=sampler, drop_last=True, generator=gen, **common)
    val = DataLoader(val_ds, batch_size=a.batch_size, shuffle=False, **common) if val_ds is not None else None
    return train, val, gen


def _meta_and_model(a: argparse.Namespace, blob: dict[str, Any] | None) -> tuple[Any, Any]:
    from runtime.meta import Meta
    from training.model import build_model, default_meta

    if blob is not None:
        meta = Meta.from_dict(blob["meta"], source=a.resume)
        if a.encoder != meta.encoder or (a.input_size or meta.input_size) != meta.input_size:
            raise UserError(f"--resume {a.resume}: the checkpoint is {meta.encoder} at {meta.input_size}; "
                            "resume with the same --encoder/--input-size or start a new run")
        net = build_model(meta)
        net.load_state_dict(blob["model"])
        return meta, net
    meta = default_meta(a.encoder, a.input_size).with_(face_align=a.face_align)
    if a.downsample:
        if a.encoder != "edge":
            raise UserError(f"--downsample {a.downsample}: only the edge encoder has this option")
        meta = meta.with_(model={**meta.model, "downsample": a.downsample})
    net = build_model(meta)
    if a.backbone_weights:
        from training.model import load_backbone_weights

        load_backbone_weights(net, a.backbone_weights)
    return meta.with_(model=net.config()), net


def _training_info(a: argparse.Namespace, world: int, epoch: int, best: float, best_epoch: int) -> dict[str, Any]:
    val = a.val or (SYNTHETIC_VAL if _is_synthetic(a.data) else f"{a.data} (held-out ~20% of videos)")
    return {"data": a.data, "val": val,
            "epochs": a.epochs, "epochs_done": epoch, "lambda": a.lam, "recon_loss": a.recon_loss,
            "recon_real_only": a.recon_real_only, "optimizer": a.optimizer, "lr": a.lr,
            "batch_size": a.batch_size, "world_size": world, "seed": a.seed, "threshold": a.threshold,
            "best_val_auc": None if math.isnan(best) else best, "best_epoch": best_epoch or None}


def _validate(net: Any, val_dl: Any, val_ds: Any, device: Any, amp: bool, threshold: float) -> dict[str, float]:
    """Frame-level AUC/EER/AP/ACC (and video AUC) of the detect path on the validation set."""
    from tqdm import tqdm

    from training.loop import predict, video_ids
    from training.metrics import summary

    with tqdm(total=len(val_dl), desc="validate", leave=False, file=sys.stderr, dynamic_ncols=True) as bar:
        probs = predict(net, val_dl, len(val_ds), device, amp, progress=bar)
    s = summary(probs, val_ds.labels, video_ids(val_ds.labels, val_ds.videos), threshold)
    for note in s["notes"]:
        if note.startswith("frame"):
            print(f"training: validation {note}", file=sys.stderr)
    f = s["frame"]
    return {"val_auc": f["auc"], "val_eer": f["eer"], "val_eer_threshold": f["eer_threshold"], "val_ap": f["ap"],
            "val_acc": f["acc"],
            "val_video_auc": (s["video"] or {}).get("auc", math.nan)}


def _threshold(spec: str, record: dict[str, Any], current: float) -> float:
    """The decision threshold for this epoch's checkpoint: fixed, or the validation EER point."""
    if spec != "eer":
        return float(spec)
    at = record.get("val_eer_threshold", math.nan)
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


def main(argv: list[str] | None = None) -> int:
    args, blob = _parse(argv)
    import torch
    from tqdm import tqdm

    from training.checkpoint import save_checkpoint
    from training.loop import cosine_schedule, seed_all, train_one_epoch
    from training.model import DetectGraph, FullGraph

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rank, world, device = _distributed(args.device)
    main_proc = rank == 0
    amp = bool(args.amp)
    if amp and device.type != "cuda":
        print("training: warning: --amp needs CUDA; training in fp32 on the CPU", file=sys.stderr)
        amp = False
    out = Path(args.out)
    if blob is None and (out / "last.pt").exists():
        raise UserError(f"--out {out}: holds last.pt from an earlier run; continue it with --resume "
                        f"{out / 'last.pt'} or choose another --out")
    seed_all(args.seed)
    meta, net = _meta_and_model(args, blob)
    train_ds, val_ds = _datasets(args, meta)
    train_dl, val_dl, gen = _loaders(args, train_ds, val_ds, world, device)
    if args.sync_bn and world > 1 and device.type == "cuda":  # PyTorch syncs BatchNorm on GPUs only
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    elif args.sync_bn and main_proc:
        print("training: warning: --sync-bn needs DDP on CUDA devices; ignored", file=sys.stderr)
    net.to(device)
    model = FullGraph(net) if args.lam > 0 else DetectGraph(net)  # λ = 0: the decoder is not run
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                        find_unused_parameters=args.lam == 0)
    opt_cls = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = len(train_dl)
    scheduler = cosine_schedule(optimizer, args.epochs * steps, round(args.warmup * steps))
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    start, best, best_epoch = 1, math.nan, 0
    if blob is not None:
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
        if amp and blob.get("scaler"):
            scaler.load_state_dict(blob["scaler"])
        start, best, best_epoch = int(blob["epoch"]) + 1, float(blob.get("best_auc", math.nan)), int(blob.get("best_epoch", 0))
        if start > args.epochs and main_proc:
            print(f"training: {args.resume} already finished epoch {start - 1} of {args.epochs}; "
                  "pass a larger --epochs to train on", file=sys.stderr)
    if main_proc:
        out.mkdir(parents=True, exist_ok=True)
        if blob is None:
            (out / "metrics.jsonl").write_text("")
        print(f"training: {meta.encoder} at {meta.input_size}px on {device} x{world}; {len(train_ds)} train / "
              f"{len(val_ds)} val items; epochs {start}..{args.epochs}; out {out}", file=sys.stderr)
    for epoch in range(start, args.epochs + 1):
        t0 = time.time()
        seed_all(args.seed * 1000 + epoch)  # per-epoch seeds: a resumed run replays the same epochs
        gen.manual_seed(args.seed * 1000 + epoch)
        train_ds.set_epoch(epoch)
        if world > 1:
            train_dl.sampler.set_epoch(epoch)
        with tqdm(total=steps, desc=f"epoch {epoch}/{args.epochs}", disable=not main_proc, leave=False,
                  file=sys.stderr, dynamic_ncols=True) as bar:
            parts = train_one_epoch(model, train_dl, optimizer, scheduler, scaler, device=device, lam=args.lam,
                                    recon_kind=args.recon_loss, real_only=args.recon_real_only, amp=amp,
                                    progress=bar)
        if world > 1:
            parts = _mean_over_ranks(parts, device)
        if not main_proc:
            continue  # only rank 0 validates and writes; the others go on to the next epoch
        record: dict[str, Any] = {"epoch": epoch, "loss": parts["loss"], "bce": parts["bce"],
                                  "recon": parts["recon"], "lr": optimizer.param_groups[0]["lr"]}
        record.update(_validate(net, val_dl, val_ds, device, amp, meta.threshold))
        improved = not math.isnan(record["val_auc"]) and (math.isnan(best) or record["val_auc"] > best)
        if improved:
            best, best_epoch = record["val_auc"], epoch
        record["seconds"] = round(time.time() - t0, 3)
        threshold = _threshold(args.threshold, record, meta.threshold)
        meta = meta.with_(threshold=threshold) if improved or args.threshold != "eer" else meta
        ckpt_meta = meta.with_(training=_training_info(args, world, epoch, best, best_epoch))
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict() if amp else {}, "epoch": epoch, "best_auc": best,
                 "best_epoch": best_epoch, "args": {k: getattr(args, k) for k in _ARG_KEYS}}
        save_checkpoint(out / "last.pt", net, ckpt_meta, **state)
        if improved:
            save_checkpoint(out / "best.pt", net, ckpt_meta, **state)
        _emit(out, record)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    if main_proc and start <= args.epochs:
        tail = f"best val AUC {best:.4f} at epoch {best_epoch} -> {out / 'best.pt'}" if best_epoch else "no validation AUC"
        print(f"training: done; {tail}; last -> {out / 'last.pt'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main, "training.train")
