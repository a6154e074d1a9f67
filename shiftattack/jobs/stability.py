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

from shiftattack.api import make_canvas
from shiftattack.errors import SpecError
from shiftattack.metrics.shift import consistency, consistency_shifted, diagonal_curve, flip_rate

__all__ = ["stability_document", "canvas_stability_document"]


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
    distances 1..``flip_distance``, default ``min(pad, 4)``, at most ``pad``; None when ``pad`` is 0).
    """
    flip_distance = min(pad, 4) if flip_distance is None else flip_distance
    if pad > 0 and not 1 <= flip_distance <= pad or pad == 0 and flip_distance != 0:
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
        flips = None if pad == 0 else flip_rate(  # no canvas, no windows to move
            model, canvas, mode="crop", size=tuple(images.shape[-2:]), max_distance=flip_distance,
            batch_size=batch_size)
    out["diagonal"] = {
        "offsets": [pad - d for d in range(2 * pad + 1)],
        "accuracy": list(curve.accuracy),
        "correct_prob": list(curve.correct_prob),
        "pad": pad,
        "pad_mode": pad_mode,
    }
    out["flip_rate"] = None if flips is None else {**flips.to_json(), "pad": pad, "pad_mode": pad_mode}
    return out


def canvas_stability_document(
    model,
    canvases: Tensor,
    labels: Tensor,
    *,
    size: int,
    n_repeats: int = 5,
    flip_distance: int = 8,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Zhang's crop protocol on real canvases (ImageNet: 224 windows of 256 x 256 images).

    - ``consistency["crop"]``: two windows per image and repeat, top-left corners uniform in
      ``0..S-size-1`` as Zhang's ``randint`` (:func:`shiftattack.metrics.consistency`);
    - ``diagonal``: windows at (d, d), d = 0..(canvas - size), as content shifts centred on 0;
    - ``flip_rate``: the centred window against windows moved 1..``flip_distance`` px
      (Leterme et al. use 1 to 8 on ImageNet).

    Args:
        canvases: (N, 3, S, S) floats in [0, 1], S > ``size``.
        labels: (N,) integer classes.
        size: window side in px.

    Returns:
        a document with the keys of :func:`stability_document` (so ``shiftattack report`` reads
        it), ``max_shift`` being the largest content shift a window can have.
    """
    side = int(min(canvases.shape[-2:]))
    if not 0 < size < side:
        raise SpecError(f"window size must be between 1 and the canvas side - 1 ({side - 1}), got {size}")
    room = side - size
    if not 1 <= flip_distance <= room // 2:
        raise SpecError(f"flip_distance must be in 1..{room // 2} for {size}-px windows of {side}-px canvases")
    with torch.inference_mode():
        g = torch.Generator().manual_seed(seed)
        cons = consistency(model, canvases, size=size, n_repeats=n_repeats, generator=g, batch_size=batch_size)
        curve = diagonal_curve(model, canvases, labels, size=size, max_offset=room, batch_size=batch_size)
        flips = flip_rate(model, canvases, mode="crop", size=size, max_distance=flip_distance,
                          batch_size=batch_size)  # pairs anchored at the centred window
    centre = room // 2
    return {
        "consistency": {"crop": cons.consistency},
        "max_shift": centre,
        "n_repeats": n_repeats,
        "seed": seed,
        "n_images": int(canvases.shape[0]),
        "diagonal": {"offsets": [centre - d for d in range(room + 1)], "accuracy": list(curve.accuracy),
                     "correct_prob": list(curve.correct_prob), "pad": centre, "pad_mode": "image"},
        "flip_rate": {**flips.to_json(), "pad": centre, "pad_mode": "image"},
    }
