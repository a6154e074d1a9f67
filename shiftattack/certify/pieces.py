"""The pieces of branch and bound: sub-boxes of one pixel cell of ``box:R``, queued, cut and counted.

A piece is an image, a cell (i, j) (the unit square of shifts with corner (i, j), px), a
centre (am, bm) in the cell and half-widths (ha, hb). :mod:`.bound` bounds them.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["_Pieces", "_split", "_children_per_side", "_cells"]


class _Pieces:
    """The open pieces: image, cell (i, j), centre (am, bm) in the cell and half-widths (ha, hb)."""

    def __init__(self, img: Tensor, ci: Tensor, cj: Tensor, cell: Tensor) -> None:
        n = img.numel()
        half = torch.full((n,), 0.5, dtype=torch.float64)
        self.cols = {
            "img": img,
            "ci": ci,
            "cj": cj,
            "cell": cell,
            "am": half.clone(),
            "bm": half.clone(),
            "ha": half.clone(),
            "hb": half.clone(),
        }

    def __len__(self) -> int:
        return self.cols["img"].numel()

    def take(self, k: int, keep: Tensor) -> dict[str, Tensor]:
        """Remove and return up to k pieces, dropping those whose image is no longer pending."""
        alive = keep[self.cols["img"]]
        self.cols = {name: col[alive] for name, col in self.cols.items()}
        head = {name: col[:k] for name, col in self.cols.items()}
        self.cols = {name: col[k:] for name, col in self.cols.items()}
        return head

    def push(self, batch: dict[str, Tensor]) -> None:
        self.cols = {name: torch.cat([self.cols[name], batch[name]]) for name in self.cols}


def _split(p: dict[str, Tensor], k: Tensor) -> dict[str, Tensor]:
    """Cut each piece into k x k equal children (k (n,) whole, >= 2): returns them, piece by piece."""
    counts = k * k
    out = {name: col.repeat_interleave(counts) for name, col in p.items()}
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(int(counts.sum())) - first.repeat_interleave(counts)
    kk = k.repeat_interleave(counts).to(out["ha"])
    ia, ib = (local % k.repeat_interleave(counts)).to(kk), (local // k.repeat_interleave(counts)).to(kk)
    ha, hb = out["ha"] / kk, out["hb"] / kk
    out["am"] = out["am"] - out["ha"] + (2 * ia + 1) * ha
    out["bm"] = out["bm"] - out["hb"] + (2 * ib + 1) * hb
    out["ha"], out["hb"] = ha, hb
    return out


def _children_per_side(lower: Tensor, centre: Tensor, half: Tensor, min_width: float) -> Tensor:
    """How finely to cut a piece whose margin bound is ``lower`` (< 0) and centre margin ``centre``.

    The bound's gap ``centre - lower`` shrinks at least as fast as the square of the piece's
    width (measured: about its 2.5th power), so k = ceil(sqrt(gap / centre)) children per side
    should close it in one step; at least 2, at most 16, and no child below ``min_width / 2``.
    """
    gap = (centre - lower).clamp_min(0)
    ratio = gap / centre.clamp_min(1e-12)
    k = torch.ceil(torch.sqrt(ratio)).clamp(2, 16)
    finest = torch.floor(4 * half / min_width).clamp_min(2)
    return torch.minimum(k, finest).to(torch.long)


def _cells(radius: int) -> tuple[Tensor, Tensor, Tensor]:
    """Cell corners (i, j) for i, j in [-R, R-1] and each cell's ring max(|i|, |i+1|, |j|, |j+1|)."""
    r = torch.arange(-radius, radius)
    cj, ci = torch.meshgrid(r, r, indexing="ij")
    ci, cj = ci.flatten(), cj.flatten()
    ring = torch.stack([ci.abs(), (ci + 1).abs(), cj.abs(), (cj + 1).abs()]).amax(0)
    return ci, cj, ring
