"""The ``report`` subcommand (registered by :mod:`shiftattack.cli`)."""

from __future__ import annotations

import argparse

__all__ = ["add_report"]


def add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="figures and tables from results folders; writes report.html and report.md",
        description="Read the results documents under RESULTS (attack and benchmark results.json, "
        "certificate.json, train_log.json; folders are searched recursively) and write a self-contained "
        "OUT/report.html (figures embedded), OUT/report.md and OUT/figures/*.png. Nothing is recomputed.",
    )
    p.add_argument("results", nargs="+", metavar="RESULTS", help="results folders or files")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--title", default="shiftattack report", help="page title")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import collect, write_report

    entries = collect(args.results)
    path = write_report(entries, args.out, title=args.title)
    kinds = sorted({e.kind for e in entries})
    print(f"wrote {path} and {path.with_suffix('.md')} from {len(entries)} results ({', '.join(kinds)})")
    return 0
