"""Blur corruptions (Hendrycks & Dietterich 2019), batched in torch.

* gaussian_blur (held out): scikit-image's ``filters.gaussian`` with sigma c per
  channel, i.e. ``scipy.ndimage.gaussian_filter`` with border ``nearest`` and
  truncate 4: a separable kernel of radius ``int(4 * sigma + 0.5)`` px,
  ``exp(-t^2 / (2 sigma^2))`` normalised, replicate padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._registry import register_corruption

__all__ = ["gaussian_kernel1d", "gaussian_filter", "gaussian_blur"]


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, *, dtype=None, device=None) -> Tensor:
    """Normalised 1-D Gaussian taps of radius ``int(truncate * sigma + 0.5)`` (SciPy's rule); (2r+1,)."""
    radius = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (t / sigma) ** 2)
    return (taps / taps.sum()).to(dtype=dtype or torch.get_default_dtype(), device=device)


def gaussian_filter(x: Tensor, sigma: float, truncate: float = 4.0) -> Tensor:
    """Separable Gaussian blur of every channel with replicate ('nearest') borders; (N, C, H, W) -> same."""
    taps = gaussian_kernel1d(sigma, truncate, dtype=x.dtype, device=x.device)
    r, c = taps.numel() // 2, x.shape[1]
    rows = taps.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    cols = taps.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), rows, groups=c)
    return F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), cols, groups=c)


@register_corruption("gaussian_blur", imagenet=(1, 2, 3, 4, 6), cifar10=(0.4, 0.6, 0.7, 0.8, 1.0),
                     group="blur", held_out=True)
def gaussian_blur(x: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
    """Gaussian blur of standard deviation ``sigma`` px (scikit-image's defaults); clipped to [0, 1]."""
    if math.isclose(sigma, 0.0):
        return x.clone()
    return gaussian_filter(x, sigma).clamp_(0, 1)
