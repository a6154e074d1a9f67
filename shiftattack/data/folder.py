"""ImageFolder datasets, from a directory or straight from a ``.zip``.

Layout: ``root/<class>/<image file>``. The classes are the sorted names of
the folders directly under ``root`` and a class's label is its position in
that list; a class folder with no images is still a class, so the label
numbering does not depend on which classes have images. Images are the files
directly inside a class folder (not in deeper subfolders), in sorted name
order; dataset order is class by class in label order, so an image's index is
its position in that order. Files at the root itself are ignored (a README
may sit beside the class folders); hidden files and folders (``.name``),
``__MACOSX``, ``Thumbs.db`` and ``desktop.ini`` are ignored everywhere. Any
other file in a class folder whose name is not an image's (see
:data:`~shiftattack.data._decode.IMAGE_EXTENSIONS`) is left out with one
:class:`~shiftattack.errors.DataWarning` giving their count and first names
(and kept in :attr:`LabeledImages.warnings`, so results files record it), or,
with ``strict``, refused naming the first.

Each image's :attr:`LabeledImages.names` entry is its path inside the root
(``<class>/<file>``), the folder or archive it came from being the data spec.

In a zip, a split suffix (``data.zip:test``) chooses the top-level folder;
without one the zip's root must hold the class folders, or a single folder
that does (``cifar10/<class>/...``). Only the files that survive ``limit`` are
read and decoded.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from shiftattack.data._decode import IMAGE_EXTENSIONS, decode_images, is_image_name
from shiftattack.data.dataset import LabeledImages, select_indices
from shiftattack.errors import DataError, DataWarning

__all__ = ["load_image_folder", "load_image_zip"]

_IGNORED = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})


def _ignored(name: str) -> bool:
    return name.startswith(".") or name in _IGNORED


@dataclass
class _Listing:
    """The two levels of an ImageFolder tree below one root."""

    folders: dict[str, list[str]] = field(default_factory=dict)  # folder -> files directly in it
    nested: dict[str, set[str]] = field(default_factory=dict)  # folder -> its subfolders
    files: list[str] = field(default_factory=list)  # files directly at the root


def _list_dir(root: Path) -> _Listing:
    listing = _Listing()
    try:
        with os.scandir(root) as top:
            for entry in top:
                if _ignored(entry.name):
                    continue
                if not entry.is_dir():
                    listing.files.append(entry.name)
                    continue
                files, subs = [], set()
                with os.scandir(entry.path) as inner:
                    for child in inner:
                        if not _ignored(child.name):
                            (subs.add if child.is_dir() else files.append)(child.name)
                listing.folders[entry.name] = files
                listing.nested[entry.name] = subs
    except OSError as exc:
        raise DataError(f"cannot list folder {root}: {exc}") from exc
    return listing


def _list_zip(names: list[str], prefix: str) -> _Listing:
    listing = _Listing()
    start = len(prefix)
    for name in names:
        if not name.startswith(prefix):
            continue
        top, sep, rest = name[start:].partition("/")
        if not top or _ignored(top):
            continue
        if not sep:
            listing.files.append(top)
            continue
        child, sep, _ = rest.partition("/")
        files = listing.folders.setdefault(top, [])
        subs = listing.nested.setdefault(top, set())
        if not child or _ignored(child):  # "top/" alone is the folder's own entry
            continue
        (subs.add if sep else files.append)(child)
    return listing


def _looks_split(listing: _Listing) -> bool:
    """No folder holds files directly, but some hold folders: ``train/``, ``test/``."""
    return bool(listing.folders) and not any(listing.folders.values()) and any(listing.nested.values())


def _index(
    listing: _Listing, where: str, spec_base: str, name_of: Callable[[str], str], strict: bool = False
) -> tuple[list[str], list[str], np.ndarray]:
    """Classes, relative file paths (dataset order) and labels of a listing.

    ``where`` names the root in messages, ``spec_base`` is the spec a split
    suffix would follow, ``name_of("<class>/<file>")`` names one file. Files
    that are not images are left out with one :class:`DataWarning` (an error
    under ``strict``).

    Returns:
        ``(classes, paths, labels)`` with ``paths[i] = "<class>/<file>"`` and
        ``labels`` int64 of shape ``(N,)``.
    """
    if not listing.folders:
        found = f" (found {len(listing.files)} files directly inside)" if listing.files else ""
        raise DataError(
            f"no class folders in {where}{found}: expected the ImageFolder layout "
            f"<root>/<class>/<image files>"
        )
    if _looks_split(listing):
        splits = sorted(listing.folders)
        raise DataError(
            f"{where} holds split folders ({', '.join(splits)}) rather than class folders; "
            f"choose one with '{spec_base}:{splits[0]}'"
        )
    classes = sorted(listing.folders)
    paths: list[str] = []
    labels: list[int] = []
    others: list[str] = []
    for label, cls in enumerate(classes):
        for name in sorted(listing.folders[cls]):
            if not is_image_name(name):
                if strict:
                    raise DataError(
                        f"not an image file: {name_of(f'{cls}/{name}')}; class folders may hold only "
                        f"images ({', '.join(IMAGE_EXTENSIONS)}) under --strict-data"
                    )
                others.append(f"{cls}/{name}")
                continue
            paths.append(f"{cls}/{name}")
            labels.append(label)
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        warnings.warn(
            f"skipped {len(others)} file(s) that are not images in the class folders of {where}: {shown} "
            f"(images end in {', '.join(IMAGE_EXTENSIONS)}); pass --strict-data to stop at such files instead",
            DataWarning, stacklevel=3)
    if not paths:
        raise DataError(
            f"no images in {where}: its {len(classes)} class folders "
            f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}) hold no image files"
        )
    return classes, paths, np.asarray(labels, dtype=np.int64)


def _assemble(
    images: np.ndarray, labels: np.ndarray, chosen: np.ndarray, classes: list[str], source: str,
    paths: list[str],
) -> LabeledImages:
    return LabeledImages(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        labels=torch.from_numpy(labels[chosen]),
        indices=torch.from_numpy(chosen),
        classes=classes,
        source=source,
        names=[paths[i] for i in chosen],
    )


def load_image_folder(root: Path, *, limit: int | None, progress: bool, source: str,
                      resize: int | None = None, strict: bool = False) -> LabeledImages:
    """Load ``root/<class>/<image>`` from a directory.

    Args:
        root: the folder holding the class folders.
        limit: keep this many images (class-balanced, see
            :func:`~shiftattack.data.balanced_subset`), or all for ``None``.
        progress: show a progress bar while decoding many images.
        source: the spec string, stored in the result.
        strict: stop at the first file that is not an image or cannot be read, instead of
            skipping such files with a warning.

    Returns:
        :class:`LabeledImages` with images ``(N, 3, H, W)`` uint8.

    Raises:
        DataError: no class folders, no images, no readable image, an
            unreadable file under ``strict``, or images of different sizes.
    """
    classes, paths, labels = _index(_list_dir(root), str(root), str(root), lambda rel: str(root / rel), strict)
    chosen = select_indices(labels, limit)
    names = [str(root / paths[i]) for i in chosen]
    images, kept = decode_images(names, _read_file, progress=progress, resize=resize, strict=strict)
    return _assemble(images, labels, chosen[kept], classes, source, paths)


def _read_file(name: str) -> bytes:
    return Path(name).read_bytes()


def _zip_prefix(names: list[str], split: str | None, path: Path) -> str:
    """The folder inside the zip that holds the class (or split) folders, "" for the root."""
    tops = sorted({t for n in names if (t := n.partition("/")[0]) != n and not _ignored(t)})
    if split is not None:
        if split in tops:
            return split + "/"
        if len(tops) == 1 and any(n.startswith(f"{tops[0]}/{split}/") for n in names):
            return f"{tops[0]}/{split}/"
        raise DataError(
            f"no split folder {split!r} in {path}; its top-level folders are: {', '.join(tops) or '(none)'}"
        )
    if len(tops) == 1:  # one wrapper folder, e.g. cifar10/<class>/<image>
        inner = _list_zip(names, tops[0] + "/")
        if inner.folders and not inner.files:
            return tops[0] + "/"
    return ""


def load_image_zip(
    path: Path, split: str | None, *, limit: int | None, progress: bool, source: str,
    resize: int | None = None, strict: bool = False,
) -> LabeledImages:
    """Load an ImageFolder layout straight from a zip, decoding only what ``limit`` keeps.

    Args:
        path: the ``.zip`` file.
        split: the top-level folder to load (``"test"``), or ``None`` when the
            zip's root (or its single top-level folder) holds the class folders.
        limit, progress, source: as in :func:`load_image_folder`.

    Returns:
        :class:`LabeledImages` with images ``(N, 3, H, W)`` uint8.

    Raises:
        DataError: the zip cannot be opened, the split folder is missing, or
            any error of :func:`load_image_folder`.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"cannot open zip file {path}: {exc}") from exc
    with zf:
        names = zf.namelist()
        prefix = _zip_prefix(names, split, path)
        where = f"{prefix.rstrip('/')} in {path}" if prefix else str(path)
        classes, paths, labels = _index(
            _list_zip(names, prefix), where, str(path), lambda rel: f"{prefix}{rel} in {path}", strict
        )
        chosen = select_indices(labels, limit)
        members = [prefix + paths[i] for i in chosen]
        images, kept = decode_images(
            members, zf.read, progress=progress, desc=f"decoding {path.name}", where=str(path),
            resize=resize, strict=strict,
        )
    return _assemble(images, labels, chosen[kept], classes, source, [prefix + p for p in paths])
