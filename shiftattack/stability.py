"""Shift stability of one model as a results document (``stability.json``): consistency, diagonal curve.

- Consistency (Zhang 2019): the percent of image pairs, each image shifted twice by random
  integer shifts in [-K, K]^2, whose top-1 predictions agree; in every mode asked for.
- Zhang's diagonal curve: each image is padded into a canvas (``pad`` px, reflect by
  default) and classified through the window whose content is shifted by (d, d) for
  d = -pad..pad; per d the accuracy and the mean true-class probability.
- Flip rate against shift distance (Leterme et al.'s mean flip rate): on the same canvas, the
  percent of images whose top-1 differs between the centred window and the window shifted by
  d px horizontally, vertically or diagonally, d = 1..``flip_distance``
  (:func:`shiftattack.metrics.flip_rate`, crop mode).

The document is what the report reads; nothing in it depends on wall-clock time, and the
random shifts come from a seeded generator.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .api import make_canvas
from .errors import SpecError
from .metrics import consistency_shifted, diagonal_curve, flip_rate

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
    flip_distance: int | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Consistency per mode and the diagonal curve of ``model`` on ``images`` (N, 3, H, W) in [0, 1].

    Returns a dict with ``consistency`` ({mode: percent}), the protocol (``max_shift``,
    ``n_repeats``, ``seed``) and ``diagonal`` (``offsets`` d in px from -pad to pad,
    ``accuracy`` and ``correct_prob`` fractions, ``pad``, ``pad_mode``) and ``flip_rate``
    (:class:`~shiftattack.metrics.FlipRateResult` as JSON, percent, crop mode on the canvas;
    distances 1..``flip_distance``, default ``min(pad, 4)``, at most ``pad``).
    """
    flip_distance = min(pad, 4) if flip_distance is None else flip_distance
    if not 1 <= flip_distance <= pad:
        raise SpecError(f"flip_distance must be in 1..pad ({pad}), got {flip_distance}")
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
        flips = flip_rate(model, canvas, mode="crop", size=tuple(images.shape[-2:]),
                          max_distance=flip_distance, batch_size=batch_size)
    out["diagonal"] = {
        "offsets": [pad - d for d in range(2 * pad + 1)],
        "accuracy": list(curve.accuracy),
        "correct_prob": list(curve.correct_prob),
        "pad": pad,
        "pad_mode": pad_mode,
    }
    out["flip_rate"] = {**flips.to_json(), "pad": pad, "pad_mode": pad_mode}
    return out
