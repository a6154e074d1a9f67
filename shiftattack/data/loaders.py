"""``load_dataset(spec)``: the one entry point behind ``--data SPEC``.

Accepted specs (see :data:`LAYOUTS`):

* ``path/to/file.npz`` with ``x`` uint8 ``(N, H, W, 3)`` and ``y`` integer ``(N,)``;
* an ImageFolder directory ``root/<class>/<image>``, or ``root:split`` for
  ``root/split/<class>/<image>``;
* a ``.zip`` in the ImageFolder layout, optionally ``file.zip:split`` to choose
  its top-level folder (``../shared/data/cifar10-jpeg.zip:test``);
* a CIFAR-10 python-batches directory, optionally ``:test`` (default) or
  ``:train``.

A path that exists as written is always taken literally; only when it does
not is a trailing ``:split`` split off, and only after a ``.zip`` file or an
existing directory.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import torch

from shiftattack.data._decode import fit_arrays
from shiftattack.data.cifar import is_cifar_batches_dir, load_cifar_batches
from shiftattack.data.dataset import LabeledImages, _check_limit
from shiftattack.data.folder import load_image_folder, load_image_zip
from shiftattack.data.npz import load_npz
from shiftattack.data.synthetic import is_synthetic_spec, load_synthetic
from shiftattack.errors import DataError, DataWarning, SpecError

__all__ = ["LAYOUTS", "load_dataset", "resolved_data_spec"]

#: The dataset layouts ``load_dataset`` accepts, as shown in error messages.
LAYOUTS = (
    "an .npz with 'x' uint8 (N, H, W, 3) and 'y' integer (N,); "
    "an ImageFolder directory root/<class>/<image> (or root:split for root/split/<class>/...); "
    "a .zip in the ImageFolder layout, optionally file.zip:split; "
    "a CIFAR-10 python-batches directory (data_batch_1..5, test_batch), optionally :test or :train"
)


def _split_spec(spec: str) -> tuple[Path, str | None]:
    """Separate ``path[:split]``; the path as written wins when it exists.

    Raises:
        DataError: neither the path nor, with a suffix, its base exists.
        SpecError: a suffix after something that has no splits, or an empty one.
    """
    if os.path.exists(spec) or ":" not in spec:
        if not os.path.exists(spec):
            raise DataError(f"no such file or directory: {spec}")
        return Path(spec), None
    base, split = spec.rsplit(":", 1)
    base_path = Path(base)
    if not base or not base_path.exists():
        raise DataError(f"no such file or directory: {spec} (nor {base or '(empty)'})")
    if not (base_path.is_dir() or base.lower().endswith(".zip")):
        raise SpecError(
            f"data spec {spec!r}: a ':split' suffix applies only to a .zip or a directory, not to {base}"
        )
    if not split or "/" in split or "\\" in split:
        raise SpecError(
            f"bad split {split!r} in data spec {spec!r}: expected a folder name after ':', "
            f"as in '{base}:test'"
        )
    return base_path, split


def resolved_data_spec(spec: str) -> str:
    """``spec`` with its path made absolute (a ``:split`` suffix kept), so that it names the same
    data from any working directory; the built-in synthetic set is returned as it is.

    Raises:
        DataError, SpecError: as :func:`load_dataset` for a path that does not exist or a bad suffix.
    """
    if is_synthetic_spec(spec) and not Path(spec.partition(":")[0]).exists():
        return spec
    path, split = _split_spec(spec)
    return str(path.resolve()) + ("" if split is None else f":{split}")


def _unknown_layout(path: Path, why: str) -> DataError:
    return DataError(f"unknown dataset layout at {path} ({why}); accepted layouts: {LAYOUTS}")


def _load_dir(
    path: Path, split: str | None, *, limit: int | None, progress: bool, source: str,
    resize: int | None, strict: bool = False,
) -> LabeledImages:
    if is_cifar_batches_dir(path):
        return _fit(load_cifar_batches(path, split, limit=limit, source=source), resize)
    if split is not None:
        root = path / split
        if not root.is_dir():
            found = sorted(p.name for p in path.iterdir() if p.is_dir())
            raise DataError(
                f"no split folder {split!r} in {path}; its folders are: {', '.join(found) or '(none)'}"
            )
        return load_image_folder(root, limit=limit, progress=progress, source=source, resize=resize,
                                 strict=strict)
    with os.scandir(path) as it:
        entries = [(e.name, e.is_dir()) for e in it if not e.name.startswith(".")]
    if entries and not any(is_dir for _, is_dir in entries):
        raise _unknown_layout(path, f"a directory with {len(entries)} files and no subfolders")
    return load_image_folder(path, limit=limit, progress=progress, source=source, resize=resize,
                             strict=strict)


def load_dataset(
    spec: str | os.PathLike[str], *, limit: int | None = None, progress: bool = True,
    resize: int | None = None, strict: bool = False,
) -> LabeledImages:
    """Load a labelled image dataset from a ``--data`` spec (see :func:`_load`); the
    :class:`~shiftattack.errors.DataWarning` lines the loader issued are also kept in
    the result's ``warnings`` so that results files can record them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = _load(spec, limit=limit, progress=progress, resize=resize, strict=strict)
    for w in caught:  # shown as usual, once the load is over
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    data.warnings = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    return data


def _load(
    spec: str | os.PathLike[str], *, limit: int | None = None, progress: bool = True,
    resize: int | None = None, strict: bool = False,
) -> LabeledImages:
    """Load a labelled image dataset from a ``--data`` spec.

    Args:
        spec: ``file.npz``, an ImageFolder directory (``root`` or
            ``root:split``), ``file.zip`` / ``file.zip:split`` in the
            ImageFolder layout, or a CIFAR-10 python-batches directory
            (``dir``, ``dir:test``, ``dir:train``), or the built-in
            synthetic set ``synthetic:train`` / ``synthetic:test``
            (:mod:`shiftattack.data.synthetic`).
        limit: keep only this many images, chosen class-balanced and
            deterministically by :func:`~shiftattack.data.balanced_subset`
            before any image is decoded; ``None`` keeps all, a limit above
            the dataset's size keeps all.
        progress: show a tqdm bar on stderr while decoding more than 1000
            image files.
        resize: resize the shorter side to this many px and centre-crop a
            square (``Resize(n)`` + ``CenterCrop(n)``, bilinear): images of
            mixed sizes become one size, e.g. 256 px ImageNet canvases.
        strict: image folders and zips: stop at the first file that is not an
            image or cannot be read or decoded (``--strict-data``); by default
            such files are skipped with one :class:`~shiftattack.errors.DataWarning`
            naming them, also kept in the result's ``warnings``.

    Returns:
        :class:`~shiftattack.data.LabeledImages` with uint8 RGB images
        ``(N, 3, H, W)``, int64 labels and indices ``(N,)``, the class names
        when the source has them, and ``source=str(spec)``. Images that are
        not RGB (grayscale, palette, RGBA, ...) are converted with Pillow's
        ``convert("RGB")``; alpha is dropped.

    Raises:
        SpecError: ``limit`` is not a positive integer, or the split suffix
            is malformed or not valid for the layout.
        DataError: the path does not exist, has an unknown layout, or the
            data is empty, unreadable or inconsistent (mixed image sizes, bad
            dtypes); the message names the file.

    Examples:
        >>> ds = load_dataset("../shared/data/cifar10-jpeg.zip:test", limit=200)  # doctest: +SKIP
        >>> ds.images.shape, ds.classes[0]  # doctest: +SKIP
        (torch.Size([200, 3, 32, 32]), 'airplane')
    """
    source = os.fspath(spec)
    if not isinstance(source, str):
        raise SpecError(f"data spec must be a string or path, got {type(spec).__name__}")
    if not source:
        raise SpecError("empty data spec; expected a path such as data.npz or data.zip:test")
    if limit is not None:
        limit = _check_limit(limit)
    if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int) or resize < 1):
        raise SpecError(f"resize must be a positive number of pixels, got {resize!r}")
    if is_synthetic_spec(source) and not Path(source.partition(":")[0]).exists():
        return _fit(load_synthetic(source, limit), resize)
    path, split = _split_spec(source)
    if path.is_dir():
        return _load_dir(path, split, limit=limit, progress=progress, source=source, resize=resize,
                         strict=strict)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _fit(load_npz(path, limit=limit, source=source), resize)
    if suffix == ".zip":
        return load_image_zip(path, split, limit=limit, progress=progress, source=source, resize=resize,
                              strict=strict)
    raise _unknown_layout(path, f"a file of type {suffix or '(no extension)'!r}")


def _fit(data: LabeledImages, resize: int | None) -> LabeledImages:
    """Apply ``resize`` to in-memory arrays (npz, CIFAR batches)."""
    if resize is None:
        return data
    arrays = data.images.permute(0, 2, 3, 1).numpy()
    fitted = torch.from_numpy(fit_arrays(arrays, resize)).permute(0, 3, 1, 2).contiguous()
    return dataclasses.replace(data, images=fitted)
