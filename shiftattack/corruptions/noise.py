"""Noise corruptions (Hendrycks & Dietterich 2019), batched and seeded.

Per value (pixel x channel) of x in [0, 1], then clipped to [0, 1]:

* gaussian_noise: x + N(0, c^2);
* shot_noise: Poisson(x * c) / c (a larger photon scale c means less noise);
* impulse_noise: salt and pepper: each value is hit with probability c, a hit
  becomes 0 or 1 with equal odds (scikit-image 0.13's ``random_noise('s&p')``);
* speckle_noise: x + x * N(0, c^2).
"""

from __future__ import annotations

import torch
from torch import Tensor

from shiftattack.corruptions._registry import register_corruption

__all__ = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]


def _randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _rand(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)


@register_corruption("gaussian_noise", imagenet=(.08, .12, .18, .26, .38), cifar10=(.04, .06, .08, .09, .10),
                     group="noise")
def gaussian_noise(x: Tensor, c: float, generator: torch.Generator | None = None) -> Tensor:
    """Additive Gaussian noise of standard deviation ``c``; (N, C, H, W) in [0, 1]."""
    return (x + c * _randn(x, generator)).clamp_(0, 1)


@register_corruption("shot_noise", imagenet=(60, 25, 12, 5, 3), cifar10=(500, 250, 100, 75, 50),
                     group="noise")
def shot_noise(x: Tensor, c: float, generator: torch.Generator | None = None) -> Tensor:
    """Poisson (photon) noise at photon scale ``c``; (N, C, H, W) in [0, 1]."""
    rates = (x * c).float()
    return (torch.poisson(rates, generator=generator).to(x.dtype) / c).clamp_(0, 1)


@register_corruption("impulse_noise", imagenet=(.03, .06, .09, .17, .27), cifar10=(.01, .02, .03, .05, .07),
                     group="noise")
def impulse_noise(x: Tensor, c: float, generator: torch.Generator | None = None) -> Tensor:
    """Salt-and-pepper noise hitting each value with probability ``c``; (N, C, H, W) in [0, 1].

    One uniform u per value: u < c/2 is pepper (0), c/2 <= u < c salt (1), the rest keep x.
    """
    u = _rand(x, generator)  # image by image in memory order, so batching does not change the draws
    return torch.where(u < c, (u >= c / 2).to(x.dtype), x)


@register_corruption("speckle_noise", imagenet=(.15, .20, .35, .45, .60), cifar10=(.06, .10, .12, .16, .20),
                     group="noise", held_out=True)
def speckle_noise(x: Tensor, c: float, generator: torch.Generator | None = None) -> Tensor:
    """Multiplicative Gaussian noise ``x + x * N(0, c^2)``; (N, C, H, W) in [0, 1]."""
    return (x + x * c * _randn(x, generator)).clamp_(0, 1)
