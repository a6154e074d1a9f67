"""Elastic transform (digital group) of Hendrycks & Dietterich 2019, batched in torch.

CORRUPTIONS.md section 3, "elastic_transform" (the ``make_imagenet_c.py`` /
``make_cifar_c.py`` version, with a random affine first; the ``imagecorruptions``
package has a different one). Parameters ``c = (alpha, sigma, A)``, pixels. Per
image of any size H x W:

1. Random affine. Source triangle, as OpenCV (x, y) points: ``(cx + q, cy + q)``,
   ``(cx + q, cy - q)``, ``(cx - q, cy - q)`` with ``cx = W // 2``, ``cy = H // 2``,
   ``q = min(H, W) // 3`` (:func:`affine_triangle`; the published code takes
   ``(H // 2, W // 2)`` as (x, y), the same for square images). Each of the 6
   coordinates is moved by a U(-A, A) draw (added in float32, as published), the
   affine taking the triangle to the moved one is solved in float64
   (``getAffineTransform``) and applied like ``cv2.warpAffine`` with bilinear
   interpolation and BORDER_REFLECT_101 (:func:`warp_affine`): output pixel (x, y)
   samples the input at the inverse map of (x, y). We interpolate exactly, as
   OpenCV 5.0 does for float images (within 0.01 of a level); OpenCV 3.4, the
   published version, rounded the source position to 1/32 px first (up to about
   4 levels apart on pixel noise, far less on photographs).
2. Displacements ``dx = float32(alpha * G(ux))``, ``dy = float32(alpha * G(uy))``,
   with ux, uy (H, W) fields of U(-1, 1) draws and G scikit-image's ``gaussian``
   with mode 'reflect' (SciPy's: ``dcba|abcd|dcba``, period 2n) and truncate 3
   (:func:`scipy_gaussian_filter`; radius ``int(3 sigma + 0.5)``, which exceeds the
   image at ImageNet severity 1: sigma 170.8, radius 512, so the reflection repeats).
   The filter is applied as an (n, n) matrix per axis, the Gaussian taps folded onto
   the image by the reflection: exact for any radius, and one matrix product.
3. Resampling at ``(row + dy, col + dx)`` as ``scipy.ndimage.map_coordinates`` with
   order 1 and mode 'reflect' (:func:`map_coordinates_reflect`): bilinear between
   the integer samples of the image extended by the same period-2n reflection (so
   within half a pixel outside the image the edge value holds). Then clip to [0, 1].

Severity tables: the ImageNet constants are written as multiples of 244, not 224;
the numbers here are the results. CIFAR-10 severity 1 has alpha = 0 (affine only).

Randomness: per image, image 0 first, on ``x``'s device in float64 (float32 on
MPS): the (3, 2) jitter, then ux, then uy (the published order). So a batch equals
its images transformed one at a time, in order, from one generator.
:func:`elastic_from_draws` takes the draws instead.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from shiftattack.corruptions._checks import check_images
from shiftattack.corruptions._registry import register_corruption
from shiftattack.corruptions.blur import gaussian_kernel1d
from shiftattack.errors import SpecError, check_shape

__all__ = [
    "elastic_transform",
    "elastic_from_draws",
    "affine_triangle",
    "warp_affine",
    "scipy_gaussian_filter",
    "gaussian_matrix",
    "map_coordinates_reflect",
]

_SMOOTH = {"truncate": 3.0, "mode": "reflect"}  # skimage gaussian(..., mode='reflect', truncate=3)


def _work_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _period(n: int, mode: str) -> int:
    """Period of the border extension: 2n - 2 for 'reflect101' (1 when n = 1), 2n for 'symmetric'."""
    return max(2 * n - 2, 1) if mode == "reflect101" else 2 * n


def _border(i: Tensor, n: int, mode: str) -> Tensor:
    """Map integer indices (any distance) into ``0 .. n-1``: OpenCV's BORDER_REFLECT_101
    (``mode='reflect101'``, ``cb|abcd|cb``) or SciPy's 'reflect' (``mode='symmetric'``, ``ba|abcd|dc``)."""
    p = _period(n, mode)
    i = i.remainder(p)
    return torch.where(i >= n, p - i - int(mode == "symmetric"), i)


def affine_triangle(h: int, w: int) -> Tensor:
    """The published source triangle for an H x W image: float32 (3, 2) OpenCV (x, y) points, px."""
    cx, cy, q = w // 2, h // 2, min(h, w) // 3
    return torch.tensor([[cx + q, cy + q], [cx + q, cy - q], [cx - q, cy - q]], dtype=torch.float32)


def _affine_from_points(src: Tensor, dst: Tensor) -> Tensor:
    """``cv2.getAffineTransform`` batched: (N, 2, 3) float64 taking (N, 3, 2) points ``src`` to ``dst``."""
    a = torch.cat([src.double(), torch.ones_like(src[..., :1], dtype=torch.float64)], -1)  # (N, 3, 3)
    return torch.linalg.solve(a, dst.double()).transpose(-1, -2)


def _bilinear(img: Tensor, rows: Tensor, cols: Tensor, mode: str) -> Tensor:
    """Sample (N, C, H, W) at float (N, H', W') positions, integer neighbours mapped by border ``mode``.

    Positions and fractions are taken in the positions' dtype, the blend in ``img``'s.
    """
    n, ch, h, w = img.shape
    r0, c0 = torch.floor(rows), torch.floor(cols)
    fr, fc = (rows - r0).to(img.dtype).unsqueeze(1), (cols - c0).to(img.dtype).unsqueeze(1)
    r0, c0 = r0.long(), c0.long()
    ra, rb = _border(r0, h, mode) * w, _border(r0 + 1, h, mode) * w
    ca, cb = _border(c0, w, mode), _border(c0 + 1, w, mode)
    flat = img.reshape(n, ch, h * w)

    def at(r: Tensor, c: Tensor) -> Tensor:
        return flat.gather(2, (r + c).reshape(n, 1, -1).expand(n, ch, -1)).reshape(n, ch, *rows.shape[1:])

    top = torch.lerp(at(ra, ca), at(ra, cb), fc)
    return torch.lerp(top, torch.lerp(at(rb, ca), at(rb, cb), fc), fr)


def warp_affine(x: Tensor, matrix: Tensor) -> Tensor:
    """``cv2.warpAffine(x, M, (W, H), INTER_LINEAR, BORDER_REFLECT_101)`` per image, exact bilinear.

    Args:
        x: float (N, C, H, W).
        matrix: (N, 2, 3) forward affines M on OpenCV (x, y) = (column, row) pixel coordinates;
            output pixel p samples the input at ``M^-1 p``.

    Returns:
        (N, C, H, W), ``x``'s dtype.
    """
    n, _, h, w = x.shape
    wide = _work_dtype(x.device)
    full = torch.cat(
        [
            matrix.to(device=x.device, dtype=wide),
            torch.tensor([0.0, 0.0, 1.0], dtype=wide, device=x.device).expand(n, 1, 3),
        ],
        1,
    )
    inv = torch.linalg.inv(full)[:, :2]  # (N, 2, 3)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=wide, device=x.device),
        torch.arange(w, dtype=wide, device=x.device),
        indexing="ij",
    )
    sx = inv[:, 0, 0, None, None] * xs + inv[:, 0, 1, None, None] * ys + inv[:, 0, 2, None, None]
    sy = inv[:, 1, 0, None, None] * xs + inv[:, 1, 1, None, None] * ys + inv[:, 1, 2, None, None]
    return _bilinear(x, sy, sx, "reflect101").to(x.dtype)


def gaussian_matrix(n: int, sigma: float, truncate: float, mode: str, *, dtype=None, device=None) -> Tensor:
    """(n, n) ``G`` with ``G @ line`` = SciPy's ``gaussian_filter1d(line, sigma, mode=mode, truncate)``.

    The 2r + 1 Gaussian taps (radius ``int(truncate * sigma + 0.5)``, SciPy's rule) folded
    onto the line by the border ``mode``: 'reflect' (``dcba|abcd|dcba``, period 2n) or
    'nearest' (edge value repeated); exact for any radius, also one far beyond n.
    """
    if mode not in ("reflect", "nearest"):
        raise SpecError(f"gaussian border mode must be 'reflect' or 'nearest', got {mode!r}")
    taps = gaussian_kernel1d(sigma, truncate, dtype=dtype, device=device)
    r = taps.numel() // 2
    j = torch.arange(n, device=device)[:, None] + torch.arange(-r, r + 1, device=device)[None, :]
    j = _border(j, n, "symmetric") if mode == "reflect" else j.clamp(0, n - 1)
    out = torch.zeros(n, n, dtype=taps.dtype, device=device)
    return out.scatter_add_(1, j, taps.expand(n, -1).contiguous())


def scipy_gaussian_filter(u: Tensor, sigma: float, *, truncate: float, mode: str) -> Tensor:
    """``scipy.ndimage.gaussian_filter(u, sigma, mode=mode, truncate=truncate)`` over the last two dims.

    ``u`` is float (..., H, W); sigma in px, the same on both axes (sigma <= 1e-15 leaves
    ``u`` unchanged, as SciPy); ``mode`` 'reflect' or 'nearest' (:func:`gaussian_matrix`).
    One (H, H) and one (W, W) matrix product: about 2 (H + W) H W multiply-adds
    whatever the radius, and exact where the kernel outgrows the image.
    """
    if sigma <= 1e-15:
        return u.clone()
    h, w = u.shape[-2:]
    rows = gaussian_matrix(h, sigma, truncate, mode, dtype=u.dtype, device=u.device)
    cols = gaussian_matrix(w, sigma, truncate, mode, dtype=u.dtype, device=u.device)
    return rows @ u @ cols.T


def map_coordinates_reflect(img: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``scipy.ndimage.map_coordinates(order=1, mode='reflect')`` of every channel at shared positions.

    Args:
        img: float (N, C, H, W).
        rows, cols: float (N, H', W') sampling positions in px (row, column).

    Returns:
        (N, C, H', W') in ``rows``' dtype.
    """
    return _bilinear(img, rows, cols, "symmetric")


def _check_params(c) -> tuple[float, float, float]:
    if not isinstance(c, (tuple, list)) or len(c) != 3:
        raise SpecError(f"elastic_transform needs c = (alpha, sigma, A) in px, got {c!r}")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in c):
        raise SpecError(f"elastic_transform parameters must be finite numbers, got {c!r}")
    alpha, sigma, a = (float(v) for v in c)
    if sigma < 0 or a < 0:
        raise SpecError(f"elastic_transform sigma and A must be >= 0 px, got {c!r}")
    return alpha, sigma, a


def elastic_from_draws(x: Tensor, jitter: Tensor, ux: Tensor, uy: Tensor, c) -> Tensor:
    """Elastic transform of ``x`` given the random draws: the deterministic part of :func:`elastic_transform`.

    Args:
        x: float (N, 3, H, W) in [0, 1].
        jitter: (N, 3, 2) U(-A, A) moves of the triangle's points, OpenCV (x, y) order, px.
        ux, uy: (N, H, W) U(-1, 1) fields behind dx (columns) and dy (rows).
        c: ``(alpha, sigma, A)``; A is not used here.

    Returns:
        float (N, 3, H, W) in [0, 1], ``x``'s dtype and device.
    """
    check_images(x, "images")
    check_shape(x, ["N", 3, "H", "W"], "images")
    n, _, h, w = x.shape
    check_shape(jitter, [n, 3, 2], "affine jitter")
    check_shape(ux, [n, h, w], "ux field")
    check_shape(uy, [n, h, w], "uy field")
    alpha, sigma, _ = _check_params(c)
    wide = _work_dtype(x.device)
    src = affine_triangle(h, w).to(x.device)
    dst = src + jitter.to(device=x.device, dtype=torch.float32)  # the published float32 sum
    matrix = _affine_from_points(src.expand(n, 3, 2).to(wide), dst.to(wide))
    warped = warp_affine(x.to(torch.float32), matrix)  # the published image is float32
    dx = scipy_gaussian_filter(ux.to(device=x.device, dtype=wide), sigma, **_SMOOTH) * alpha
    dy = scipy_gaussian_filter(uy.to(device=x.device, dtype=wide), sigma, **_SMOOTH) * alpha
    dx, dy = dx.to(torch.float32), dy.to(torch.float32)  # the published float32 displacements
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=wide, device=x.device),
        torch.arange(w, dtype=wide, device=x.device),
        indexing="ij",
    )
    out = map_coordinates_reflect(warped, ys + dy.to(wide), xs + dx.to(wide))
    return out.to(x.dtype).clamp_(0, 1)


# The table's numbers (CORRUPTIONS.md section 3): ImageNet 244 x (2, .7, .1), (2, .08, .2),
# (.05, .01, .02), (.07, .01, .02), (.12, .01, .02); CIFAR-10 32 x (0, 0, .08), (.05, .2, .07),
# (.08, .06, .06), (.1, .04, .05), (.1, .03, .03).
_IMAGENET = (
    (488, 170.8, 24.4),
    (488, 19.52, 48.8),
    (12.2, 2.44, 4.88),
    (17.08, 2.44, 4.88),
    (29.28, 2.44, 4.88),
)
_CIFAR10 = ((0, 0, 2.56), (1.6, 6.4, 2.24), (2.56, 1.92, 1.92), (3.2, 1.28, 1.6), (3.2, 0.96, 0.96))


@register_corruption("elastic_transform", imagenet=_IMAGENET, cifar10=_CIFAR10, group="digital")
def elastic_transform(x: Tensor, c, generator: torch.Generator | None = None) -> Tensor:
    """Random affine then smooth random displacements, ``c = (alpha, sigma, A)`` px; (N, 3, H, W) -> same.

    Draws per image, image after image: the (3, 2) jitter, ux, uy (module docstring).
    """
    check_images(x, "images")
    _, _, a = _check_params(c)
    n, _, h, w = x.shape
    wide = _work_dtype(x.device)
    jitter, ux, uy = [], [], []
    for _ in range(n):
        jitter.append((torch.rand((3, 2), generator=generator, device=x.device, dtype=wide) * 2 - 1) * a)
        ux.append(torch.rand((h, w), generator=generator, device=x.device, dtype=wide) * 2 - 1)
        uy.append(torch.rand((h, w), generator=generator, device=x.device, dtype=wide) * 2 - 1)
    if n == 0:
        return x.clone()
    return elastic_from_draws(x, torch.stack(jitter), torch.stack(ux), torch.stack(uy), c)
