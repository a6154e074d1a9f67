"""``shiftattack report``: robustness figures and tables from results folders, as HTML and Markdown.

Examples:
    >>> from shiftattack.report import collect, write_report
    >>> write_report(collect(["runs/attack", "runs/cert"]), "runs/report")  # doctest: +SKIP
"""

from __future__ import annotations

from shiftattack.report.collect import Entry, collect
from shiftattack.report.render import write_report

__all__ = ["Entry", "collect", "write_report"]
