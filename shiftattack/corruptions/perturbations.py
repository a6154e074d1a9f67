"""Perturbation sequences of ImageNet-P and CIFAR-10-P (Hendrycks & Dietterich, ICLR 2019), in torch.

A sequence turns each image into T frames; a classifier is scored on how often
its prediction flips between frames (METRICS.md "ImageNet-P"). Everything here
follows ``make_imagenet_p.py`` / ``make_cifar_p.py`` as summarised in
CORRUPTIONS.md section 6 (frame i = 0 .. T-1; "base" = the ImageNet image
resized to shorter side 256, "crop" = its 224 centre crop; CIFAR-10-P works on
the 32 px image and crops nothing):

* Noise (frame 0 clean, frames 1..30 each a fresh independent draw on the clean
  image, clipped to [0, 1]; ``difficulty`` 1/2/3 picks the level):
  gaussian_noise ``x + N(0, s^2)``, s = .03/.05/.08 (CIFAR .02/.04/.06);
  shot_noise ``Poisson(x * l) / l``, l = 300/120/60 (CIFAR 700/400/200);
  speckle_noise ``x + x * N(0, s^2)``, s = .05/.10/.15 (CIFAR .05/.07/.10).
* brightness: HSV value ``+ 0.02 (i - 15)`` (CIFAR ``0.015 (i - 15)``), clipped,
  scikit-image's HSV (:func:`~shiftattack.corruptions.digital.rgb_to_hsv`).
* gaussian_blur: sigma ``0.25 + 0.035 i``, truncate 6 (CIFAR ``0.30 + 0.015 i``,
  truncate 7), scikit-image ``gaussian`` (border 'nearest'); frame 0 is blurred too.
* motion_blur: ImageMagick-style motion blur
  (:func:`~shiftattack.corruptions.motion.motion_blur_image`) of radius 10 px,
  sigma 3 at ``4 (i - 30)`` degrees, 31 frames (CIFAR radius 6, sigma 1.8,
  ``9 (i - 20)`` degrees, 21 frames), clipped.
* snow: one field N(.05, .3^2) per image, clipped zoom 3 (CIFAR 2), values below .5
  zeroed; frame i motion-blurs it (radius 14, sigma 4; CIFAR 10, 2) at
  ``4 i - 150`` degrees and blends it in with beta = .85
  (:func:`~shiftattack.corruptions.weather.snow_layer`, ``snow_blend``).
* spatter (water): one field N(.65, .27^2) per image (CIFAR N(.6, .265^2)),
  Gaussian sigma 3.7 (1.75), values below .69 (.7) zeroed, once; frame i adds the
  water mask (k = .6, :func:`~shiftattack.corruptions.spatter.spatter_water_mask`)
  of the liquid, which is then convolved down every column with
  ``[.05, .1, .15, .7]`` (CIFAR ``[.2, .8]``) as ``np.convolve(mode='same')`` does,
  so it drifts 2 (1) rows down per frame; the threshold is not applied again.
* Geometric (transform the whole base, then take the centre crop, so content from
  outside the crop comes into view):
  translate ``(i - 20)`` px right, 41 frames (CIFAR ``(i - 7)`` px, 16 frames), black
  fill, exact; rotate ``(i - 15)`` degrees; scale ``(40 + 2.5 i) / 100`` (CIFAR
  ``(70 + 2 i) / 100``); shear ``(i - 15)`` degrees; zoom_blur frame i = mean over
  j = 0..i of the base scaled by ``1 + 0.004 j``; tilt: the perspective warp of
  section 6 "Tilt" with both angles ``(i - 15)`` degrees (CIFAR ``0.75 (i - 15)``).

Affine frames reproduce what the scripts called, torchvision 0.2's
``functional.affine`` on PIL images: the inverse matrix of rotation a and shear s
is ``[[cos(a+s), sin(a+s)], [-sin a, cos a]] / (scale cos s)`` about the centre
``(W/2 + 1/2, H/2 + 1/2)`` in PIL's continuous coordinates (pixel k spans
[k, k+1)), sampled by PIL's bilinear ``Image.transform``: a sample point outside
the image gives black, one inside interpolates the edge-clamped neighbours.
Today's torchvision (``v2.functional.affine``) differs from it in both the
centre (half a pixel) and the shear (it shears by ``tan s`` without the
``cos s`` vertical squeeze), so we build the published matrix and sample with
``grid_sample``. Tilt reproduces OpenCV's ``warpPerspective`` (pixel k at
coordinate k, bilinear, black outside). Translate moves whole pixels with
:func:`shiftattack.shifts.shift` (bit-exact; the script's nearest-neighbour
affine of an integer translation moves content right for positive shifts).

Frames stay float in [0, 1]; the published files truncate them to uint8 (and
ImageNet-P encodes them as x264 video), which belongs to writing files.

Randomness comes from ``generator`` on the input's device (None: torch's global
RNG). The batch consumes it image after image, as the corruptions do: image k
draws all its values (the noise of its T - 1 frames as one (T - 1, 3, H, W)
tensor; snow's and spatter's field once, (H, W)) before image k + 1, so
processing images one at a time with one generator gives the batched frames.

Examples:
    >>> import torch
    >>> x = torch.rand(2, 3, 32, 32)
    >>> perturb(x, "translate", params="cifar10").shape
    torch.Size([2, 16, 3, 32, 32])
    >>> n_frames("translate", "imagenet"), list_perturbations(held_out=True)[:2]
    (41, ['speckle_noise', 'gaussian_blur'])
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from shiftattack.corruptions._checks import check_images
from shiftattack.corruptions.blur import gaussian_filter
from shiftattack.corruptions.digital import hsv_to_rgb, rgb_to_hsv
from shiftattack.corruptions.motion import motion_blur_image
from shiftattack.corruptions.spatter import WATER_COLOUR, liquid_layer, spatter_water_mask
from shiftattack.corruptions.weather import snow_blend, snow_layer
from shiftattack.errors import SpecError
from shiftattack.shifts.functional import shift

__all__ = [
    "SUITES",
    "Perturbation",
    "list_perturbations",
    "get_perturbation",
    "n_frames",
    "perturb",
    "center_crop",
    "affine_matrix",
    "warp_affine",
    "tilt_matrix",
    "warp_perspective",
]

SUITES = ("imagenet", "cifar10")
# The ImageNet-P script's order: the 10 test sequences, then the 4 validation (held-out) ones.
ORDER = (
    "gaussian_noise",
    "shot_noise",
    "motion_blur",
    "zoom_blur",
    "snow",
    "brightness",
    "translate",
    "rotate",
    "tilt",
    "scale",
    "speckle_noise",
    "gaussian_blur",
    "spatter",
    "shear",
)
HELD_OUT = ("speckle_noise", "gaussian_blur", "spatter", "shear")
DIFFICULTIES = (1, 2, 3)

#: ``fn(x, p, *, frames, difficulty, generator, size) -> (N, frames, 3, h, w)``; ``p`` is one suite's params.
SequenceFn = Callable[..., Tensor]


@dataclass(frozen=True)
class Perturbation:
    """A registered sequence: its function, frame count and parameters per suite.

    ``noise``: the name contains "noise" (frames are compared with frame 0 and
    ``difficulty`` picks the level). ``held_out``: a validation sequence of the
    ImageNet-P script. ``geometric``: it transforms the whole base image before
    the centre crop (the others crop first; for pixelwise ones that is the same).
    """

    name: str
    fn: SequenceFn
    frames: Mapping[str, int]
    params: Mapping[str, Mapping[str, Any]]
    noise: bool
    held_out: bool
    geometric: bool = False


_PERTURBATIONS: dict[str, Perturbation] = {}


def _register(
    name: str,
    *,
    frames: tuple[int, int],
    imagenet: Mapping[str, Any],
    cifar10: Mapping[str, Any],
    geometric: bool = False,
) -> Callable[[SequenceFn], SequenceFn]:
    """Decorator: register ``fn`` under ``name`` with ``frames = (ImageNet-P T, CIFAR-10-P T)``."""

    def add(fn: SequenceFn) -> SequenceFn:
        if name in _PERTURBATIONS:
            raise ValueError(f"perturbation {name!r} is registered twice")
        _PERTURBATIONS[name] = Perturbation(
            name,
            fn,
            dict(zip(SUITES, frames, strict=True)),
            {"imagenet": dict(imagenet), "cifar10": dict(cifar10)},
            noise="noise" in name,
            held_out=name in HELD_OUT,
            geometric=geometric,
        )
        return fn

    return add


def list_perturbations(pattern: str = "*", *, held_out: bool | None = None) -> list[str]:
    """Registered sequence names matching ``pattern`` (fnmatch), in the ImageNet-P order.

    ``held_out=False`` keeps the 10 test sequences, ``True`` the 4 validation ones.
    """
    names = sorted(_PERTURBATIONS, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return [
        n
        for n in names
        if fnmatch.fnmatch(n, pattern) and (held_out is None or _PERTURBATIONS[n].held_out == held_out)
    ]


def get_perturbation(name: str) -> Perturbation:
    """The registered :class:`Perturbation` called ``name``; SpecError naming the available ones."""
    if name not in _PERTURBATIONS:
        raise SpecError(f"unknown perturbation {name!r}; available: {', '.join(list_perturbations())}")
    return _PERTURBATIONS[name]


def _check_suite(params: str) -> str:
    if params not in SUITES:
        raise SpecError(f"params must be one of {', '.join(SUITES)}, got {params!r}")
    return params


def n_frames(name: str, params: str = "imagenet") -> int:
    """Number of frames T of sequence ``name`` in suite ``params`` (``imagenet`` or ``cifar10``)."""
    return get_perturbation(name).frames[_check_suite(params)]


def perturb(
    x: Tensor,
    name: str,
    *,
    generator: torch.Generator | None = None,
    params: str = "imagenet",
    difficulty: int = 1,
    crop: int | None = None,
) -> Tensor:
    """The frames of perturbation sequence ``name`` for every image of a batch.

    Args:
        x: float (N, 3, H, W) images in [0, 1], any device: for ImageNet-P the base
            image (shorter side 256), for CIFAR-10-P the 32x32 image. Any size works.
        name: one of :func:`list_perturbations`.
        generator: seeds the noise draws (on ``x``'s device); None uses torch's global RNG.
        params: ``imagenet`` (ImageNet-P schedule) or ``cifar10`` (CIFAR-10-P schedule).
        difficulty: 1, 2 or 3. Selects the noise level of the noise sequences; the
            other sequences have one video and ignore it (at evaluation it sets how
            many frames apart the compared pairs are; that belongs to the metrics).
        crop: side in px of the centre crop of every frame (torchvision's
            ``CenterCrop``: offset ``round((H - crop) / 2)``), e.g. 224 for
            ImageNet-P; taken after the transform for geometric sequences (as
            published), before it for the others. None keeps H x W.

    Returns:
        float (N, T, 3, h, w) in [0, 1], ``x``'s dtype and device, with T =
        :func:`n_frames` and h = w = ``crop`` (or H, W).
    """
    check_images(x, "images")
    if x.shape[1] != 3:
        raise SpecError(f"perturbations need RGB images (N, 3, H, W), got {tuple(x.shape)}")
    seq = get_perturbation(name)
    suite = _check_suite(params)
    if isinstance(difficulty, bool) or not isinstance(difficulty, int) or difficulty not in DIFFICULTIES:
        raise SpecError(f"difficulty must be 1, 2 or 3, got {difficulty!r}")
    h, w = x.shape[-2:]
    if crop is not None:
        if isinstance(crop, bool) or not isinstance(crop, int) or not 1 <= crop <= min(h, w):
            raise SpecError(
                f"crop must be an integer from 1 to the image's shorter side {min(h, w)}, got {crop!r}"
            )
        size = (crop, crop)
        if not seq.geometric:
            x = center_crop(x, size)
    else:
        size = (h, w)
    if x.shape[0] == 0:
        return x.new_empty((0, seq.frames[suite], 3, *size))
    return seq.fn(
        x, seq.params[suite], frames=seq.frames[suite], difficulty=difficulty, generator=generator, size=size
    )


# ----------------------------------------------------------------------------------------------------------
# Shared pieces: the centre crop, frame stacking, seeded draws


def _crop_offsets(h: int, w: int, size: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of torchvision's ``CenterCrop(size)`` of an h x w image (Python rounding)."""
    return int(round((h - size[0]) / 2.0)), int(round((w - size[1]) / 2.0))


def center_crop(x: Tensor, size: tuple[int, int]) -> Tensor:
    """torchvision's ``CenterCrop``: the (h, w) window at ``round((H - h) / 2), round((W - w) / 2)``.

    Args:
        x: (..., H, W) with H >= h and W >= w.
        size: (h, w) in pixels.

    Returns:
        (..., h, w), a view of ``x``.
    """
    top, left = _crop_offsets(x.shape[-2], x.shape[-1], size)
    return x[..., top : top + size[0], left : left + size[1]]


def _stack(frames, n: int, like: Tensor, size: tuple[int, int]) -> Tensor:
    """Collect ``n`` frames (N, 3, h, w) from an iterable into one (N, n, 3, h, w) tensor."""
    out = like.new_empty((like.shape[0], n, like.shape[1], *size))
    for t, frame in enumerate(frames):
        out[:, t] = frame
    return out


def _per_image(x: Tensor, draw: Callable[[], Tensor]) -> Tensor:
    """``stack([draw() for each image of x])``: the one place the draws are ordered, image after image."""
    return torch.stack([draw() for _ in range(x.shape[0])])


def _standard_normal(x: Tensor, per_image: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    """(N, *per_image) standard normals in ``x``'s dtype and device, drawn image after image."""
    return _per_image(x, lambda: torch.randn(per_image, generator=generator, device=x.device, dtype=x.dtype))


# ----------------------------------------------------------------------------------------------------------
# Noise sequences (section 6 table, first three rows)


def _noise_frames(x: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """A new (N, n + 1, 3, H, W) tensor with frame 0 = ``x``, and its frames 1..n as a view to fill."""
    out = x.new_empty((x.shape[0], n + 1, *x.shape[1:]))
    out[:, 0] = x
    return out, out[:, 1:]


def _gaussian_from_draws(x: Tensor, sigma: float, z: Tensor) -> Tensor:
    """Gaussian noise frames from standard normals ``z`` (N, T-1, 3, H, W): ``clip(x + sigma z)``."""
    out, noisy = _noise_frames(x, z.shape[1])
    torch.add(x[:, None], z, alpha=sigma, out=noisy)
    noisy.clamp_(0, 1)
    return out


def _speckle_from_draws(x: Tensor, sigma: float, z: Tensor) -> Tensor:
    """Speckle noise frames from standard normals ``z`` (N, T-1, 3, H, W): ``clip(x + x sigma z)``."""
    out, noisy = _noise_frames(x, z.shape[1])
    torch.mul(z, sigma, out=noisy)
    noisy.add_(1).mul_(x[:, None]).clamp_(0, 1)
    return out


@_register(
    "gaussian_noise",
    frames=(31, 31),
    imagenet={"sigma": (0.03, 0.05, 0.08)},
    cifar10={"sigma": (0.02, 0.04, 0.06)},
)
def gaussian_noise(x: Tensor, p, *, frames, difficulty, generator, size) -> Tensor:
    """Frame 0 clean, frames 1.. ``clip(x + N(0, sigma^2))`` with sigma of ``difficulty``; (N, T, 3, H, W)."""
    z = _standard_normal(x, (frames - 1, *x.shape[1:]), generator)
    return _gaussian_from_draws(x, p["sigma"][difficulty - 1], z)


@_register(
    "shot_noise", frames=(31, 31), imagenet={"photons": (300, 120, 60)}, cifar10={"photons": (700, 400, 200)}
)
def shot_noise(x: Tensor, p, *, frames, difficulty, generator, size) -> Tensor:
    """Frame 0 clean, frames 1.. ``clip(Poisson(x l) / l)`` with l of ``difficulty``; (N, T, 3, H, W)."""
    lam = p["photons"][difficulty - 1]
    rates = (x.float() * lam)[:, None].expand(-1, frames - 1, -1, -1, -1)
    out, noisy = _noise_frames(x, frames - 1)
    for k, r in enumerate(rates):  # image after image
        noisy[k] = torch.poisson(r, generator=generator)
    noisy.div_(lam).clamp_(0, 1)
    return out


@_register(
    "speckle_noise",
    frames=(31, 31),
    imagenet={"sigma": (0.05, 0.10, 0.15)},
    cifar10={"sigma": (0.05, 0.07, 0.10)},
)
def speckle_noise(x: Tensor, p, *, frames, difficulty, generator, size) -> Tensor:
    """Frame 0 clean, frames 1.. ``clip(x + x N(0, sigma^2))``, sigma of ``difficulty``; (N, T, 3, H, W)."""
    z = _standard_normal(x, (frames - 1, *x.shape[1:]), generator)
    return _speckle_from_draws(x, p["sigma"][difficulty - 1], z)


# ----------------------------------------------------------------------------------------------------------
# Photometric sequences on the (cropped) image


@_register(
    "brightness",
    frames=(31, 31),
    imagenet={"center": 15, "percent": 2},
    cifar10={"center": 15, "percent": 1.5},
)
def brightness(x: Tensor, p, *, frames, difficulty, generator, size) -> Tensor:
    """HSV value ``+ (i - center) * percent / 100``, clipped, per frame i; (N, T, 3, H, W)."""
    hsv = rgb_to_hsv(x)

    def frame(i: int) -> Tensor:
        shifted = hsv.clone()
        shifted[:, 2] = (shifted[:, 2] + (i - p["center"]) * p["percent"] / 100.0).clamp_(0, 1)
        return hsv_to_rgb(shifted).clamp_(0, 1)

    return _stack((frame(i) for i in range(frames)), frames, x, size)


@_register(
    "gaussian_blur",
    frames=(31, 31),
    imagenet={"sigma0": 0.25, "step": 0.035, "truncate": 6.0},
    cifar10={"sigma0": 0.30, "step": 0.015, "truncate": 7.0},
)
def gaussian_blur(x: Tensor, p, *, frames, difficulty, generator, size) -> Tensor:
    """Gaussian blur of sigma ``sigma0 + step i`` px ('nearest' border), clipped; (N, T, 3, H, W)."""
    return _stack(
        (gaussian_filter(x, p["sigma0"] + p["step"] * i, p["truncate"]).clamp_(0, 1) for i in range(frames)),
        frames,
        x,
        size,
    )


@_register(
    "motion_blur",
    frames=(31, 21),
    imagenet={"radius": 10, "sigma": 3, "center": 30, "step": 4},
    cifar10={"radius": 6, "sigma": 1.8, "center": 20, "step": 9},
)
def motion_blur(x: Tensor, p, *, frames, difficulty, generator, size) -> Tensor:
    """ImageMagick-style motion blur (radius, sigma px) at ``step (i - center)`` degrees, clipped.

    All frames of all images go through one blur call (one angle per frame); (N, T, 3, H, W).
    """
    angles = torch.tensor([float(p["step"] * (i - p["center"])) for i in range(frames)], dtype=torch.float64)
    blurred = motion_blur_image(_repeat_frames(x, frames), p["radius"], p["sigma"], angles.repeat(x.shape[0]))
    return blurred.clamp_(0, 1).view(x.shape[0], frames, *x.shape[1:])


def _repeat_frames(x: Tensor, frames: int) -> Tensor:
    """(N, C, H, W) -> (N * frames, C, H, W), image-major: row ``n * frames + i`` is image n for frame i."""
    return x.repeat_interleave(frames, 0)


def _snow_from_field(x: Tensor, field: Tensor, p: Mapping[str, Any], frames: int) -> Tensor:
    """Snow frames from the fields (N, 1, H, W) of N(mu, s^2) draws; (N, T, 3, H, W).

    The layer of frame i is the same zoomed, thresholded field motion-blurred at
    ``angle0 + step i`` degrees (:func:`~shiftattack.corruptions.weather.snow_layer`);
    every frame of every image goes through one call.
    """
    angles = torch.tensor([float(i * p["step"] + p["angle0"]) for i in range(frames)], dtype=torch.float64)
    layers = snow_layer(
        _repeat_frames(field, frames),
        p["zoom"],
        p["threshold"],
        p["radius"],
        p["sigma"],
        angles.repeat(x.shape[0]),
    )
    return snow_blend(_repeat_frames(x, frames), layers, p["blend"]).view(x.shape[0], frames, *x.shape[1:])


@_register(
    "snow",
    frames=(31, 31),
    imagenet={
        "mu": 0.05,
        "s": 0.3,
        "zoom": 3,
        "threshold": 0.5,
        "radius": 14,
        "sigma": 4,
        "angle0": -150,
        "step": 4,
        "blend": 0.85,
    },
    cifar10={
        "mu": 0.05,
        "s": 0.3,
        "zoom": 2,
        "threshold": 0.5,
        "radius": 10,
        "sigma": 2,
        "angle0": -150,
        "step": 4,
        "blend": 0.85,
    },
)
def snow(x: Tensor, p, *, frames, difficulty, generator, size) -> Tensor:
    """Snow whose field (drawn once per image) streaks at a turning angle; (N, T, 3, H, W).

    Draws, per image: the field ``mu + s * torch.randn(1, H, W)`` in ``x``'s dtype.
    """
    h, w = x.shape[-2:]
    field = p["mu"] + p["s"] * _per_image(
        x, lambda: torch.randn((1, h, w), generator=generator, device=x.device, dtype=x.dtype)
    )
    return _snow_from_field(x, field, p, frames)


def _smear(liquid: Tensor, kernel: tuple[float, ...]) -> Tensor:
    """``np.convolve(column, kernel, mode='same')`` down every column of (N, 1, H, W), zero outside."""
    m = len(kernel)
    taps = torch.tensor(kernel[::-1], dtype=liquid.dtype, device=liquid.device).view(1, 1, m, 1)
    return F.conv2d(F.pad(liquid, (0, 0, m - 1 - (m - 1) // 2, (m - 1) // 2)), taps)


#: Spatter's water masks are computed this many pixels (frames x images x H x W) at a time.
_MASK_CHUNK = 1 << 22


def _spatter_from_field(x: Tensor, field: Tensor, p: Mapping[str, Any], frames: int) -> Tensor:
    """Spatter frames from the fields (N, 1, H, W) of N(mu, s^2) draws (float64); (N, T, 3, H, W).

    The liquid layer is smoothed and thresholded once; frame i adds the water mask
    (:func:`~shiftattack.corruptions.spatter.spatter_water_mask`) of the liquid
    smeared i times down the columns by ``kernel``. The masks of all frames are
    computed together (in chunks of about ``_MASK_CHUNK`` pixels).
    """
    n, _, h, w = x.shape
    liquids = [liquid_layer(field, p["sigma"], p["threshold"])]
    for _ in range(frames - 1):
        liquids.append(_smear(liquids[-1], p["kernel"]))
    stacked = torch.stack(liquids, 1).reshape(n * frames, 1, h, w)
    per_call = max(1, _MASK_CHUNK // (h * w))
    masks = torch.cat([spatter_water_mask(part, p["k"]) for part in stacked.split(per_call)])
    colour = torch.tensor(WATER_COLOUR, dtype=x.dtype, device=x.device).view(1, 1, 3, 1, 1)
    return (x[:, None] + masks.view(n, frames, 1, h, w).to(x.dtype) * colour).clamp_(0, 1)


@_register(
    "spatter",
    frames=(31, 31),
    imagenet={
        "mu": 0.65,
        "s": 0.27,
        "sigma": 3.7,
        "threshold": 0.69,
        "k": 0.6,
        "kernel": (0.05, 0.1, 0.15, 0.7),
    },
    cifar10={"mu": 0.6, "s": 0.265, "sigma": 1.75, "threshold": 0.7, "k": 0.6, "kernel": (0.2, 0.8)},
)
def spatter(x: Tensor, p, *, frames, difficulty, generator, size) -> Tensor:
    """Water spatter drifting down a little each frame; (N, T, 3, H, W).

    Draws, per image: the field ``mu + s * torch.randn(1, H, W)`` in float64
    (float32 on MPS, which has no float64).
    """
    h, w = x.shape[-2:]
    dtype = torch.float32 if x.device.type == "mps" else torch.float64
    field = p["mu"] + p["s"] * _per_image(
        x, lambda: torch.randn((1, h, w), generator=generator, device=x.device, dtype=dtype)
    )
    return _spatter_from_field(x, field, p, frames)


# ----------------------------------------------------------------------------------------------------------
# Geometric sequences: transform the base, then take the centre crop


def affine_matrix(
    angle: float, translate: tuple[float, float], scale: float, shear: float, size: tuple[int, int]
) -> list[float]:
    """The inverse affine matrix torchvision 0.2's ``functional.affine`` hands to PIL.

    Args:
        angle: rotation in degrees.
        translate: (tx, ty) in pixels (content moves right / down).
        scale: zoom factor (> 0).
        shear: shear angle in degrees (torchvision 0.2's single-angle shear).
        size: (H, W) of the image in pixels; the centre is ``(W/2 + 1/2, H/2 + 1/2)``.

    Returns:
        6 floats (a, b, c, d, e, f): output point (x, y) samples the input at
        ``(a x + b y + c, d x + e y + f)``, PIL coordinates (pixel k spans [k, k+1)).
    """
    h, w = size
    cx, cy = w * 0.5 + 0.5, h * 0.5 + 0.5
    rot, sh = math.radians(angle), math.radians(shear)
    inv_scale = 1.0 / scale
    det = math.cos(rot + sh) * math.cos(rot) + math.sin(rot + sh) * math.sin(rot)
    m = [
        inv_scale / det * v
        for v in (math.cos(rot + sh), math.sin(rot + sh), 0.0, -math.sin(rot), math.cos(rot), 0.0)
    ]
    tx, ty = translate
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty) + cx
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty) + cy
    return m


def _window(x: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Row and column indices (float64) of the centre-crop window of ``x``'s H x W output."""
    top, left = _crop_offsets(x.shape[-2], x.shape[-1], size)
    rows = torch.arange(top, top + size[0], dtype=torch.float64, device=x.device)
    cols = torch.arange(left, left + size[1], dtype=torch.float64, device=x.device)
    return rows, cols


def warp_affine(x: Tensor, matrix: list[float], size: tuple[int, int] | None = None) -> Tensor:
    """PIL's bilinear ``Image.transform(AFFINE, matrix)`` with black fill, in torch.

    Args:
        x: (N, C, H, W) float images.
        matrix: 6 floats from :func:`affine_matrix` (output -> input, PIL coordinates).
        size: (h, w): compute only the centre crop of the H x W output (same pixels).

    Returns:
        (N, C, h, w) (or H, W). A sample point outside [0, W) x [0, H) is black; one
        inside interpolates bilinearly between the edge-clamped neighbours, as PIL does.
    """
    n, _, h, w = x.shape
    rows, cols = _window(x, size or (h, w))
    xs, ys = cols[None, :] + 0.5, rows[:, None] + 0.5
    u = matrix[0] * xs + matrix[1] * ys + matrix[2]
    v = matrix[3] * xs + matrix[4] * ys + matrix[5]
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    grid = torch.stack([2 * u / w - 1, 2 * v / h - 1], -1).to(x.dtype)
    out = F.grid_sample(
        x, grid.expand(n, -1, -1, -1), mode="bilinear", padding_mode="border", align_corners=False
    )
    return out * inside.to(x.dtype)


@_register("translate", frames=(41, 16), imagenet={"center": 20}, cifar10={"center": 7}, geometric=True)
def translate(x: Tensor, p, *, frames, difficulty, generator, size) -> Tensor:
    """Content moved ``i - center`` px right (exact, black fill), then centre-cropped; (N, T, 3, h, w)."""
    return _stack(
        (center_crop(shift(x, i - p["center"], 0, "zero"), size) for i in range(frames)), frames, x, size
    )


def _affine_frames(
    x: Tensor, frames: int, size: tuple[int, int], matrix: Callable[[int], list[float]]
) -> Tensor:
    """Frame i = the centre crop of ``warp_affine(x, matrix(i))``, clipped; (N, frames, 3, h, w)."""
    return _stack((warp_affine(x, matrix(i), size).clamp_(0, 1) for i in range(frames)), frames, x, size)


@_register(
    "rotate",
    frames=(31, 31),
    imagenet={"center": 15, "step": 1},
    cifar10={"center": 15, "step": 1},
    geometric=True,
)
def rotate(x: Tensor, p, *, frames, difficulty, generator, size) -> Tensor:
    """Rotation by ``step (i - center)`` degrees (bilinear, black corners), centre-cropped."""
    hw = tuple(x.shape[-2:])
    return _affine_frames(
        x, frames, size, lambda i: affine_matrix(p["step"] * (i - p["center"]), (0, 0), 1, 0, hw)
    )


@_register(
    "scale",
    frames=(31, 31),
    imagenet={"percent0": 40, "step": 2.5},
    cifar10={"percent0": 70, "step": 2},
    geometric=True,
)
def scale(x: Tensor, p, *, frames, difficulty, generator, size) -> Tensor:
    """Zoom by ``(percent0 + step i) / 100`` about the centre (bilinear, black fill), centre-cropped."""
    hw = tuple(x.shape[-2:])
    return _affine_frames(
        x, frames, size, lambda i: affine_matrix(0, (0, 0), (i * p["step"] + p["percent0"]) / 100.0, 0, hw)
    )


@_register(
    "shear",
    frames=(31, 31),
    imagenet={"center": 15, "step": 1},
    cifar10={"center": 15, "step": 1},
    geometric=True,
)
def shear(x: Tensor, p, *, frames, difficulty, generator, size) -> Tensor:
    """torchvision 0.2 shear by ``step (i - center)`` degrees (bilinear, black fill), centre-cropped."""
    hw = tuple(x.shape[-2:])
    return _affine_frames(
        x, frames, size, lambda i: affine_matrix(0, (0, 0), 1, p["step"] * (i - p["center"]), hw)
    )


@_register("zoom_blur", frames=(31, 31), imagenet={"step": 0.004}, cifar10={"step": 0.004}, geometric=True)
def zoom_blur(x: Tensor, p, *, frames, difficulty, generator, size) -> Tensor:
    """Frame i = mean over j = 0..i of the base zoomed by ``1 + step j`` (bilinear), centre-cropped."""
    hw = tuple(x.shape[-2:])
    zooms = _affine_frames(x, frames, size, lambda i: affine_matrix(0, (0, 0), 1 + p["step"] * i, 0, hw))
    zooms[:, 0] = center_crop(x, size)
    return (
        zooms.cumsum_(1)
        .div_(torch.arange(1, frames + 1, dtype=x.dtype, device=x.device).view(1, -1, 1, 1, 1))
        .clamp_(0, 1)
    )


def tilt_matrix(angle: float, size: tuple[int, int]) -> Tensor:
    """The published tilt homography (float64 (3, 3), input pixel -> output pixel, OpenCV coordinates).

    Lift pixel (x, y) to ``(x - W/2, y - H/2, 1)``, rotate about the y axis by
    ``angle`` then about the x axis by ``angle`` (degrees), push it out along z by
    ``f = sqrt(W^2 + H^2)`` and project with focal length f and principal point
    ``(W/2, H/2)`` (CORRUPTIONS.md section 6 "Tilt"). At angle 0 it is a zoom by
    ``f / (f + 1)`` about the principal point, not the identity.
    """
    h, w = size
    t = math.radians(angle)
    f = math.sqrt(w**2 + h**2)
    c, s = math.cos(t), math.sin(t)
    lift = torch.tensor([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]], dtype=torch.float64)
    rx = torch.tensor([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1]], dtype=torch.float64)
    ry = torch.tensor([[c, 0, -s, 0], [0, 1, 0, 0], [s, 0, c, 0], [0, 0, 0, 1]], dtype=torch.float64)
    push = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]], dtype=torch.float64)
    project = torch.tensor([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]], dtype=torch.float64)
    return project @ push @ rx @ ry @ lift


def warp_perspective(x: Tensor, matrix: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """OpenCV's ``warpPerspective(x, matrix, (W, H))`` (bilinear, black border), in torch.

    Args:
        x: (N, C, H, W) float images.
        matrix: (3, 3) homography from input to output pixel coordinates (pixel k at k).
        size: (h, w): compute only the centre crop of the H x W output (same pixels).

    Returns:
        (N, C, h, w) (or H, W): output pixel (x, y) samples the input bilinearly at
        ``matrix^-1 (x, y, 1)``, neighbours outside the image counting as black.
    """
    n, _, h, w = x.shape
    rows, cols = _window(x, size or (h, w))
    inv = torch.linalg.inv(matrix.to(device=x.device, dtype=torch.float64))
    xs, ys = cols[None, :], rows[:, None]
    den = inv[2, 0] * xs + inv[2, 1] * ys + inv[2, 2]
    u = (inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]) / den
    v = (inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]) / den
    grid = torch.stack([2 * u / max(w - 1, 1) - 1, 2 * v / max(h - 1, 1) - 1], -1).to(x.dtype)
    return F.grid_sample(
        x, grid.expand(n, -1, -1, -1), mode="bilinear", padding_mode="zeros", align_corners=True
    )


@_register(
    "tilt",
    frames=(31, 31),
    imagenet={"center": 15, "step": 1},
    cifar10={"center": 15, "step": 0.75},
    geometric=True,
)
def tilt(x: Tensor, p, *, frames, difficulty, generator, size) -> Tensor:
    """Perspective tilt by ``step (i - center)`` degrees about both axes (bilinear, black), centre-cropped."""
    hw = tuple(x.shape[-2:])
    return _stack(
        (
            warp_perspective(x, tilt_matrix(p["step"] * (i - p["center"]), hw), size).clamp_(0, 1)
            for i in range(frames)
        ),
        frames,
        x,
        size,
    )
