"""Check that the lowered model is the model: same logits on the images to certify, before any bound.

The bounds describe the lowered operations (:mod:`.lowering`). A lowering rule that
does not match what a layer really computes (an overridden method the rules missed,
an in-place operation feeding a later one, code that depends on the dtype or on the
batch) would make every bound a bound of some other network. So on every image that
may be certified, at the identity and at a few seeded sub-pixel shifts of the box,
the lowered logits must equal:

1. the real ``forward`` of the float64 copy the bounds are built from, within
   ``1e-6 * (1 + max |logit|)`` (float64 rounding only);
2. the model as it runs (its own device and dtype), within
   ``1e-3 * (1 + max |logit|)`` for float32 and below (``1e-6 * ...`` for float64):
   the certificate's claim carries this rounding caveat;
3. themselves with the batch changed (the images evaluated beside others): the
   lowered operations must act on each image alone.

A mismatch raises :class:`LoweringMismatch` (an :class:`~.lowering.UnsupportedLayer`,
exit status 2), naming the image, the shift and the difference.
"""

from __future__ import annotations

import torch
from torch import Tensor

from shiftattack.certify.lowering import UnsupportedLayer
from shiftattack.runtime.engine import ModelRunner
from shiftattack.shifts.functional import shift_bilinear

__all__ = ["LoweringMismatch", "check_lowering", "TOL_FLOAT64", "TOL_RUN"]

#: relative tolerance between the lowered operations and the float64 forward
TOL_FLOAT64 = 1e-6
#: relative tolerance between the lowered operations and the model as it runs in float32
TOL_RUN = 1e-3


class LoweringMismatch(UnsupportedLayer):
    """The lowered operations do not compute what the model computes."""


def sample_shifts(n: int, radius: float, n_shifts: int, seed: int = 0) -> Tensor:
    """The identity and ``n_shifts`` seeded uniform real shifts in ``[-radius, radius]^2`` per image.

    Returns float64 (n, 1 + n_shifts, 2): ``(dx, dy)`` in pixels.
    """
    g = torch.Generator().manual_seed(seed)
    draws = (2 * torch.rand(n, n_shifts, 2, generator=g, dtype=torch.float64) - 1) * radius
    return torch.cat([torch.zeros(n, 1, 2, dtype=torch.float64), draws], dim=1)


def check_lowering(
    bounder,
    runner: ModelRunner,
    images: Tensor,
    radius: float,
    mode: str,
    fill: float = 0.0,
    *,
    indices: Tensor | None = None,
    n_shifts: int = 3,
    seed: int = 0,
    batch_size: int = 64,
) -> None:
    """Raise :class:`LoweringMismatch` unless the lowered model equals the model on these inputs.

    Args:
        bounder: a :class:`~.propagate.BoundModel`.
        runner: the model as it runs.
        images: (N, C, H, W) in [0, 1].
        radius: the box half-width (px).
        mode: ``zero`` or ``circular``.
        fill: vacated value in zero mode.
        indices: (N,) the images' indices in the data, for messages.
        n_shifts: sub-pixel shifts per image besides the identity.
        seed: seed of the shifts.
        batch_size: inputs per evaluation.
    """
    n = images.shape[0]
    if not n:
        return
    shifts = sample_shifts(n, radius, n_shifts, seed).reshape(-1, 2)
    owner = torch.arange(n).repeat_interleave(1 + n_shifts)
    dev = next(iter(bounder.model.parameters()), torch.empty(0)).device
    run_tol = TOL_FLOAT64 if runner.dtype == torch.float64 else TOL_RUN
    for s in range(0, owner.numel(), batch_size):
        rows = torch.arange(s, min(s + batch_size, owner.numel()))
        x = shift_bilinear(images[owner[rows]].to(dev, torch.float64), shifts[rows, 0].to(dev),
                           shifts[rows, 1].to(dev), mode, fill)
        lowered = bounder.logits(x)
        with torch.no_grad():
            real64 = bounder.model(x)
            as_run = runner(x.to(runner.device, runner.dtype)).to(dev, torch.float64)
            beside = bounder.logits(torch.cat([x, 1 - x]))[: x.shape[0]]
        scale = 1 + lowered.abs().amax(dim=1)
        for other, tol, what in (
            (real64, TOL_FLOAT64, "the model's own forward in float64"),
            (as_run, run_tol, f"the model as it runs ({runner.dtype}, {runner.device})"),
            (beside, TOL_FLOAT64, "the lowered model evaluated beside other images (it mixes the batch)"),
        ):
            if other.shape != lowered.shape:
                raise LoweringMismatch(
                    f"the bound method's lowered model gives logits of shape {tuple(lowered.shape)}, "
                    f"{what} {tuple(other.shape)}")
            diff = (other - lowered).abs().amax(dim=1)
            bad = (diff > tol * scale).nonzero().squeeze(1)
            if bad.numel():
                k = int(bad[0])
                img = int(owner[rows[k]])
                name = int(indices[img]) if indices is not None else img
                dx, dy = shifts[rows[k]].tolist()
                raise LoweringMismatch(
                    f"the bound method's lowered model differs from {what} on image {name} at shift "
                    f"({dx:.4g}, {dy:.4g}): largest logit difference {float(diff[k]):.3g} > tolerance "
                    f"{tol * float(scale[k]):.3g}. A layer computes something its lowering rule does not "
                    "describe (an overridden method, an in-place operation whose input is used again, "
                    "dtype- or batch-dependent code), so no bound would be sound; certify this model "
                    "with --method exact or smooth"
                )
