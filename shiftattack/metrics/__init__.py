"""Shift-robustness metrics: consistency, diagonal curve, P(top-1 change), MAC, flip rates.

They live in :mod:`.shift` and are exported here; the corruption metrics (CE/mCE, FP/FR/T5D,
the published reference tables) are in :mod:`.corruption`.
"""

from shiftattack.metrics.shift import (
    DIRECTIONS,
    ConsistencyResult,
    DiagonalCurve,
    FlipRateResult,
    Top1ChangeResult,
    accuracy_vs_radius,
    consistency,
    consistency_shifted,
    diagonal_curve,
    flip_rate,
    normalized_flip_rate,
    top1_change,
)

__all__ = [
    "DIRECTIONS",
    "ConsistencyResult",
    "DiagonalCurve",
    "FlipRateResult",
    "Top1ChangeResult",
    "accuracy_vs_radius",
    "consistency",
    "consistency_shifted",
    "diagonal_curve",
    "flip_rate",
    "normalized_flip_rate",
    "top1_change",
]
