"""Decode image files into one uint8 array, with file-naming errors.

Pillow decodes every file. Any mode other than RGB is converted with
Pillow's ``Image.convert("RGB")``: grayscale (``L``, ``LA``, ``I``, ``I;16``,
``F``, ``1``) is replicated into the three channels (``I``/``F`` values are
clipped to 0..255 by Pillow, not rescaled), palette images (``P``) take their
palette colours, CMYK and YCbCr are converted, and an alpha channel (``RGBA``,
``LA``, a palette's transparency) is dropped, not composited onto a
background. EXIF orientation is not applied (as in torchvision's ImageFolder).
Multi-frame files give their first frame.
"""

from __future__ import annotations

import io
import itertools
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from shiftattack._progress import tqdm
from shiftattack.errors import DataError, DataWarning

__all__ = ["IMAGE_EXTENSIONS", "PROGRESS_THRESHOLD", "decode_images", "fit_arrays", "fit_image",
           "is_image_name"]

#: File extensions (lower case) read as images in ImageFolder directories and zips.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")
#: A progress bar is shown when more than this many images are decoded.
PROGRESS_THRESHOLD = 1000
#: Threads that read and decode large image files (benchmarks/decode_speed.py measures the gain).
DECODE_THREADS = min(8, os.cpu_count() or 1)
#: Files of at least this many pixels (or any file with ``resize``) are decoded by the threads.
LARGE_PIXELS = 128 * 128


def is_image_name(name: str) -> bool:
    """Whether ``name`` ends with one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # the direct P -> RGB conversion warns about transparency
    return img.convert("RGB")


def fit_image(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` px (bilinear, antialiased) and centre-crop ``size x size``.

    The usual ImageNet preparation (``Resize(size)`` then ``CenterCrop(size)``):
    ``--resize 256`` gives the 256 px canvases that 224 px crop windows move over.
    """
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def fit_arrays(images: np.ndarray, size: int) -> np.ndarray:
    """:func:`fit_image` applied to uint8 ``(N, H, W, 3)`` arrays; returns ``(N, size, size, 3)``."""
    out = np.empty((images.shape[0], size, size, 3), dtype=np.uint8)
    for i, arr in enumerate(images):
        out[i] = np.asarray(fit_image(Image.fromarray(arr), size), dtype=np.uint8)
    return out


def _decode_one(data: bytes, name: str, resize: int | None = None) -> tuple[np.ndarray, str]:
    """Decode one file's bytes to uint8 ``(H, W, 3)`` and its Pillow mode; ``name`` is for messages."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            mode = img.mode
            rgb = _to_rgb(img)
            rgb.load()
            if resize is not None:
                rgb = fit_image(rgb, resize)
            return np.asarray(rgb, dtype=np.uint8), mode
    except Exception as exc:  # Pillow raises many types on bad files; re-raised, not hidden
        raise DataError(
            f"cannot read image {name}: {type(exc).__name__}: {exc}; "
            f"expected an image file Pillow can decode ({', '.join(IMAGE_EXTENSIONS)})"
        ) from exc


def decode_images(
    names: Sequence[str],
    read: Callable[[str], bytes],
    *,
    progress: bool = True,
    desc: str = "decoding images",
    where: str | None = None,
    resize: int | None = None,
    strict: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode the files ``names`` into one array, skipping (or, ``strict``, refusing) unreadable ones.

    Args:
        names: file names, in the order wanted; used in error messages and
            passed to ``read``.
        read: returns the bytes of one file (from a folder or a zip).
        progress: show a tqdm bar on stderr when more than
            :data:`PROGRESS_THRESHOLD` images are decoded.
        desc: the bar's label.
        where: the container (a zip) the names live in, for messages.
        resize: when given, every image goes through :func:`fit_image` (so
            images of mixed sizes become one size).
        strict: raise on the first file that cannot be read or decoded; by
            default such files are left out with one :class:`DataWarning`
            naming them.

    Returns:
        ``(images, kept)``: uint8 RGB images ``(n, H, W, 3)`` and the int64
        positions in ``names`` of the files they come from (all of them unless
        some were skipped). Files that were not RGB (grayscale, palette, RGBA,
        CMYK) are converted and counted in one :class:`DataWarning`.

    Raises:
        DataError: a file cannot be read or decoded under ``strict`` (naming
            it), no file could be decoded, two files have different sizes
            (naming both and their sizes), or ``names`` is empty.
    """
    if not names:
        raise DataError("no images to decode")

    def named(name: str) -> str:
        return f"{name} in {where}" if where else name

    out: np.ndarray | None = None
    first = ""
    kept: list[int] = []
    skipped: list[str] = []
    modes: dict[str, int] = {}
    bar = tqdm(
        total=len(names),
        desc=desc,
        unit="img",
        file=sys.stderr,
        leave=False,
        disable=not progress or len(names) <= PROGRESS_THRESHOLD,
    )

    def load(name: str) -> tuple[np.ndarray, str] | DataError:
        try:
            try:
                data = read(name)
            except DataError:
                raise
            except Exception as exc:  # OSError, zipfile.BadZipFile (CRC), ...
                raise DataError(f"cannot read {named(name)}: {type(exc).__name__}: {exc}") from exc
            return _decode_one(data, named(name), resize)
        except DataError as exc:
            return exc

    # Pillow decodes and resizes outside the GIL, so threads overlap the work of large files:
    # on 2 cores, 500x375 JPEGs load 1.5-1.7x faster with --resize 256 and 1.0-1.3x without;
    # for small files (CIFAR's 32 px) the threads cost more than they gain (0.89x), so those
    # decode in this thread (benchmarks/decode_speed.py). map keeps the files' order.
    first_file = load(names[0])
    large = resize is not None or (
        not isinstance(first_file, DataError)
        and first_file[0].shape[0] * first_file[0].shape[1] >= LARGE_PIXELS)
    workers = min(DECODE_THREADS, len(names) - 1) if large else 0
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        rest = pool.map(load, names[1:]) if pool is not None else map(load, names[1:])
        for i, (name, got) in enumerate(zip(names, itertools.chain([first_file], rest), strict=True)):
            bar.update(1)
            if isinstance(got, DataError):
                if strict:
                    raise DataError(f"{got} (--strict-data stops at the first unreadable image)") from got
                skipped.append(str(got))
                continue
            arr, mode = got
            if mode != "RGB":
                modes[mode] = modes.get(mode, 0) + 1
            if out is None:
                out = np.empty((len(names),) + arr.shape, dtype=np.uint8)
                first = name
            elif arr.shape != out.shape[1:]:
                h0, w0 = out.shape[1:3]
                h, w = arr.shape[:2]
                raise DataError(
                    f"images of different sizes: {named(first)} is {w0}x{h0} (WxH) but "
                    f"{named(name)} is {w}x{h}; every image of a dataset must have the same size "
                    "(--resize N makes them one size)"
                )
            out[len(kept)] = arr
            kept.append(i)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # an error does not wait for the remaining files
        bar.close()
    if out is None:
        raise DataError(f"none of the {len(names)} image files could be read; the first: {skipped[0]}")
    if skipped:
        shown = "; ".join(skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
        warnings.warn(
            f"skipped {len(skipped)} unreadable image file(s) of {len(names)}: {shown}; "
            "pass --strict-data to stop at such files instead", DataWarning, stacklevel=2)
    if modes:
        counts = ", ".join(f"{n} {m}" for m, n in sorted(modes.items()))
        warnings.warn(
            f"converted {sum(modes.values())} of {len(kept)} images to RGB ({counts}): grayscale is copied "
            "into the three channels and an alpha channel is dropped, not composited", DataWarning,
            stacklevel=2)
    return out[: len(kept)], np.asarray(kept, dtype=np.int64)
