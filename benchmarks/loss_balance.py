"""``python -m benchmarks.loss_balance``: how hard JRC's reconstruction term pulls on the shared encoder.

JRC trains its shared encoder (backbone and bottleneck) with BCE + λ·reconstruction. At λ = 1.0 the
edge encoder's BCE stayed at chance for 16 epochs (docs/experiments.md): the reconstruction term
took the encoder. This tool measures, on training batches (augmented, as training sees them), the
ratio ‖∇ reconstruction‖ / ‖∇ BCE‖ of the two terms' gradients on the shared parameters, at fresh
initialisation (one network per seed) or at a checkpoint's weights (``--ckpt``). λ × ratio is the
reconstruction's pull relative to the classifier's at that λ: the λ that trains one encoder and
input size can be carried to another by keeping that product, before paying for a run. It is a
diagnostic at one point of training, not a substitute for one: the classifier's gradient shrinks
as it learns, so the ratio grows during training.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, Sequence

import numpy as np

from benchmarks import report
from runtime.errors import Parser, UserError, run_cli

PROG = "benchmarks.loss_balance"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--encoder", help="encoder of the fresh networks: edge (default), xception or plain")
    p.add_argument("--input-size", type=int, default=None, help="crop size (default: the encoder's)")
    p.add_argument("--downsample", choices=("stride", "max"), default=None,
                   help="edge encoder: strided convolutions (default) or max-pools, as training.train's option")
    p.add_argument("--ckpt", metavar="PATH", help="measure at this checkpoint's weights instead of fresh ones")
    p.add_argument("--data", default="synthetic:800", help="training data (a crops folder, a manifest or synthetic[:N])")
    p.add_argument("--seeds", default="0,1", help="initialisation and batch seeds, comma-separated")
    p.add_argument("--batches", type=int, default=4, help="batches per seed")
    p.add_argument("--batch-size", type=int, default=8, help="items per batch (default 8)")
    p.add_argument("--lambdas", default="0.1,1", help="λ values to report the pull at, comma-separated")
    p.add_argument("--recon-loss", choices=("mse", "l1"), default="mse",
                   help="the reconstruction loss, as training.train --recon-loss (default mse)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--json", metavar="FILE", help="write settings, machine and results here")
    return p


def shared_parameters(net: Any) -> list[Any]:
    """The parameters both losses train: the backbone's and the bottleneck encoder's."""
    return [p for m in (net.backbone, net.encoder) for p in m.parameters() if p.requires_grad]


def gradient_ratio(net: Any, x: Any, y: Any, kind: str = "mse") -> dict[str, float]:
    """‖∇ recon‖ / ‖∇ BCE‖ on :func:`shared_parameters` for one batch, with both losses' values."""
    import torch

    from training.loop import jrc_loss

    params = shared_parameters(net)
    logit, recon = net.forward_full(x)
    _, bce, rec = jrc_loss(logit, recon, x, y, 1.0, kind)

    def norm(loss: Any, keep: bool) -> float:
        grads = torch.autograd.grad(loss, params, retain_graph=keep, allow_unused=True)
        return math.sqrt(sum(float(g.double().square().sum()) for g in grads if g is not None))

    g_bce, g_rec = norm(bce, True), norm(rec, False)
    return {"ratio": g_rec / g_bce if g_bce > 0 else math.inf, "grad_bce": g_bce, "grad_recon": g_rec,
            "bce": float(bce.detach()), "recon": float(rec.detach())}


def measure(net_for_seed: Any, meta: Any, data: str, seeds: Sequence[int], batches: int, batch_size: int,
            kind: str) -> list[dict[str, Any]]:
    """One row per seed and batch: the network ``net_for_seed(seed)`` in training mode on a seeded draw of ``data``."""
    import torch

    from training.data import open_dataset

    ds = open_dataset(data, meta, train=True)
    if len(ds) < batch_size:
        raise UserError(f"--data {data}: {len(ds)} training items, fewer than --batch-size {batch_size}")
    rows = []
    for seed in seeds:
        net = net_for_seed(seed).train()
        ds.set_epoch(seed)  # each seed its own augmentation draw, as a training epoch gets
        order = np.random.default_rng(seed).permutation(len(ds))
        for b in range(batches):
            pick = [int(i) for i in order[(np.arange(batch_size) + b * batch_size) % len(ds)]]
            items = [ds[i] for i in pick]
            x = torch.stack([it[0] for it in items])
            y = torch.stack([torch.as_tensor(it[1], dtype=torch.float32) for it in items])
            rows.append({"seed": seed, "batch": b, **gradient_ratio(net, x, y, kind)})
    return rows


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    seeds = report.parse_list(a.seeds, int, "--seeds")
    lambdas = report.parse_list(a.lambdas, float, "--lambdas")
    report.check_positive(batches=a.batches, batch_size=a.batch_size, threads=a.threads)
    report.check_writable(a.json, "--json", [("--ckpt", a.ckpt), ("--data", a.data)])
    if a.ckpt:
        given = [flag for flag, v in (("--encoder", a.encoder), ("--input-size", a.input_size),
                                      ("--downsample", a.downsample)) if v is not None]
        if given:
            raise UserError(f"--ckpt {a.ckpt}: the network measured is the checkpoint's; drop {', '.join(given)}")
        from training.checkpoint import checkpoint_file

        checkpoint_file(a.ckpt)
    import torch

    from training.loop import seed_all
    from training.model import build_model, default_meta

    torch.set_num_threads(a.threads)
    if a.ckpt:
        from benchmarks.runners import load_reference

        model, meta = load_reference(a.ckpt)  # threads: set above, for both modes
        fresh = False

        def net_for_seed(seed: int) -> Any:
            seed_all(seed)
            return model
    else:
        meta, fresh = default_meta(a.encoder or "edge", a.input_size, a.downsample), True

        def net_for_seed(seed: int) -> Any:
            seed_all(seed)
            return build_model(meta)

    rows = measure(net_for_seed, meta, a.data, seeds, a.batches, a.batch_size, a.recon_loss)
    ratios = [r["ratio"] for r in rows]
    mean, sd = float(np.mean(ratios)), float(np.std(ratios, ddof=1)) if len(ratios) > 1 else math.nan
    what = a.ckpt or f"fresh {meta.encoder}" + (f" ({a.downsample} downsampling)" if a.downsample else "")
    print(f"{what} at {meta.input_size}px, {len(rows)} batches of {a.batch_size} from {a.data}: "
          f"‖∇ recon‖ / ‖∇ BCE‖ on the shared encoder {mean:.3f} ± {sd:.3f} (min {min(ratios):.3f}, "
          f"max {max(ratios):.3f})")
    pulls = [{"lambda": lam, "pull": lam * mean} for lam in lambdas]
    print(report.table(pulls, [("lambda", "λ"), ("pull", "λ × ratio (reconstruction's pull vs BCE's)")], digits=3))
    result = {**report.envelope(PROG, argv, vars(a)), "encoder": meta.encoder, "input_size": meta.input_size,
              "model": dict(meta.model), "fresh": fresh, "ratio_mean": mean, "ratio_sd": sd, "pulls": pulls, "rows": rows}
    if a.json:
        report.write_json(a.json, result)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
