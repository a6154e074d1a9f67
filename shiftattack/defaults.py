"""Default settings shared by the jobs and the command line; no torch here, so ``--help`` stays fast."""

from __future__ import annotations

__all__ = [
    "CHUNK_SIZE", "BOUND_ATTACK_STEP", "BOUND_MAX_PIECES", "BOUND_MIN_WIDTH", "BOUND_BATCH", "PRECISIONS",
    "SCHEDULES",
]

#: images per stored unit of attack and certify runs (``--chunk-size``): small enough that --resume
#: loses little, large enough to fill a GPU
CHUNK_SIZE = 500
#: step (px) of the dense bilinear grid attack the bound method runs first (``--attack-step``)
BOUND_ATTACK_STEP = 0.25
#: bound evaluations per image before it is declared unknown (``--max-pieces``)
BOUND_MAX_PIECES = 10000
#: smallest piece side (px) that is still split (``--min-width``)
BOUND_MIN_WIDTH = 1 / 256
#: pieces per bound pass (``--bound-batch``)
BOUND_BATCH = 8
#: training precisions (``train --precision``)
PRECISIONS = ("auto", "fp32", "bf16")
#: learning-rate schedules (``train --schedule``)
SCHEDULES = ("onecycle", "cosine")
