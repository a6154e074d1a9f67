"""Weather corruptions (Hendrycks & Dietterich 2019): fog, frost and snow, batched and seeded.

Algorithms and parameters from CORRUPTIONS.md (sections 2, 3 "Weather" and 4):

* plasma fractal (section 2): diamond-square on a ``side x side`` torus (side a
  power of two). ``map[0, 0] = 0``, step = side, wibble = 100; each round sets the
  square centres to the mean of their 4 corners, then the edge midpoints to the
  mean of their 4 neighbours (wrapping around), each plus ``wibble * U(-wibble,
  wibble)``; then the step halves and wibble is divided by the decay, while step
  >= 2. The map is min-max normalised to [0, 1]. A map consumes ``side^2 - 1``
  uniforms in the reference's order: per round the square centres, then the
  midpoints (row 0 of each cell, right of the corner), then the midpoints (column 0,
  below the corner), each block row-major, the rounds from coarse to fine.
* fog (t, d): ``(x + t F) * M / (M + t)``, clipped, where F is a plasma map (decay
  d) of side the smallest power of two >= max(H, W) (256 for 224 px, 32 for 32 px),
  cropped top-left to H x W and added to every channel, and M is the image's
  maximum over pixels and channels.
* frost (a, b, shrink): ``clip(a x + b P, 0, 1)`` where P is an H x W window of one
  of the published frost photographs (section 4), frost1.png .. frost5.jpg, index
  uniform in {0..4} (frost6 is never used; frost2 and frost3 are identical). For
  CIFAR-10-C (``shrink = 0.2``) the photo is first shrunk as OpenCV's default
  bilinear ``cv2.resize(photo, (0, 0), fx=0.2, fy=0.2)`` on 8-bit values does;
  ImageNet-C (``shrink = 1``) uses it at native resolution. The window's top-left
  corner is uniform: row in [0, Hp - H), column in [0, Wp - W) (upper ends
  excluded as published). Not in the publication: a photo not strictly larger
  than the image in both sides is first enlarged (same bilinear resize, 8-bit) by
  the smallest factor making it so, keeping its aspect ratio.
* snow (mu, s, z, thr, R, sigma, beta), 7 steps: a normal field N(mu, s^2) of the
  image's size; its clipped zoom by z; values below thr set to 0; clipped to
  [0, 1] and truncated to 8 bits (``np.uint8``); ImageMagick motion blur (R,
  sigma, angle uniform in [-135, -45) degrees), the result rounded to 8 bits as
  ImageMagick's 8-bit output is; call it L. Then ``x <- beta x + (1 - beta)
  max(x, 1.5 gray(x) + 0.5)`` with gray = 0.299 R + 0.587 G + 0.114 B, and the
  output is ``clip(x + L + rot180(L), 0, 1)``.

Randomness: every corruption consumes its generator image after image (image i's
draws all come before image i+1's), so corrupting images one at a time with one
generator gives the batched result on any device. The draws per image are
documented on each corruption.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from shiftattack.corruptions._checks import check_images
from shiftattack.corruptions._registry import register_corruption
from shiftattack.corruptions.motion import motion_blur_image
from shiftattack.corruptions.zoom import clipped_zoom
from shiftattack.errors import SpecError, check_shape

__all__ = [
    "plasma_fractal",
    "fog",
    "frost",
    "frost_dir",
    "load_frost_photos",
    "snow_layer",
    "snow_blend",
    "snow",
]

FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")


def _per_image(n: int, draw) -> list:
    """``[draw() for each of n images]``: the one place the batch's draws are ordered."""
    return [draw() for _ in range(n)]


# ----------------------------------------------------------------------------------------- plasma, fog


def _plasma_from_draws(draws: Tensor, side: int, wibble_decay: float) -> Tensor:
    """Diamond-square maps from explicit uniforms: (n, side^2 - 1) in [0, 1) -> (n, side, side) in [0, 1].

    The draws are consumed in the reference's order (module docstring); the maps are
    computed in ``draws``' dtype.
    """
    n = draws.shape[0]
    m = draws.new_zeros(n, side, side)
    step, wibble, used = side, 100.0, 0

    def noisy_mean(total: Tensor) -> Tensor:
        nonlocal used
        count = total.shape[1] * total.shape[2]
        u = draws[:, used : used + count].reshape(total.shape)
        used += count
        # NumPy's uniform(low, high) is low + (high - low) * u
        return total / 4 + wibble * (-wibble + (2 * wibble) * u)

    while step >= 2:
        half = step // 2
        corners = m[:, ::step, ::step]
        total = corners + corners.roll(-1, 1)
        total = total + total.roll(-1, 2)
        m[:, half::step, half::step] = noisy_mean(total)
        centres, corners = m[:, half::step, half::step], m[:, ::step, ::step]
        m[:, ::step, half::step] = noisy_mean(
            (centres + centres.roll(1, 1)) + (corners + corners.roll(-1, 2))
        )
        m[:, half::step, ::step] = noisy_mean(
            (centres + centres.roll(1, 2)) + (corners + corners.roll(-1, 1))
        )
        step //= 2
        wibble /= wibble_decay
    m = m - m.amin((1, 2), keepdim=True)
    return m / m.amax((1, 2), keepdim=True)


def plasma_fractal(
    n: int,
    side: int,
    wibble_decay: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """``n`` diamond-square plasma maps (CORRUPTIONS.md section 2).

    Args:
        n: number of maps.
        side: map side in px, a power of two >= 2 (256 for ImageNet-C, 32 for CIFAR-10-C).
        wibble_decay: the noise amplitude is divided by this after every round (> 0).
        generator: map i draws ``torch.rand(side^2 - 1)`` after maps 0..i-1 (on ``device``);
            None uses torch's global RNG.
        device, dtype: of the draws and the maps (default: CPU, torch's default float).

    Returns:
        (n, side, side) in [0, 1], each map min-max normalised.

    Examples:
        >>> plasma_fractal(2, 8, 2.0, torch.Generator().manual_seed(0)).shape
        torch.Size([2, 8, 8])
    """
    if not isinstance(n, int) or n < 0:
        raise SpecError(f"n must be an integer >= 0 (number of maps), got {n!r}")
    if not isinstance(side, int) or side < 2 or side & (side - 1):
        raise SpecError(f"plasma map side must be a power of two >= 2 (px), got {side!r}")
    if not isinstance(wibble_decay, (int, float)) or not wibble_decay > 0:
        raise SpecError(f"wibble_decay must be a number > 0, got {wibble_decay!r}")
    dtype = dtype or torch.get_default_dtype()
    draws = _per_image(
        n, lambda: torch.rand(side * side - 1, generator=generator, device=device, dtype=dtype)
    )
    if not draws:
        return torch.zeros(0, side, side, device=device, dtype=dtype)
    return _plasma_from_draws(torch.stack(draws), side, float(wibble_decay))


def _fog_side(height: int, width: int) -> int:
    """Smallest power of two >= max(H, W) (at least 2): 256 for 224 px, 32 for 32 px."""
    return max(2, 1 << (max(height, width) - 1).bit_length())


def _fog_from_map(x: Tensor, fmap: Tensor, strength: float) -> Tensor:
    """Published fog given the maps: x (N, C, H, W) and fmap (N, S, S), S >= H, W -> (N, C, H, W), clipped."""
    h, w = x.shape[-2:]
    peak = x.amax((1, 2, 3), keepdim=True)
    fogged = x + strength * fmap[:, None, :h, :w].to(x.dtype)
    return (fogged * peak / (peak + strength)).clamp_(0, 1)


@register_corruption(
    "fog",
    imagenet=((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
    cifar10=((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    group="weather",
)
def fog(x: Tensor, c: tuple[float, float], generator: torch.Generator | None = None) -> Tensor:
    """Fog of strength ``c[0]`` from a plasma map with wibble decay ``c[1]``; (N, 3, H, W) in [0, 1] -> same.

    Draws: per image, ``torch.rand(S^2 - 1)`` on ``x``'s device (S the map side), in float64
    for float64 images, else float32 (the map's values reach 1e4 before normalisation).
    """
    strength, decay = c
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    fmap = plasma_fractal(x.shape[0], _fog_side(*x.shape[-2:]), decay, generator, x.device, dtype)
    return _fog_from_map(x, fmap, strength)


# ----------------------------------------------------------------------------------------------- frost


def frost_dir() -> Path:
    """Folder of the published frost photographs.

    ``$SHIFTATTACK_FROST_DIR`` when set, else the ``frost/`` folder of the installed
    ``imagecorruptions`` package (located without importing it).

    Raises:
        SpecError: neither is available.
    """
    override = os.environ.get("SHIFTATTACK_FROST_DIR")
    if override:
        folder = Path(override)
        if not folder.is_dir():
            raise SpecError(
                f"SHIFTATTACK_FROST_DIR={override!r} is not a folder; it must hold {', '.join(FROST_FILES)}"
            )
        return folder
    try:
        spec = importlib.util.find_spec("imagecorruptions")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        if (Path(location) / "frost").is_dir():
            return Path(location) / "frost"
    raise SpecError(
        "frost needs the published frost photographs (frost1.png .. frost5.jpg of ImageNet-C), "
        "which the imagecorruptions package ships: install the extra with "
        'pip install "shiftattack[frost]" (or pip install imagecorruptions), or set '
        "SHIFTATTACK_FROST_DIR to a folder holding them"
    )


def _resize_axis(img: Tensor, dim: int, out: int, scale: float) -> Tensor:
    """OpenCV's INTER_LINEAR along ``dim``: output i samples ``(i + 0.5) * scale - 0.5`` (in float32)."""
    n = img.shape[dim]
    pos = ((torch.arange(out, dtype=torch.float64) + 0.5) * scale - 0.5).float()
    lo = pos.floor()
    frac = (pos - lo).double()
    lo = lo.long()
    outside = (lo < 0) | (lo >= n - 1)  # OpenCV: fraction 0 at both ends, index clamped
    frac = torch.where(outside, torch.zeros_like(frac), frac)
    lo = lo.clamp(0, n - 1)
    hi = (lo + 1).clamp_(max=n - 1)
    shape = [1] * img.dim()
    shape[dim] = out
    a, b = img.index_select(dim, lo), img.index_select(dim, hi)
    return a + (b - a) * frac.view(shape)


def _resize_like_cv2(photo: Tensor, out_h: int, out_w: int, scale_y: float, scale_x: float) -> Tensor:
    """Bilinear resize of an 8-bit (3, H, W) uint8 photo on OpenCV's grid, rounded back to uint8."""
    y = _resize_axis(_resize_axis(photo.double(), 1, out_h, scale_y), 2, out_w, scale_x)
    return y.round().clamp_(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=4)
def _read_photos(folder: str) -> tuple[Tensor, ...]:
    photos = []
    for name in FROST_FILES:
        path = Path(folder) / name
        if not path.is_file():
            raise SpecError(
                f"frost photograph {path} is missing; the folder must hold {', '.join(FROST_FILES)}"
            )
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))  # RGBA: alpha dropped (as cv2.imread's BGR)
        photos.append(torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous())
    return tuple(photos)


@functools.lru_cache(maxsize=16)
def _shrunk_photos(folder: str, shrink: float) -> tuple[Tensor, ...]:
    if shrink == 1:
        return _read_photos(folder)
    out = []
    for photo in _read_photos(folder):
        h, w = photo.shape[-2:]
        # cv2.resize(img, (0, 0), fx=f, fy=f): size rounded, sampling step 1 / f
        size = (max(1, round(h * shrink)), max(1, round(w * shrink)))
        out.append(_resize_like_cv2(photo, *size, 1 / shrink, 1 / shrink))
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _fitted_photo(folder: str, shrink: float, index: int, height: int, width: int) -> Tensor:
    """The (shrunk) photo, enlarged if needed so that it is strictly larger than H x W (uint8 (3, Hp, Wp))."""
    photo = _shrunk_photos(folder, shrink)[index]
    h, w = photo.shape[-2:]
    if h > height and w > width:
        return photo
    factor = max((height + 1) / h, (width + 1) / w)
    out_h, out_w = max(height + 1, round(h * factor)), max(width + 1, round(w * factor))
    # cv2.resize(img, (out_w, out_h)): sampling step 1 / (out / in)
    return _resize_like_cv2(photo, out_h, out_w, 1 / (out_h / h), 1 / (out_w / w))


def load_frost_photos(shrink: float = 1.0) -> tuple[Tensor, ...]:
    """The five published frost photographs used, as float32 RGB (3, Hp, Wp) in [0, 1] (alpha dropped).

    Args:
        shrink: 1 for ImageNet-C (native resolution), 0.2 for CIFAR-10-C (OpenCV's
            default bilinear shrink, rounded to 8 bits as OpenCV's uint8 output is).

    Files are read once per folder (:func:`frost_dir`) and cached as 8-bit tensors.
    """
    return tuple(p.float() / 255 for p in _shrunk_photos(str(frost_dir()), float(shrink)))


def _frost_draws(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Per image, 3 float64 uniforms (index, row, column), image after image; (n, 3) on the CPU."""
    draws = _per_image(n, lambda: torch.rand(3, generator=generator, device=device, dtype=torch.float64))
    return torch.stack(draws).cpu() if draws else torch.zeros(0, 3, dtype=torch.float64)


def _frost_from_draws(x: Tensor, c: tuple[float, float, float], draws: Tensor) -> Tensor:
    """Frost given the uniforms of :func:`_frost_draws`: index floor(5 u0), row floor(u1 (Hp - H)), ..."""
    a, b, shrink = c
    h, w = x.shape[-2:]
    folder = str(frost_dir())
    index = [min(4, int(u * 5)) for u in draws[:, 0].tolist()]
    sizes = [_fitted_photo(folder, float(shrink), k, h, w).shape[-2:] for k in index]
    top = [int(u * (hp - h)) for u, (hp, _) in zip(draws[:, 1].tolist(), sizes, strict=True)]
    left = [int(u * (wp - w)) for u, (_, wp) in zip(draws[:, 2].tolist(), sizes, strict=True)]
    cuts = [
        _fitted_photo(folder, float(shrink), k, h, w)[:, r : r + h, s : s + w]
        for k, r, s in zip(index, top, left, strict=True)
    ]
    if not cuts:
        return x.clone()
    layer = torch.stack(cuts).to(device=x.device, dtype=x.dtype) / 255
    return (a * x + b * layer).clamp_(0, 1)


@register_corruption(
    "frost",
    imagenet=((1, 0.4, 1.0), (0.8, 0.6, 1.0), (0.7, 0.7, 1.0), (0.65, 0.7, 1.0), (0.6, 0.75, 1.0)),
    cifar10=((1, 0.2, 0.2), (1, 0.3, 0.2), (0.9, 0.4, 0.2), (0.85, 0.4, 0.2), (0.75, 0.45, 0.2)),
    group="weather",
)
def frost(x: Tensor, c: tuple[float, float, float], generator: torch.Generator | None = None) -> Tensor:
    """``clip(a x + b P)``, ``c = (a, b, shrink)``, P a random window of a frost photo shrunk by ``shrink``.

    (N, 3, H, W) in [0, 1] -> same. Draws: per image, ``torch.rand(3)`` in float64 on
    ``x``'s device, u: photo ``floor(5 u0)``, top row ``floor(u1 (Hp - H))``, left
    column ``floor(u2 (Wp - W))``.

    Raises:
        SpecError: the frost photographs cannot be found (see :func:`frost_dir`).
    """
    frost_dir()  # fail before drawing when the photographs are missing
    return _frost_from_draws(x, c, _frost_draws(x.shape[0], generator, x.device))


# ------------------------------------------------------------------------------------------------ snow


def snow_layer(
    field: Tensor, zoom: float, threshold: float, radius: float, sigma: float, angle: Tensor | float
) -> Tensor:
    """Snow steps 2-5 (CORRUPTIONS.md section 3) from an explicit normal field.

    Args:
        field: float (N, 1, H, W), the N(mu, s^2) draws of step 1.
        zoom: clipped-zoom factor (>= 1).
        threshold: values below it become 0.
        radius, sigma: motion blur radius and sigma, px.
        angle: float (N,) motion blur angles in degrees (or one number).

    Returns:
        L, float (N, 1, H, W) in [0, 1], multiples of 1/255.
    """
    check_images(field, "snow field")
    check_shape(field, ["N", 1, "H", "W"], "snow field")
    if not isinstance(zoom, (int, float)) or not zoom >= 1:
        raise SpecError(f"snow zoom must be a number >= 1, got {zoom!r}")
    layer = clipped_zoom(field, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer = torch.floor(layer.clamp(0, 1) * 255) / 255  # np.uint8 truncation before the 8-bit blur
    layer = motion_blur_image(layer, radius, sigma, angle)
    return (torch.round(layer * 255) / 255).clamp_(0, 1)  # ImageMagick's 8-bit grey output


def snow_blend(x: Tensor, layer: Tensor, blend: float) -> Tensor:
    """Snow steps 6-7: brighten by ``blend`` then add the layer and its 180-degree rotation.

    Args:
        x: float (N, 3, H, W) RGB in [0, 1].
        layer: float (N, 1, H, W) snow layer L in [0, 1] (see :func:`snow_layer`).
        blend: beta in [0, 1]; 1 leaves the image unbrightened.

    Returns:
        ``clip(beta x + (1 - beta) max(x, 1.5 gray + 0.5) + L + rot180(L), 0, 1)``, (N, 3, H, W).
    """
    check_images(x, "images")
    check_shape(x, ["N", 3, "H", "W"], "images")
    check_shape(layer, [x.shape[0], 1, x.shape[2], x.shape[3]], "snow layer")
    gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    x = blend * x + (1 - blend) * torch.maximum(x, gray * 1.5 + 0.5)
    layer = layer.to(x.dtype)
    return (x + layer + layer.flip(-2, -1)).clamp_(0, 1)


@register_corruption(
    "snow",
    imagenet=(
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ),
    cifar10=(
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    group="weather",
)
def snow(x: Tensor, c: tuple, generator: torch.Generator | None = None) -> Tensor:
    """Snow with ``c = (mu, s, zoom, threshold, radius, sigma, blend)``; (N, 3, H, W) in [0, 1] -> same.

    Draws, per image: the field ``mu + s * torch.randn(1, H, W)`` in ``x``'s dtype,
    then one float64 uniform u giving the angle ``-135 + 90 u`` degrees, both on ``x``'s device.
    """
    mu, s, zoom, threshold, radius, sigma, blend = c
    n, _, h, w = x.shape
    if n == 0:
        return x.clone()

    def draw() -> tuple[Tensor, Tensor]:
        field = mu + s * torch.randn(1, h, w, generator=generator, device=x.device, dtype=x.dtype)
        return field, -135 + 90 * torch.rand(1, generator=generator, device=x.device, dtype=torch.float64)

    fields, angles = zip(*_per_image(n, draw), strict=True)
    layer = snow_layer(torch.stack(fields), zoom, threshold, radius, sigma, torch.cat(angles))
    return snow_blend(x, layer, blend)
