"""``shiftattack compare``: rank many models on shift robustness under one written-down protocol.

The protocol module is light (no torch, no numpy) so that the command line can build its
``--help`` from it; the job and the leaderboard load on first use.
"""

from shiftattack.jobs.compare.protocol import METRICS, ModelEntry, Protocol, parse_entries, read_entries

__all__ = ["FORMAT", "METRICS", "CompareConfig", "ModelEntry", "Protocol", "build_leaderboard",
           "parse_entries", "read_entries", "run_compare", "write_leaderboard"]

_LAZY = {"FORMAT": "leaderboard", "build_leaderboard": "leaderboard", "write_leaderboard": "leaderboard",
         "CompareConfig": "run", "run_compare": "run"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"shiftattack.jobs.compare.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
