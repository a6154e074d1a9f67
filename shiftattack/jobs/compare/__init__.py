"""``shiftattack compare``: rank many models on shift robustness under one written-down protocol."""

from shiftattack.jobs.compare.leaderboard import FORMAT, build_leaderboard, write_leaderboard
from shiftattack.jobs.compare.protocol import METRICS, ModelEntry, Protocol, parse_entries, read_entries
from shiftattack.jobs.compare.run import CompareConfig, run_compare

__all__ = [
    "FORMAT",
    "METRICS",
    "CompareConfig",
    "ModelEntry",
    "Protocol",
    "build_leaderboard",
    "parse_entries",
    "read_entries",
    "run_compare",
    "write_leaderboard",
]
