"""Motion blur (Hendrycks & Dietterich 2019): ImageMagick's MotionBlurImage, without ImageMagick.

The published generator calls ImageMagick's ``MotionBlurImage(radius R, sigma s,
angle a)`` through Wand (CORRUPTIONS.md section 2, "ImageMagick motion blur";
section 3, "Blur"). We follow the NumPy re-implementation in the
``imagecorruptions`` package (``_motion_blur``, ``getMotionBlurKernel``,
``shift``), which is what the tests compare with:

* the kernel is one-sided with ``K = 2 * ceil(R) + 1`` taps; tap ``k = 0 .. K-1``
  weighs ``exp(-k^2 / (2 s^2))``, normalised to sum 1 over the K taps;
* tap k reads the pixel at the offset ``(ceil(k sin(a) - 0.5), ceil(k cos(a) - 0.5))``
  (rows, cols) px from the output pixel, with ``a`` in degrees and the products
  evaluated as ``k * (K sin a) / hypot(K sin a, K cos a)`` in float64 as the
  reference does (``ceil(v - 0.5)`` rounds halves down; the float error of
  ``sin``/``cos`` decides angles such as -120 degrees). So at angle 0 every
  pixel averages itself with the pixels to its right and a bright point leaves a
  trail towards the left (at 90: it reads the pixels below, the trail goes up);
* a tap outside the image reads the nearest edge pixel (edge replicated);
* the first tap whose row offset reaches H or column offset reaches W, and every
  later tap, is dropped *without renormalising* (the reference stops there).

The taps are integer shifts: per image, the image is padded once by replication and
each tap adds a shifted window of it (a view, no index tensors). The offsets are
computed on the CPU in float64, so every device gets the same ones.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from shiftattack.corruptions._checks import check_images
from shiftattack.corruptions._registry import register_corruption
from shiftattack.errors import SpecError

__all__ = ["motion_blur_image", "motion_blur"]


def _check_blur_args(radius: float, sigma: float) -> None:
    if not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius < 0:
        raise SpecError(f"motion blur radius must be a finite number >= 0 (pixels), got {radius!r}")
    if not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise SpecError(f"motion blur sigma must be a finite number > 0 (pixels), got {sigma!r}")


def _angles(angle: Tensor | float, n: int) -> Tensor:
    """``angle`` as a float64 CPU tensor (n,) of degrees; a number or a 0-d tensor applies to all images."""
    if not isinstance(angle, Tensor):
        if not isinstance(angle, (int, float)):
            raise SpecError(
                f"angle must be a float tensor (N,) of degrees or a number, got {type(angle).__name__}"
            )
        angle = torch.tensor(float(angle))
    if angle.dim() == 0:
        angle = angle.expand(n)
    if angle.shape != (n,):
        raise SpecError(
            f"angle must have shape ({n},) (one angle in degrees per image), got {tuple(angle.shape)}"
        )
    angle = angle.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(angle).all()):
        raise SpecError("angle contains NaN or Inf; expected finite degrees")
    return angle


def _motion_taps(
    radius: float, sigma: float, angle: Tensor, height: int, width: int
) -> tuple[Tensor, Tensor]:
    """Per-image tap weights and offsets of the published motion kernel.

    Args:
        radius, sigma: kernel radius and Gaussian sigma, px.
        angle: float64 (N,) degrees, on the CPU.
        height, width: image size, px (taps reaching it are dropped).

    Returns:
        weights float64 (N, K), zero for dropped taps, and offsets int64 (N, K, 2) as
        (row, col) px, zero for dropped taps; both on the CPU.
    """
    k = 2 * math.ceil(radius) + 1
    taps = torch.arange(k, dtype=torch.float64)
    weights = torch.exp(-(taps**2) / (2 * float(sigma) ** 2)) / (math.sqrt(2 * math.pi) * sigma)
    weights = weights / weights.sum()
    rad = torch.deg2rad(angle)
    along_rows, along_cols = k * torch.sin(rad), k * torch.cos(rad)
    hyp = torch.hypot(along_rows, along_cols)
    rows = torch.ceil(taps * along_rows[:, None] / hyp[:, None] - 0.5).long()
    cols = torch.ceil(taps * along_cols[:, None] / hyp[:, None] - 0.5).long()
    outside = (rows.abs() >= height) | (cols.abs() >= width)
    kept = outside.long().cumsum(1) == 0  # the reference stops at the first tap outside
    offsets = torch.stack([rows, cols], -1) * kept[..., None]
    return weights * kept, offsets


def _replicate_pad(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """(C, H, W) padded by repeating its edge rows and columns; the sides with 0 are not copied."""
    if top or bottom:
        x = torch.cat([x[:, :1].expand(-1, top, -1), x, x[:, -1:].expand(-1, bottom, -1)], 1)
    if left or right:
        x = torch.cat([x[..., :1].expand(-1, -1, left), x, x[..., -1:].expand(-1, -1, right)], 2)
    return x


def _apply_taps(x: Tensor, weights: Tensor, offsets: Tensor) -> Tensor:
    """``sum_k w[n, k] * x[n, :, clamp(r + dr[n, k]), clamp(c + dc[n, k])]``; (N, C, H, W) -> same.

    Image by image: each tap is a shifted window of the image padded once (by
    replication, on the sides its taps reach), added with its weight; taps of weight 0
    (the dropped ones) are skipped.
    """
    h, w = x.shape[-2:]
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # contiguous: the adds vectorise
    for img, acc, wts, offs in zip(x, out, weights.tolist(), offsets.tolist(), strict=True):
        taps = [(wt, r, c) for wt, (r, c) in zip(wts, offs, strict=True) if wt != 0]
        if not taps:
            acc.zero_()
            continue
        rows, cols = [t[1] for t in taps], [t[2] for t in taps]
        top, left = max(0, -min(rows)), max(0, -min(cols))
        padded = _replicate_pad(img.contiguous(), top, max(0, max(rows)), left, max(0, max(cols)))
        for k, (wt, r, c) in enumerate(taps):
            window = padded[:, top + r : top + r + h, left + c : left + c + w]
            if k == 0:
                torch.mul(window, wt, out=acc)
            else:
                acc.add_(window, alpha=wt)
    return out


def motion_blur_image(x: Tensor, radius: float, sigma: float, angle: Tensor | float) -> Tensor:
    """ImageMagick-style one-sided motion blur, one angle per image.

    Args:
        x: float (N, C, H, W) (any C; values are not clipped).
        radius: kernel radius R in px; the kernel has ``2 * ceil(R) + 1`` taps.
        sigma: Gaussian sigma of the tap weights, px (> 0).
        angle: float tensor (N,) of degrees (one per image, on any device), or one
            number for every image. At 0 a pixel reads the pixels to its right
            (+columns), at 90 those below it (+rows).

    Returns:
        float (N, C, H, W), ``x``'s dtype and device.

    Examples:
        >>> x = torch.zeros(1, 1, 5, 5); x[0, 0, 2, 2] = 1
        >>> y = motion_blur_image(x, 1, 1.0, torch.tensor([0.0]))
        >>> [round(v, 3) for v in y[0, 0, 2].tolist()]  # the point's trail runs left
        [0.078, 0.348, 0.574, 0.0, 0.0]
    """
    check_images(x, "images")
    _check_blur_args(radius, sigma)
    angle = _angles(angle, x.shape[0])
    weights, offsets = _motion_taps(radius, sigma, angle, x.shape[-2], x.shape[-1])
    return _apply_taps(x, weights, offsets)


@register_corruption(
    "motion_blur",
    imagenet=((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    cifar10=((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    group="blur",
)
def motion_blur(x: Tensor, c: tuple[float, float], generator: torch.Generator | None = None) -> Tensor:
    """Motion blur with ``c = (radius, sigma)`` px at an angle uniform in [-45, 45) degrees per image.

    The generator is consumed image after image: image i draws one float64 uniform
    u (``torch.rand(1)`` on ``x``'s device) and gets the angle ``-45 + 90 u``, so
    corrupting images one at a time with one generator gives the batched result.
    (N, 3, H, W) in [0, 1] -> same, clipped.
    """
    draws = [torch.rand(1, generator=generator, device=x.device, dtype=torch.float64) for _ in range(len(x))]
    angle = -45 + 90 * torch.cat(draws) if draws else torch.zeros(0, dtype=torch.float64)
    return motion_blur_image(x, c[0], c[1], angle).clamp_(0, 1)
