"""Multiply-accumulate and parameter counts, for the edge budget (≤ 0.5 GMACs at 224) and reports.

MACs are counted from the shapes seen in one real forward pass (hooks on Conv2d,
ConvTranspose2d and Linear), so they follow whatever path the method called takes: ``forward``
(detect graph, no decoder) or ``forward_full`` (with the reconstruction). Element-wise work
(BN, activations, pooling, resizing) is left out, as is usual for MAC budgets.
"""

from __future__ import annotations

from typing import Any

from runtime.errors import UserError


def _conv_macs(module: Any, inputs: tuple, output: Any) -> int:
    # Every output element of a convolution is a dot product over (C_in / groups) · kH · kW.
    kernel = module.weight.shape[2] * module.weight.shape[3]
    return output.numel() * (module.in_channels // module.groups) * kernel


def _deconv_macs(module: Any, inputs: tuple, output: Any) -> int:
    # A transposed convolution scatters each input element to (C_out / groups) · kH · kW outputs.
    kernel = module.weight.shape[2] * module.weight.shape[3]
    return inputs[0].numel() * (module.out_channels // module.groups) * kernel


def _linear_macs(module: Any, inputs: tuple, output: Any) -> int:
    return output.numel() * module.in_features


def count_macs(module: Any, input_size: int, batch: int = 1, method: str = "forward") -> int:
    """MACs of ``module.<method>(x)`` for a (batch, 3, input_size, input_size) input.

    The module is run once in eval mode without gradients; its training flag is restored.
    """
    import torch
    from torch import nn

    counters = {nn.Conv2d: _conv_macs, nn.ConvTranspose2d: _deconv_macs, nn.Linear: _linear_macs}
    # Calling the module itself (not .forward) so that hooks on the top-level module fire too.
    fn = module if method == "forward" else getattr(module, method, None)
    if not callable(fn):
        raise UserError(f"{type(module).__name__} has no method {method!r}; use 'forward' or 'forward_full'")
    total = [0]

    def hook(counter: Any) -> Any:
        def run(m: Any, inputs: tuple, output: Any) -> None:
            total[0] += int(counter(m, inputs, output))
        return run

    handles = []
    for m in module.modules():
        counter = counters.get(type(m))
        if counter is not None:
            handles.append(m.register_forward_hook(hook(counter)))
    first = next(module.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            fn(torch.zeros(batch, 3, input_size, input_size, device=device, dtype=dtype))
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return total[0]


def count_params(module: Any, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
