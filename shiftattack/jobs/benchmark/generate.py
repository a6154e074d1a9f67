"""Generate corrupted images and perturbation sequences as the published datasets hold them.

Both the ``benchmark`` command (generated source) and the ``corrupt`` command (files
for other tools) go through these functions, so a model scored on generated data
sees exactly the pixels ``corrupt`` writes (before the ImageNet-P video encoding):

* images are corrupted in fixed chunks of :func:`chunk_size` images (independent of
  the inference batch size), each (suite, name, severity) unit with its own
  ``torch.Generator`` seeded by :func:`unit_seed`, so a unit's pixels depend only on
  the run seed, the unit and the images;
* the float result is quantised by truncation to 8 bits (the published
  ``np.uint8`` cast), and ImageNet-C images also go through JPEG quality 85, the
  format of the released files.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from shiftattack.corruptions import corrupt
from shiftattack.corruptions.perturbations import perturb
from shiftattack.data.corrupted import to_uint8
from shiftattack.runtime.units import unit_seed

__all__ = ["unit_seed", "chunk_size", "center_crop", "jpeg_roundtrip", "corrupted_chunks", "sequence_chunks"]

JPEG_QUALITY = 85  # ImageNet-C's saved files (CORRUPTIONS.md section 1)


def chunk_size(height: int, width: int, frames: int = 1) -> int:
    """Images corrupted together: about 4 Mpx of frames per chunk, 1 to 1024 images."""
    return max(1, min(1024, (1 << 22) // max(1, height * width * frames)))


def center_crop(x: Tensor, size: int | None) -> Tensor:
    """Centre ``size`` x ``size`` window of (..., H, W) (torchvision's CenterCrop offsets); None keeps all."""
    if size is None:
        return x
    h, w = x.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the {h}x{w} images")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top : top + size, left : left + size]


def jpeg_roundtrip(images: Tensor, quality: int = JPEG_QUALITY) -> Tensor:
    """Encode and decode every uint8 (N, 3, H, W) image as JPEG with Pillow; same shape, uint8."""
    out = []
    for img in images.permute(0, 2, 3, 1).cpu().numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def corrupted_chunks(
    images: Tensor,
    name: str,
    severity: int,
    *,
    params: str,
    seed: int,
    device: torch.device,
    crop: int | None = None,
    jpeg: bool = False,
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(start, uint8 (n, 3, h, w))`` corrupted chunks of uint8 (N, 3, H, W) ``images``.

    The images are centre-cropped to ``crop`` first (ImageNet-C: 224 of the 256 px
    canvas), corrupted on ``device`` with the unit's generator, truncated to 8 bits
    and, with ``jpeg``, passed through JPEG quality 85. Chunks come back on the CPU.
    """
    gen = _generator(device, unit_seed(seed, params, name, severity))
    h, w = center_crop(images[:1], crop).shape[-2:]
    step = chunk_size(h, w)
    for start in range(0, images.shape[0], step):
        x = center_crop(images[start : start + step], crop).to(device=device, dtype=torch.float32) / 255
        out = to_uint8(corrupt(x, name, severity, generator=gen, params=params)).cpu()
        yield start, (jpeg_roundtrip(out) if jpeg else out)


def sequence_chunks(
    images: Tensor,
    name: str,
    *,
    params: str,
    difficulty: int,
    seed: int,
    device: torch.device,
    crop: int | None = None,
    frames: int = 31,
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(start, uint8 (n, T, 3, h, w))`` perturbation sequences of uint8 (N, 3, H, W) ``images``.

    ImageNet-P transforms the whole canvas and crops every frame to ``crop`` (224);
    CIFAR-10-P works on the 32 px image (``crop=None``). Frames are truncated to 8 bits.
    """
    gen = _generator(device, unit_seed(seed, params, name, difficulty))
    h, w = images.shape[-2:]
    step = chunk_size(h, w, frames)
    for start in range(0, images.shape[0], step):
        x = images[start : start + step].to(device=device, dtype=torch.float32) / 255
        seq = perturb(x, name, generator=gen, params=params, difficulty=difficulty, crop=crop)
        yield start, to_uint8(seq).cpu()
