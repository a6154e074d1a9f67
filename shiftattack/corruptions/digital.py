"""Digital corruptions (Hendrycks & Dietterich 2019): brightness, contrast, saturate, JPEG, pixelate.

Brightness and saturate work in HSV with scikit-image's definitions (V = max,
S = (max - min) / max, H in [0, 1)), computed here in torch; JPEG and pixelate
round-trip each image through Pillow exactly as the published generator does
(JPEG encode/decode at quality q; BOX resize down to floor(side * f) px and
back). Inputs are float (N, 3, H, W) in [0, 1]; outputs the same, clipped.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import Tensor

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


def _per_image_pil(x: Tensor, fn) -> Tensor:
    """Apply ``fn(PIL RGB image) -> PIL image`` to each image of a (N, 3, H, W) batch in [0, 1]."""
    arrays = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.stack([np.asarray(fn(Image.fromarray(a)).convert("RGB")) for a in arrays])
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype) / 255


@register_corruption("jpeg_compression", imagenet=(25, 18, 15, 10, 7), cifar10=(80, 65, 58, 50, 40),
                     group="digital")
def jpeg_compression(x: Tensor, q: int, generator: torch.Generator | None = None) -> Tensor:
    """Pillow JPEG encode and decode at quality ``q`` (inputs quantised to 8 bits first)."""

    def roundtrip(img: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=int(q))
        buffer.seek(0)
        return Image.open(buffer)

    return _per_image_pil(x, roundtrip)


@register_corruption("pixelate", imagenet=(.6, .5, .4, .3, .25), cifar10=(.95, .9, .85, .75, .65),
                     group="digital")
def pixelate(x: Tensor, f: float, generator: torch.Generator | None = None) -> Tensor:
    """Pillow BOX resize down to ``floor(side * f)`` px and back up (inputs quantised to 8 bits)."""
    h, w = x.shape[-2:]
    small = (max(1, int(w * f)), max(1, int(h * f)))
    return _per_image_pil(x, lambda img: img.resize(small, Image.BOX).resize((w, h), Image.BOX))
