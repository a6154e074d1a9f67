"""Spatter (held out; weather group) of Hendrycks & Dietterich 2019, batched in torch.

CORRUPTIONS.md section 3, "Spatter"; parameters ``c = (mu, s, g, thr, k, mode)``.
Per image of any size H x W (the published code has no size constant here):

1. Liquid layer P: a field of N(mu, s^2) draws, (H, W), smoothed by scikit-image's
   ``filters.gaussian`` with sigma g (border 'nearest', truncate 4: radius
   ``int(4 g + 0.5)`` px; in float64, as one matrix product per axis, see
   ``elastic.scipy_gaussian_filter``), values below thr set to 0 (:func:`liquid_layer`).
2. mode 0, water (:func:`spatter_water_mask`), the published OpenCV chain on
   ``P8 = uint8(255 P)`` (NumPy's cast: truncation; a value of 256 or more wraps
   modulo 256, which CIFAR-10 severity 3 can reach):

   a. E = ``Canny(P8, 50, 150)`` (:func:`canny`): 3x3 Sobel derivatives with
      replicated borders, L1 magnitude ``|dx| + |dy|``, non-maximum suppression
      along the gradient quantised to 0, 45, 90, 135 degrees by OpenCV's
      fixed-point tangent test, hysteresis (> 150 seeds, > 50 joins, 8-connected).
   b. Dist = ``distanceTransform(255 - E, DIST_L2, 5)`` (:func:`chamfer_distance`):
      5x5 chamfer distance to the nearest edge pixel with weights 1, 1.4 and
      2.1969, by OpenCV's two raster passes in its 16-bit fixed point; capped at 20.
   c. ``uint8(blur3x3(Dist))`` (box, reflect-101 border, float sums, truncation),
      ``equalizeHist`` (:func:`equalize_hist`, OpenCV's LUT), the emboss filter
      ``[[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]`` on uint8 (correlation,
      reflect-101, saturating), ``blur3x3`` again on uint8 (rounded): D.
   d. Mask ``M = P8 * D / max(P8 * D) * k`` (float32, per image; an image with no
      liquid gets M = 0 where the published code divides 0 by 0). Output
      ``clip(x + M * (175, 238, 238) / 255, 0, 1)``, the colour in RGB order.
3. mode 1, mud (:func:`spatter_mud_mask`): ``m = gaussian(P > thr, sigma k)``
   (same scikit-image defaults), values below 0.8 set to 0; output
   ``clip(x * (1 - m) + m * (63, 42, 20) / 255, 0, 1)``.

Randomness: one standard-normal (1, H, W) field per image, drawn in float64 on
``x``'s device (float32 on MPS), image 0 first; so a batch equals its images
corrupted one at a time, in order, from one generator. :func:`spatter_from_field`
takes the scaled field instead. The raster-scan passes of the distance transform
loop over rows (each row needs the previous ones), batched over images, columns and
overlapping bands of rows (:mod:`~shiftattack.corruptions.chamfer`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from shiftattack.corruptions._checks import check_images
from shiftattack.corruptions._registry import register_corruption
from shiftattack.corruptions.chamfer import DIST_CAP, chamfer_distance
from shiftattack.corruptions.elastic import scipy_gaussian_filter
from shiftattack.errors import SpecError, check_shape

__all__ = [
    "spatter",
    "spatter_from_field",
    "liquid_layer",
    "spatter_water_mask",
    "spatter_mud_mask",
    "canny",
    "chamfer_distance",
    "equalize_hist",
    "WATER_COLOUR",
    "MUD_COLOUR",
]

#: Water (pale turquoise) and mud (brown) in RGB, 0..1.
WATER_COLOUR = (175 / 255, 238 / 255, 238 / 255)
MUD_COLOUR = (63 / 255, 42 / 255, 20 / 255)

_EMBOSS = ((-2.0, -1.0, 0.0), (-1.0, 1.0, 1.0), (0.0, 1.0, 2.0))
_TG22 = 13573  # round(tan(22.5 deg) * 2^15), OpenCV's Canny


def _work_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _border_index(n: int, lo: int, hi: int, mode: str, device) -> Tensor:
    """Source indices for positions ``-lo .. n + hi - 1`` of a length-``n`` axis under border ``mode``.

    ``reflect101`` (OpenCV's default, ``gfedcb|abcdefgh|gfedcba``), ``replicate`` (edge repeated).
    """
    i = torch.arange(-lo, n + hi, device=device)
    if mode == "replicate" or n == 1:
        return i.clamp(0, n - 1)
    period = 2 * n - 2
    i = i.remainder(period)
    return torch.where(i >= n, period - i, i)


def _pad(x: Tensor, r: int, mode: str) -> Tensor:
    """Pad the last two dimensions of ``x`` by ``r`` px on every side (any size, any r)."""
    h, w = x.shape[-2:]
    x = x.index_select(-2, _border_index(h, r, r, mode, x.device))
    return x.index_select(-1, _border_index(w, r, r, mode, x.device))


def _filter3x3(x: Tensor, kernel, mode: str) -> Tensor:
    """Correlate (N, 1, H, W) with a 3x3 ``kernel`` (nested tuples) after padding by ``mode``."""
    k = torch.tensor(kernel, dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    return F.conv2d(_pad(x, 1, mode), k)


def _to_uint8(v: Tensor) -> Tensor:
    """NumPy's ``astype(np.uint8)`` of floats: truncate toward zero, wrap modulo 256 (values stay float)."""
    return torch.trunc(v).remainder(256)


def liquid_layer(field: Tensor, g: float, thr: float) -> Tensor:
    """Smooth the N(mu, s^2) field (N, 1, H, W), sigma ``g`` px ('nearest', truncate 4); 0 below ``thr``."""
    p = scipy_gaussian_filter(field, g, truncate=4.0, mode="nearest")
    return p.masked_fill_(p < thr, 0.0)


def canny(img: Tensor, low: float = 50, high: float = 150) -> Tensor:
    """OpenCV's ``Canny(img, low, high)`` (aperture 3, L1 gradient) on integer-valued (N, 1, H, W) in 0..255.

    Returns a bool (N, 1, H, W) edge map. The gradient test, the tie rules (``>`` on
    one side, ``>=`` on the other, both ``>`` on diagonals) and the zero magnitude
    outside the image are OpenCV's; hysteresis grows the seeds through 8-connected
    candidates until nothing changes.
    """
    h, w = img.shape[-2:]
    sobel = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
    src = img.to(torch.float32)  # integer sums below 2^24: exact
    dx = _filter3x3(src, sobel, "replicate").int()  # int32 holds the tangent test's products
    dy = _filter3x3(src, tuple(zip(*sobel, strict=True)), "replicate").int()
    mag = dx.abs() + dy.abs()
    padded = F.pad(mag, (1, 1, 1, 1))

    def nb(di: int, dj: int) -> Tensor:
        return padded[..., 1 + di : 1 + di + h, 1 + dj : 1 + dj + w]

    ax, ay = dx.abs(), dy.abs() << 15
    tg22 = ax * _TG22
    horizontal = ay < tg22
    vertical = ay > tg22 + (ax << 16)
    same_sign = torch.bitwise_xor(dx, dy) >= 0
    keep = torch.where(
        horizontal,
        (mag > nb(0, -1)) & (mag >= nb(0, 1)),
        torch.where(
            vertical,
            (mag > nb(-1, 0)) & (mag >= nb(1, 0)),
            torch.where(
                same_sign, (mag > nb(-1, -1)) & (mag > nb(1, 1)), (mag > nb(-1, 1)) & (mag > nb(1, -1))
            ),
        ),
    )
    candidate = keep & (mag > math.floor(low))
    edges = candidate & (mag > math.floor(high))
    while True:  # hysteresis: grow the seeds through candidates, a few steps per convergence check
        grown = edges
        for _ in range(4):
            grown = candidate & _dilate3x3(grown)
        if torch.equal(grown, edges):
            return edges
        edges = grown


def _dilate3x3(b: Tensor) -> Tensor:
    """8-neighbourhood dilation of a bool (N, 1, H, W) map (outside the image counts as False)."""
    p = F.pad(b.to(torch.uint8), (1, 1, 1, 1))
    r = p[..., :, :-2] | p[..., :, 1:-1] | p[..., :, 2:]
    return (r[..., :-2, :] | r[..., 1:-1, :] | r[..., 2:, :]).bool()


def equalize_hist(img: Tensor) -> Tensor:
    """OpenCV's ``equalizeHist`` per image of integer-valued (N, 1, H, W) in 0..255; same shape, float32.

    With ``i0`` the lowest occupied level: ``lut[v] = round(float32(cum[v] - cum[i0]) *
    float32(255 / (H*W - hist[i0])))`` (round half to even), ``lut[i0] = 0``; a
    constant image stays constant.
    """
    n = img.shape[0]
    levels = img.reshape(n, -1).long()
    total = levels.shape[1]
    hist = torch.zeros(n, 256, dtype=torch.long, device=img.device)
    hist.scatter_add_(1, levels, torch.ones_like(levels))
    first = (hist > 0).to(torch.uint8).argmax(1, keepdim=True)
    cum = hist.cumsum(1)
    base, count = cum.gather(1, first), hist.gather(1, first)
    scale = torch.full_like(count, 255, dtype=torch.float32) / (total - count).clamp_min(1).to(torch.float32)
    lut = torch.round((cum - base).to(torch.float32) * scale).clamp_(0, 255)
    out = lut.gather(1, levels)
    constant = (count == total).expand_as(out)
    return torch.where(constant, levels.to(torch.float32), out).view_as(img)


def _box3_truncated(dist: Tensor) -> Tensor:
    """``cv2.blur(float32, (3, 3)).astype(np.uint8)``: the sum times 1/9 in double, to float32, truncated."""
    total = _filter3x3(dist.to(torch.float32), ((1.0,) * 3,) * 3, "reflect101")  # exact: 2^-16 steps, < 256
    return torch.floor((total.to(_work_dtype(dist.device)) * (1.0 / 9)).to(torch.float32))


def _box3_rounded(img: Tensor) -> Tensor:
    """``cv2.blur`` of a uint8 image (3x3, reflect-101): the rounded mean."""
    return torch.round(_filter3x3(img.to(torch.float32), ((1.0,) * 3,) * 3, "reflect101") / 9)


def spatter_water_mask(liquid: Tensor, k: float) -> Tensor:
    """The water mask of the published chain (module docstring, 2a-2d) from a liquid layer.

    Args:
        liquid: float (N, 1, H, W), the (thresholded, possibly smeared) liquid layer,
            about 0..1; it is cast to 8 bits as NumPy does.
        k: the mask's peak value.

    Returns:
        float32 (N, 1, H, W) in [0, k]; add ``M * WATER_COLOUR`` to the image and clip.
    """
    check_shape(liquid, ["N", 1, "H", "W"], "liquid layer")
    p8 = _to_uint8(liquid * 255).to(torch.float32)
    edges = canny(p8, 50, 150)
    dist = _box3_truncated(chamfer_distance(edges, DIST_CAP))
    dist = equalize_hist(dist)
    dist = _filter3x3(dist, _EMBOSS, "reflect101").clamp_(0, 255)
    dist = _box3_rounded(dist)
    m = p8 * dist  # exact: both are integers below 256
    peak = m.amax((-2, -1), keepdim=True)
    m = torch.where(peak > 0, m / peak.clamp_min(1), torch.zeros_like(m))
    return m * torch.tensor(k, dtype=torch.float32)


def spatter_mud_mask(liquid: Tensor, thr: float, k: float) -> Tensor:
    """The mud mask ``gaussian(liquid > thr, sigma k)`` ('nearest', truncate 4), 0 below 0.8; (N, 1, H, W)."""
    check_shape(liquid, ["N", 1, "H", "W"], "liquid layer")
    m = (liquid > thr).to(_work_dtype(liquid.device))
    m = scipy_gaussian_filter(m, k, truncate=4.0, mode="nearest")
    return m.masked_fill_(m < 0.8, 0.0)


def _check_params(c) -> tuple[float, float, float, float, float, int]:
    if not isinstance(c, (tuple, list)) or len(c) != 6:
        raise SpecError(f"spatter needs c = (mu, s, g, thr, k, mode), got {c!r}")
    mu, s, g, thr, k, mode = c
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (mu, s, g, thr, k)):
        raise SpecError(f"spatter parameters mu, s, g, thr, k must be finite numbers, got {c!r}")
    if s < 0 or g < 0 or k < 0:
        raise SpecError(f"spatter s (field std), g and k (sigmas, px) must be >= 0, got {c!r}")
    if mode not in (0, 1):
        raise SpecError(f"spatter mode must be 0 (water) or 1 (mud), got {mode!r}")
    return float(mu), float(s), float(g), float(thr), float(k), int(mode)


def _colour(rgb, x: Tensor) -> Tensor:
    return torch.tensor(rgb, dtype=torch.float32).to(device=x.device, dtype=x.dtype).view(1, 3, 1, 1)


def spatter_from_field(x: Tensor, field: Tensor, c) -> Tensor:
    """Spatter ``x`` given the liquid field: the deterministic part of :func:`spatter`.

    Args:
        x: float (N, 3, H, W) in [0, 1].
        field: float (N, 1, H, W), the N(mu, s^2) draws (already scaled and shifted).
        c: ``(mu, s, g, thr, k, mode)``; mu and s are not used here.

    Returns:
        float (N, 3, H, W) in [0, 1], ``x``'s dtype and device.
    """
    check_images(x, "images")
    check_shape(x, ["N", 3, "H", "W"], "images")
    n, _, h, w = x.shape
    check_shape(field, [n, 1, h, w], "liquid field")
    _, _, g, thr, k, mode = _check_params(c)
    liquid = liquid_layer(field.to(_work_dtype(x.device)), g, thr)
    if mode == 0:
        m = spatter_water_mask(liquid, k).to(x.dtype)
        return (x + m * _colour(WATER_COLOUR, x)).clamp_(0, 1)
    m = spatter_mud_mask(liquid, thr, k).to(x.dtype)
    return (x * (1 - m) + m * _colour(MUD_COLOUR, x)).clamp_(0, 1)


@register_corruption(
    "spatter",
    imagenet=(
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ),
    cifar10=(
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
    group="weather",
    held_out=True,
)
def spatter(x: Tensor, c, generator: torch.Generator | None = None) -> Tensor:
    """Water or mud spatter with ``c = (mu, s, g, thr, k, mode)``; (N, 3, H, W) in [0, 1] -> same.

    Draws one N(mu, s^2) field (1, H, W) per image, image after image (module docstring).
    """
    check_images(x, "images")
    mu, s, *_ = _check_params(c)
    n, _, h, w = x.shape
    dtype = _work_dtype(x.device)
    draws = [torch.randn((1, 1, h, w), generator=generator, device=x.device, dtype=dtype) for _ in range(n)]
    field = torch.cat(draws) * s + mu if n else torch.zeros((0, 1, h, w), device=x.device, dtype=dtype)
    return spatter_from_field(x, field, c)
