"""Exact certificates for finite shift sets: enumeration with the attack's ordering and early exit.

For a finite set S (``grid:K``, ``grid:K:STEP``, ``list:``, ``rt:``), an image is
certified when the prediction is correct under every member of S: sound and
complete for S. The enumeration is the grid attack's (:class:`~shiftattack.attacks.GridAttack`):
one shared search order, full batches, an image leaving the search at its first
failure (confirmed by a separate forward pass; a certificate never needs more than
one failing shift). For a certified image the record carries the exact minimum
margin over S and the member where it is reached.
"""

from __future__ import annotations

import math

from torch import Tensor

from shiftattack.attacks import AttackResult, GridAttack
from shiftattack.errors import SpecError
from shiftattack.shifts.threats import ThreatModel

__all__ = ["certify_exact", "exact_records", "certified_radius", "radius_curve", "set_radii"]


def certify_exact(
    model,
    images: Tensor,
    labels: Tensor,
    threat: ThreatModel,
    *,
    batch_size: int = 256,
    order: str = "radius",
    device="auto",
    progress: bool = False,
    precision: str = "fp32",
) -> AttackResult:
    """Enumerate ``threat`` for every image; ``result.robust`` is the certificate.

    Args:
        model: maps (N, 3, H, W) floats in [0, 1] to logits (N, K).
        images: (N, 3, H, W) in [0, 1] (canvases in crop mode).
        labels: (N,) int64.
        threat: a finite threat model (not ``random:``).
        batch_size: (image, shift) pairs per forward pass.
        order: ``radius`` (default; Chebyshev rings outwards, which also gives each
            image's certified radius) or ``adaptive`` (fewest passes, no radius).
        device: ``auto``, ``cpu``, ``cuda``...
        progress: show a progress bar.
        precision: ``fp32``, ``bf16`` or ``fp16``; the certificate is about the model run at this
            precision (under ``torch.autocast``), which is the model it enumerates.
    """
    if threat.shifts.kind == "random":
        raise SpecError(
            "an exact certificate needs a finite set (grid:, list:, rt:); random:K:N samples "
            "the set and proves nothing"
        )
    if order not in ("radius", "adaptive", "far_first"):
        raise SpecError(f"unknown order {order!r}; expected radius, adaptive or far_first")
    attack = GridAttack(threat, batch_size=batch_size, early_exit=True, order=order)
    return attack(model, images, labels, device=device, progress=progress, precision=precision)


def certified_radius(result: AttackResult) -> list[float | None] | None:
    """Per image, the largest Chebyshev radius r of the set's members such that every member
    with radius <= r is classified correctly (``None`` for an image wrong unshifted).

    Returns None when the search order did not determine it (``order != "radius"``).
    """
    if result.fooled_radius is None:
        return None
    radii = sorted(set(result.threat.shifts.params[:, :2].abs().amax(dim=1).tolist()) | {0.0})
    out: list[float | None] = []
    for fr in result.fooled_radius.tolist():
        below = [r for r in radii if r < fr]
        out.append(below[-1] if below and fr > 0 else None)
    return out


def exact_records(result: AttackResult, indices: Tensor) -> list[dict]:
    """Certificate records: the attack contract's fields plus ``certified`` (and ``certified_radius``)."""
    records = result.image_records(indices)
    radius = certified_radius(result)
    for k, rec in enumerate(records):
        rec["certified"] = rec["robust"]
        if radius is not None:
            rec["certified_radius"] = radius[k]
    return records


def radius_curve(records: list[dict], radii: list[float]) -> list[dict]:
    """Certified accuracy at each radius from per-image ``certified_radius`` (None = never)."""
    n = len(records)
    out = []
    for r in radii:
        ok = sum(
            1
            for rec in records
            if rec.get("certified_radius") is not None and rec["certified_radius"] >= r - 1e-12
        )
        out.append({"radius": r, "certified_accuracy": ok / n if n else math.nan})
    return out


def set_radii(threat: ThreatModel) -> list[float]:
    """The distinct Chebyshev radii of a finite set's members, 0 included, ascending."""
    p = threat.shifts.params
    return sorted(set(p[:, :2].abs().amax(dim=1).tolist()) | {0.0}) if p.numel() else [0.0]
