"""Moved to :mod:`shiftattack.shifts.threats`; this name keeps old imports working."""

from shiftattack.shifts.threats import ENGSTROM, ShiftSet, ThreatModel, default_crop_size, parse_shifts

__all__ = ["ENGSTROM", "ShiftSet", "ThreatModel", "default_crop_size", "parse_shifts"]
