"""Evaluate a checkpoint: ``python -m training.evaluate --ckpt runs/demo/best.pt --data D1 [D2 ...]``.

Runs the detect path (what the edge devices run) over each dataset and reports frame- and
video-level AUC, EER, AP and ACC (ACC at the checkpoint's metadata threshold unless --threshold
is given; a video's score is the mean of its frames' probabilities). Prints one table row per
dataset (several datasets = the cross-dataset table), and writes OUT/metrics.json plus
OUT/roc_<dataset>.png per dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from runtime.errors import UserError, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint written by python -m training.train")
    p.add_argument("--data", required=True, nargs="+", metavar="SPEC",
                   help="datasets: folders with real/ and fake/, CSV manifests, or 'synthetic[:N]' (its held-out faces)")
    p.add_argument("--out", help="output folder (default: <checkpoint folder>/eval)")
    p.add_argument("--threshold", type=float, help="probability threshold for ACC (default: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for PyTorch (0 = its default)")
    return p


def dataset_name(spec: str, taken: set[str]) -> str:
    """A short unique name for a dataset spec: 'synthetic', a folder's name, a manifest's stem."""
    p = Path(spec)
    base = spec if spec.startswith("synthetic") else (p.stem if p.suffix.lower() == ".csv" else p.name or str(p))
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


def _open(spec: str, meta: Any) -> Any:
    from training.data import open_dataset
    from training.dataspec import split_for

    return open_dataset(spec, meta, train=False, split=split_for(spec, "evaluate"))


def evaluate(ckpt: str | Path, specs: list[str], threshold: float | None = None, batch_size: int = 64,
             workers: int = 0, device: str = "auto") -> dict[str, Any]:
    """Metrics per dataset: ``{"checkpoint", "threshold", "meta", "datasets": {name: summary + spec}}``.

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
    for spec in specs:
        ds = _open(spec, meta)
        if len(ds) == 0:
            raise UserError(f"{spec}: no samples found; check the folder or manifest")
        loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                            pin_memory=dev.type == "cuda")
        name = dataset_name(spec, taken)
        with tqdm(total=len(loader), desc=f"evaluate {name}", leave=False, file=sys.stderr,
                  dynamic_ncols=True) as bar:
            probs = predict(net, loader, len(ds), dev, amp=False, progress=bar)
        videos = video_ids(ds.labels, ds.videos)
        s = summary(probs, ds.labels, videos, thr)
        s["spec"] = spec
        s["_scores"] = (probs, list(ds.labels), videos)
        result["datasets"][name] = s
    return result


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
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise UserError(f"--threshold {args.threshold}: expected a probability in 0..1")
    if args.batch_size < 1 or args.workers < 0 or args.threads < 0:
        raise UserError("--batch-size must be at least 1, --workers and --threads at least 0")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from training.report import format_table

    result = evaluate(args.ckpt, args.data, args.threshold, args.batch_size, args.workers, args.device)
    trained = (result["meta"].get("training") or {}).get("data")
    print(f"checkpoint {args.ckpt}: {result['meta']['encoder']} at {result['meta']['input_size']}px"
          + (f", trained on {trained}" if trained else ""))
    print(format_table(list(result["datasets"].items()), result["threshold"]))
    for name, s in result["datasets"].items():
        for note in s["notes"]:
            if not note.startswith("video level: no video ids"):
                print(f"note ({name}): {note}")
    out = Path(args.out) if args.out else Path(args.ckpt).resolve().parent / "eval"
    files = write_outputs(result, out)
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


if __name__ == "__main__":
    run_cli(main, "training.evaluate")
