"""MesoNet-shaped Keras weight files with random weights, and a numpy forward pass read straight from them.

:func:`write_meso_h5` writes the layout Keras 2 saves (``layer_names`` in topological order, each
layer's ``weight_names`` and arrays; conv kernels (kh, kw, in, out)), numbering the layers in the
order the authors' ``classifiers.py`` creates them, so ``layer_names`` interleaves MesoInception's
equal-shaped branches as the published files do. :func:`keras_forward` is an independent
re-implementation of that code's forward pass in NHWC numpy (ReLU before BatchNorm, 'same'
convolutions, TensorFlow's 'same' max-pools, (H, W, C) flatten, LeakyReLU 0.1), returning the
pre-sigmoid output: the logit of *real*, as the authors' labels have it. Nothing here imports the
project's MesoNet code: it is the yardstick the conversion is checked against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (a, b, c, d) of the two inception layers, as in classifiers.py
INCEPTION = ((1, 4, 4, 2), (2, 4, 4, 2))
EPS = 1e-3


def _meso4_plan() -> tuple[list[tuple[str, tuple[int, ...]]], list[str]]:
    """Weighted layers (name, kernel shape or channels) in creation order, and layer_names in topological order."""
    convs = [("conv2d_1", (3, 3, 3, 8)), ("conv2d_2", (5, 5, 8, 8)), ("conv2d_3", (5, 5, 8, 16)),
             ("conv2d_4", (5, 5, 16, 16))]
    bns = [(f"batch_normalization_{i + 1}", (c,)) for i, c in enumerate((8, 8, 16, 16))]
    dense = [("dense_1", (1024, 16)), ("dense_2", (16, 1))]
    topo = ["input_1"]
    for i in range(4):
        topo += [convs[i][0], bns[i][0], f"max_pooling2d_{i + 1}"]
    topo += ["flatten_1", "dropout_1", "dense_1", "leaky_re_lu_1", "dropout_2", "dense_2"]
    return convs + bns + dense, topo


def _inception_convs(first: int, cin: int, a: int, b: int, c: int, d: int) -> list[tuple[str, tuple[int, ...]]]:
    shapes = [(1, 1, cin, a), (1, 1, cin, b), (3, 3, b, b), (1, 1, cin, c), (3, 3, c, c), (1, 1, cin, d), (3, 3, d, d)]
    return [(f"conv2d_{first + i}", s) for i, s in enumerate(shapes)]


def _inception_plan() -> tuple[list[tuple[str, tuple[int, ...]]], list[str]]:
    l1 = _inception_convs(1, 3, *INCEPTION[0])
    l2 = _inception_convs(8, sum(INCEPTION[0]), *INCEPTION[1])
    convs = l1 + l2 + [("conv2d_15", (5, 5, sum(INCEPTION[1]), 16)), ("conv2d_16", (5, 5, 16, 16))]
    bns = [(f"batch_normalization_{i + 1}", (c,)) for i, c in enumerate((sum(INCEPTION[0]), sum(INCEPTION[1]), 16, 16))]
    dense = [("dense_1", (1024, 16)), ("dense_2", (16, 1))]
    # Keras's topological order: the branches' first convolutions, then the second ones
    topo = ["input_1"]
    for k, layer in enumerate((l1, l2)):
        names = [n for n, _ in layer]
        topo += [names[1], names[3], names[5], names[0], names[2], names[4], names[6], f"concatenate_{k + 1}",
                 f"batch_normalization_{k + 1}", f"max_pooling2d_{k + 1}"]
    topo += ["conv2d_15", "batch_normalization_3", "max_pooling2d_3", "conv2d_16", "batch_normalization_4",
             "max_pooling2d_4", "flatten_1", "dropout_1", "dense_1", "leaky_re_lu_1", "dropout_2", "dense_2"]
    return convs + bns + dense, topo


PLANS = {"meso4": _meso4_plan, "mesoinception4": _inception_plan}


def random_weights(arch: str, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Layer name → {weight name: array}, scaled so that logits come out at a few units."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, shape in PLANS[arch]()[0]:
        if name.startswith("conv2d"):
            fan_in = shape[0] * shape[1] * shape[2]
            out[name] = {"kernel": rng.normal(0, np.sqrt(2 / fan_in), shape), "bias": rng.uniform(-0.1, 0.1, shape[3])}
        elif name.startswith("batch"):
            out[name] = {"gamma": rng.uniform(0.5, 1.5, shape), "beta": rng.uniform(-0.2, 0.2, shape),
                         "moving_mean": rng.uniform(0.0, 0.5, shape), "moving_variance": rng.uniform(0.2, 1.0, shape)}
        else:
            out[name] = {"kernel": rng.normal(0, 1 / np.sqrt(shape[0]), shape), "bias": rng.uniform(-0.1, 0.1, shape[1])}
    return {k: {w: v.astype(np.float32) for w, v in d.items()} for k, d in out.items()}


def write_meso_h5(path: Path, arch: str, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Write a Keras-2-layout weights file of ``arch`` with random weights; returns the weights."""
    import h5py

    weights = random_weights(arch, seed)
    _, topo = PLANS[arch]()
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in topo])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.5"
        for name in topo:
            g = f.create_group(name)
            names = [f"{name}/{w}:0" for w in weights.get(name, {})]
            g.attrs["weight_names"] = np.array([n.encode() for n in names]) if names else np.array([], np.float64)
            for w, arr in weights.get(name, {}).items():
                g.create_dataset(f"{name}/{w}:0", data=arr)
    return weights


# --- the forward pass, NHWC -----------------------------------------------------------------------
def _conv_same(x: np.ndarray, layer: dict[str, np.ndarray], dilation: int = 1) -> np.ndarray:
    k = layer["kernel"].astype(np.float64)
    pad = dilation * (k.shape[0] - 1) // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (k.shape[3],))
    for i in range(k.shape[0]):
        for j in range(k.shape[1]):
            out += xp[:, i * dilation:i * dilation + h, j * dilation:j * dilation + w, :] @ k[i, j]
    return np.maximum(out + layer["bias"], 0.0)  # every convolution of MesoNet has a ReLU


def _bn(x: np.ndarray, layer: dict[str, np.ndarray]) -> np.ndarray:
    return (x - layer["moving_mean"]) / np.sqrt(layer["moving_variance"] + EPS) * layer["gamma"] + layer["beta"]


def pool_same(x: np.ndarray, k: int) -> np.ndarray:
    """TensorFlow's max-pool, stride k, padding 'same': -inf padding, total // 2 of it before."""
    n, h, w, c = x.shape
    oh, ow = -(-h // k), -(-w // k)
    ph, pw = max((oh - 1) * k + k - h, 0), max((ow - 1) * k + k - w, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), constant_values=-np.inf)
    return xp.reshape(n, oh, k, ow, k, c).max(axis=(2, 4))


def _inception(x: np.ndarray, wts: dict[str, dict[str, np.ndarray]], first: int) -> np.ndarray:
    c = [wts[f"conv2d_{first + i}"] for i in range(7)]
    x1 = _conv_same(x, c[0])
    x2 = _conv_same(_conv_same(x, c[1]), c[2])
    x3 = _conv_same(_conv_same(x, c[3]), c[4], dilation=2)
    x4 = _conv_same(_conv_same(x, c[5]), c[6], dilation=3)
    return np.concatenate([x1, x2, x3, x4], axis=-1)


def keras_forward(weights: dict[str, dict[str, np.ndarray]], arch: str, x_nhwc: np.ndarray) -> np.ndarray:
    """The authors' network on ``x_nhwc`` (N×256×256×3 in [0, 1]): the pre-sigmoid output (logit of real), (N,)."""
    x = x_nhwc.astype(np.float64)
    bn = [weights[f"batch_normalization_{i + 1}"] for i in range(4)]
    if arch == "meso4":
        x = pool_same(_bn(_conv_same(x, weights["conv2d_1"]), bn[0]), 2)
        x = pool_same(_bn(_conv_same(x, weights["conv2d_2"]), bn[1]), 2)
        last = ("conv2d_3", "conv2d_4")
    else:
        x = pool_same(_bn(_inception(x, weights, 1), bn[0]), 2)
        x = pool_same(_bn(_inception(x, weights, 8), bn[1]), 2)
        last = ("conv2d_15", "conv2d_16")
    x = pool_same(_bn(_conv_same(x, weights[last[0]]), bn[2]), 2)
    x = pool_same(_bn(_conv_same(x, weights[last[1]]), bn[3]), 4)
    h = x.reshape(len(x), -1) @ weights["dense_1"]["kernel"] + weights["dense_1"]["bias"]
    h = np.where(h > 0, h, 0.1 * h)
    return (h @ weights["dense_2"]["kernel"] + weights["dense_2"]["bias"]).reshape(-1)
