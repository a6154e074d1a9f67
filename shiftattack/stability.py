"""Shift stability of one model as a results document (``stability.json``): consistency, diagonal curve.

- Consistency (Zhang 2019): the percent of image pairs, each image shifted twice by random
  integer shifts in [-K, K]^2, whose top-1 predictions agree; in every mode asked for.
- Zhang's diagonal curve: each image is padded into a canvas (``pad`` px, reflect by
  default) and classified through the window whose content is shifted by (d, d) for
  d = -pad..pad; per d the accuracy and the mean true-class probability.

The document is what the report reads; nothing in it depends on wall-clock time, and the
random shifts come from a seeded generator.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .api import make_canvas
from .metrics import consistency_shifted, diagonal_curve

__all__ = ["stability_document"]


def stability_document(
    model,
    images: Tensor,
    labels: Tensor,
    *,
    modes: tuple[str, ...] = ("zero", "circular"),
    max_shift: int = 2,
    n_repeats: int = 5,
    pad: int = 8,
    pad_mode: str = "reflect",
    seed: int = 0,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Consistency per mode and the diagonal curve of ``model`` on ``images`` (N, 3, H, W) in [0, 1].

    Returns a dict with ``consistency`` ({mode: percent}), the protocol (``max_shift``,
    ``n_repeats``, ``seed``) and ``diagonal`` (``offsets`` d in px from -pad to pad,
    ``accuracy`` and ``correct_prob`` fractions, ``pad``, ``pad_mode``).
    """
    out: dict[str, Any] = {
        "consistency": {},
        "max_shift": max_shift,
        "n_repeats": n_repeats,
        "seed": seed,
        "n_images": int(images.shape[0]),
    }
    with torch.inference_mode():
        for mode in modes:
            g = torch.Generator().manual_seed(seed)
            res = consistency_shifted(
                model, images, mode=mode, max_shift=max_shift, n_repeats=n_repeats, generator=g,
                batch_size=batch_size,
            )  # fmt: skip
            out["consistency"][mode] = res.consistency
        canvas = make_canvas(images, pad, pad_mode)
        # windows whose top-left corner runs along the diagonal from (0, 0) to (2 pad, 2 pad):
        # the content moves from +pad to -pad px in both directions
        curve = diagonal_curve(model, canvas, labels, size=tuple(images.shape[-2:]), max_offset=2 * pad)
    out["diagonal"] = {
        "offsets": [pad - d for d in range(2 * pad + 1)],
        "accuracy": list(curve.accuracy),
        "correct_prob": list(curve.correct_prob),
        "pad": pad,
        "pad_mode": pad_mode,
    }
    return out
