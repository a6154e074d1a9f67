"""One (model, metric) unit of a leaderboard: its per-image values, computed by the library.

Each function takes the model (a :class:`~shiftattack.runtime.engine.ModelRunner`), the
images (N, 3, H, W) floats in [0, 1], their labels (N,) and the protocol, and returns a
JSON-able dict of per-image values (strings of 0/1 for booleans), from which
:mod:`~shiftattack.jobs.compare.leaderboard` computes each metric and its interval. No
unit depends on the rank that computes it or on the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from shiftattack.api import make_canvas
from shiftattack.attacks.grid import GridAttack
from shiftattack.certify.exact import certify_exact
from shiftattack.errors import SpecError
from shiftattack.metrics.shift import consistency, flip_rate
from shiftattack.runtime.units import unit_seed
from shiftattack.shifts.threats import parse_shifts
from shiftattack.threats import ThreatModel

__all__ = ["UNITS", "bits", "unbits"]

#: the benchmark corruptions of each suite (the published 15, in their order) and their strengths
CORRUPTION_SUITES = {"cifar10-c": "cifar10", "imagenet-c": "imagenet"}
#: images corrupted per seeded draw (fixed, so that results do not depend on the batch size)
CORRUPTION_CHUNK = 64


def bits(flags: Tensor) -> str:
    """(N,) booleans as a string of 0/1."""
    return "".join("1" if f else "0" for f in flags.tolist())


def unbits(text: str) -> list[int]:
    return [1 if c == "1" else 0 for c in text]


def _rounded(values: Tensor) -> list[float]:
    return [round(float(v), 9) for v in values.tolist()]


def _worst_case(
    runner, images: Tensor, labels: Tensor, protocol, mode: str, batch_size: int
) -> dict[str, Any]:
    shifts = parse_shifts(protocol.shifts)
    size = tuple(images.shape[-2:])
    if mode == "crop":
        threat = ThreatModel(shifts, mode="crop", crop_size=size)
        x = make_canvas(images, protocol.radius, "zero")
    else:
        threat = ThreatModel(shifts, mode=mode)
        x = images
    result = GridAttack(threat, batch_size=batch_size, early_exit=True, order="radius")(runner, x, labels)
    radius = [None if math.isinf(r) else int(r) for r in result.fooled_radius.tolist()]
    return {
        "clean_correct": bits(result.clean_pred == labels),
        "robust": bits(result.robust),
        "fooled_radius": radius,
        "n_evaluated": int(result.n_evaluated.sum()),
    }


def worst_case_circular(runner, images, labels, protocol, batch_size) -> dict[str, Any]:
    return _worst_case(runner, images, labels, protocol, "circular", batch_size)


def worst_case_crop(runner, images, labels, protocol, batch_size) -> dict[str, Any]:
    return _worst_case(runner, images, labels, protocol, "crop", batch_size)


def consistency_unit(runner, images, labels, protocol, batch_size) -> dict[str, Any]:
    canvas = make_canvas(images, protocol.radius, "zero")
    generator = torch.Generator().manual_seed(unit_seed(protocol.seed, "consistency"))
    with torch.inference_mode():
        result = consistency(
            runner,
            canvas,
            size=tuple(images.shape[-2:]),
            n_repeats=protocol.consistency_repeats,
            max_offset=protocol.radius,
            generator=generator,
            batch_size=batch_size,
        )
    return {"per_image": _rounded(result.per_image), "n_pairs": result.n_pairs}


def flip_rate_unit(runner, images, labels, protocol, batch_size) -> dict[str, Any]:
    canvas = make_canvas(images, protocol.flip_distance, "zero")
    with torch.inference_mode():
        result = flip_rate(
            runner,
            canvas,
            mode="crop",
            size=tuple(images.shape[-2:]),
            max_distance=protocol.flip_distance,
            batch_size=batch_size,
        )
    return {"per_image": _rounded(result.per_image), "per_distance": result.per_distance}


def certified_unit(runner, images, labels, protocol, batch_size) -> dict[str, Any]:
    threat = ThreatModel(parse_shifts(protocol.shifts), mode="circular")
    result = certify_exact(runner, images, labels, threat, batch_size=batch_size, order="radius")
    return {"certified": bits(result.robust)}


def corruption_unit(runner, images, labels, protocol, batch_size) -> dict[str, Any]:
    from shiftattack.corruptions import corrupt
    from shiftattack.corruptions._registry import ORDER

    params = CORRUPTION_SUITES.get(protocol.corruptions)
    if params is None:
        raise SpecError(
            f"--corruptions must be one of {', '.join(CORRUPTION_SUITES)}, got {protocol.corruptions!r}"
        )
    x, y = images[: protocol.corruption_limit], labels[: protocol.corruption_limit]
    errors = torch.zeros(x.shape[0], dtype=torch.float64)
    by_corruption: dict[str, float] = {}
    cells = 0
    for name in ORDER[:15]:
        wrong = 0.0
        for severity in protocol.corruption_severities:
            miss = torch.zeros(x.shape[0], dtype=torch.bool)
            for lo in range(0, x.shape[0], CORRUPTION_CHUNK):  # seeded per chunk: no batch-size dependence
                seed = unit_seed(protocol.seed, "corruption", name, severity, lo)
                chunk = corrupt(
                    x[lo : lo + CORRUPTION_CHUNK],
                    name,
                    severity,
                    generator=torch.Generator().manual_seed(seed),
                    params=params,
                )
                for b in range(0, chunk.shape[0], batch_size):
                    with torch.inference_mode():
                        pred = runner(chunk[b : b + batch_size]).argmax(1).cpu()
                    miss[lo + b : lo + b + pred.shape[0]] = pred != y[lo + b : lo + b + pred.shape[0]]
            errors += miss.double()
            wrong += float(miss.double().mean())
            cells += 1
        by_corruption[name] = round(100.0 * wrong / len(protocol.corruption_severities), 9)
    return {"per_image": _rounded(errors / cells), "by_corruption": by_corruption}


#: unit name -> function(runner, images, labels, protocol, batch_size) -> per-image values
UNITS: dict[str, Callable[..., dict[str, Any]]] = {
    "worst_case_circular": worst_case_circular,
    "worst_case_crop": worst_case_crop,
    "consistency": consistency_unit,
    "flip_rate": flip_rate_unit,
    "certified_accuracy": certified_unit,
    "corruption_error": corruption_unit,
}
