"""Pillow's ``Image.resize(size, Image.BOX)`` of 8-bit images, bit for bit, batched in torch.

Pillow (``libImaging/Resample.c``) resizes in two passes, each rounded back to 8
bits: along the width first, unless the height shrinks by more than twice as many
pixels as the width (``H - h > 2 (W - w)``), then along the height first (Pillow
13's rule; earlier versions always start with the width, which differs only there).
Output sample ``i`` of a pass from ``n_in`` to ``n_out`` samples has ``center =
(i + 0.5) * n_in / n_out``; the box filter (support 0.5, widened by the scale
when shrinking) weighs 1 the input samples ``j`` with
``-0.5 < (j - center + 0.5) / max(n_in / n_out, 1) <= 0.5`` among the candidates
Pillow rounds out of the support, and 0 the others. The weights are normalised
and turned into 22-bit fixed point, ``kk = int(0.5 + 2**22 / count)``, and the
output is ``(2**21 + kk * sum) >> 22``. The weights in a window are equal, so a
window's sum is a difference of cumulative sums: a pass costs O(n_in + n_out)
per line whatever the scale. Enlarging, each window is one sample: a gather
(Pillow's BOX enlargement is its NEAREST one).

The windows are computed in Python floats (C doubles) with Pillow's operations
in Pillow's order, and cached per (n_in, n_out).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["box_windows", "box_resize"]

_BITS = 22  # Pillow's PRECISION_BITS for 8-bit images: 32 - 8 - 2


@lru_cache(maxsize=256)
def box_windows(n_in: int, n_out: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Pillow's BOX windows from ``n_in`` to ``n_out`` samples: (first, end, fixed-point weight) per output.

    Output sample i averages input samples ``first[i] <= j < end[i]`` with the weight
    ``kk[i]`` (in units of 2**-22); an empty window has ``kk = 0`` (Pillow outputs 0).
    """
    scale = float(n_in) / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    inv = 1.0 / filterscale
    first, end, kk = [], [], []
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        taps = [j for j in range(lo, hi) if -0.5 < (j - center + 0.5) * inv <= 0.5]
        first.append(taps[0] if taps else lo)
        end.append(taps[-1] + 1 if taps else lo)
        kk.append(int(0.5 + (1.0 / len(taps)) * (1 << _BITS)) if taps else 0)
    return tuple(first), tuple(end), tuple(kk)


@lru_cache(maxsize=256)
def _window_tensors(n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor, bool]:
    first, end, kk = box_windows(n_in, n_out)
    single = all(e - f == 1 for f, e in zip(first, end, strict=True))
    as_long = [torch.tensor(v, dtype=torch.long, device=device) for v in (first, end)]
    return as_long[0], as_long[1], torch.tensor(kk, dtype=torch.int32, device=device), single


def _pass(v: Tensor, dim: int, n_out: int) -> Tensor:
    """One Pillow BOX pass along ``dim`` of integer-valued int32 ``v`` (values 0..255)."""
    n_in = v.shape[dim]
    if n_in == n_out:
        return v  # Pillow skips a pass that keeps the size
    first, end, kk, single = _window_tensors(n_in, n_out, v.device)
    if single:
        return v.index_select(dim, first)
    sums = v.cumsum(dim, dtype=torch.int32)
    zero = torch.zeros_like(sums.narrow(dim, 0, 1))
    sums = torch.cat([zero, sums], dim)
    window = sums.index_select(dim, end) - sums.index_select(dim, first)
    shape = [1] * v.dim()
    shape[dim] = n_out
    return (window * kk.view(shape) + (1 << (_BITS - 1))) >> _BITS


def box_resize(v: Tensor, size: tuple[int, int]) -> Tensor:
    """``Image.resize((w, h), Image.BOX)`` of every channel of 8-bit images.

    Args:
        v: int32 (..., H, W) with integer values 0..255 (an 8-bit image per channel).
        size: (h, w), the output height and width in px (>= 1).

    Returns:
        int32 (..., h, w), values 0..255, equal to Pillow's output.

    Examples:
        >>> v = torch.tensor([[[0, 10, 20, 30]]], dtype=torch.int32)
        >>> box_resize(v, (1, 2)).tolist()
        [[[5, 25]]]
    """
    h, w = size
    height, width = v.shape[-2:]
    if height - h > 0 and height - h > 2 * (width - w):
        return _pass(_pass(v, -2, h), -1, w)
    return _pass(_pass(v, -1, w), -2, h)
