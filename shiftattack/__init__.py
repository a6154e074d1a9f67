"""shiftattack: adversarial shift robustness of image classifiers.

Exact worst-case translation and crop attacks, threat sets, shift metrics.
Images enter as float tensors (N, 3, H, W) in [0, 1]; a shift (dx, dy) moves
the content dx pixels right and dy pixels down.

The public names below are imported on first use (PEP 562), so that
``import shiftattack`` and ``shiftattack --help`` do not load torch until a name needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from shiftattack._version import __version__

#: public name -> the module that defines it
_HOMES = {
    "attack": "api",
    "make_attack": "api",
    "make_canvas": "api",
    "AttackResult": "attacks",
    "GradientAttack": "attacks",
    "GridAttack": "attacks",
    "RandomAttack": "attacks",
    "ShiftAttackError": "errors",
    "Shift": "shifts",
    "crop_window": "shifts",
    "rotate_translate": "shifts",
    "shift": "shifts",
    "shift_bilinear": "shifts",
    "shift_fourier": "shifts",
    "ShiftSet": "shifts",
    "ThreatModel": "shifts",
    "parse_shifts": "shifts",
}

__all__ = [
    "AttackResult", "GradientAttack", "GridAttack", "RandomAttack", "Shift", "ShiftAttackError", "ShiftSet",
    "ThreatModel", "__version__", "attack", "crop_window", "make_attack", "make_canvas", "parse_shifts",
    "rotate_translate", "shift", "shift_bilinear", "shift_fourier",
]

if TYPE_CHECKING:
    from shiftattack.api import attack, make_attack, make_canvas
    from shiftattack.attacks import AttackResult, GradientAttack, GridAttack, RandomAttack
    from shiftattack.errors import ShiftAttackError
    from shiftattack.shifts import (
        Shift,
        ShiftSet,
        ThreatModel,
        crop_window,
        parse_shifts,
        rotate_translate,
        shift,
        shift_bilinear,
        shift_fourier,
    )


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'shiftattack' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
