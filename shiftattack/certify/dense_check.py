"""``verify`` for bound certificates, independently of the bounds: sample the real model in each box.

Re-running the bounds checks that the certificate is what the bound method computes;
it cannot catch a bound that is wrong. So every certified image is also evaluated
at a dense grid of real shifts (step ``step`` px, corners included) and at seeded
uniform draws of the box ``[-R, R]^2``, each shift made by
:func:`~shiftattack.shifts.shift_bilinear` (bilinear between exact integer shifts,
not the bounds' own cell forms). Every sample must be classified correctly by the
model as it runs, and its margin in float64 must be at or above the recorded
``margin_lower_bound`` (within ``1e-9 * (1 + |bound|)``).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from shiftattack.certify.document import CertificateError
from shiftattack.runtime.engine import ModelRunner, margins
from shiftattack.shifts.functional import shift_bilinear

__all__ = ["dense_box_shifts", "check_boxes_densely", "BOUND_TOL"]

#: a sampled float64 margin may be below the recorded lower bound by this much times (1 + |bound|)
BOUND_TOL = 1e-9


def dense_box_shifts(radius: float, step: float, n_random: int, seed: int = 0) -> Tensor:
    """The grid ``-R, -R + step, ..., R`` squared, then ``n_random`` seeded uniform draws: float64 (S, 2)."""
    if not (step > 0 and math.isfinite(step)):
        raise ValueError(f"the dense step must be a positive number of pixels, got {step}")
    count = int(math.floor(2 * radius / step + 1e-9)) + 1
    axis = torch.cat([-radius + step * torch.arange(count, dtype=torch.float64),
                      torch.tensor([float(radius)], dtype=torch.float64)]).clamp(-radius, radius).unique()
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    g = torch.Generator().manual_seed(seed)
    draws = (2 * torch.rand(n_random, 2, generator=g, dtype=torch.float64) - 1) * radius
    return torch.cat([grid, draws])


def check_boxes_densely(
    model: torch.nn.Module,
    images: Tensor,
    labels: Tensor,
    records: list[dict],
    threat: dict,
    *,
    device: torch.device,
    step: float = 1 / 16,
    n_random: int = 64,
    seed: int = 0,
    batch_size: int = 256,
) -> int:
    """Raise :class:`~.document.CertificateError` at the first sample that contradicts a certified box.

    Args:
        model: the certified model (evaluated as it runs, and as a float64 copy).
        images: (N, C, H, W) in [0, 1], one per record.
        labels: (N,) int64.
        records: the certificate's records for these images.
        threat: the certificate's threat (``radius``, ``mode``, ``fill``).
        device: where to evaluate.
        step: grid step (px).
        n_random: uniform draws per box besides the grid.
        seed: seed of the draws.
        batch_size: shifts per forward pass.

    Returns:
        The number of (image, shift) samples evaluated.
    """
    shifts = dense_box_shifts(float(threat["radius"]), step, n_random, seed)
    runner = ModelRunner(model, device, images.dtype)
    exact64 = copy.deepcopy(model).double().eval().to(device)
    mode, fill = threat["mode"], float(threat.get("fill", 0.0))
    done = 0
    for k, rec in enumerate(records):
        if not rec["certified"]:
            continue
        bound = float(rec["margin_lower_bound"])
        img, lab = images[k : k + 1].to(device, torch.float64), labels[k : k + 1].to(device)
        for s in range(0, shifts.shape[0], batch_size):
            part = shifts[s : s + batch_size].to(device)
            x = shift_bilinear(img.expand(part.shape[0], -1, -1, -1), part[:, 0], part[:, 1], mode, fill)
            rows = lab.expand(part.shape[0])
            logits = runner(x.to(runner.dtype))
            with torch.no_grad():
                m64 = margins(exact64(x), rows).double()
            wrong = (logits.argmax(1) != rows).nonzero().squeeze(1)
            low = (m64 < bound - BOUND_TOL * (1 + abs(bound))).nonzero().squeeze(1)
            where = f"image {rec['index']}"
            if wrong.numel():
                dx, dy = part[int(wrong[0])].tolist()
                raise CertificateError(
                    f"{where} is certified for box:{threat['radius']}, but the model misclassifies it at the "
                    f"sampled shift ({dx:.6g}, {dy:.6g})")
            if low.numel():
                j = int(low[0])
                dx, dy = part[j].tolist()
                raise CertificateError(
                    f"{where}: recorded margin lower bound {bound:.6g}, but the margin at the sampled shift "
                    f"({dx:.6g}, {dy:.6g}) is {float(m64[j]):.6g}: the bound is not sound there")
            done += part.shape[0]
    return done
