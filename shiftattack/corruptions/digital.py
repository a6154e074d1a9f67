"""Digital corruptions (Hendrycks & Dietterich 2019): brightness, contrast, saturate, JPEG, pixelate.

Brightness and saturate work in HSV with scikit-image's definitions (V = max,
S = (max - min) / max, H in [0, 1)), computed here in torch. JPEG and pixelate
give the pixels Pillow gives the published generator: JPEG encode/decode at
quality q by Pillow itself (images in parallel threads); BOX resize down to floor(side * f)
px and back, by Pillow itself for RGB images on the CPU, else Pillow's integer arithmetic
in torch (``_pil_box``). Inputs are
float (N, 3, H, W) in [0, 1]; outputs the same, clipped.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from shiftattack.corruptions._pil_box import box_resize, box_windows
from shiftattack.corruptions._registry import register_corruption

__all__ = ["rgb_to_hsv", "hsv_to_rgb", "brightness", "contrast", "saturate", "jpeg_compression", "pixelate"]


def rgb_to_hsv(x: Tensor) -> Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> HSV in [0, 1] (scikit-image's ``rgb2hsv`` convention)."""
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    delta = v - x.min(1).values
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    safe = delta.clamp_min(1e-12)
    h = torch.where(v == r, (g - b) / safe, torch.where(v == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    h = torch.where(delta > 0, (h / 6) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """(N, 3, H, W) HSV in [0, 1] -> RGB in [0, 1] (scikit-image's ``hsv2rgb`` convention)."""
    h, s, v = hsv.unbind(1)
    i = torch.floor(h * 6)
    f = h * 6 - i
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    i = i.long() % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros_like(hsv)
    for k, (r, g, b) in enumerate(choices):
        mask = (i == k).unsqueeze(1)
        out = torch.where(mask, torch.stack([r, g, b], 1), out)
    return out


@register_corruption("brightness", imagenet=(.1, .2, .3, .4, .5), cifar10=(.05, .1, .15, .2, .3),
                     group="weather")
def brightness(x: Tensor, c: float, generator: torch.Generator | None = None) -> Tensor:
    """Add ``c`` to the HSV value channel (clipped), back to RGB."""
    hsv = rgb_to_hsv(x)
    hsv[:, 2] = (hsv[:, 2] + c).clamp(0, 1)
    return hsv_to_rgb(hsv).clamp_(0, 1)


@register_corruption("contrast", imagenet=(.4, .3, .2, .1, .05), cifar10=(.75, .5, .4, .3, .15),
                     group="digital")
def contrast(x: Tensor, c: float, generator: torch.Generator | None = None) -> Tensor:
    """``(x - mean) * c + mean`` with the per-image, per-channel spatial mean."""
    mean = x.mean((-2, -1), keepdim=True)
    return ((x - mean) * c + mean).clamp_(0, 1)


@register_corruption("saturate", imagenet=((.3, 0), (.1, 0), (2, 0), (5, .1), (20, .2)),
                     cifar10=((.3, 0), (.1, 0), (1.5, 0), (2, .1), (2.5, .2)), group="digital", held_out=True)
def saturate(x: Tensor, c: tuple[float, float], generator: torch.Generator | None = None) -> Tensor:
    """HSV saturation ``S <- clip(S * m + o, 0, 1)`` for ``c = (m, o)``."""
    m, o = c
    hsv = rgb_to_hsv(x)
    hsv[:, 1] = (hsv[:, 1] * m + o).clamp(0, 1)
    return hsv_to_rgb(hsv).clamp_(0, 1)


def _quantise(x: Tensor) -> Tensor:
    """(N, C, H, W) floats in [0, 1] -> int32 8-bit levels ``round(255 x)``, what Pillow is handed."""
    # float -> int32 -> uint8 is several times faster than float -> uint8 on the CPU
    return (x.detach().clamp(0, 1) * 255).round_().to(torch.int32)


def _levels_hwc(x: Tensor) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> uint8 (N, H, W, C) levels ``round(255 x)``, C-contiguous, on the CPU.

    The same levels as :func:`_quantise` (both round half to even); on the CPU in NumPy,
    one transposing multiply into a channels-last buffer, then in place (no transposing
    copy when ``x`` is channels-last already).
    """
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return _quantise(x).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()
    hwc = x.detach().permute(0, 2, 3, 1).numpy()
    buf = np.multiply(hwc, hwc.dtype.type(255), order="C")
    np.clip(buf, 0, 255, out=buf)
    return np.rint(buf, out=buf).astype(np.uint8)


def _from_levels(levels: np.ndarray, like: Tensor) -> Tensor:
    """uint8 (N, H, W, C) -> (N, C, H, W) ``levels / 255`` in ``like``'s dtype and device (channels-last)."""
    u = torch.from_numpy(levels).to(like.device).permute(0, 3, 1, 2)
    return torch.div(u, torch.tensor(255, dtype=like.dtype, device=like.device))


@lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    """Threads for Pillow's C code, which releases the GIL (one pool per size, kept)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shiftattack-pillow")


def _per_image(fn, levels: np.ndarray, shape: tuple[int, ...] | None = None, *args) -> np.ndarray:
    """``fn(img, *args)`` (uint8 (H, W, C) -> ``shape``, default the same) of every image into one array.

    The images of a batch run on ``torch.get_num_threads()`` threads (Pillow releases the GIL).
    """
    out = np.empty((len(levels), *(shape or levels.shape[1:])), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = fn(levels[i], *args)

    if len(levels) > 1 and torch.get_num_threads() > 1:
        list(_pool(torch.get_num_threads()).map(one, range(len(levels))))
    else:
        for i in range(len(levels)):
            one(i)
    return out


def _jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """uint8 (H, W, 3) -> the same image JPEG-encoded at ``quality`` by Pillow and decoded again."""
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    decoded = Image.open(buffer)
    return np.asarray(decoded if decoded.mode == "RGB" else decoded.convert("RGB"))


@register_corruption("jpeg_compression", imagenet=(25, 18, 15, 10, 7), cifar10=(80, 65, 58, 50, 40),
                     group="digital")
def jpeg_compression(x: Tensor, q: int, generator: torch.Generator | None = None) -> Tensor:
    """Pillow JPEG encode and decode at quality ``q`` (inputs quantised to 8 bits); (N, 3, H, W) -> same.

    The images of a batch are coded in parallel on ``torch.get_num_threads()`` threads;
    the result is channels-last in memory.
    """
    return _from_levels(_per_image(_jpeg_roundtrip, _levels_hwc(x), None, int(q)), x)


@lru_cache(maxsize=256)
def _nearest_is_box(n_in: int, n_out: int) -> bool:
    """Whether Pillow's NEAREST enlargement from ``n_in`` to ``n_out`` samples picks BOX's one sample.

    Pillow's BOX enlargement takes sample ``first[i]`` (:func:`~._pil_box.box_windows`) for
    output i; NEAREST computes its own index in floating point. Checked once per size pair
    on an image of indices, so the faster NEAREST is used only where it is the same.
    """
    ramp = Image.fromarray(np.arange(n_in, dtype=np.int32)[None], "I")
    picked = np.asarray(ramp.resize((n_out, 1), Image.NEAREST))[0]
    return picked.tolist() == list(box_windows(n_in, n_out)[0])


def _pillow_pixelate(img: np.ndarray, small: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3) -> Pillow's BOX resize to ``small`` (h, w) px and back (NEAREST where it is BOX)."""
    h, w = img.shape[:2]
    shrunk = Image.fromarray(img).resize(small[::-1], Image.BOX)
    same = _nearest_is_box(small[0], h) and _nearest_is_box(small[1], w)
    return np.asarray(shrunk.resize((w, h), Image.NEAREST if same else Image.BOX))


@register_corruption("pixelate", imagenet=(.6, .5, .4, .3, .25), cifar10=(.95, .9, .85, .75, .65),
                     group="digital")
def pixelate(x: Tensor, f: float, generator: torch.Generator | None = None) -> Tensor:
    """Pillow BOX resize down to ``floor(side * f)`` px and back up (inputs quantised to 8 bits).

    RGB images on the CPU go through Pillow itself (the enlargement by its faster NEAREST
    where that picks the same sample per pixel, see :func:`_nearest_is_box`), the result
    channels-last in memory; other devices and channel counts go through Pillow's
    fixed-point arithmetic reproduced in torch
    (:func:`~shiftattack.corruptions._pil_box.box_resize`), batched, on ``x``'s device; the
    two give the same values; (N, C, H, W) -> same.
    """
    h, w = x.shape[-2:]
    small = (max(1, int(h * f)), max(1, int(w * f)))
    if x.device.type == "cpu" and x.shape[1] == 3:
        return _from_levels(_per_image(_pillow_pixelate, _levels_hwc(x), None, small), x)
    return box_resize(box_resize(_quantise(x), small), (h, w)).to(x.dtype) / 255
