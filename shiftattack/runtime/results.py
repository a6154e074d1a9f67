"""Writing results: output-folder checks and atomic JSON / CSV files.

Nothing is ever half-written: each file goes to a temporary name in the same
folder and is renamed into place once complete.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from shiftattack.errors import OutputError

__all__ = ["check_output_dir", "open_output_dir", "write_json", "write_csv", "write_text", "write_torch"]


def check_output_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Check, before any work starts, that ``out`` may be written.

    Raises:
        OutputError: ``out`` exists (without ``overwrite``), is a file, or its
            nearest existing parent is not writable.
    """
    path = Path(out)
    if path.exists():
        if not path.is_dir():
            raise OutputError(f"output path {path} exists and is not a folder")
        if not overwrite and any(path.iterdir()):
            raise OutputError(f"output folder {path} already exists and is not empty; "
                              "pass --overwrite to replace its results")
        if not os.access(path, os.W_OK):
            raise OutputError(f"output folder {path} is not writable")
        return path
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create output folder {path}: {parent} is not a writable folder")
    return path


def open_output_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Check (as :func:`check_output_dir`) and create the output folder."""
    path = check_output_dir(out, overwrite)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {path}: {exc}") from None
    return path


def _atomic_write(path: Path, data: str | Callable[[BinaryIO], None]) -> None:
    """Write ``data`` (text, or a function writing to a binary file) to a temporary file, then rename.

    The file gets mode 0o644 (``mkstemp`` creates 0o600, which would hide results and
    datasets from the other users of a shared folder). An operating-system error (disk
    full, folder removed or made read-only) is an :class:`OutputError` naming the file;
    the temporary file is removed and ``path`` keeps its earlier content, if any.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean(obj: Any) -> Any:
    """JSON has no NaN/Infinity: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically (non-finite floats become null)."""
    path = Path(path)
    _atomic_write(path, json.dumps(_clean(obj), indent=1, allow_nan=False) + "\n")
    return path


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV file atomically."""
    path = Path(path)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    _atomic_write(path, buf.getvalue())
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically."""
    path = Path(path)
    _atomic_write(path, text)
    return path


def write_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save`` ``obj`` atomically (state_dicts, checkpoints; ``weights_only``-loadable)."""
    import torch

    path = Path(path)
    _atomic_write(path, lambda fh: torch.save(obj, fh))
    return path


def remove_if_empty(path: Path) -> None:
    """Remove a folder this run created if it is still empty (after a failure)."""
    if path.is_dir() and not any(path.iterdir()):
        shutil.rmtree(path, ignore_errors=True)
