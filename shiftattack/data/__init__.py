"""Datasets: load a ``--data`` spec into one in-memory :class:`LabeledImages`.

Layouts: ``.npz`` (``x`` uint8 ``(N, H, W, 3)``, ``y`` int ``(N,)``), an
ImageFolder directory or ``.zip`` (``root/<class>/<image>``, with an optional
``:split`` suffix such as ``cifar10-jpeg.zip:test``) and the CIFAR-10 python
batches. ``limit`` keeps a deterministic class-balanced subset
(:func:`balanced_subset`), chosen before any image is decoded.

Examples:
    >>> from shiftattack.data import load_dataset
    >>> ds = load_dataset("../shared/data/cifar10-jpeg.zip:test", limit=200)  # doctest: +SKIP
    >>> x = ds.float_images(0, 64)  # (64, 3, 32, 32) float32 in [0, 1]  # doctest: +SKIP
"""

from __future__ import annotations

from shiftattack.data._decode import IMAGE_EXTENSIONS
from shiftattack.data.dataset import LabeledImages, balanced_subset
from shiftattack.data.loaders import LAYOUTS, load_dataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "LabeledImages",
    "balanced_subset",
    "load_dataset",
]
