"""Shift attacks: exhaustive grid, random worst-of-k, first-order, foolbox adapters."""

from __future__ import annotations

from .base import Attack, AttackResult, MembershipError, Search, VerificationError
from .foolbox import FoolboxSpatialAttack, GridShiftAttack
from .gradient import GradientAttack
from .grid import GridAttack
from .random import RandomAttack

__all__ = [
    "Attack",
    "AttackResult",
    "FoolboxSpatialAttack",
    "GradientAttack",
    "GridAttack",
    "GridShiftAttack",
    "MembershipError",
    "RandomAttack",
    "Search",
    "VerificationError",
]
