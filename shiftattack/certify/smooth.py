"""Randomized smoothing over translations (TSS, Li et al. CCS 2021; Cohen et al. 2019's CERTIFY).

The smoothed classifier is ``g(x) = argmax_c P(f(T_d P x) = c)``, d ~ N(0, sigma^2 I_2),
where ``T_d`` is the band-limited (Fourier) circular shift by d = (dx, dy) px and ``P``
removes the Nyquist row and column of an even-sized image (a no-op for odd sizes).
On the remaining frequencies a shift multiplies each coefficient by a phase, so
``T_a T_b P = T_(a+b) P`` exactly and ``P T_a = T_a P``: translating the input by a
shifts the smoothing distribution's mean by a, which is what the guarantee needs.
(The usual real-part convention at the Nyquist frequency does not compose; that is
why it is removed.)

CERTIFY, per image: ``n0`` samples choose the top class ``c``; ``n`` further samples
count ``k`` hits of ``c``; ``p_lower`` is the one-sided Clopper-Pearson lower bound on
P(f = c) at level ``alpha``. If ``p_lower < 1/2`` the image is an abstention;
otherwise g predicts c, and with probability at least 1 - alpha,
g(T_a x) = c for every shift with ``||a||_2 < R = sigma * Phi^-1(p_lower)``. The
certificate is about g, the smoothed classifier, not the base model f; each row also
holds f's own prediction on the unshifted image (``base_pred``), which may differ.

Draws are seeded per image from ``(seed, index)``, so a run is reproducible and
does not depend on how images are batched or chunked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy.stats import beta, norm
from torch import Tensor

from shiftattack._progress import tqdm
from shiftattack.errors import SpecError
from shiftattack.runtime.engine import ModelRunner
from shiftattack.shifts.functional import shift_fourier

__all__ = [
    "SmoothConfig",
    "band_limit",
    "band_limited_shift",
    "clopper_pearson_lower",
    "smooth_certify",
    "parse_radius",
    "certified_at",
]


@dataclass
class SmoothConfig:
    """Randomized-smoothing settings: ``sigma`` (px), sample counts, ``alpha``, ``seed``."""

    sigma: float = 1.0
    n0: int = 100
    n: int = 1000
    alpha: float = 0.001
    seed: int = 0

    def check(self) -> None:
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise SpecError(f"sigma must be a positive number of pixels, got {self.sigma}")
        if self.n0 < 1 or self.n < 1:
            raise SpecError(f"n0 and n must be >= 1, got {self.n0} and {self.n}")
        if not 0 < self.alpha < 0.5:
            raise SpecError(f"alpha must lie in (0, 0.5), got {self.alpha}")


def parse_radius(spec: str) -> tuple[str, float, float]:
    """``l2:R`` or ``box:R`` -> (kind, R, the L2 radius that covers it: R or R * sqrt 2)."""
    head, _, rest = spec.strip().partition(":")
    try:
        r = float(rest)
    except ValueError:
        r = float("nan")
    if head not in ("l2", "box") or not (r >= 0 and math.isfinite(r)):
        raise SpecError(
            f"the smooth method certifies l2:R (every shift with ||(dx, dy)||_2 < R) or box:R "
            f"(|dx|, |dy| <= R), R >= 0 px; got {spec!r}"
        )
    return head, r, r if head == "l2" else r * math.sqrt(2)


def band_limit(x: Tensor) -> Tensor:
    """``P x``: remove the Nyquist row / column of even-sized images (N, C, H, W); same dtype."""
    h, w = x.shape[-2:]
    if h % 2 and w % 2:
        return x
    spec = torch.fft.fft2(x.double())
    if h % 2 == 0:
        spec[..., h // 2, :] = 0
    if w % 2 == 0:
        spec[..., :, w // 2] = 0
    return torch.fft.ifft2(spec).real.to(x.dtype)


def band_limited_shift(px: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """``T_d`` applied to band-limited images ``px`` (N, C, H, W) by shifts dx, dy (N,) in px."""
    return shift_fourier(px, dx, dy)


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a success probability from k of n."""
    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))


def certified_at(prediction: int, label: int, radius: float | None, l2_radius: float) -> bool:
    """Whether a smoothed prediction with certified ``radius`` (None = abstain) certifies ``label`` at
    L2 radius ``l2_radius`` px (every shift strictly inside ``radius``)."""
    return prediction == label and radius is not None and (radius > l2_radius or l2_radius == 0)


def _counts(
    runner: ModelRunner, px: Tensor, m: int, sigma: float, gen: torch.Generator, batch: int, k: int
) -> Tensor:
    """Class counts (k,) of f(T_d P x) over m draws d ~ N(0, sigma^2 I)."""
    counts = torch.zeros(k, dtype=torch.long)
    # all m draws at once: torch's normal sampler draws differently in small and large calls,
    # so drawing batch by batch would tie the samples to the batch size
    d = torch.randn(m, 2, generator=gen, dtype=torch.float64) * sigma
    for start in range(0, m, batch):
        part = d[start : start + batch]
        x = band_limited_shift(
            px.expand(part.shape[0], -1, -1, -1), part[:, 0].to(px.dtype), part[:, 1].to(px.dtype)
        )
        counts += torch.bincount(runner(x).argmax(1).cpu(), minlength=k)
    return counts


def smooth_certify(
    model,
    images: Tensor,
    labels: Tensor,
    indices: Tensor,
    cfg: SmoothConfig,
    *,
    device="cpu",
    batch_size: int = 256,
    progress: bool = False,
    precision: str = "fp32",
) -> list[dict]:
    """CERTIFY every image; returns per-image dicts (``precision``: the base model runs under that
    autocast, :mod:`~shiftattack.runtime.precision`).

    Args:
        model: maps (N, 3, H, W) in [0, 1] to logits.
        images: (N, 3, H, W) floats in [0, 1].
        labels, indices: (N,) int64; ``indices`` seed each image's draws.
        cfg: :class:`SmoothConfig`.

    Returns:
        one dict per image: ``prediction`` (g's class, -1 = abstain), ``top_class``,
        ``n_top`` (hits of it in ``cfg.n`` draws), ``p_lower``, ``radius`` (L2 px, None
        when abstaining), ``label``, and ``base_pred``, the base model's top-1 on the
        unshifted image (no band-limiting, no noise).
    """
    cfg.check()
    runner = ModelRunner(model, device, images.dtype, precision=precision)
    runner.check_labels(labels.to(runner.device), images[:1].to(runner.device))
    k = int(runner.num_classes)  # type: ignore[arg-type]
    base = torch.cat([runner(images[lo : lo + batch_size]).argmax(1).cpu()
                      for lo in range(0, images.shape[0], batch_size)]) if images.shape[0] else None
    out = []
    bar = tqdm(total=images.shape[0], disable=not progress, unit="img", desc="smooth", leave=False)
    for i in range(images.shape[0]):
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + int(indices[i]))
        px = band_limit(images[i : i + 1].to(runner.device, runner.dtype))
        top = int(_counts(runner, px, cfg.n0, cfg.sigma, gen, batch_size, k).argmax())
        counts = _counts(runner, px, cfg.n, cfg.sigma, gen, batch_size, k)
        hits = int(counts[top])
        p_lower = clopper_pearson_lower(hits, cfg.n, cfg.alpha)
        abstain = p_lower < 0.5
        radius = None if abstain else cfg.sigma * float(norm.ppf(p_lower))
        out.append(
            {
                "prediction": -1 if abstain else top,
                "top_class": top,
                "n_top": hits,
                "p_lower": p_lower,
                "radius": radius,
                "label": int(labels[i]),
                "base_pred": int(base[i]),
            }
        )
        bar.update(1)
    bar.close()
    return out
