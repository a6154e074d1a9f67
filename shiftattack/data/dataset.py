"""The in-memory dataset every loader returns, and the deterministic ``--limit`` subset.

:class:`LabeledImages` holds a whole (possibly limited) dataset as one uint8
tensor, so that the rest of the toolkit can slice batches without touching
disk again. Images stay uint8 (a quarter of the memory of float32) until
:meth:`LabeledImages.float_images` converts a slice to float in ``[0, 1]``.

:func:`balanced_subset` picks the images ``--limit N`` keeps: round-robin over
the classes in label order, each class's images in dataset order, returned in
dataset order. It is a pure function of the labels, so two runs (or a run and
its ``verify``) pick the same images.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from shiftattack.errors import DataError, SpecError

__all__ = ["LabeledImages", "balanced_subset", "select_indices"]


@dataclass
class LabeledImages:
    """A labelled image dataset held in memory.

    Attributes:
        images: uint8 RGB images, shape ``(N, 3, H, W)``, contiguous.
        labels: int64 class labels, shape ``(N,)``.
        indices: int64 position of each image in the full source dataset (its
            split, before ``limit``), shape ``(N,)``, ascending.
        classes: class names in label order (``classes[label]``) when the
            source has them, else ``None``.
        source: the data spec string the dataset was loaded from.
        names: where each image came from inside ``source``, ``(N,)`` strings: the file's
            path inside the folder or archive (``cat/0001.jpg``), or the array and row
            (``x[17]``, ``test_batch[17]``); ``None`` when the loader did not say (then
            :meth:`source_names` gives the indices).
        warnings: what the loader left out or converted (one line each), recorded
            in results files next to the data spec.

    Raises:
        DataError: when the tensors have the wrong dtype or shape or disagree
            on ``N``.

    Examples:
        >>> ds = LabeledImages(torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
        ...                    torch.tensor([0, 1]), torch.tensor([0, 1]), None, "demo")
        >>> len(ds), ds.float_images().shape
        (2, torch.Size([2, 3, 4, 4]))
    """

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    classes: list[str] | None
    source: str
    names: list[str] | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        x, y, idx = self.images, self.labels, self.indices
        for name, t in (("images", x), ("labels", y), ("indices", idx)):
            if not isinstance(t, torch.Tensor):
                raise DataError(f"LabeledImages.{name} must be a torch.Tensor, got {type(t).__name__}")
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise DataError(
                f"LabeledImages.images must be uint8 of shape (N, 3, H, W), got {x.dtype} {tuple(x.shape)}"
            )
        n = x.shape[0]
        for name, t in (("labels", y), ("indices", idx)):
            if t.dtype != torch.int64 or tuple(t.shape) != (n,):
                raise DataError(
                    f"LabeledImages.{name} must be int64 of shape ({n},) to match images, "
                    f"got {t.dtype} {tuple(t.shape)}"
                )
        if self.names is not None and len(self.names) != n:
            raise DataError(f"LabeledImages.names has {len(self.names)} entries for {n} images")
        if self.classes is not None and n and int(y.max()) >= len(self.classes):
            raise DataError(f"label {int(y.max())} has no class name: {len(self.classes)} classes given")

    def __len__(self) -> int:
        """Number of images ``N``."""
        return int(self.images.shape[0])

    def source_names(self) -> list[str]:
        """Where each image came from (:attr:`names`), or ``"#<index>"`` when the loader did not say."""
        if self.names is not None:
            return list(self.names)
        return [f"#{i}" for i in self.indices.tolist()]

    def class_name(self, label: int) -> str:
        """The name of class ``label``, or ``""`` when the data has no class names (or too few)."""
        if self.classes is None or not 0 <= label < len(self.classes):
            return ""
        return self.classes[label]

    def float_images(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Images ``start:stop`` as float32 in ``[0, 1]`` (``uint8 / 255``).

        Returns:
            A new tensor of shape ``(n, 3, H, W)``, ``n = len(range(N)[start:stop])``,
            on the device of :attr:`images`.
        """
        return self.images[start:stop].to(torch.float32).div_(255.0)

    def fingerprint(self) -> str:
        """SHA-256 hex digest identifying the exact data: pixels, labels and indices.

        The digest covers the shape of :attr:`images` and the raw bytes of
        :attr:`images`, :attr:`labels` and :attr:`indices` (int64 little-endian
        on every platform the toolkit supports), so it changes when any pixel,
        label or selected image changes, and not with ``classes`` or ``source``.
        """
        h = hashlib.sha256()
        h.update(f"shiftattack.LabeledImages/v1 {tuple(self.images.shape)}\n".encode())
        for t in (self.images, self.labels, self.indices):
            h.update(memoryview(t.detach().cpu().contiguous().numpy()).cast("B"))
        return h.hexdigest()


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)):
        raise SpecError(f"limit must be a positive integer, got {limit!r}")
    if limit <= 0:
        raise SpecError(f"limit must be a positive integer, got {limit}")
    return int(limit)


def balanced_subset(labels: np.ndarray | torch.Tensor, limit: int) -> np.ndarray:
    """Deterministic class-balanced choice of ``limit`` images.

    Images are taken round-robin over the classes in ascending label order:
    first the first image (in dataset order) of every class, then the second
    of every class, and so on; a class that runs out is skipped while the
    others continue. The chosen positions are returned in ascending (dataset)
    order.

    Args:
        labels: integer labels, shape ``(N,)``.
        limit: how many images to keep, ``>= 1``; ``limit >= N`` keeps all.

    Returns:
        int64 positions into ``labels``, shape ``(min(limit, N),)``, ascending.

    Raises:
        SpecError: ``limit`` is not a positive integer.
        DataError: ``labels`` is not a 1-D integer array.

    Examples:
        >>> balanced_subset(np.array([0, 0, 0, 1, 2, 2]), 4).tolist()
        [0, 1, 3, 4]
    """
    limit = _check_limit(limit)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_):
        raise DataError(f"labels must be a 1-D integer array (N,), got {y.dtype} {y.shape}")
    n = y.shape[0]
    if limit >= n:
        return np.arange(n, dtype=np.int64)
    order = np.argsort(y, kind="stable")  # grouped by class, dataset order inside a class
    sorted_y = y[order]
    starts = np.flatnonzero(np.r_[True, sorted_y[1:] != sorted_y[:-1]])
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes)  # position of each image within its class
    class_pos = np.repeat(np.arange(starts.size), sizes)
    # Round r, then class in label order: lexsort sorts by the last key first.
    chosen = order[np.lexsort((class_pos, rank))[:limit]]
    return np.sort(chosen).astype(np.int64)


def select_indices(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Positions a loader keeps: all of them for ``limit=None``, else :func:`balanced_subset`.

    Returns:
        int64 positions, shape ``(n,)``, ascending.
    """
    if limit is None:
        return np.arange(len(labels), dtype=np.int64)
    return balanced_subset(labels, limit)
