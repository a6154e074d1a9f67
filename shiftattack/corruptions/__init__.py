"""Image corruptions of ImageNet-C / CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019), in torch.

Batched, device-agnostic and seeded through a ``torch.Generator``; severity
parameters as published (``../shared/reference/CORRUPTIONS.md``). This first
part holds the noise and digital families and Gaussian blur; the other blurs, the weather family, the
elastic transform, the perturbation sequences (ImageNet-P / CIFAR-10-P), file
formats and the benchmark command follow (issue 4).

Examples:
    >>> import torch
    >>> x = torch.rand(2, 3, 32, 32)
    >>> corrupt(x, "gaussian_noise", 3, generator=torch.Generator().manual_seed(0), params="cifar10").shape
    torch.Size([2, 3, 32, 32])
"""

from __future__ import annotations

import torch
from torch import Tensor

from shiftattack.corruptions import blur, digital, elastic, motion, noise, spatter, weather, zoom  # noqa: F401  (register them)
from shiftattack.corruptions._checks import check_images
from shiftattack.corruptions._registry import (
    SUITES,
    Corruption,
    get_corruption,
    list_corruptions,
    register_corruption,
)
from shiftattack.errors import SpecError

__all__ = ["corrupt", "check_available", "list_corruptions", "get_corruption", "register_corruption", "Corruption",
           "SUITES"]


def check_available(names: list[str]) -> None:
    """Raise now, not in the middle of a run, when a corruption of ``names`` lacks what it needs.

    Only ``frost`` needs anything outside the package: the published frost photographs
    (:func:`~shiftattack.corruptions.weather.frost_dir`).

    Raises:
        SpecError: naming the missing part and how to install it.
    """
    if "frost" in names:
        weather.frost_dir()


def corrupt(
    x: Tensor, name: str, severity: int, *, generator: torch.Generator | None = None, params: str = "imagenet"
) -> Tensor:
    """Corrupt a batch with corruption ``name`` at ``severity`` 1 to 5.

    Args:
        x: float (N, 3, H, W) images in [0, 1], on any device.
        name: one of :func:`list_corruptions`.
        severity: 1 (mildest) to 5.
        generator: seeds every random draw (on ``x``'s device); None uses torch's global RNG.
        params: ``imagenet`` (ImageNet-C strengths) or ``cifar10`` (CIFAR-10-C strengths).

    Returns:
        float (N, 3, H, W) in [0, 1], ``x``'s dtype and device. The published files
        quantise with ``uint8`` truncation afterwards; that belongs to writing them.
    """
    check_images(x, "images")
    if x.shape[1] != 3:
        raise SpecError(f"corruptions need RGB images (N, 3, H, W), got {tuple(x.shape)}")
    if not isinstance(severity, int) or not 1 <= severity <= 5:
        raise SpecError(f"severity must be an integer from 1 to 5, got {severity!r}")
    if params not in SUITES:
        raise SpecError(f"params must be one of {', '.join(SUITES)}, got {params!r}")
    c = get_corruption(name)
    return c.fn(x, c.params[params][severity - 1], generator)
