"""Where a unit's images come from: generated in torch, or read from the published files.

Each function yields uint8 chunks; the runner only counts. C suites yield
``(images (n, 3, h, w), labels (n,))``, P suites ``frames (n, T, 3, h, w)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from shiftattack.corruptions.perturbations import n_frames
from shiftattack.data import LabeledImages
from shiftattack.data.corrupted import cifar10_p_length, load_cifar10_c, load_cifar10_p, load_imagenet_c
from shiftattack.jobs.benchmark.generate import corrupted_chunks, sequence_chunks

__all__ = ["Suite", "SUITES", "c_unit_batches", "p_unit_batches", "p_unit_length"]


@dataclass(frozen=True)
class Suite:
    """A benchmark suite: C (corrupted images, top-1 error) or P (sequences, flips)."""

    name: str
    kind: str  # "c" or "p"
    params: str  # corruption strengths: "imagenet" or "cifar10"
    resize: int | None  # clean data: Resize + CenterCrop to this canvas when generating
    crop: int | None  # model input: centre crop of the canvas (ImageNet: 224)


SUITES = {
    "imagenet-c": Suite("imagenet-c", "c", "imagenet", 256, 224),
    "imagenet-p": Suite("imagenet-p", "p", "imagenet", 256, 224),
    "cifar10-c": Suite("cifar10-c", "c", "cifar10", None, None),
    "cifar10-p": Suite("cifar10-p", "p", "cifar10", None, None),
}
_FILE_CHUNK = 1000  # images read from published files at a time


def c_unit_batches(
    suite: Suite,
    name: str,
    severity: int,
    *,
    clean: LabeledImages | None,
    source: str,
    limit: int | None,
    seed: int,
    device: torch.device,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Corrupted images and labels of one (corruption, severity) unit, in chunks."""
    if source == "generated":
        assert clean is not None
        jpeg = suite.name == "imagenet-c"
        for start, x in corrupted_chunks(
            clean.images,
            name,
            severity,
            params=suite.params,
            seed=seed,
            device=device,
            crop=suite.crop,
            jpeg=jpeg,
        ):
            yield x, clean.labels[start : start + x.shape[0]]
        return
    if suite.name == "cifar10-c":
        data = load_cifar10_c(source, name, severity, limit=limit)
    else:
        data = load_imagenet_c(source, name, severity, limit=limit, progress=False)
    for start in range(0, len(data), _FILE_CHUNK):
        yield data.images[start : start + _FILE_CHUNK], data.labels[start : start + _FILE_CHUNK]


def p_unit_length(
    suite: Suite, name: str, *, clean: LabeledImages | None, source: str, limit: int | None, difficulty: int
) -> int:
    """Number of sequences the unit evaluates."""
    if source == "generated":
        assert clean is not None
        return len(clean)
    if suite.name == "cifar10-p":
        n = cifar10_p_length(source, name)
    else:
        from shiftattack.data.video import ImageNetPVideos

        n = len(ImageNetPVideos(source, name, difficulty))
    return min(n, limit) if limit else n


def p_unit_batches(
    suite: Suite,
    name: str,
    *,
    clean: LabeledImages | None,
    source: str,
    limit: int | None,
    difficulty: int,
    seed: int,
    device: torch.device,
) -> Iterator[Tensor]:
    """Frames (n, T, 3, h, w) uint8 of one perturbation, in chunks of sequences.

    From files, ``limit`` takes the first N sequences (the P sets have no labels file
    to balance on, and flip metrics need no labels).
    """
    if source == "generated":
        assert clean is not None
        frames = n_frames(name, suite.params)
        for _, seq in sequence_chunks(
            clean.images,
            name,
            params=suite.params,
            difficulty=difficulty,
            seed=seed,
            device=device,
            crop=suite.crop,
            frames=frames,
        ):
            yield seq
        return
    n = p_unit_length(suite, name, clean=None, source=source, limit=limit, difficulty=difficulty)
    if suite.name == "cifar10-p":
        step = max(1, _FILE_CHUNK // 10)
        for start in range(0, n, step):
            yield load_cifar10_p(source, name, indices=list(range(start, min(n, start + step))))
        return
    from shiftattack.data.video import ImageNetPVideos

    videos = ImageNetPVideos(source, name, difficulty)
    for i in range(n):
        yield videos[i][None]


def check_source(source: str) -> str:
    """``generated`` or an existing folder."""
    if source != "generated" and not Path(source).is_dir():
        from shiftattack.errors import DataError

        raise DataError(
            f"--source {source}: not a folder; expected 'generated' or the folder of the published files"
        )
    return source
