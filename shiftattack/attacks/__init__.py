"""Shift attacks: exhaustive grid, random worst-of-k, first-order, foolbox adapters."""

from __future__ import annotations

from shiftattack.attacks.base import Attack, AttackResult, MembershipError, Search, VerificationError
from shiftattack.attacks.foolbox import FoolboxSpatialAttack, GridShiftAttack
from shiftattack.attacks.gradient import GradientAttack
from shiftattack.attacks.grid import GridAttack
from shiftattack.attacks.random import RandomAttack

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
