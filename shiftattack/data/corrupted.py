"""The published corruption datasets on disk: CIFAR-10-C, CIFAR-10-P and ImageNet-C.

Layouts (``../shared/reference/METRICS.md`` "CIFAR-10-C / CIFAR-10-P file layout"
and "ImageNet-C"; ``CORRUPTIONS.md`` sections 1 and 6):

* **CIFAR-10-C**: ``root/<corruption>.npy`` uint8 ``(5N, H, W, 3)``,
  severity-major (rows ``(s-1)N .. sN-1`` hold severity ``s``, each block the
  test set in order), and ``root/labels.npy`` uint8 ``(5N,)``, the test labels
  repeated 5 times. Published: N = 10000, 32x32; any N and size are read.
* **CIFAR-10-P**: ``root/<perturbation>.npy`` uint8 ``(N, T, H, W, 3)``, no
  labels file (flip metrics need none). Published: N = 10000, T = 31 (21 for
  motion_blur, 16 for translate).
* **ImageNet-C**: JPEG files ``root/<corruption>/<severity>/<wnid>/<name>.JPEG``
  saved by Pillow at quality 85 with ``optimize=True`` (section 1), read as an
  ImageFolder (class index = position of the wnid in the sorted folder
  names, as torchvision's ``ImageFolder``).

Pixel values are quantised with the published truncation (:func:`to_uint8`):
``np.uint8(x * 255)`` floors, it does not round.

``.npy`` files are opened with ``mmap_mode="r"`` and ``allow_pickle=False``,
so only the rows asked for are read and a file cannot run code. Every file is
written to a temporary name in its folder and renamed into place when
complete (:func:`shiftattack.runtime.results._atomic_write`), so a crash never leaves
a half-written file under the published name.

Examples:
    >>> ds = load_cifar10_c("CIFAR-10-C", "fog", 3, limit=1000)  # doctest: +SKIP
    >>> ds.images.shape  # doctest: +SKIP
    torch.Size([1000, 3, 32, 32])
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from shiftattack.data.dataset import LabeledImages, _check_limit, select_indices
from shiftattack.data.folder import load_image_folder
from shiftattack.errors import DataError, ShapeError, SpecError
from shiftattack.runtime.results import _atomic_write

__all__ = [
    "SEVERITIES",
    "JPEG_QUALITY",
    "to_uint8",
    "load_cifar10_c",
    "write_cifar10_c",
    "load_cifar10_p",
    "cifar10_p_length",
    "write_cifar10_p",
    "CifarPSequences",
    "load_imagenet_c",
    "write_imagenet_c",
    "imagenet_c_names",
]

#: Number of severities of a C dataset (severity ``s`` is 1..5).
SEVERITIES = 5
#: Pillow JPEG quality of the ImageNet-C files (saved with ``optimize=True``), CORRUPTIONS.md section 1.
JPEG_QUALITY = 85

_C_LAYOUT = (
    "the CIFAR-10-C layout: root/<corruption>.npy uint8 (5N, H, W, 3), severities 1..5 stacked in "
    "blocks of N rows, and root/labels.npy integer (5N,)"
)
_P_LAYOUT = "the CIFAR-10-P layout: root/<perturbation>.npy uint8 (N, T, H, W, 3)"
_IN_C_LAYOUT = "the ImageNet-C layout: root/<corruption>/<severity 1..5>/<wnid>/<image>.JPEG"
_JPEG_SUFFIXES = (".jpeg", ".jpg")


# ---------------------------------------------------------------- quantisation


def to_uint8(x: Tensor) -> Tensor:
    """Quantise float images to uint8 by the published truncation.

    Computes ``floor(clip(x, 0, 1) * 255)``, which is what the published
    generators' ``np.uint8(x * 255)`` does to a clipped image
    (CORRUPTIONS.md section 1, "Quantisation"): it **truncates, it does not
    round**, so 254.9/255 becomes 254 and 0.999/255 becomes 0. The product is
    formed in float64 (float32 on MPS, which has no float64), where it is
    exact for float32 inputs, so ``to_uint8(u.float() / 255) == u`` for every
    uint8 ``u``.

    Args:
        x: float images ``(..., 3, H, W)``, nominally in ``[0, 1]`` (values
            outside are clipped), on any device.

    Returns:
        uint8 ``(..., 3, H, W)``, same shape and device.

    Raises:
        ShapeError: ``x`` is not a floating-point tensor of shape ``(..., 3, H, W)``.
        DataError: ``x`` holds NaN (which has no 8-bit value).

    Examples:
        >>> to_uint8(torch.tensor([0.999 / 255, 254.9 / 255, 1.0, 2.0]).expand(3, 1, 4)).tolist()[0]
        [[0, 254, 255, 255]]
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        kind = f"dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"to_uint8 needs float images in [0, 1], got {kind}")
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ShapeError(f"to_uint8 needs images of shape (..., 3, H, W), got {tuple(x.shape)}")
    if bool(torch.isnan(x).any()):
        raise DataError("to_uint8: the images hold NaN values; expected pixels in [0, 1]")
    wide = torch.float32 if x.device.type == "mps" else torch.float64
    # The values are >= 0 after the clip, so the cast (which truncates toward zero) is the floor.
    return x.to(wide, copy=True).clamp_(0, 1).mul_(255).to(torch.uint8)


# ---------------------------------------------------------------- argument checks


def _check_name(name: object, what: str) -> str:
    """A corruption / perturbation name usable as one file or folder name."""
    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise SpecError(
            f"{what} must be a plain name such as 'gaussian_noise' (no path separators), got {name!r}"
        )
    return name


def _check_severity(severity: object) -> int:
    if (
        isinstance(severity, bool)
        or not isinstance(severity, (int, np.integer))
        or not (1 <= severity <= SEVERITIES)
    ):
        raise SpecError(f"severity must be an integer from 1 to {SEVERITIES}, got {severity!r}")
    return int(severity)


def _uint8_array(x: object, dims: Sequence[str | int], name: str) -> np.ndarray:
    """A uint8 tensor or array of the given dims as a NumPy array (on the CPU)."""
    expected = "(" + ", ".join(str(d) for d in dims) + ")"
    if isinstance(x, Tensor):
        arr = x.detach().cpu().numpy()
    elif isinstance(x, np.ndarray):
        arr = x
    else:
        raise ShapeError(f"{name} must be a uint8 tensor {expected}, got {type(x).__name__}")
    if arr.dtype != np.uint8:
        raise ShapeError(f"{name} must be uint8 {expected} (quantise floats with to_uint8), got {arr.dtype}")
    fixed = [(d, s) for d, s in zip(dims, arr.shape, strict=False) if isinstance(d, int)]
    if arr.ndim != len(dims) or any(d != s for d, s in fixed):
        raise ShapeError(f"{name} must have shape {expected}, got {tuple(arr.shape)}")
    if 0 in arr.shape:
        raise ShapeError(f"{name} is empty: shape {tuple(arr.shape)}")
    return arr


def _int_array(x: object, n: int, name: str) -> np.ndarray:
    """Integer labels / indices ``(n,)`` (any integer dtype) as int64."""
    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    integer = np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_
    if arr.ndim != 1 or arr.shape[0] != n or not integer:
        raise ShapeError(f"{name} must be integers of shape ({n},), got {arr.dtype} {tuple(arr.shape)}")
    return arr.astype(np.int64)


# ---------------------------------------------------------------- .npy files


def _open_npy(path: Path, layout: str) -> np.ndarray:
    """Memory-map a ``.npy`` file (read-only, no pickles); DataError naming the layout when it fails."""
    if not path.is_file():
        raise DataError(f"no file {path}; expected {layout}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # ValueError (truncated, pickled, bad header), OSError, ...
        raise DataError(
            f"cannot read {path} as a .npy array (truncated or corrupt?): {type(exc).__name__}: {exc}; "
            f"expected {layout}"
        ) from exc
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{path} is not a single .npy array; expected {layout}")
    return arr


def _npy_listing(root: Path, skip: str = "") -> str:
    """What a missing file's folder holds, for the message."""
    if not root.is_dir():
        return f"; the folder {root} does not exist"
    found = sorted(p.stem for p in root.glob("*.npy") if p.stem != skip)
    return f"; {root} holds: {', '.join(found) if found else '(no .npy files)'}"


def _write_file(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a data file atomically (temporary file, fsync, rename), readable by all (mode 0o644)."""
    _atomic_write(path, write)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    """``np.save`` atomically, never pickling."""
    _write_file(path, lambda fh: np.save(fh, arr, allow_pickle=False))


def _check_images_npy(arr: np.ndarray, path: Path, ndim: int, layout: str) -> None:
    if arr.dtype != np.uint8:
        raise DataError(f"{path} has dtype {arr.dtype}; expected {layout}")
    if arr.ndim != ndim or arr.shape[-1] != 3 or 0 in arr.shape:
        raise DataError(f"{path} has shape {arr.shape}; expected {layout}")


# ---------------------------------------------------------------- CIFAR-10-C


def _cifar10_c_labels(root: Path, rows: int) -> np.ndarray:
    """``root/labels.npy`` checked against ``rows`` images; int64 ``(rows,)``."""
    path = root / "labels.npy"
    labels = _open_npy(path, _C_LAYOUT)
    if not (np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_):
        raise DataError(f"{path} has dtype {labels.dtype}; expected integer labels (uint8 as published)")
    if labels.shape != (rows,):
        raise DataError(
            f"{path} has shape {labels.shape} but the images have {rows} rows; expected {_C_LAYOUT}"
        )
    out = np.array(labels, dtype=np.int64)
    if out.size and out.min() < 0:
        raise DataError(f"{path} has negative labels (min {out.min()}); expected labels >= 0")
    return out


def load_cifar10_c(
    root: str | os.PathLike[str], corruption: str, severity: int, *, limit: int | None = None
) -> LabeledImages:
    """Load one corruption at one severity of CIFAR-10-C.

    Reads rows ``(s-1)N .. sN-1`` of ``root/<corruption>.npy`` (uint8
    ``(5N, H, W, 3)``, severity-major) and the same rows of
    ``root/labels.npy``, through a read-only memory map so that only those
    rows (or, with ``limit``, only the chosen images) are read from disk.

    Args:
        root: the CIFAR-10-C folder.
        corruption: the file stem, e.g. ``"gaussian_noise"``.
        severity: 1 to 5.
        limit: keep this many images, the class-balanced subset
            :func:`~shiftattack.data.balanced_subset` of the block's labels.
            Every block holds the test set in the same order, so the same
            images are kept for every corruption and severity.

    Returns:
        :class:`~shiftattack.data.LabeledImages`: uint8 images ``(n, 3, H, W)``,
        int64 labels, ``indices`` = positions within the severity block
        (= test-set indices), ``classes=None``, and
        ``source="root/<corruption>.npy:severity=s"``.

    Raises:
        SpecError: bad ``corruption``, ``severity`` or ``limit``.
        DataError: a file is missing (naming it and the expected layout),
            unreadable or truncated, not uint8 ``(5N, H, W, 3)``, its row
            count is not a multiple of 5, or ``labels.npy`` does not hold one
            label per row, the same N labels for each severity.
    """
    corruption = _check_name(corruption, "corruption")
    if corruption == "labels":
        raise SpecError("'labels' is the CIFAR-10-C label file, not a corruption")
    severity = _check_severity(severity)
    if limit is not None:
        limit = _check_limit(limit)
    root = Path(root)
    path = root / f"{corruption}.npy"
    if not path.is_file():
        raise DataError(f"no file {path}; expected {_C_LAYOUT}{_npy_listing(root, 'labels')}")
    images = _open_npy(path, _C_LAYOUT)
    _check_images_npy(images, path, 4, _C_LAYOUT)
    rows = images.shape[0]
    if rows % SEVERITIES:
        raise DataError(f"{path} has {rows} rows, not a multiple of {SEVERITIES}; expected {_C_LAYOUT}")
    labels = _cifar10_c_labels(root, rows)
    n = rows // SEVERITIES
    blocks = labels.reshape(SEVERITIES, n)
    if not (blocks == blocks[0]).all():
        bad = int(np.flatnonzero((blocks != blocks[0]).any(axis=1))[0]) + 1
        raise DataError(
            f"{root / 'labels.npy'}: the labels of severity {bad} differ from those of severity 1; "
            f"expected the test labels repeated {SEVERITIES} times"
        )
    start = (severity - 1) * n
    block_labels = labels[start : start + n]
    chosen = select_indices(block_labels, limit)
    rows_read = images[start : start + n] if chosen.size == n else images[start + chosen]
    return LabeledImages(
        images=torch.from_numpy(np.ascontiguousarray(rows_read.transpose(0, 3, 1, 2))),
        labels=torch.from_numpy(block_labels[chosen]),
        indices=torch.from_numpy(chosen),
        classes=None,
        source=f"{path}:severity={severity}",
    )


def write_cifar10_c(
    root: str | os.PathLike[str], corruption: str, images: Tensor | np.ndarray, labels: Tensor | np.ndarray
) -> Path:
    """Write one corruption of a CIFAR-10-C style dataset, atomically.

    Args:
        root: the output folder (created if missing).
        corruption: the file stem, e.g. ``"gaussian_noise"`` (not ``"labels"``).
        images: uint8 ``(5, N, 3, H, W)``, severities 1..5 (quantise float
            images with :func:`to_uint8`).
        labels: integer ``(N,)`` in 0..255, the labels of the N images.

    Returns:
        The path of ``root/<corruption>.npy``, uint8 ``(5N, H, W, 3)``
        severity-major. ``root/labels.npy`` (uint8 ``(5N,)``, ``labels``
        repeated 5 times) is written when absent.

    Raises:
        SpecError: bad ``corruption``, or labels outside 0..255 (the file stores uint8).
        ShapeError: ``images`` / ``labels`` of the wrong dtype or shape.
        DataError: ``root/labels.npy`` exists with different labels (the
            corruptions of one folder must share one label file), or cannot be read.
    """
    corruption = _check_name(corruption, "corruption")
    if corruption == "labels":
        raise SpecError("'labels' is the CIFAR-10-C label file, not a corruption name")
    arr = _uint8_array(images, (SEVERITIES, "N", 3, "H", "W"), "images")
    n = arr.shape[1]
    y = _int_array(labels, n, "labels")
    if y.min() < 0 or y.max() > 255:
        raise SpecError(
            f"labels must be in 0..255 to be stored as uint8 (as published), got {y.min()}..{y.max()}"
        )
    all_labels = np.tile(y.astype(np.uint8), SEVERITIES)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    label_path = root / "labels.npy"
    if label_path.exists():
        old = _open_npy(label_path, _C_LAYOUT)
        if old.shape != all_labels.shape or not np.array_equal(old, all_labels):
            raise DataError(
                f"{label_path} exists with different labels ({old.dtype} {old.shape}) than the ones given "
                f"(uint8 {all_labels.shape}); every corruption of one CIFAR-10-C folder shares one labels.npy"
            )
    else:
        _save_npy(label_path, all_labels)
    path = root / f"{corruption}.npy"
    h, w = arr.shape[3:]
    _save_npy(path, arr.transpose(0, 1, 3, 4, 2).reshape(SEVERITIES * n, h, w, 3))
    return path


# ---------------------------------------------------------------- CIFAR-10-P


def _open_cifar10_p(root: Path, name: str) -> tuple[Path, np.ndarray]:
    name = _check_name(name, "perturbation name")
    path = root / f"{name}.npy"
    if not path.is_file():
        raise DataError(f"no file {path}; expected {_P_LAYOUT}{_npy_listing(root)}")
    arr = _open_npy(path, _P_LAYOUT)
    _check_images_npy(arr, path, 5, _P_LAYOUT)
    return path, arr


def cifar10_p_length(root: str | os.PathLike[str], name: str) -> int:
    """Number of sequences ``N`` in ``root/<name>.npy`` (read from the header, no pixels loaded).

    Raises:
        DataError: as :func:`load_cifar10_p`.
    """
    return int(_open_cifar10_p(Path(root), name)[1].shape[0])


def _choose_rows(n: int, limit: int | None, indices: object, path: Path) -> np.ndarray:
    if limit is not None and indices is not None:
        raise SpecError("give either limit or indices to load_cifar10_p, not both")
    if indices is None:
        return np.arange(n if limit is None else min(_check_limit(limit), n), dtype=np.int64)
    idx = indices.detach().cpu().numpy() if isinstance(indices, Tensor) else np.asarray(indices)
    if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) and idx.dtype != np.bool_):
        raise SpecError(f"indices must be a 1-D integer array, got {idx.dtype} {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise SpecError(
            f"indices must be in 0..{n - 1} for {path} ({n} sequences), got {idx.min()}..{idx.max()}"
        )
    return idx.astype(np.int64)


def load_cifar10_p(
    root: str | os.PathLike[str], name: str, *, limit: int | None = None, indices: object = None
) -> Tensor:
    """Load CIFAR-10-P sequences from ``root/<name>.npy`` (uint8 ``(N, T, H, W, 3)``).

    The file is memory-mapped, so only the chosen sequences are read. There is
    no labels file (the flip metrics need none): to evaluate the same images
    as on the clean test set, pass ``indices`` =
    :func:`~shiftattack.data.balanced_subset` of the clean test labels.

    Args:
        root: the CIFAR-10-P folder.
        name: the file stem, e.g. ``"translate"``; the files of noise
            difficulties 2 and 3 were never named by the published code
            (CORRUPTIONS.md section 7), so pass their stem as it is on disk.
        limit: keep the first ``limit`` sequences (there are no labels to
            balance on); exclusive with ``indices``.
        indices: integer positions ``(n,)`` of the sequences to load, in the
            order given.

    Returns:
        uint8 ``(n, T, 3, H, W)``.

    Raises:
        SpecError: both ``limit`` and ``indices``, a bad ``limit``, or
            indices that are not integers in ``0..N-1``.
        DataError: the file is missing (naming the expected layout),
            unreadable, or not uint8 ``(N, T, H, W, 3)``.
    """
    path, arr = _open_cifar10_p(Path(root), name)
    rows = _choose_rows(arr.shape[0], limit, indices, path)
    picked = arr[: rows.size] if np.array_equal(rows, np.arange(rows.size)) else arr[rows]
    return torch.from_numpy(np.ascontiguousarray(picked.transpose(0, 1, 4, 2, 3)))


def write_cifar10_p(root: str | os.PathLike[str], name: str, frames: Tensor | np.ndarray) -> Path:
    """Write CIFAR-10-P style sequences to ``root/<name>.npy`` (uint8 ``(N, T, H, W, 3)``), atomically.

    Args:
        root: the output folder (created if missing).
        name: the file stem, e.g. ``"gaussian_noise"``.
        frames: uint8 ``(N, T, 3, H, W)``.

    Returns:
        The path written.

    Raises:
        SpecError: bad ``name``.
        ShapeError: ``frames`` is not uint8 ``(N, T, 3, H, W)``.
    """
    name = _check_name(name, "perturbation name")
    arr = _uint8_array(frames, ("N", "T", 3, "H", "W"), "frames")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.npy"
    _save_npy(path, arr.transpose(0, 1, 3, 4, 2))
    return path


class CifarPSequences:
    """One CIFAR-10-P file read a sequence at a time, like :class:`~shiftattack.data.video.ImageNetPVideos`.

    Attributes:
        path: the ``.npy`` file.
        indices: int64 ``(n,)``, the file rows this view holds.
        frames: ``T``, frames per sequence.

    ``seqs[i]`` reads one sequence, uint8 ``(T, 3, H, W)``, from the memory map.

    Raises:
        SpecError, DataError: as :func:`load_cifar10_p`.
    """

    def __init__(
        self, root: str | os.PathLike[str], name: str, *, limit: int | None = None, indices: object = None
    ) -> None:
        self.path, self._arr = _open_cifar10_p(Path(root), name)
        self.indices = torch.from_numpy(_choose_rows(self._arr.shape[0], limit, indices, self.path))
        self.frames = int(self._arr.shape[1])

    def __len__(self) -> int:
        """Number of sequences ``n``."""
        return int(self.indices.shape[0])

    def __getitem__(self, i: int) -> Tensor:
        """Sequence ``i`` of this view, uint8 ``(T, 3, H, W)``."""
        row = int(self.indices[range(len(self))[i]])
        return torch.from_numpy(np.ascontiguousarray(self._arr[row].transpose(0, 3, 1, 2)))


# ---------------------------------------------------------------- ImageNet-C


def load_imagenet_c(
    root: str | os.PathLike[str],
    corruption: str,
    severity: int,
    *,
    limit: int | None = None,
    progress: bool = True,
    resize: int | None = None,
) -> LabeledImages:
    """Load ``root/<corruption>/<severity>/<wnid>/*.JPEG`` as an ImageFolder.

    Class indices are positions in the sorted wnid folder names of that
    severity folder (torchvision's ``ImageFolder`` rule), which is the
    ImageNet label order when all 1000 wnid folders are present.

    Args:
        root: the ImageNet-C folder.
        corruption: e.g. ``"fog"``.
        severity: 1 to 5.
        limit: keep this many images, class-balanced
            (:func:`~shiftattack.data.balanced_subset`), chosen before decoding.
        progress: show a progress bar when decoding many images.
        resize: optional shorter-side resize and centre crop (the files are
            already 224x224 as published).

    Returns:
        :class:`~shiftattack.data.LabeledImages` with uint8 ``(n, 3, H, W)``,
        the wnids as ``classes`` and ``source="root/<corruption>/<severity>"``.

    Raises:
        SpecError: bad ``corruption``, ``severity`` or ``limit``.
        DataError: the folder is missing (naming the path, the expected
            layout and what the parent folder holds), or any error of the
            ImageFolder loader.
    """
    corruption = _check_name(corruption, "corruption")
    severity = _check_severity(severity)
    if limit is not None:
        limit = _check_limit(limit)
    root = Path(root)
    folder = root / corruption / str(severity)
    if not folder.is_dir():
        parent = next((p for p in (folder.parent, root) if p.is_dir()), None)
        have = ""
        if parent is not None:
            found = sorted(p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
            have = f"; {parent} holds: {', '.join(found) or '(no folders)'}"
        raise DataError(f"no folder {folder}; expected {_IN_C_LAYOUT}{have}")
    return load_image_folder(folder, limit=limit, progress=progress, source=str(folder), resize=resize)


def imagenet_c_names(indices: Tensor | np.ndarray | Sequence[int]) -> list[str]:
    """Stable file names for generated ImageNet-C images: ``f"{i:08d}.JPEG"``.

    :class:`~shiftattack.data.LabeledImages` keeps no file names, so images
    generated from a dataset are named by their index in it
    (``LabeledImages.indices``) rather than by the original
    ``ILSVRC2012_val_*.JPEG`` names the published files keep. The same index
    gives the same name for every corruption and severity.

    Examples:
        >>> imagenet_c_names([0, 42])
        ['00000000.JPEG', '00000042.JPEG']

    Raises:
        SpecError: an index is negative or not an integer.
    """
    idx = indices.detach().cpu().numpy() if isinstance(indices, Tensor) else np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not (np.issubdtype(idx.dtype, np.integer) and idx.dtype != np.bool_)):
        raise SpecError(f"indices must be a 1-D sequence of integers, got {idx.dtype} {idx.shape}")
    if idx.size and idx.min() < 0:
        raise SpecError(f"indices must be >= 0, got {idx.min()}")
    return [f"{int(i):08d}.JPEG" for i in idx]


def _jpeg_bytes(image_hwc: np.ndarray) -> bytes:
    """Pillow JPEG at quality 85 with ``optimize=True``, defaults otherwise (CORRUPTIONS.md section 1)."""
    buf = io.BytesIO()
    Image.fromarray(image_hwc, "RGB").save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue()


def write_imagenet_c(
    root: str | os.PathLike[str],
    corruption: str,
    severity: int,
    images: Tensor | np.ndarray,
    labels: Tensor | np.ndarray | Sequence[int],
    classes: Sequence[str],
    names: Sequence[str],
) -> None:
    """Write images as ImageNet-C JPEGs: ``root/<corruption>/<severity>/<classes[label]>/<name>``.

    Each file is encoded by Pillow as JPEG, quality 85, ``optimize=True``
    (CORRUPTIONS.md section 1), and written atomically; folders are created
    as needed and existing files of the same name are replaced.

    Args:
        root: the ImageNet-C output folder.
        corruption: e.g. ``"fog"``.
        severity: 1 to 5.
        images: uint8 ``(N, 3, H, W)`` (quantise float images with :func:`to_uint8`).
        labels: integer ``(N,)``, indices into ``classes``.
        classes: the class folder names (wnids), in label order.
        names: ``N`` file names ending in ``.JPEG`` / ``.jpg`` (any case),
            e.g. from :func:`imagenet_c_names`; unique within a class.

    Raises:
        SpecError: bad ``corruption`` / ``severity``, a label outside
            ``classes``, a class or file name that is not a plain name, a
            name without a JPEG extension, or a name used twice in one class.
        ShapeError: ``images`` / ``labels`` / ``names`` of the wrong type or shape.
    """
    corruption = _check_name(corruption, "corruption")
    severity = _check_severity(severity)
    arr = _uint8_array(images, ("N", 3, "H", "W"), "images")
    n = arr.shape[0]
    y = _int_array(labels, n, "labels")
    classes = [_check_name(c, "class name") for c in classes]
    if y.min() < 0 or y.max() >= len(classes):
        raise SpecError(f"labels must index classes (0..{len(classes) - 1}), got {y.min()}..{y.max()}")
    if isinstance(names, str) or len(names) != n:
        raise ShapeError(
            f"names must be a sequence of {n} file names, got {type(names).__name__} of length {len(names)}"
        )
    targets: dict[tuple[int, str], int] = {}
    for i, name in enumerate(names):
        _check_name(name, "image file name")
        if not name.lower().endswith(_JPEG_SUFFIXES):
            raise SpecError(f"image file name {name!r} must end in .JPEG or .jpg (the files are JPEG)")
        if (int(y[i]), name) in targets:
            raise SpecError(
                f"file name {name!r} is used twice in class {classes[y[i]]!r} "
                f"(images {targets[(int(y[i]), name)]} and {i})"
            )
        targets[(int(y[i]), name)] = i
    folder = Path(root) / corruption / str(severity)
    for cls in sorted({int(v) for v in y}):
        (folder / classes[cls]).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        data = _jpeg_bytes(np.ascontiguousarray(arr[i].transpose(1, 2, 0)))
        _write_file(folder / classes[y[i]] / name, lambda fh, data=data: fh.write(data))
