"""Datasets stored as one ``.npz``: ``x`` uint8 ``(N, H, W, 3)`` and ``y`` integer ``(N,)``.

The file is read with ``allow_pickle=False``, so an ``.npz`` cannot run code.
``x`` is channels-last, as NumPy and Pillow keep images; the loader returns
channels-first ``(N, 3, H, W)`` like every other loader.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from shiftattack.data.dataset import LabeledImages, select_indices
from shiftattack.errors import DataError

__all__ = ["load_npz"]

_EXPECTED = "expected 'x' uint8 (N, H, W, 3) and 'y' integer (N,)"


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise DataError(f"{path} holds a single array, not an .npz archive; {_EXPECTED}")
            found = list(f.files)
            missing = [k for k in ("x", "y") if k not in found]
            if missing:
                raise DataError(
                    f"{path} is missing key(s) {', '.join(repr(k) for k in missing)}; found keys: "
                    f"{', '.join(repr(k) for k in found) or '(none)'}; {_EXPECTED}"
                )
            return f["x"], f["y"]
    except DataError:
        raise
    except Exception as exc:  # BadZipFile, EOFError, ValueError, zlib.error, OSError, ...
        raise DataError(
            f"cannot read {path} as an .npz archive (truncated or corrupt?): {type(exc).__name__}: {exc}"
        ) from exc


def _check(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    if x.dtype != np.uint8:
        raise DataError(f"{path}: 'x' has dtype {x.dtype}; {_EXPECTED}")
    if x.ndim == 3 or (x.ndim == 4 and x.shape[-1] == 1):
        raise DataError(f"{path}: 'x' has shape {x.shape}, grayscale images; {_EXPECTED}: copy the channel "
                        "three times, e.g. np.repeat(x[..., None] if x.ndim == 3 else x, 3, axis=-1)")
    if x.ndim == 4 and x.shape[-1] == 4:
        raise DataError(f"{path}: 'x' has shape {x.shape}, 4 channels (RGBA?); {_EXPECTED}: drop or "
                        "composite the alpha channel, e.g. x[..., :3]")
    if x.ndim != 4 or x.shape[-1] != 3:
        raise DataError(f"{path}: 'x' has shape {x.shape}; {_EXPECTED}")
    if not (np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_):
        raise DataError(f"{path}: 'y' has dtype {y.dtype}; {_EXPECTED}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"{path}: 'y' has shape {y.shape} but 'x' holds {x.shape[0]} images; {_EXPECTED}")
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise DataError(f"{path} holds no images: 'x' has shape {x.shape}")
    if y.min() < 0:
        raise DataError(f"{path}: 'y' has negative labels (min {y.min()}); expected labels >= 0")
    if y.max() > np.iinfo(np.int64).max:
        raise DataError(f"{path}: 'y' has labels beyond int64 (max {y.max()})")


def load_npz(path: Path, *, limit: int | None, source: str) -> LabeledImages:
    """Load an ``.npz`` dataset.

    Args:
        path: the ``.npz`` file.
        limit: keep this many images (class-balanced), or all for ``None``.
        source: the spec string, stored in the result.

    Returns:
        :class:`LabeledImages` with images ``(N, 3, H, W)`` uint8 and
        ``classes=None``.

    Raises:
        DataError: the file is not a readable ``.npz``, lacks ``x`` or ``y``
            (naming which, and the keys found), or they have the wrong dtype
            or shape, or labels are negative.
    """
    x, y = _read(path)
    _check(path, x, y)
    labels = y.astype(np.int64)
    chosen = select_indices(labels, limit)
    images = x if chosen.size == x.shape[0] else x[chosen]
    return LabeledImages(
        images=torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),
        labels=torch.from_numpy(labels[chosen]),
        indices=torch.from_numpy(chosen),
        classes=None,
        source=source,
        names=[f"x[{i}]" for i in chosen.tolist()],
    )
