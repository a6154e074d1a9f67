"""Zoom blur (Hendrycks & Dietterich 2019) and the clipped zoom it is built from.

``clipped_zoom(x, z)``: take the centred crop of side ``ceil(side / z)``, enlarge it
by ``z`` with bilinear interpolation as ``scipy.ndimage.zoom(order=1)`` does (output
side ``round(crop * z)``; output pixel i samples input coordinate
``i * (crop - 1) / (out - 1)``), then centre-trim back to the original side.
``zoom_blur`` averages the image with its clipped zooms at every factor of the
published list (which starts at 1.00, so the original counts twice), dividing by
the number of factors plus one.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from shiftattack.corruptions._registry import register_corruption

__all__ = ["clipped_zoom", "zoom_factors", "zoom_blur"]

# (stop, step) of the published ``np.arange(1, stop, step)`` factor lists (12, 16, 11, 13, 11 and
# 7, 12, 16, 21, 26 factors). The float values matter: np.arange gives 1.2500000000000002, whose
# zoomed size round(26 * z) is 33 where an exact 1.25 would give 32.
_IMAGENET = ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03))
_CIFAR10 = ((1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01))


def zoom_factors(stop: float, step: float) -> list[float]:
    """The published factor list, ``np.arange(1, stop, step)`` with its float values."""
    return [float(z) for z in np.arange(1, stop, step)]


def _zoom_axis(x: Tensor, dim: int, out: int) -> Tensor:
    """Linear resampling of axis ``dim`` to ``out`` samples on SciPy's corner-aligned grid."""
    n = x.shape[dim]
    if out == n:
        return x
    pos = torch.arange(out, dtype=torch.float64, device=x.device) * ((n - 1) / (out - 1) if out > 1 else 0.0)
    lo = pos.floor().long().clamp_(0, n - 1)
    hi = (lo + 1).clamp_(max=n - 1)
    frac = (pos - lo).to(x.dtype)
    shape = [1] * x.dim()
    shape[dim] = out
    a, b = x.index_select(dim, lo), x.index_select(dim, hi)
    return a + (b - a) * frac.view(shape)


def clipped_zoom(x: Tensor, z: float) -> Tensor:
    """Centre-crop by ``1 / z``, enlarge by ``z`` (bilinear), centre-trim; (N, C, H, W) -> same."""
    h, w = x.shape[-2:]
    ch, cw = math.ceil(h / z), math.ceil(w / z)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top:top + ch, left:left + cw]
    size = (round(ch * z), round(cw * z))
    if x.dim() == 4 and min(ch, cw) > 1:
        # SciPy's order-1 grid (output i samples input i * (n - 1) / (out - 1)) is align_corners=True
        big = F.interpolate(crop, size=size, mode="bilinear", align_corners=True)
    else:
        big = _zoom_axis(_zoom_axis(crop, -2, size[0]), -1, size[1])
    t, s = (big.shape[-2] - h) // 2, (big.shape[-1] - w) // 2
    return big[..., t:t + h, s:s + w]


@register_corruption("zoom_blur", imagenet=_IMAGENET, cifar10=_CIFAR10, group="blur")
def zoom_blur(x: Tensor, c: tuple[float, float], generator: torch.Generator | None = None) -> Tensor:
    """Average of the image and its clipped zooms at ``zoom_factors(*c)``; clipped to [0, 1]."""
    factors = zoom_factors(*c)
    out = x.clone()
    for z in factors:
        out += clipped_zoom(x, z)
    return (out / (len(factors) + 1)).clamp_(0, 1)
