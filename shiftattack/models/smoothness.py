"""Filter smoothness: normalised total variation of convolution kernels.

Zhang (ICML 2019) observed that anti-aliased networks learn smoother first-layer
filters. We measure a kernel's roughness as its total variation divided by its
L1 norm, which makes it independent of the kernel's scale:

    TV(w) = (sum |w[c, i+1, j] - w[c, i, j]| + sum |w[c, i, j+1] - w[c, i, j]|) / sum |w[c, i, j]|

summed over the kernel's input channels ``c`` and positions ``(i, j)``. A constant
kernel scores 0; a +-1 checkerboard of side ``k`` scores ``4 (k - 1) / k``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from shiftattack.errors import ModelError, check_shape

__all__ = ["normalized_total_variation", "first_conv", "filter_smoothness"]


def normalized_total_variation(weight: Tensor, eps: float = 1e-12) -> Tensor:
    """Per-kernel normalised total variation.

    Args:
        weight: convolution weights, shape (C_out, C_in, kH, kW).
        eps: guards all-zero kernels (which score 0).

    Returns:
        (C_out,) float64 tensor, one value per output channel (dimensionless).

    Examples:
        >>> normalized_total_variation(torch.ones(1, 3, 5, 5)).item()
        0.0
        >>> round(normalized_total_variation(torch.tensor([[[[1., -1.], [-1., 1.]]]])).item(), 3)
        2.0
    """
    check_shape(weight, ["C_out", "C_in", "kH", "kW"], "weight")
    w = weight.detach().to(torch.float64)
    vertical = (w[..., 1:, :] - w[..., :-1, :]).abs().sum((1, 2, 3))
    tv = vertical + (w[..., 1:] - w[..., :-1]).abs().sum((1, 2, 3))
    return tv / w.abs().sum((1, 2, 3)).clamp_min(eps)


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first ``nn.Conv2d`` of ``model`` in registration order (the layer that sees the image).

    Raises:
        ModelError: the model has no ``Conv2d``.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ModelError(f"{type(model).__name__} has no Conv2d layer whose filters could be measured")


def filter_smoothness(model: nn.Module) -> dict[str, float | list[float]]:
    """Normalised total variation of the first convolution's kernels, for reports.

    Returns:
        ``{"mean": float, "median": float, "per_filter": [float, ...], "kernel_size": [kH, kW]}``.
    """
    conv = first_conv(model)
    tv = normalized_total_variation(conv.weight)
    return {"mean": float(tv.mean()), "median": float(tv.median()), "per_filter": tv.tolist(),
            "kernel_size": list(conv.kernel_size)}
