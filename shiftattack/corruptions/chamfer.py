"""OpenCV's 5x5 chamfer distance transform (``DIST_L2``, mask 5), capped, striped, exact.

The distance step of spatter's water mask (:mod:`shiftattack.corruptions.spatter`,
CORRUPTIONS.md section 3): :func:`chamfer_distance` takes a bool (N, 1, H, W) map of
zero pixels and returns float32 (N, 1, H, W) distances in px, bit-equal to OpenCV 3.4's
two raster passes in its 16-bit fixed point once capped.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["chamfer_distance", "DIST_CAP"]

# OpenCV's chamfer weights for DIST_L2 with mask 5 (1, 1.4f, 2.1969f) in its 16-bit fixed point.
_HV, _DIAG, _LONG = 65536, 91750, 143976
#: The cap spatter applies (``threshold(dist, 20, 255, THRESH_TRUNC)``), px.
DIST_CAP = 20
_CORE = 28  # rows per band of the striped distance transform (chamfer_distance)


def _scan_min(f: Tensor, ramp: Tensor) -> Tensor:
    """``t[j] = min(f[j], t[j - 1] + step)`` along the last axis, as a cumulative minimum; ramp = j * step."""
    return torch.cummin(f - ramp, -1).values + ramp


def _rows_min(far: Tensor, near: Tensor, w: int, weights: Tensor) -> Tensor:
    """The chamfer candidates from the rows two and one away (each padded by 2 columns): (N, W)."""
    reach = torch.stack(
        (
            far[:, 1 : w + 1],
            far[:, 3 : w + 3],
            near[:, 0:w],
            near[:, 4 : w + 4],
            near[:, 1 : w + 1],
            near[:, 3 : w + 3],
            near[:, 2 : w + 2],
        )
    )
    return (reach + weights).amin(0)


def _two_pass_torch(z: Tensor, big: int) -> Tensor:
    """The two raster passes on bool (L, B, W) (rows first), in torch: int32 (L, B, W) fixed point."""
    h, n, w = z.shape
    dev = z.device
    weights = torch.tensor([_LONG] * 4 + [_DIAG] * 2 + [_HV], dtype=torch.int32, device=dev).view(7, 1, 1)
    ramp = torch.arange(w, dtype=torch.int32, device=dev) * _HV
    padded = torch.full((h + 4, n, w + 4), big, dtype=torch.int32, device=dev)  # rows -2 .. h + 1
    for i in range(h):
        f = _rows_min(padded[i], padded[i + 1], w, weights).masked_fill_(z[i], 0)
        padded[i + 2, :, 2 : w + 2] = _scan_min(f, ramp).clamp_max_(big)
    back = torch.full_like(padded, big)
    for i in range(h - 1, -1, -1):
        g = torch.minimum(padded[i + 2, :, 2 : w + 2], _rows_min(back[i + 4], back[i + 3], w, weights))
        back[i + 2, :, 2 : w + 2] = _scan_min(g.flip(-1), ramp).flip(-1).clamp_max_(big)
    return back[2 : h + 2, :, 2 : w + 2]


def _two_pass_numpy(z: np.ndarray, big: int) -> np.ndarray:
    """:func:`_two_pass_torch` in NumPy, in place in preallocated rows (far less overhead per row)."""
    h, n, w = z.shape
    keep = (~z).astype(np.int32)  # a candidate times 0 where src == 0
    t = np.full((h + 4, n, w + 4), big, np.int32)  # rows -2 .. h + 1; the backward pass overwrites
    ramp = np.arange(w, dtype=np.int32) * _HV
    back_ramp = np.ascontiguousarray(ramp[::-1])
    a, c = np.empty((n, w), np.int32), np.empty((n, w), np.int32)

    def candidates(far: np.ndarray, near: np.ndarray) -> None:  # -> a: _rows_min
        np.minimum(far[:, 1 : w + 1], far[:, 3 : w + 3], out=a)
        np.minimum(a, near[:, 0:w], out=a)
        np.minimum(a, near[:, 4 : w + 4], out=a)
        np.add(a, _LONG, out=a)
        np.minimum(near[:, 1 : w + 1], near[:, 3 : w + 3], out=c)
        np.add(c, _DIAG, out=c)
        np.minimum(a, c, out=a)
        np.add(near[:, 2 : w + 2], _HV, out=c)
        np.minimum(a, c, out=a)

    for i in range(h):
        candidates(t[i], t[i + 1])
        a *= keep[i]
        a -= ramp
        np.minimum.accumulate(a, axis=1, out=a)
        a += ramp
        np.minimum(a, big, out=t[i + 2, :, 2 : w + 2])
    for i in range(h - 1, -1, -1):
        candidates(t[i + 4], t[i + 3])
        row = t[i + 2, :, 2 : w + 2]
        np.minimum(a, row, out=a)
        a -= back_ramp  # right to left: t[j] = min(g[j], t[j + 1] + step)
        flipped = a[:, ::-1]
        np.minimum.accumulate(flipped, axis=1, out=flipped)
        a += back_ramp
        np.minimum(a, big, out=row)
    return t[2 : h + 2, :, 2 : w + 2]


def _windows(h: int, halo: int, core: int) -> tuple[list[int], int, list[int]]:
    """Overlapping row windows for the striped transform: (window starts, window length, core starts).

    Core rows ``[s, s + core)`` (the last ones shorter) each get a window of ``core + 2 halo``
    rows inside the image around them, shifted inwards at the borders; one window (the whole
    image) when that is no shorter.
    """
    length = core + 2 * halo
    if length >= h:
        return [0], h, [0]
    cores = list(range(0, h, core))
    return [min(max(s - halo, 0), h - length) for s in cores], length, cores


def chamfer_distance(zero: Tensor, cap: float = DIST_CAP, *, backend: str | None = None) -> Tensor:
    """OpenCV's ``distanceTransform(src, DIST_L2, 5)``, capped: float32 (N, 1, H, W) distances in px.

    ``zero`` is bool (N, 1, H, W), True where ``src == 0``. OpenCV 3.4's two raster passes
    (forward: rows top to bottom from the two rows above and the pixel on the left;
    backward: bottom to top, mirrored) in its 16-bit fixed point, weights 65536, 91750,
    143976 (1, 1.4, 2.1969), the image border infinitely far; one row at a time, the
    left-to-right recursion of a row as a cumulative minimum. Values above ``cap`` are
    returned as ``cap`` (``threshold(..., THRESH_TRUNC)``); an image without a zero
    pixel is ``cap`` everywhere. OpenCV 5.0 adds the float weights 1.4f and 2.1969f
    instead: distances within 1e-4 px, rarely a different level after the 8-bit blur.

    Striped, exactly: a value is a minimum over paths of chamfer steps from a zero pixel
    (forward steps, then backward ones), each step costing at least as many px as it
    moves vertically, so a distance up to ``cap`` comes from a path within ``cap`` rows
    of its pixel. Bands of ``_CORE`` rows are therefore computed in windows reaching
    ``floor(cap) + 1`` rows further up and down (or to the border), all windows of all
    images side by side: far fewer sequential rows, the same values once capped. The
    rows run in NumPy on the CPU (``backend`` "numpy"), else in torch ("torch").
    """
    n, _, h, w = zero.shape
    backend = backend or ("numpy" if zero.device.type == "cpu" else "torch")
    big = (int(cap) + 3) * _HV  # any value past the cap stands for OpenCV's "far"
    halo = int(cap) + 1 if math.isfinite(cap) else h
    starts, length, cores = _windows(h, halo, _CORE)
    rows = (torch.tensor(starts)[:, None] + torch.arange(length)).view(-1).to(zero.device)
    # (N, H, W) -> (L, N * windows, W): the windows of an image next to each other
    z = zero[:, 0].index_select(1, rows).view(n, len(starts), length, w).permute(2, 0, 1, 3)
    z = z.reshape(length, n * len(starts), w)
    if backend == "numpy":
        t = torch.from_numpy(_two_pass_numpy(z.cpu().numpy(), big)).to(zero.device)
    else:
        t = _two_pass_torch(z, big)
    t = t.reshape(length, n, len(starts), w)
    dist = torch.empty((n, 1, h, w), dtype=torch.float32, device=zero.device)
    for k, (a, s) in enumerate(zip(starts, cores, strict=True)):
        e = min(s + _CORE, h) if len(starts) > 1 else h
        dist[:, 0, s:e] = t[s - a : e - a, :, k].permute(1, 0, 2).to(torch.float32)
    return dist.mul_(1.0 / _HV).clamp_max_(cap)
