"""What differs between the three certificate methods: the threat, one chunk's records, the claim, the curve.

The ``certify`` job (:mod:`.run`) is the same for all three; it asks this module to
build the threat from the configuration, to certify a chunk of images, and to
describe the method and its curve in the document.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from shiftattack.certify.bound import BoundConfig, certify_bound, parse_box
from shiftattack.certify.exact import certify_exact, exact_records, radius_curve, set_radii
from shiftattack.certify.lowering_check import check_lowering
from shiftattack.certify.propagate import BoundModel
from shiftattack.certify.smooth import SmoothConfig, certified_at, parse_radius, smooth_certify
from shiftattack.errors import SpecError
from shiftattack.runtime.engine import ModelRunner
from shiftattack.shifts.threats import ThreatModel, command_crop_size, parse_shifts

__all__ = ["SmoothThreat", "BoxThreat", "build_threat", "check_model", "certify_chunk", "describe", "curve"]

STATUS = {
    0: "certified",
    1: "fooled by the dense attack",
    2: "unknown",
    3: "wrong unshifted",
    4: "counterexample found by branch and bound",
}


@dataclass(frozen=True)
class SmoothThreat:
    """The smoothing method's set: every shift within an L2 (or box) radius, band-limited circular."""

    spec: str
    kind: str
    radius: float
    l2_radius: float

    def to_json(self) -> dict:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "radius": self.radius,
            "l2_radius": self.l2_radius,
            "mode": "circular",
            "interpolation": "fourier (band-limited, Nyquist row/column removed)",
        }


@dataclass(frozen=True)
class BoxThreat:
    """The bound method's set: every real shift with |dx|, |dy| <= R, bilinear between integer shifts."""

    spec: str
    radius: int
    mode: str
    fill: float

    def to_json(self) -> dict:
        out = {
            "spec": self.spec,
            "kind": "box",
            "radius": self.radius,
            "mode": self.mode,
            "interpolation": "bilinear between exact integer shifts",
        }
        if self.mode == "zero":
            out["fill"] = self.fill
        return out


def build_threat(cfg, image_size: tuple[int, int]):
    """The threat of ``cfg.method``: a finite :class:`ThreatModel` (exact) or a :class:`SmoothThreat`."""
    if cfg.method == "smooth":
        if cfg.mode != "circular":
            raise SpecError(
                "randomized smoothing over translations needs shifts that compose exactly: "
                "band-limited circular shifts; use --mode circular"
            )
        kind, r, l2 = parse_radius(cfg.shifts)
        smooth_config(cfg).check()  # before any output is written
        return SmoothThreat(cfg.shifts.strip(), kind, r, l2)
    if cfg.method == "bound":
        r = parse_box(cfg.shifts)
        if cfg.mode not in ("zero", "circular"):
            raise SpecError(
                f"the bound method defines sub-pixel shifts in zero or circular mode, got {cfg.mode!r}"
            )
        if r + 1 >= min(image_size):
            raise SpecError(f"box:{r} is too large for {image_size[0]}x{image_size[1]} images")
        threat = BoxThreat(cfg.shifts.strip(), r, cfg.mode, cfg.fill)
        bound_config(cfg, threat).check()  # before any output is written
        return threat
    shifts = parse_shifts(cfg.shifts)
    if shifts.kind == "random":
        raise SpecError(
            f"an exact certificate needs a finite set (grid:, list:, rt:); {cfg.shifts} samples "
            "the set and proves nothing"
        )
    crop = cfg.crop_size
    if cfg.mode == "crop":
        crop = command_crop_size(shifts, image_size, cfg.canvas_pad, cfg.crop_size)
    interp = "exact" if shifts.is_integer else "bilinear"
    threat = ThreatModel(shifts, mode=cfg.mode, interpolation=interp, fill=cfg.fill, crop_size=crop)
    threat.check_fits(*image_size)
    return threat


def check_model(cfg, model, images: Tensor, indices: Tensor, threat, device, n_images: int = 8) -> None:
    """Refuse, before any output is written, a model the method cannot certify soundly.

    For ``bound``: the model must lower to supported operations that compute its own logits
    on the first ``n_images`` images (:func:`~.lowering_check.check_lowering`); every chunk
    checks its own images again before it bounds them. Other methods evaluate the model itself.
    """
    if cfg.method != "bound":
        return
    runner = ModelRunner(model, device, images.dtype)
    bounder = BoundModel(runner.model, tuple(images.shape[-2:])).to(runner.device)
    check_lowering(bounder, runner, images[:n_images], threat.radius, threat.mode, threat.fill,
                   indices=indices[:n_images])


def bound_config(cfg, threat: BoxThreat) -> BoundConfig:
    return BoundConfig(
        radius=threat.radius,
        mode=threat.mode,
        fill=threat.fill,
        attack_step=cfg.attack_step,
        max_pieces=cfg.max_pieces,
        min_width=cfg.min_width,
        batch_size=cfg.bound_batch,
    )


def _bound_records(out: dict, labels: Tensor, indices: Tensor) -> list[dict]:
    records = []
    for k in range(labels.numel()):
        shift = [float(v) for v in out["worst_params"][k, :2].tolist()]
        radius = int(out["certified_radius"][k])
        bound = float(out["margin_lower_bound"][k])
        records.append(
            {
                "index": int(indices[k]),
                "label": int(labels[k]),
                "clean_pred": int(out["clean_pred"][k]),
                "robust": bool(out["robust"][k]),
                "certified": bool(out["certified"][k]),
                "status": STATUS[int(out["status"][k])],
                "worst_shift": shift,
                "worst_margin": float(out["worst_margin"][k]),
                "n_evaluated": int(out["n_evaluated"][k]),
                "n_pieces": int(out["n_pieces"][k]),
                "margin_lower_bound": None if math.isnan(bound) else bound,
                "certified_radius": None if radius < 0 else radius,
            }
        )
    return records


def smooth_config(cfg) -> SmoothConfig:
    return SmoothConfig(sigma=cfg.sigma, n0=cfg.n0, n=cfg.n, alpha=cfg.alpha, seed=cfg.seed)


def certify_chunk(
    cfg, model, images: Tensor, labels: Tensor, indices: Tensor, threat, device, progress: bool = False
) -> list[dict]:
    """Certificate records for one chunk of images (the DESIGN.md fields plus the method's own)."""
    if cfg.method == "exact":
        result = certify_exact(
            model,
            images,
            labels,
            threat,
            batch_size=cfg.batch_size,
            order=cfg.order,
            device=device,
            progress=progress,
            precision=cfg.precision,
        )
        return exact_records(result, indices)
    if cfg.method == "bound":
        out = certify_bound(
            model,
            images,
            labels,
            bound_config(cfg, threat),
            device=device,
            batch_size=cfg.batch_size,
            progress=progress,
            indices=indices,
        )
        return _bound_records(out, labels, indices)
    rows = smooth_certify(
        model,
        images,
        labels,
        indices,
        smooth_config(cfg),
        device=device,
        batch_size=cfg.batch_size,
        progress=progress,
        precision=cfg.precision,
    )
    records = []
    for k, row in enumerate(rows):
        ok = certified_at(row["prediction"], row["label"], row["radius"], threat.l2_radius)
        records.append(
            {
                "index": int(indices[k]),
                "label": row["label"],
                "clean_pred": row["base_pred"],
                "smoothed_pred": row["prediction"],
                "robust": ok,
                "certified": ok,
                "worst_shift": [0, 0],
                "worst_margin": None,
                "n_evaluated": cfg.n0 + cfg.n,
                "top_class": row["top_class"],
                "n_top": row["n_top"],
                "p_lower": row["p_lower"],
                "radius": row["radius"],
            }
        )
    return records


def describe(cfg, threat) -> dict[str, Any]:
    """The ``method`` object of the document: name, parameters and the claim in words."""
    common = {"name": cfg.method, "batch_size": cfg.batch_size, "chunk_size": cfg.chunk_size}
    if cfg.method == "smooth":
        return {
            **common,
            "sigma": cfg.sigma,
            "n0": cfg.n0,
            "n": cfg.n,
            "alpha": cfg.alpha,
            "seed": cfg.seed,
            "claim": "for the smoothed classifier g(x) = argmax_c P(f(T_d P x) = c), d ~ N(0, sigma^2 I), "
            "with T_d the band-limited circular (Fourier) shift and P the removal of the Nyquist "
            "row/column: for each image marked certified, with probability at least 1 - alpha, g "
            f"classifies it correctly under every shift of L2 norm < {threat.l2_radius:g} px "
            "(the per-image radius is larger or equal). smoothed_pred is g's prediction (-1 = "
            "abstain); clean_pred is the base model's on the unshifted image. This is a "
            "certificate for g, not for the base model.",
        }
    if cfg.method == "bound":
        return {
            **common,
            "attack_step": cfg.attack_step,
            "max_pieces": cfg.max_pieces,
            "min_width": cfg.min_width,
            "bound_batch": cfg.bound_batch,
            "claim": f"every image marked certified is classified correctly under every real shift with "
            f"|dx|, |dy| <= {threat.radius} px, a sub-pixel shift being bilinear interpolation "
            f"between exact integer shifts in {threat.mode} mode (sound linear bounds in float64 "
            "with branch and bound; the model's own float32 arithmetic may differ by rounding)",
        }
    if threat.exact:
        how = "exact integer shifts, no interpolation"
    elif threat.shifts.has_rotation:
        how = "rotations with bilinear sampling and zero fill"
    else:
        how = "each member by bilinear interpolation between exact integer shifts"
    return {
        **common,
        "order": cfg.order,
        "claim": "every image marked certified is classified correctly under every member of the set "
        f"(exhaustive enumeration; {how})",
    }


def curve(cfg, threat, records: list[dict]) -> list[dict] | None:
    """Certified accuracy against radius (Chebyshev px for exact, L2 px for smooth)."""
    if not records:
        return None
    if cfg.method == "smooth":
        n = len(records)
        radii = [cfg.sigma * q / 4 for q in range(17)]
        return [
            {
                "radius": r,
                "certified_accuracy": sum(
                    certified_at(rec["smoothed_pred"], rec["label"], rec["radius"], r) for rec in records
                )
                / n,
            }
            for r in radii
        ]
    if cfg.method == "bound":
        return radius_curve(records, [float(r) for r in range(threat.radius + 1)])
    if "certified_radius" in records[0]:
        return radius_curve(records, set_radii(threat))
    return None
