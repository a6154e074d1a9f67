"""Blur corruptions (Hendrycks & Dietterich 2019), batched in torch.

* gaussian_blur (held out): scikit-image's ``filters.gaussian`` with sigma c per
  channel, i.e. ``scipy.ndimage.gaussian_filter`` with border ``nearest`` and
  truncate 4: a separable kernel of radius ``int(4 * sigma + 0.5)`` px,
  ``exp(-t^2 / (2 sigma^2))`` normalised, replicate padding.
* defocus_blur: convolution with a disk kernel of radius r (section 2 of
  CORRUPTIONS.md: a binary disk ``x^2 + y^2 <= r^2`` on a 17x17 grid for r <= 8,
  else (2r+1)x(2r+1), normalised, then anti-aliased by OpenCV's ``GaussianBlur``
  with a 3x3 (5x5 for r > 8) kernel of sigma a and reflect-101 borders), applied
  per channel with reflect-101 borders (OpenCV ``filter2D``), clipped; kernels of
  9 px and more (ImageNet's) by FFT, the CIFAR-10 ones as a direct convolution.
* glass_blur (sigma, delta, n): Gaussian blur, truncation to 8 bits, then n passes
  over rows ``H - delta`` down to ``delta + 1`` and, within each, columns
  ``W - delta`` down to ``delta + 1``: each visited pixel takes the value of the
  pixel at a random offset (dy, dx), each uniform on ``[-delta, delta - 1]``. The
  published code means to swap the two pixels, but NumPy views alias, so only the
  visited pixel changes; we reproduce what it does. Then blur again and clip.
  The passes are sequential per image and batched across images.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from shiftattack.corruptions._registry import register_corruption

__all__ = ["gaussian_kernel1d", "gaussian_filter", "gaussian_blur", "disk_kernel", "defocus_blur",
           "glass_blur"]


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, *, dtype=None, device=None) -> Tensor:
    """Normalised 1-D Gaussian taps of radius ``int(truncate * sigma + 0.5)`` (SciPy's rule); (2r+1,)."""
    radius = int(truncate * float(sigma) + 0.5)
    return _gaussian_taps(2 * radius + 1, sigma).to(dtype=dtype or torch.get_default_dtype(), device=device)


def _gaussian_taps(size: int, sigma: float) -> Tensor:
    """``size`` taps exp(-(i - (size-1)/2)^2 / (2 sigma^2)), normalised (also OpenCV's getGaussianKernel)."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(t**2) / (2 * sigma**2))
    return taps / taps.sum()


def _separable_filter(x: Tensor, taps: Tensor, pad_mode: str) -> Tensor:
    """Filter every channel of (N, C, H, W) with ``taps`` along H then W, padding by ``pad_mode``."""
    r, c = taps.numel() // 2, x.shape[1]
    taps = taps.to(dtype=x.dtype, device=x.device)
    rows, cols = taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), taps.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode=pad_mode), rows, groups=c)
    return F.conv2d(F.pad(x, (r, r, 0, 0), mode=pad_mode), cols, groups=c)


def gaussian_filter(x: Tensor, sigma: float, truncate: float = 4.0) -> Tensor:
    """Separable Gaussian blur of every channel with replicate ('nearest') borders; (N, C, H, W) -> same."""
    return _separable_filter(x, gaussian_kernel1d(sigma, truncate), "replicate")


@register_corruption("gaussian_blur", imagenet=(1, 2, 3, 4, 6), cifar10=(0.4, 0.6, 0.7, 0.8, 1.0),
                     group="blur", held_out=True)
def gaussian_blur(x: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
    """Gaussian blur of standard deviation ``sigma`` px (scikit-image's defaults); clipped to [0, 1]."""
    if math.isclose(sigma, 0.0):
        return x.clone()
    return gaussian_filter(x, sigma).clamp_(0, 1)


def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The published defocus kernel (float64, square, odd side 17 or 2r+1), summing to 1.

    Examples:
        >>> disk_kernel(1, 0.2).shape
        torch.Size([17, 17])
    """
    if radius <= 8:
        grid, blur = torch.arange(-8, 9, dtype=torch.float64), 3
    else:
        grid, blur = torch.arange(-radius, radius + 1, dtype=torch.float64), 5
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    disk = ((xx**2 + yy**2) <= radius**2).to(torch.float64)
    disk /= disk.sum()
    # OpenCV GaussianBlur(ksize=blur, sigma=alias_blur), border BORDER_REFLECT_101 (torch's "reflect")
    return _separable_filter(disk[None, None], _gaussian_taps(blur, alias_blur), "reflect")[0, 0]


def _trim_zeros(kernel: Tensor) -> Tensor:
    """Drop all-zero outer rings of a square odd kernel (the 17x17 grid around a small disk); same filter."""
    r = kernel.shape[-1] // 2
    def ring_is_zero(k: Tensor) -> bool:
        return not bool(k[0].any() or k[-1].any() or k[:, 0].any() or k[:, -1].any())

    while r > 0 and ring_is_zero(kernel):
        kernel, r = kernel[1:-1, 1:-1], r - 1
    return kernel


@lru_cache(maxsize=64)
def _defocus_kernel(radius: float, alias_blur: float) -> Tensor:
    """The trimmed float64 defocus kernel of (radius, alias_blur), built once per severity."""
    return _trim_zeros(disk_kernel(radius, alias_blur))


def _fft_side(n: int) -> int:
    """The smallest 2^a 3^b >= n: FFT sizes pocketfft and cuFFT transform quickly."""
    best = 1 << (n - 1).bit_length()
    p3 = 1
    while p3 < best:
        side = p3
        while side < n:
            side *= 2
        best, p3 = min(best, side), p3 * 3
    return best


@lru_cache(maxsize=64)
def _defocus_spectrum(c: tuple[float, float], shape: tuple[int, int], dtype: torch.dtype,
                      device: torch.device) -> Tensor:
    """The conjugate rfft2 of the kernel at the top-left of a zero (L_h, L_w) plane: correlation."""
    kernel = _defocus_kernel(*c)
    plane = torch.zeros(shape, dtype=torch.float64)
    plane[: kernel.shape[0], : kernel.shape[1]] = kernel
    spectrum = torch.fft.rfft2(plane).conj()
    return spectrum.to(device=device, dtype=torch.complex64 if dtype != torch.float64 else torch.complex128)


def _correlate_fft(padded: Tensor, c: tuple[float, float], h: int, w: int) -> Tensor:
    """``padded`` (N, C, H + 2r, W + 2r) correlated with the defocus kernel (side 2r + 1): (N, C, H, W).

    Zero-padded to FFT-friendly sides, so that the circular correlation never wraps
    where it is kept.
    """
    shape = (_fft_side(padded.shape[-2]), _fft_side(padded.shape[-1]))
    work = padded if padded.dtype in (torch.float32, torch.float64) else padded.float()
    spectrum = _defocus_spectrum(c, shape, work.dtype, work.device)
    out = torch.fft.irfft2(torch.fft.rfft2(work, s=shape) * spectrum, s=shape)
    return out[..., :h, :w].to(padded.dtype)


_FFT_FROM = 9  # kernel side from which the FFT beats the direct depthwise convolution on the CPU


@register_corruption("defocus_blur", imagenet=((3, .1), (4, .5), (6, .5), (8, .5), (10, .5)),
                     cifar10=((.3, .4), (.4, .5), (.5, .6), (1, .2), (1.5, .1)), group="blur")
def defocus_blur(x: Tensor, c: tuple[float, float], generator: torch.Generator | None = None) -> Tensor:
    """Disk-kernel blur of radius ``c[0]`` px, anti-aliased with sigma ``c[1]``; clipped to [0, 1].

    Small kernels (side < 9 px, the CIFAR-10 severities) as a depthwise convolution,
    larger ones (ImageNet's, 9 to 21 px) by FFT; both on the reflect-101 padded image.
    """
    kernel = _defocus_kernel(*c)
    r, ch = kernel.shape[-1] // 2, x.shape[1]
    h, w = x.shape[-2:]
    padded = F.pad(x.contiguous(), (r, r, r, r), mode="reflect")  # filter2D's default border, reflect-101
    if kernel.shape[-1] >= _FFT_FROM:
        return _correlate_fft(padded, (float(c[0]), float(c[1])), h, w).clamp_(0, 1)
    weight = kernel.to(dtype=x.dtype, device=x.device).expand(ch, 1, -1, -1)
    return F.conv2d(padded, weight, groups=ch).clamp_(0, 1)


def _glass_moves(x: Tensor, delta: int, offsets: Tensor) -> Tensor:
    """Apply the published pixel moves in place order; ``offsets`` (n, rows, cols, N, 2) as (dy, dx)."""
    n_img = x.shape[0]
    h, w = x.shape[-2:]
    rows = range(h - delta, delta, -1)
    cols = range(w - delta, delta, -1)
    batch = torch.arange(n_img, device=x.device)
    x = x.clone()
    for it in range(offsets.shape[0]):
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                dy, dx = offsets[it, i, j, :, 0], offsets[it, i, j, :, 1]
                x[batch, :, r, c] = x[batch, :, r + dy, c + dx]
    return x


@register_corruption("glass_blur", imagenet=((.7, 1, 2), (.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
                     cifar10=((.05, 1, 1), (.25, 1, 1), (.4, 1, 1), (.25, 1, 2), (.4, 1, 2)), group="blur")
def glass_blur(x: Tensor, c: tuple[float, int, int], generator: torch.Generator | None = None) -> Tensor:
    """Glass blur with ``c = (sigma, delta, passes)``; (N, C, H, W) in [0, 1] -> same, clipped."""
    sigma, delta, passes = c
    h, w = x.shape[-2:]
    n_rows, n_cols = max(0, h - 2 * delta), max(0, w - 2 * delta)
    # drawn image by image (image 0's moves first), so one image at a time equals the batch
    offsets = torch.randint(-delta, delta, (x.shape[0], passes, n_rows, n_cols, 2), generator=generator,
                            device=generator.device if generator is not None else "cpu").to(x.device)
    offsets = offsets.permute(1, 2, 3, 0, 4)
    blurred = torch.floor(gaussian_filter(x, sigma) * 255) / 255  # the published np.uint8 truncation
    return gaussian_filter(_glass_moves(blurred, delta, offsets), sigma).clamp_(0, 1)
