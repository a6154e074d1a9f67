"""The shift engine: exact whole-pixel shifts and crop windows, sub-pixel and rotated shifts, threat sets.

- :mod:`.exact`: whole-pixel shifts by pure indexing (the DESIGN.md contract, bit-exact);
- :mod:`.functional`: ``shift``, ``shift_bilinear``, ``shift_fourier``, ``rotate_translate``, crop windows;
- :mod:`.threats`: :class:`ShiftSet` (which shifts) and :class:`ThreatModel` (how they are applied).

Everything is importable from ``shiftattack.shifts`` as before the package was split.
"""

from shiftattack.shifts.functional import (
    INTEGER_MODES,
    INTERPOLATIONS,
    MODES,
    Shift,
    crop_gather,
    crop_window,
    rotate_translate,
    shift,
    shift_bilinear,
    shift_fourier,
    shift_gather,
)
from shiftattack.shifts.threats import ENGSTROM, ShiftSet, ThreatModel, default_crop_size, parse_shifts

__all__ = [
    "INTEGER_MODES", "INTERPOLATIONS", "MODES", "Shift", "crop_gather", "crop_window", "rotate_translate",
    "shift", "shift_bilinear", "shift_fourier", "shift_gather",
    "ENGSTROM", "ShiftSet", "ThreatModel", "default_crop_size", "parse_shifts",
]
