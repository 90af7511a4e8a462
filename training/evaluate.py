"""Evaluate a checkpoint: ``python -m training.evaluate --ckpt runs/demo/best.pt --data D1 [D2 ...]``.

Runs the detect path (what the edge devices run) over each dataset and reports frame- and
video-level AUC, EER, AP and ACC (ACC at the checkpoint's metadata threshold unless --threshold
is given; a video's score is the mean of its frames' probabilities). Prints one table row per
dataset (several datasets = the cross-dataset table), and writes OUT/metrics.json plus
OUT/roc_<dataset>.png per dataset.

``--protocol CROPS`` evaluates the test splits of the benchmarks that ``python -m training.datasets``
wrote to CROPS (FF++ overall and per manipulation, Celeb-DF v2, DFDC, DFDC-preview) in one table;
``--split`` and ``--by-method`` do the same for any manifest with ``split`` and ``method`` columns.
A per-method row scores that method's fakes against all the dataset's real videos of the split.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from runtime.errors import EXIT_USAGE, Parser, UserError, run_cli
from training.checkpoint import checkpoint_file
from training.outputs import note_replacing, writable_folder


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint written by python -m training.train")
    p.add_argument("--data", nargs="+", metavar="SPEC",
                   help="datasets: folders with real/ and fake/, CSV manifests, or 'synthetic[:N]' (its held-out faces)")
    p.add_argument("--protocol", metavar="CROPS", help="the output folder of python -m training.datasets: evaluate "
                   "the test split of every benchmark in it, FF++ also per manipulation (= --split test --by-method)")
    p.add_argument("--split", choices=("train", "val", "test"),
                   help="evaluate only the rows of each manifest whose split column says this")
    p.add_argument("--by-method", action="store_true",
                   help="also one row per manipulation method (manifests with a method column)")
    p.add_argument("--out", help="output folder (default: <checkpoint folder>/eval)")
    p.add_argument("--threshold", type=float, help="probability threshold for ACC (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=64, help="faces per forward pass")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="data loader processes")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for PyTorch (0 = its default)")
    return p


def dataset_name(spec: str, taken: set[str]) -> str:
    """A short unique name for a dataset spec: 'synthetic', a folder's name, a manifest's stem."""
    p = Path(spec)
    base = spec if spec.startswith("synthetic") else (p.stem if p.suffix.lower() == ".csv" else p.name or str(p))
    if p.name == "manifest.csv" and p.parent.name:  # training.datasets / training.extract output: the folder's name
        base = p.parent.name
    return unique_name(base, taken)


def unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_2``, ``base_3``, … when taken; the name is added to ``taken``."""
    name, k = base, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _device(arg: str) -> Any:
    import torch

    if arg == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if arg.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {arg}: no CUDA device is visible to PyTorch; use --device cpu")
    try:
        return torch.device(arg)
    except RuntimeError:
        raise UserError(f"--device {arg}: expected auto, cpu, cuda or cuda:N") from None


PROTOCOL_ORDER = ("ffpp-c23", "ffpp-raw", "ffpp-c40", "celebdf-v2", "dfdc", "dfdcp")


def protocol_specs(root: str | Path) -> list[str]:
    """The manifests of ``python -m training.datasets`` below ``root``, in the protocol's order."""
    root = Path(root)
    found = sorted(p.parent.name for p in root.glob("*/manifest.csv"))
    if not found:
        raise UserError(f"--protocol {root}: no <dataset>/manifest.csv inside; prepare the benchmarks with "
                        f"python -m training.datasets --root DATA --out {root}")
    rank = {n: i for i, n in enumerate(PROTOCOL_ORDER)}
    return [str(root / n / "manifest.csv") for n in sorted(found, key=lambda n: (rank.get(n, len(rank)), n))]


def _open(spec: str, meta: Any, split: str | None = None) -> Any:
    from training.data import open_dataset
    from training.dataspec import is_synthetic, split_for

    use = split if split is not None and not is_synthetic(spec) else split_for(spec, "evaluate")
    return open_dataset(spec, meta, train=False, split=use)


def method_subsets(ds: Any) -> list[tuple[str, list[int]]]:
    """(method, item indices) per fake method of a manifest with a method column: its fakes + every real."""
    methods = (getattr(ds.items, "columns", None) or {}).get("method")
    if not methods:
        return []
    reals = [i for i, y in enumerate(ds.labels) if not y]
    fake_methods = sorted({m for m, y in zip(methods, ds.labels) if y and m})
    if len(fake_methods) < 2:
        return []
    return [(m, sorted(reals + [i for i, (mm, y) in enumerate(zip(methods, ds.labels)) if y and mm == m]))
            for m in fake_methods]


def evaluate(ckpt: str | Path, specs: list[str], threshold: float | None = None, batch_size: int = 64,
             workers: int = 0, device: str = "auto", split: str | None = None,
             by_method: bool = False, ready: Callable[[], None] | None = None) -> dict[str, Any]:
    """Metrics per dataset: ``{"checkpoint", "threshold", "meta", "datasets": {name: summary + spec}}``.

    The checkpoint and every dataset are opened before the first is scored (a bad second dataset is
    said at once, not after the first one's scoring); ``ready`` is called then, before the scoring.
    The probabilities and labels ride along under the private key ``_scores`` for the ROC plots.
    """
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from training.checkpoint import load_model
    from training.loop import predict, video_ids
    from training.metrics import summary

    dev = _device(device)
    net, meta = load_model(ckpt, map_location="cpu")
    net.to(dev)
    thr = meta.threshold if threshold is None else float(threshold)
    result: dict[str, Any] = {
        "checkpoint": str(ckpt), "threshold": thr,
        "meta": {"encoder": meta.encoder, "input_size": meta.input_size, "threshold": meta.threshold,
                 "training": meta.training},
        "datasets": {},
    }
    taken: set[str] = set()
    opened = []
    for spec in specs:
        ds = _open(spec, meta, split)
        if len(ds) == 0:
            raise UserError(f"{spec}: no samples found; check the folder or manifest")
        opened.append((spec, ds))
    if ready is not None:
        ready()
    for spec, ds in opened:
        loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                            pin_memory=dev.type == "cuda")
        name = dataset_name(spec, taken)
        with tqdm(total=len(loader), desc=f"evaluate {name}", leave=False, file=sys.stderr,
                  dynamic_ncols=True) as bar:
            probs = predict(net, loader, len(ds), dev, amp=False, progress=bar)
        videos = video_ids(ds.labels, ds.videos)
        s = summary(probs, ds.labels, videos, thr)
        s["spec"] = spec
        s["split"] = split
        s["_scores"] = (probs, list(ds.labels), videos)
        result["datasets"][name] = s
        for method, idx in (method_subsets(ds) if by_method else []):
            sub_videos = [videos[i] for i in idx]
            sub = summary(probs[idx], [ds.labels[i] for i in idx], sub_videos, thr)
            sub.update(spec=spec, split=split, method=method,
                       _scores=(probs[idx], [ds.labels[i] for i in idx], sub_videos))
            result["datasets"][unique_name(f"{name}/{method}", taken)] = sub
    return result


def false_alarm_lines(result: dict[str, Any]) -> str:
    """One line per dataset: the share of its real faces (frames, videos) called fake at the threshold,
    and how the checkpoint's threshold was chosen (``--threshold fpr:X`` records it)."""
    thr = result["threshold"]
    rule = (result["meta"].get("training") or {}).get("threshold_rule")
    lines = [f"false-alarm rate (real faces called fake, p >= {thr:g})"
             + (f"; threshold chosen for FPR {rule.get('target_fpr')} on {rule.get('chosen_on')} "
                f"({rule.get('real_items')} real items, {rule.get('real_faces')} faces; achieved {rule.get('achieved_fpr')})"
                if isinstance(rule, dict) and thr == result["meta"].get("threshold") else "")]
    for name, s in result["datasets"].items():
        f, v = s["frame"], s.get("video") or {}
        frame = "n/a" if f["n_real"] == 0 else f"{100 * f['far']:.1f} % of {f['n_real']} real frames"
        video = f"; {100 * v['far']:.1f} % of {v['n_real']} real videos" if v.get("n_real") else ""
        lines.append(f"  {name}: {frame}{video}")
    return "\n".join(lines)


def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    """OUT/metrics.json (strict JSON: NaN → null) and OUT/roc_<name>.png per dataset."""
    from training.metrics import roc_curve, video_scores
    from training.report import file_stem, json_safe, write_roc_png

    out.mkdir(parents=True, exist_ok=True)
    written = []
    clean = {**result, "datasets": {}}
    for name, s in result["datasets"].items():
        probs, labels, videos = s["_scores"]
        clean["datasets"][name] = {k: v for k, v in s.items() if k != "_scores"}
        curves = []
        if s["frame"]["n_real"] and s["frame"]["n_fake"]:
            fpr, tpr, _ = roc_curve(probs, labels)
            curves.append(("frames", fpr, tpr, s["frame"]["auc"]))
        v = s.get("video")
        if v and v["n_real"] and v["n_fake"] and v["n"] < s["frame"]["n"]:
            vp, vy, _ = video_scores(probs, labels, videos)
            fpr, tpr, _ = roc_curve(vp, vy)
            curves.append(("videos", fpr, tpr, v["auc"]))
        written.append(write_roc_png(out / f"roc_{file_stem(name)}.png", curves, f"ROC: {name}"))
    path = out / "metrics.json"
    path.write_text(json.dumps(json_safe(clean), indent=2, allow_nan=False) + "\n")
    return [path, *written]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if bool(args.data) == bool(args.protocol):
        raise UserError("datasets: give --data SPEC [SPEC ...] or --protocol CROPS (the output of "
                        "python -m training.datasets), not both")
    if args.protocol:
        args.data = protocol_specs(args.protocol)
        args.split = args.split or "test"
        args.by_method = True
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise UserError(f"--threshold {args.threshold}: expected a probability in 0..1", EXIT_USAGE)
    if args.batch_size < 1 or args.workers < 0 or args.threads < 0:
        raise UserError("--batch-size must be at least 1, --workers and --threads at least 0", EXIT_USAGE)
    checkpoint_file(args.ckpt)  # a missing or empty file is refused before PyTorch's import
    out = Path(args.out) if args.out else Path(args.ckpt).resolve().parent / "eval"
    writable_folder(out, "--out")  # before the scoring, not after it
    say_replacing = note_replacing("training.evaluate", out / "metrics.json",
                                   " (an earlier evaluation) and its ROC plots", say=False)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from training.report import format_table

    result = evaluate(args.ckpt, args.data, args.threshold, args.batch_size, args.workers, args.device,
                      args.split, args.by_method, ready=say_replacing)  # said once the inputs are open
    trained = (result["meta"].get("training") or {}).get("data")
    print(f"checkpoint {args.ckpt}: {result['meta']['encoder']} at {result['meta']['input_size']}px"
          + (f", trained on {trained}" if trained else "")
          + (f"; {args.split} split of each dataset" if args.split else ""))
    print(format_table(list(result["datasets"].items()), result["threshold"]))
    print(false_alarm_lines(result))
    for name, s in result["datasets"].items():
        for note in s["notes"]:
            if not note.startswith("video level: no video ids"):
                print(f"note ({name}): {note}")
    files = write_outputs(result, out)
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


if __name__ == "__main__":
    run_cli(main, "training.evaluate")
