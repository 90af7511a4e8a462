"""Train the JRC detector: ``python -m training.train --synthetic --out runs/demo``.

loss = BCE(logit, label) + λ · reconstruction loss (Yan et al., arXiv 2211.13424); ``--lambda 0``
is the classification-only ablation. Writes OUT/last.pt every epoch, OUT/best.pt at the best
validation frame AUC (both with weights + runtime/meta.py metadata), and one JSON line per epoch
to stdout and OUT/metrics.jsonl. Multi-GPU: ``torchrun --nproc_per_node=N -m training.train ...``
(DDP; --batch-size is per process; only rank 0 validates, prints and writes).

Synthetic data takes forgery families (``--families sbi,i2g,region,warp,resample`` or ``all``;
``training.forgeries``), recorded in the checkpoint's ``meta.training["families"]``.
``--threshold fpr:X`` stores the lowest threshold that calls at most a share X of the validation
reals fake, with the rule, the rate achieved and the set in ``meta.training["threshold_rule"]``.

This module is the command line (parser, argument checks, ``--resume`` defaults, :func:`main`);
the run's steps are in ``training.run``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

from runtime.errors import EXIT_INTERRUPTED, EXIT_USAGE, Parser, UserError, run_cli
from runtime.meta import ENCODERS, FACE_ALIGNS, MAX_INPUT_SIZE
from training.dataspec import is_synthetic, parse_synthetic, synthetic_spec
from training.run import (
    _ARG_KEYS,
    SYNTHETIC_VAL,
    _announce,
    _build,
    _epoch,
    _finish,
    _restore,
    _start,
)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except for on/off flags and options without one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 or action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m training.train", description=__doc__.split("\n\n")[0],
                                formatter_class=_Help)
    src = p.add_argument_group("data")
    src.add_argument("--data", help="training set: folder with real/ and fake/, a CSV manifest (path,label,video), "
                     "or synthetic[:N]")
    src.add_argument("--val", help="validation set (same forms); default: hold out ~20%% of --data's videos "
                     f"({SYNTHETIC_VAL} for synthetic data: the held-out faces, 5 forgeries each)")
    src.add_argument("--synthetic", action="store_true",
                     help="same as --data synthetic: self-blended forgeries of the offline sample faces")
    src.add_argument("--split", metavar="train|val|test",
                     help="train on the rows of --data whose split column says this (manifests of "
                     "python -m training.datasets: the official split); default: train, or all of --data with --val")
    src.add_argument("--balance", choices=("none", "sampler"), default="none",
                     help="class balance: 'sampler' draws real and fake items equally often (with replacement), "
                     "for sets such as FF++ with 4-6 fakes per real video; recorded in the checkpoint")
    src.add_argument("--families", metavar="A,B|all",
                     help="forgery families of synthetic data (training.forgeries: sbi, i2g, region, warp, "
                     "resample) for --data and the default validation set; recorded in the checkpoint "
                     "(default: the spec's, sbi)")
    src.add_argument("--no-augment", dest="augment", action="store_false",
                     help="no flip/colour/blur/JPEG augmentation (tiny data sets learn faster without)")
    m = p.add_argument_group("model")
    m.add_argument("--encoder", choices=ENCODERS, default="edge",
                   help="edge (MobileNetV3-sized), xception (the paper's), plain (five conv stages, for 64-128 px), "
                   "meso4 or mesoinception4 (MesoNet's convolutions; start them from its deepfake-trained weights "
                   "with --backbone-weights)")
    m.add_argument("--input-size", type=int, default=None,
                   help="crop size (default: 224 edge, 299 xception, 64 plain, 256 meso4/mesoinception4)")
    m.add_argument("--face-align", choices=FACE_ALIGNS, default="box", help="train on crops around the face "
                   "detector's box (default) or aligned by its five landmarks; recorded in the model's metadata, "
                   "so the runtime serves the same (extract the crops with python -m training.extract --align)")
    m.add_argument("--backbone-weights", metavar="FILE", help="local backbone state dict (e.g. ImageNet); for "
                   "meso4/mesoinception4 the MesoNet peers' .pt (benchmarks/assets/mesonet) or the authors' .h5")
    m.add_argument("--init", metavar="CKPT",
                   help="start from this checkpoint's weights (e.g. the bundled recipe's, to fine-tune on your own "
                        "footage): its encoder, input size and model settings, a new optimiser and schedule")
    m.add_argument("--downsample", choices=("stride", "max"), default=None,
                   help="edge encoder: halve the resolution with strided convolutions (MobileNetV3's; default) "
                   "or with 2x2 max-pools after stride-1 ones, which keep pixel-scale blending traces")
    m.add_argument("--edge-style", choices=("v3", "minimal"), default=None,
                   help="edge encoder: v3 (MobileNetV3-Small: 5x5 kernels, hard-swish, squeeze-excitation; default) "
                   "or minimal (the paper's quantization-friendly variant: 3x3, ReLU, no squeeze-excitation, "
                   "depthwise widths in multiples of 16), which runs faster in INT8 on CPUs "
                   "(python -m calibration.quantize --target cpu); recorded in the model's metadata")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=20, help="passes over the training set (the bundled recipe: 16)")
    o.add_argument("--batch-size", type=int, default=32, help="per process")
    o.add_argument("--lr", type=float, default=1e-3, help="peak learning rate, reached after --warmup and decayed "
                   "along a cosine to zero (the bundled recipe: 3e-3)")
    o.add_argument("--optimizer", choices=("adam", "adamw"), default="adamw",
                   help="adamw: weight decay decoupled from the gradient (AdamW); adam: as L2 in the gradient")
    o.add_argument("--weight-decay", type=float, default=1e-4, help="the optimiser's weight decay (0: none)")
    o.add_argument("--warmup", type=float, default=0.1, help="linear warmup, in epochs, before the cosine decay")
    o.add_argument("--lambda", dest="lam", type=float, default=0.1,
                   help="weight of the reconstruction loss (0 = classification only; at 1.0 the reconstruction "
                   "term swamped the classifier: BCE stayed at 0.693 for 16 epochs in 3 of 3 seeds, docs/experiments.md)")
    o.add_argument("--recon-loss", choices=("mse", "l1"), default="mse",
                   help="the reconstruction loss weighted by --lambda: mean squared (mse) or absolute (l1) error "
                   "between the input crop and its reconstruction")
    o.add_argument("--recon-real-only", action="store_true", help="reconstruct real faces only (RECCE-style)")
    o.add_argument("--threshold", default="0.5", metavar="P|eer|fpr:X",
                   help="decision threshold stored in the checkpoint's metadata: a probability, 'eer' for the "
                   "equal-error point of the validation set at the best epoch, or 'fpr:X' for the lowest threshold "
                   "that calls at most a share X of the validation set's real faces fake (an operating point for "
                   "cameras; the target, the rate achieved and the set are stored in the metadata's training)")
    r = p.add_argument_group("run")
    r.add_argument("--out", default="runs/jrc", help="output folder (default for --resume: the checkpoint's)")
    r.add_argument("--resume", metavar="CKPT", help="continue from OUT/last.pt (stored settings are the defaults), "
                   "in the checkpoint's folder unless --out names a folder without a run")
    r.add_argument("--rewind", action="store_true", help="with --resume: allow a checkpoint older than OUT/last.pt "
                   "(e.g. OUT/best.pt); the later epochs are discarded, their lines cut from OUT/metrics.jsonl and "
                   "a best.pt of theirs replaced by the checkpoint (when it is the best) or removed")
    r.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and augmentation "
                   "(the bundled recipe: 1)")
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
        stored = _stored_args(parser, blob.get("args"), args.resume)
        parser.set_defaults(**stored, out=str(Path(args.resume).resolve().parent))
        args = parser.parse_args(argv)
        try:
            _check_args(args)
        except UserError as e:  # a stored setting may be the bad one: name the checkpoint
            raise UserError(f"--resume {args.resume} (its stored settings are the defaults): {e}",
                            e.exit_code) from None
        _check_epochs_left(args, blob)
        return args, blob
    if args.init and not args.resume:  # the starting checkpoint's network is the default
        from runtime.meta import Meta
        from training.checkpoint import read_checkpoint

        start = read_checkpoint(args.init)
        meta = Meta.from_dict(start["meta"], source=args.init)
        parser.set_defaults(encoder=meta.encoder, input_size=meta.input_size)
        args = parser.parse_args(argv)
    _check_args(args)
    return args, blob


def _check_epochs_left(args: argparse.Namespace, blob: dict[str, Any]) -> None:
    """A resume with no epoch left to train is a user error, before any data is read."""
    done = blob.get("epoch")
    if isinstance(done, int) and not isinstance(done, bool) and done >= args.epochs:
        raise UserError(f"--resume {args.resume}: the run already has {done} epochs, so --epochs {args.epochs} "
                        f"leaves none to train; to continue it, pass --epochs N with N > {done} "
                        f"(e.g. --epochs {done + max(1, done // 2)})")


def _stored_args(parser: argparse.ArgumentParser, stored: Any, ckpt: str) -> dict[str, Any]:
    """The settings a checkpoint stored, checked as the command line would be: they become defaults,
    and argparse would report a bad one as a command-line error (exit 2) although the file is at fault."""
    if stored is None:
        return {}
    if not isinstance(stored, dict):
        raise UserError(f"--resume {ckpt}: its stored settings are {type(stored).__name__}, expected a dict; "
                        "the checkpoint is damaged, start a new run")
    actions = {a.dest: a for a in parser._actions}
    out: dict[str, Any] = {}
    for key in _ARG_KEYS:
        if key not in stored:
            continue
        value, action = stored[key], actions[key]
        if action.nargs == 0:  # on/off flags
            ok = isinstance(value, bool)
        elif value is None:
            ok = action.default is None
        elif action.type is None:
            ok = isinstance(value, str)
        else:
            ok = (isinstance(value, (str, int, float)) and not isinstance(value, bool)
                  and not (action.type is int and isinstance(value, float)))
            try:
                value = action.type(value) if ok else value
            except (TypeError, ValueError, OverflowError):
                ok = False
            if action.type is float and ok:
                ok = math.isfinite(value)
        if ok and action.choices is not None:
            ok = value in action.choices
        if not ok:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:60] + "…"
            raise UserError(f"--resume {ckpt}: its stored setting {key} = {shown} is not a valid value for "
                            f"{action.option_strings[0]}; the checkpoint is damaged, start a new run")
        out[key] = value
    return out


def _check_args(a: argparse.Namespace) -> None:
    """The command line's values (a bad one is a usage error, exit 2), before anything is read."""
    if (a.data and a.synthetic and not a.resume) or not (a.data or a.synthetic):
        raise UserError("training data: give exactly one of --data SPEC or --synthetic", EXIT_USAGE)
    if a.rewind and not a.resume:
        raise UserError("--rewind: only with --resume CKPT (it allows resuming from an older state)", EXIT_USAGE)
    if a.synthetic:
        a.data, a.synthetic = "synthetic", False
    if a.split is not None and a.split not in ("train", "val", "test"):
        raise UserError(f"--split {a.split}: expected train, val or test", EXIT_USAGE)
    if a.families:
        if not is_synthetic(a.data):
            raise UserError(f"--families {a.families}: only synthetic data has forgery families; --data is {a.data}",
                            EXIT_USAGE)
        from training.forgeries import parse_families

        try:
            fams = parse_families(a.families)
        except ValueError as e:
            raise UserError(f"--families: {e}", EXIT_USAGE) from None
        a.data = synthetic_spec(parse_synthetic(a.data)[0], fams, like=a.data)
        a.families = ",".join(fams)
    for name, value, low in (("--epochs", a.epochs, 1), ("--batch-size", a.batch_size, 2), ("--workers", a.workers, 0),
                             ("--threads", a.threads, 0)):
        if value < low:
            raise UserError(f"{name} {value}: must be at least {low}", EXIT_USAGE)
    if a.input_size is not None and not 16 <= a.input_size <= MAX_INPUT_SIZE:
        raise UserError(f"--input-size {a.input_size}: expected a crop side of 16..{MAX_INPUT_SIZE} pixels "
                        "(or leave it out for the encoder's default)", EXIT_USAGE)
    if not (a.lr > 0 and math.isfinite(a.lr)):
        raise UserError(f"--lr {a.lr}: must be a positive finite number, e.g. 1e-3", EXIT_USAGE)
    for name, value in (("--lambda", a.lam), ("--weight-decay", a.weight_decay), ("--warmup", a.warmup)):
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"{name} {value}: must be a finite number, 0 or more", EXIT_USAGE)
    a.threshold = str(a.threshold).strip().lower()
    if a.threshold.startswith("fpr:"):
        try:
            target = float(a.threshold[4:])
        except ValueError:
            target = math.nan
        if not 0 <= target < 1:
            raise UserError(f"--threshold {a.threshold}: expected fpr:X with a false-alarm rate X in 0..1, e.g. fpr:0.01",
                            EXIT_USAGE)
    elif a.threshold != "eer":
        try:
            p = float(a.threshold)
        except ValueError:
            p = math.nan
        if not 0 <= p <= 1:
            raise UserError(f"--threshold {a.threshold}: expected a probability in 0..1, 'eer' or 'fpr:X'", EXIT_USAGE)
    if a.backbone_weights and not Path(a.backbone_weights).is_file():
        raise UserError(f"--backbone-weights {a.backbone_weights}: file not found")
    for option, value in (("--downsample", a.downsample), ("--edge-style", a.edge_style)):
        if value is not None and a.encoder != "edge":
            raise UserError(f"{option} {value}: only the edge encoder has this option (--encoder is {a.encoder})",
                            EXIT_USAGE)


def main(argv: list[str] | None = None) -> int:
    """The CLI. SIGINT and SIGTERM stop the run at a safe point (never while an epoch's checkpoints and
    metrics line are written): OUT/last.pt keeps the last finished epoch, exit code 130."""
    from runtime.detect import StopSignals

    signals = StopSignals()  # restored after the run: main() also runs inside other processes (tests)
    signals.install()
    run = None
    try:
        args, blob = _parse(argv)
        run = _start(args, blob)
        _build(run, blob)
        _restore(run, blob)
        _announce(run)
        for epoch in range(run.start, args.epochs + 1):
            _epoch(run, epoch, signals)
        _finish(run)
        return 0
    except KeyboardInterrupt:
        if run is None or run.main_proc:
            print(f"training.train: {_interrupted(run)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signals.restore()
        if run is not None:
            run.close()


def _interrupted(run: Any) -> str:
    """The line of an interrupted run: what is kept and how to go on."""
    if run is None:
        return "interrupted before training started; nothing was written"
    if run.saved_epoch is None and run.args.resume:
        return (f"interrupted before an epoch finished in {run.out}; resume with --resume {run.args.resume} "
                "as before")
    if run.saved_epoch is None:
        return "interrupted before the first epoch finished; nothing to resume, run the command again"
    last = run.out / "last.pt"
    return f"interrupted; {last} keeps epoch {run.saved_epoch}: resume with --resume {last}"


if __name__ == "__main__":
    run_cli(main, "training.train")
