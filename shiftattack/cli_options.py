"""Command-line options shared by several subcommands (kept apart so every cli_* module can import them)."""

from __future__ import annotations

__all__ = ["add_trust_pickle"]


def add_trust_pickle(group) -> None:
    """``--trust-pickle``: the one way to read a weights file that ``torch.load(weights_only=True)`` refuses."""
    group.add_argument(
        "--trust-pickle",
        action="store_true",
        help="read a weights file that only full unpickling can read (a pickled whole model); "
        "unpickling runs code from the file, so use it only for files you trust",
    )
