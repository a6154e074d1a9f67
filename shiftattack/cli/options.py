"""Command-line options and argument types shared by several subcommands (any cli module may use them)."""

from __future__ import annotations

import argparse

__all__ = ["add_trust_pickle", "floats", "positive_int"]


def add_trust_pickle(group) -> None:
    """``--trust-pickle``: the one way to read a weights file that ``torch.load(weights_only=True)`` refuses."""
    group.add_argument(
        "--trust-pickle",
        action="store_true",
        help="read a weights file that only full unpickling can read (a pickled whole model); "
        "unpickling runs code from the file, so use it only for files you trust",
    )


def floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value
