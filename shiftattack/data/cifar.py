"""CIFAR-10 in its original "python version" layout (``cifar-10-batches-py``).

The folder holds ``data_batch_1`` ... ``data_batch_5`` (the training split, in
that order), ``test_batch`` and ``batches.meta``. Each batch is a pickled dict
with ``b"data"``, uint8 ``(N, 3072)`` where a row is the red plane (1024
values), then green, then blue, each 32x32 row-major, and ``b"labels"``, a
list of N ints. ``batches.meta`` gives ``b"label_names"``, the class names in
label order (``classes`` is ``None`` when the file is absent).

Pickles can run code when loaded, so the batches are read with an unpickler
that only builds plain containers and NumPy arrays and refuses anything else.
"""

from __future__ import annotations

import codecs
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shiftattack.data.dataset import LabeledImages, select_indices
from shiftattack.errors import DataError, SpecError

__all__ = ["SPLITS", "is_cifar_batches_dir", "load_cifar_batches"]

#: Split names a CIFAR batches folder accepts; the first is the default.
SPLITS = ("test", "train")
_TRAIN = re.compile(r"data_batch_(\d+)")
_SIDE = 32


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR pickle needs, under NumPy 1 and NumPy 2 module names."""
    objs = {
        "_reconstruct": np.zeros(1).__reduce__()[0],
        "scalar": np.float64(0).__reduce__()[0],
        "_frombuffer": np.zeros(1).__reduce_ex__(5)[0],
        "ndarray": np.ndarray,
        "dtype": np.dtype,
    }
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles written by Python 3
    }
    for core in ("numpy.core", "numpy._core"):
        for mod, name in (
            ("multiarray", "_reconstruct"),
            ("multiarray", "scalar"),
            ("numeric", "_frombuffer"),
        ):
            allowed[(f"{core}.{mod}", name)] = objs[name]
    return allowed


class _SafeUnpickler(pickle.Unpickler):
    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: CIFAR batches hold only arrays, lists and dicts"
            ) from None


def _unpickle(path: Path) -> dict[Any, Any]:
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # UnpicklingError, EOFError, OSError, ...
        raise DataError(
            f"cannot read CIFAR batch {path}: {type(exc).__name__}: {exc}; expected a pickled "
            f"dict with b'data' uint8 (N, 3072) and b'labels'"
        ) from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, expected a pickled dict")
    return obj


def _get(d: dict[Any, Any], key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    found = ", ".join(repr(k) for k in d)
    raise DataError(f"{path} has no {key!r} entry; found: {found}")


def is_cifar_batches_dir(path: Path) -> bool:
    """Whether ``path`` holds a ``test_batch`` or ``data_batch_<k>`` file."""
    if (path / "test_batch").is_file():
        return True
    return any(_TRAIN.fullmatch(p.name) and p.is_file() for p in path.iterdir())


def _batch_files(root: Path, split: str) -> list[Path]:
    if split == "test":
        if not (root / "test_batch").is_file():
            raise DataError(f"no test_batch in {root}; expected the CIFAR-10 python batches")
        return [root / "test_batch"]
    found = sorted(int(m.group(1)) for p in root.iterdir() if (m := _TRAIN.fullmatch(p.name)) and p.is_file())
    if not found:
        raise DataError(f"no data_batch_<k> files in {root}; the train split needs them")
    if found != list(range(1, len(found) + 1)):
        missing = sorted(set(range(1, found[-1] + 1)) - set(found))
        raise DataError(
            f"{root}: data_batch_{missing[0]} is missing (found batches "
            f"{', '.join(map(str, found))}); expected data_batch_1 .. data_batch_{found[-1]}"
        )
    return [root / f"data_batch_{k}" for k in found]


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    data = np.asarray(_get(d, "data", path))
    try:
        labels = np.asarray(_get(d, "labels", path), dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"{path}: b'labels' is not a list of integers ({exc})") from exc
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * _SIDE * _SIDE:
        raise DataError(f"{path}: b'data' is {data.dtype} {data.shape}; expected uint8 (N, 3072)")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: b'labels' has shape {labels.shape} but b'data' has {data.shape[0]} rows")
    if labels.size and labels.min() < 0:
        raise DataError(f"{path}: negative label {labels.min()}; expected labels >= 0")
    return data, labels


def _read_classes(root: Path) -> list[str] | None:
    meta = root / "batches.meta"
    if not meta.is_file():
        return None
    names = _get(_unpickle(meta), "label_names", meta)
    try:
        return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    except (TypeError, UnicodeDecodeError) as exc:
        raise DataError(f"{meta}: b'label_names' is not a list of names ({exc})") from exc


def load_cifar_batches(root: Path, split: str | None, *, limit: int | None, source: str) -> LabeledImages:
    """Load one split of a CIFAR-10 python-batches folder.

    Args:
        root: the folder (``cifar-10-batches-py``).
        split: ``"test"`` (``test_batch``; the default for ``None``) or
            ``"train"`` (``data_batch_1..5`` concatenated in order).
        limit: keep this many images (class-balanced), or all for ``None``.
        source: the spec string, stored in the result.

    Returns:
        :class:`LabeledImages` with images ``(N, 3, 32, 32)`` uint8 and the
        class names of ``batches.meta``.

    Raises:
        SpecError: ``split`` is neither ``test`` nor ``train``.
        DataError: a batch file is missing, unreadable or malformed.
    """
    split = SPLITS[0] if split is None else split
    if split not in SPLITS:
        raise SpecError(
            f"unknown split {split!r} for the CIFAR-10 batches in {root}; expected one of {', '.join(SPLITS)}"
        )
    batch_files = _batch_files(root, split)
    parts = [_read_batch(p) for p in batch_files]
    data = np.concatenate([d for d, _ in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([lb for _, lb in parts]) if len(parts) > 1 else parts[0][1]
    if data.shape[0] == 0:
        raise DataError(f"the {split} split of {root} holds no images")
    classes = _read_classes(root)
    if classes is not None and labels.max() >= len(classes):
        raise DataError(f"{root}: label {labels.max()} but batches.meta names only {len(classes)} classes")
    chosen = select_indices(labels, limit)
    images = data[chosen].reshape(-1, 3, _SIDE, _SIDE)
    files = [(p.name, len(d)) for p, (d, _) in zip(batch_files, parts, strict=True)]
    return LabeledImages(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels[chosen]),
        indices=torch.from_numpy(chosen),
        classes=classes,
        source=source,
        names=[_row_name(files, i) for i in chosen.tolist()],
    )


def _row_name(files: list[tuple[str, int]], index: int) -> str:
    """``"data_batch_2[17]"``: the batch file and row of image ``index`` of the concatenated split."""
    for name, size in files:
        if index < size:
            return f"{name}[{index}]"
        index -= size
    raise IndexError(index)
