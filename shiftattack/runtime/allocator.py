"""Keep freed memory in the process (glibc), so that large activations are not page-faulted back.

glibc's ``malloc`` serves large blocks (above a threshold that starts at 128 KiB and adapts
up to 32 MiB) with ``mmap`` and returns them to the kernel on ``free``; it also trims the top
of the heap when more than 128 KiB is free there. A CNN's activations are such blocks: every
forward pass maps them afresh and the kernel zeroes each page on first touch. On this
project's 2-core machines that was half the time of an attack in system time (plain inference
of a CIFAR CNN at batch 256: 1,956 images/s, 3,145 with the thresholds raised; see
``benchmarks/allocator.py``).

:func:`keep_freed_memory` raises both thresholds to 1 GiB with ``mallopt`` (the same as
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` in the environment): blocks up to
1 GiB come from the heap and freed memory stays for the next pass. The cost is that the
process keeps its peak memory until it exits. The command line calls it at start-up unless
``SHIFTATTACK_KEEP_FREED_MEMORY=0``; the library never changes the process unless asked.
Elsewhere than glibc (macOS, musl, Windows) it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["ENV", "THRESHOLD", "allocator_state", "keep_freed_memory", "keep_freed_memory_for_cli"]

#: set to ``0`` to leave the allocator as it is in the command line
ENV = "SHIFTATTACK_KEEP_FREED_MEMORY"
#: bytes: blocks up to this size come from the heap and stay there once freed
THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h

_state = {"kept_freed_memory": False, "how": "the C library's defaults"}


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p  # only glibc has it
        version = libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None
    return libc if version else None


def keep_freed_memory(threshold: int = THRESHOLD) -> bool:
    """Raise glibc's mmap and trim thresholds to ``threshold`` bytes; True when it was applied.

    Call it early, before the large allocations (later ones benefit; blocks mapped before
    stay mapped). Returns False, changing nothing, on a C library other than glibc.
    """
    libc = _glibc()
    if libc is None:
        _state.update(kept_freed_memory=False, how="not glibc: the C library's defaults")
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)) == 1
    ok = libc.mallopt(_M_TRIM_THRESHOLD, int(threshold)) == 1 and ok
    _state.update(
        kept_freed_memory=ok,
        how=(
            f"glibc mallopt: mmap and trim thresholds {threshold} bytes"
            if ok
            else "glibc refused mallopt: the C library's defaults"
        ),
    )
    return ok


def keep_freed_memory_for_cli() -> bool:
    """What the command line does at start-up: :func:`keep_freed_memory`, unless
    ``SHIFTATTACK_KEEP_FREED_MEMORY=0``."""
    if os.environ.get(ENV, "1").strip() == "0":
        _state.update(kept_freed_memory=False, how=f"{ENV}=0: the C library's defaults")
        return False
    return keep_freed_memory()


def allocator_state() -> dict:
    """``{"kept_freed_memory": bool, "how": str}``: what this process did (for ``timing.json``)."""
    return dict(_state)
