"""shiftattack: adversarial shift robustness of image classifiers.

Exact worst-case translation and crop attacks, threat sets, shift metrics.
Images enter as float tensors (N, 3, H, W) in [0, 1]; a shift (dx, dy) moves
the content dx pixels right and dy pixels down.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import attack, make_attack, make_canvas
from .attacks import AttackResult, GradientAttack, GridAttack, RandomAttack
from .errors import ShiftAttackError
from .shifts import Shift, crop_window, rotate_translate, shift, shift_bilinear, shift_fourier
from .threats import ShiftSet, ThreatModel, parse_shifts

__all__ = [
    "AttackResult",
    "GradientAttack",
    "GridAttack",
    "RandomAttack",
    "Shift",
    "ShiftAttackError",
    "ShiftSet",
    "ThreatModel",
    "__version__",
    "attack",
    "crop_window",
    "make_attack",
    "make_canvas",
    "parse_shifts",
    "rotate_translate",
    "shift",
    "shift_bilinear",
    "shift_fourier",
]
