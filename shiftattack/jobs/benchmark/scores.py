"""Turn a run's unit counts into the published scores (METRICS.md), as the results document.

C suites: error per (corruption, severity), CE and relative CE per corruption, mCE
and relative mCE over the 15 benchmark corruptions. P suites: FP and uT5D per
perturbation, FR and T5D, mFR and mT5D over the 10 test perturbations.

Normalisers: a :class:`~shiftattack.metrics.corruption.Reference` (the published
AlexNet, or a reference model's ``results.json``), or none. Without one, CE_c is the
unnormalised mean error over the severities and mCE their mean (the convention of
CIFAR-10-C papers such as AugMix, which have no AlexNet figures), FR = FP and
T5D = uT5D; ``normalizer.name`` says ``none`` so nobody mistakes them for ratios.
"""

from __future__ import annotations

from typing import Any

from shiftattack.corruptions import get_corruption
from shiftattack.corruptions.perturbations import get_perturbation
from shiftattack.metrics.corruption import (
    BENCHMARK_CORRUPTIONS,
    BENCHMARK_PERTURBATIONS,
    Reference,
    ce,
    relative_ce,
)

__all__ = ["c_scores", "p_scores"]

UNNORMALISED = {
    "name": "none",
    "source": None,
    "description": "unnormalised: CE_c = mean top-1 error over the severities, mCE = mean CE_c over the 15 "
    "benchmark corruptions (the CIFAR-10-C convention, e.g. AugMix); FR = FP, T5D = uT5D",
}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _m_score(values: dict[str, float | None], benchmark: tuple[str, ...]) -> tuple[float | None, list[str]]:
    """Mean over the benchmark names (None when any is missing) and the names missing."""
    missing = [n for n in benchmark if values.get(n) is None]
    return (None if missing else _mean([values[n] for n in benchmark])), missing


def _normalizer_doc(reference: Reference | None) -> dict[str, Any]:
    if reference is None:
        return dict(UNNORMALISED)
    return {"name": reference.name, "source": reference.source, "suite": reference.suite}


def c_scores(
    units: dict[str, dict], names: list[str], severities: list[int], reference: Reference | None
) -> dict[str, Any]:
    """Scores of a C suite from units ``clean`` and ``<name>__s<severity>`` ({"n", "correct", "error"})."""
    clean = units.get("clean")
    clean_error = clean["error"] if clean else None
    full = severities == [1, 2, 3, 4, 5]
    errors = {n: [units[f"{n}__s{s}"]["error"] for s in severities] for n in names}
    ce_values: dict[str, float | None] = {n: None for n in names}
    rel_values: dict[str, float | None] = {n: None for n in names}
    if full and reference is None:
        ce_values = {n: _mean(e) for n, e in errors.items()}
        if clean_error is not None:
            rel_values = {n: _mean([x - clean_error for x in e]) for n, e in errors.items()}
    elif full:
        ce_values.update(ce(errors, reference, allow_missing=True))
        if clean_error is not None and reference.clean_error is not None:
            rel_values.update(
                relative_ce(errors, clean_error, reference, reference.clean_error, allow_missing=True)
            )
    mce, missing = _m_score(ce_values, BENCHMARK_CORRUPTIONS)
    rel_mce, _ = _m_score(rel_values, BENCHMARK_CORRUPTIONS)
    bench = [n for n in names if n in BENCHMARK_CORRUPTIONS]
    return {
        "n_images": units[f"{names[0]}__s{severities[0]}"]["n"],
        "clean_error": clean_error,
        "clean_accuracy": None if clean_error is None else 1 - clean_error,
        "mce": mce,
        "relative_mce": rel_mce,
        "mean_error": _mean([x for n in bench for x in errors[n]]),
        "mce_missing": missing,
        "normalizer": _normalizer_doc(reference),
        "severities": severities,
        "corruptions": {
            n: {
                "errors": errors[n],
                "severities": severities,
                "mean_error": _mean(errors[n]),
                "ce": ce_values[n],
                "relative_ce": rel_values[n],
                "n_images": units[f"{n}__s{severities[0]}"]["n"],
                "held_out": get_corruption(n).held_out,
                "group": get_corruption(n).group,
            }
            for n in names
        },
    }


def p_scores(
    units: dict[str, dict], names: list[str], difficulty: int, reference: Reference | None
) -> dict[str, Any]:
    """Scores of a P suite from units ``<name>`` ({"n", "flips", "pairs", "t5d_sum", "t5d_pairs"})."""
    rows: dict[str, dict[str, Any]] = {}
    for n in names:
        u = units[n]
        fp = u["flips"] / u["pairs"]
        ut5d = u["t5d_sum"] / u["t5d_pairs"]
        if reference is None:
            fr, t5d = fp, ut5d
        else:
            fr = fp / reference.fp[n] if reference.fp.get(n) else None
            t5d = ut5d / reference.ut5d[n] if reference.ut5d.get(n) else None
        rows[n] = {
            "fp": fp,
            "ut5d": ut5d,
            "fr": fr,
            "t5d": t5d,
            "difficulty": difficulty,
            "n_sequences": u["n"],
            "frames": u["frames"],
            "pairs": u["pairs"],
            "noise": get_perturbation(n).noise,
            "held_out": get_perturbation(n).held_out,
        }
    mfr, missing = _m_score({n: r["fr"] for n, r in rows.items()}, BENCHMARK_PERTURBATIONS)
    mt5d, _ = _m_score({n: r["t5d"] for n, r in rows.items()}, BENCHMARK_PERTURBATIONS)
    bench = [n for n in names if n in BENCHMARK_PERTURBATIONS]
    return {
        "difficulty": difficulty,
        "mfr": mfr,
        "mt5d": mt5d,
        "mean_fp": _mean([rows[n]["fp"] for n in bench]),
        "mean_ut5d": _mean([rows[n]["ut5d"] for n in bench]),
        "mfr_missing": missing,
        "normalizer": _normalizer_doc(reference),
        "perturbations": rows,
    }
