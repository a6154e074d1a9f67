"""A built-in synthetic image set where aliasing matters: the demo's data, ``--data synthetic:SPLIT``.

Eight classes, each invariant to translation, so a perfect classifier is shift-invariant:
oriented gratings at four orientations (0, 45, 90, 135 degrees, jittered), checkerboards,
concentric rings, and a finely textured disk or square on a textured background. Periods
lie between 2.2 and 6 px, close to the Nyquist limit of a stride-2 layer, so strided
networks alias and their predictions change under one-pixel shifts, the effect BlurPool
and CMod address. Every image has a random phase, position, contrast, colours and a little
pixel noise.

The set is procedural and deterministic: image ``i`` of a split depends only on
``(seed, split, i)``, so any ``limit`` takes the same images every time. ``train`` has
:data:`SPLIT_SIZES` ``["train"]`` images, ``test`` the other count; both are generated in
a fraction of a second for the demo's sizes.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor

from shiftattack.data.dataset import LabeledImages, balanced_subset
from shiftattack.errors import SpecError

__all__ = ["SYNTHETIC_CLASSES", "SPLIT_SIZES", "synthetic_images", "load_synthetic", "is_synthetic_spec"]

SYNTHETIC_CLASSES = [
    "grating 0",
    "grating 45",
    "grating 90",
    "grating 135",
    "checkerboard",
    "rings",
    "textured disk",
    "textured square",
]

#: images per split
SPLIT_SIZES = {"train": 8000, "test": 2000}

_PREFIX = "synthetic"


def is_synthetic_spec(spec: str) -> bool:
    """True for ``synthetic``, ``synthetic:train`` and ``synthetic:test``."""
    return spec == _PREFIX or spec.startswith(_PREFIX + ":")


def _seed(seed: int, split: str, index: int) -> int:
    digest = hashlib.sha256(f"shiftattack-synthetic/{seed}/{split}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _grating(yy: Tensor, xx: Tensor, angle: float, period: float, phase: float) -> Tensor:
    u = xx * math.cos(angle) + yy * math.sin(angle)
    return 0.5 + 0.5 * torch.cos(2 * math.pi * u / period + phase)


def _one(label: int, size: int, g: torch.Generator) -> Tensor:
    """One image (3, size, size) in [0, 1] of class ``label``."""

    def U(lo: float, hi: float) -> float:  # noqa: N802
        return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))

    coords = torch.arange(size, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    fg, bg = torch.rand(3, generator=g, dtype=torch.float64), torch.rand(3, generator=g, dtype=torch.float64)
    if float((fg - bg).abs().sum()) < 0.6:  # keep some colour contrast
        fg = 1 - bg
    if label < 4:
        angle = math.radians(45 * label + U(-10, 10))
        value = _grating(yy, xx, angle, U(2.2, 5.0), U(0, 2 * math.pi))
    elif label == 4:
        period, py, px = U(2.5, 6.0), U(0, 12), U(0, 12)
        value = ((torch.floor((yy + py) / period) + torch.floor((xx + px) / period)) % 2).double()
    elif label == 5:
        cy, cx = U(0.25 * size, 0.75 * size), U(0.25 * size, 0.75 * size)
        r = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        value = 0.5 + 0.5 * torch.cos(2 * math.pi * r / U(2.5, 5.0) + U(0, 2 * math.pi))
    else:
        half = U(0.16, 0.3) * size
        cy, cx = U(half + 1, size - half - 1), U(half + 1, size - half - 1)
        if label == 6:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= half**2
        else:
            inside = ((yy - cy).abs() <= half * 0.9) & ((xx - cx).abs() <= half * 0.9)
        texture = _grating(yy, xx, U(0, math.pi), U(2.2, 4.0), U(0, 2 * math.pi))
        background = 0.3 + 0.2 * _grating(yy, xx, U(0, math.pi), U(6.0, 10.0), U(0, 2 * math.pi))
        value = torch.where(inside, texture, background)
    contrast = U(0.6, 1.0)
    value = 0.5 + contrast * (value - 0.5)
    img = bg[:, None, None] + (fg - bg)[:, None, None] * value[None]
    img = img + 0.03 * torch.randn(img.shape, generator=g, dtype=torch.float64)
    return img.clamp(0, 1)


def synthetic_images(split: str = "train", indices=None, *, size: int = 32, seed: int = 0) -> LabeledImages:
    """The images ``indices`` (default: all) of ``split``: uint8 (N, 3, size, size), labels ``i % 8``.

    Raises:
        SpecError: an unknown split, an index outside the split, or a size below 8.
    """
    if split not in SPLIT_SIZES:
        raise SpecError(f"the synthetic set has splits {sorted(SPLIT_SIZES)}, got {split!r}")
    if not isinstance(size, int) or size < 8:
        raise SpecError(f"synthetic images must be at least 8 px, got {size!r}")
    total = SPLIT_SIZES[split]
    idx = torch.arange(total) if indices is None else torch.as_tensor(indices, dtype=torch.int64)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= total):
        raise SpecError(f"synthetic {split} has images 0..{total - 1}, asked for index {int(idx.max())}")
    k = len(SYNTHETIC_CLASSES)
    images = torch.empty(idx.numel(), 3, size, size, dtype=torch.uint8)
    for row, i in enumerate(idx.tolist()):
        g = torch.Generator().manual_seed(_seed(seed, split, i))
        images[row] = torch.round(_one(i % k, size, g) * 255).to(torch.uint8)
    labels = idx % k
    return LabeledImages(images, labels, idx.clone(), list(SYNTHETIC_CLASSES), f"{_PREFIX}:{split}")


def load_synthetic(spec: str, limit: int | None = None) -> LabeledImages:
    """``synthetic[:train|:test]`` with an optional class-balanced ``limit`` (the same images every time)."""
    split = "train" if spec == _PREFIX else spec.partition(":")[2]
    if split not in SPLIT_SIZES:
        raise SpecError(f"the synthetic set has splits train and test, got {spec!r}")
    labels = torch.arange(SPLIT_SIZES[split]) % len(SYNTHETIC_CLASSES)
    chosen = None if limit is None else balanced_subset(labels, limit)
    data = synthetic_images(split, chosen)
    return LabeledImages(data.images, data.labels, data.indices, data.classes, spec,
                         names=[f"{_PREFIX}:{split}[{i}]" for i in data.indices.tolist()])
