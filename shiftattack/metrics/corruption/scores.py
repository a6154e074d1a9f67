"""ImageNet-C scores (CE, relative CE, mCE) and ImageNet-P scores (FR, T5D, mFR, mT5D).

Part of :mod:`shiftattack.metrics.corruption` (see its docstring for the definitions)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

from shiftattack.errors import SpecError
from shiftattack.metrics.corruption.constants import (
    _SEVERITIES,
    BENCHMARK_CORRUPTIONS,
    BENCHMARK_PERTURBATIONS,
    _errors5,
    _fraction,
    _number,
)
from shiftattack.metrics.corruption.reference import Reference, _mean_error

__all__ = ['ce', 'corruption_errors', 'fr', 'mce', 'mfr', 'mt5d', 'relative_ce', 'relative_mce', 't5d']


# ---------------------------------------------------------------------------------------------------------
# ImageNet-C scores
# ---------------------------------------------------------------------------------------------------------


def corruption_errors(errors: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Severity-averaged error per corruption: mean_s E(f, s, c) over s = 1..5 (fractions).

    Args:
        errors: corruption name -> its 5 top-1 errors (fractions), severities 1..5.

    Raises:
        SpecError: not exactly 5 errors per corruption, or one outside [0, 1].
    """
    return {c: _mean_error(_errors5(v, f"errors of {c}")) for c, v in errors.items()}


def _reference_sums(reference: Mapping[str, Any] | Reference) -> dict[str, float]:
    """sum_s E(ref, s, c) per corruption: the 5 errors summed, or 5 x the severity-averaged error."""
    table = reference.corruption_errors if isinstance(reference, Reference) else reference
    out = {}
    for c, v in table.items():
        if isinstance(v, numbers.Real) and not isinstance(v, bool):
            out[c] = _SEVERITIES * _fraction(v, f"reference error of {c}")
        else:
            out[c] = sum(_errors5(v, f"reference errors of {c}"))
    return out


def _ref_name(reference: object) -> str:
    return f"reference {reference.name!r}" if isinstance(reference, Reference) else "the reference"


def _ratios(
    num: Mapping[str, float], den: Mapping[str, float], what: str, ref: str, allow_missing: bool
) -> dict[str, float]:
    missing = [c for c in num if c not in den]
    if missing and not allow_missing:
        raise SpecError(f"{ref} has no {what} for {', '.join(missing)}; pass allow_missing=True to skip them")
    out = {}
    for c, v in num.items():
        if c in den:
            if den[c] == 0:
                raise SpecError(f"{ref}'s {what} for {c} is 0; the ratio is undefined")
            out[c] = v / den[c]
    return out


def ce(
    errors: Mapping[str, Sequence[float]],
    reference: Mapping[str, Any] | Reference,
    *,
    allow_missing: bool = False,
) -> dict[str, float]:
    """Corruption error CE_c = sum_s E(f, s, c) / sum_s E(ref, s, c) per corruption (a ratio; x100 = %).

    Args:
        errors: corruption -> the model's 5 per-severity top-1 errors (fractions).
        reference: corruption -> the reference's 5 per-severity errors or one
            severity-averaged error (e.g. :data:`ALEXNET_C_ERRORS`), or a :class:`Reference`.
        allow_missing: leave out corruptions the reference lacks instead of raising.

    Returns:
        corruption -> CE_c, for every corruption of ``errors`` (that the reference has).

    Raises:
        SpecError: bad errors; a corruption the reference lacks (naming it); a zero reference error.
    """
    sums = {c: sum(_errors5(v, f"errors of {c}")) for c, v in errors.items()}
    return _ratios(sums, _reference_sums(reference), "error", _ref_name(reference), allow_missing)


def relative_ce(
    errors: Mapping[str, Sequence[float]],
    clean_error: float,
    reference: Mapping[str, Any] | Reference,
    reference_clean_error: float | None = None,
    *,
    allow_missing: bool = False,
) -> dict[str, float]:
    """Relative CE_c = sum_s (E(f, s, c) - E_clean(f)) / sum_s (E(ref, s, c) - E_clean(ref)).

    Args:
        errors: corruption -> the model's 5 per-severity errors (fractions).
        clean_error: the model's clean top-1 error (fraction).
        reference: as :func:`ce`.
        reference_clean_error: the reference's clean error; defaults to
            ``reference.clean_error`` for a :class:`Reference` (0.435 for :data:`ALEXNET`).
        allow_missing: leave out corruptions the reference lacks instead of raising.

    Returns:
        corruption -> relative CE (a ratio; x100 = %). It is negative where the
        model's corrupted error is below its clean error.

    Raises:
        SpecError: as :func:`ce`; no reference clean error; a reference whose
            corrupted and clean errors coincide (zero denominator).
    """
    clean = _fraction(clean_error, "clean_error")
    if reference_clean_error is None:
        reference_clean_error = reference.clean_error if isinstance(reference, Reference) else None
        if reference_clean_error is None:
            raise SpecError(f"{_ref_name(reference)} has no clean error; pass reference_clean_error")
    ref_clean = _fraction(reference_clean_error, "reference_clean_error")
    num = {c: sum(_errors5(v, f"errors of {c}")) - _SEVERITIES * clean for c, v in errors.items()}
    den = {c: s - _SEVERITIES * ref_clean for c, s in _reference_sums(reference).items()}
    return _ratios(num, den, "error above its clean error", _ref_name(reference), allow_missing)


def _mean_over(
    values: Mapping[str, float | None], names: Sequence[str] | None, what: str, item: str, allow_missing: bool
) -> float | tuple[float, list[str]]:
    """Mean of ``values`` over ``names`` (the m-score ``what`` of the per-name ``item``)."""
    names = list(values) if names is None else list(names)
    if isinstance(names, str) or not names:
        raise SpecError(f"names for the {what} must be a non-empty list of names")
    missing = [n for n in names if values.get(n) is None]
    present = [_number(values[n], f"{item} of {n}") for n in names if values.get(n) is not None]
    if missing and not allow_missing:
        raise SpecError(
            f"the {what} needs {', '.join(missing)} (missing); pass allow_missing=True "
            "for the mean over those present"
        )
    if not present:
        raise SpecError(f"none of {', '.join(names)} is present; the {what} is undefined")
    mean = sum(present) / len(present)
    return (mean, missing) if allow_missing else mean


_Values = Mapping[str, "float | None"]


@overload
def mce(
    ce_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[False] = ...
) -> float: ...
@overload
def mce(
    ce_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[True]
) -> tuple[float, list[str]]: ...
def mce(ce_values, names=BENCHMARK_CORRUPTIONS, *, allow_missing=False):
    """Mean corruption error mCE: the mean of CE_c over ``names`` (a ratio; papers print x100 as %).

    Args:
        ce_values: corruption -> CE_c (:func:`ce`); a None value counts as missing.
        names: the corruptions to average; default the 15 :data:`BENCHMARK_CORRUPTIONS`;
            None = every key of ``ce_values``.
        allow_missing: return ``(mean over those present, missing names)`` instead of raising.

    Raises:
        SpecError: a name is missing (the message lists them) unless ``allow_missing``;
            none present.
    """
    return _mean_over(ce_values, names, "mCE", "CE", allow_missing)


@overload
def relative_mce(
    relative_ce_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[False] = ...
) -> float: ...
@overload
def relative_mce(
    relative_ce_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[True]
) -> tuple[float, list[str]]: ...
def relative_mce(relative_ce_values, names=BENCHMARK_CORRUPTIONS, *, allow_missing=False):
    """Relative mCE: the mean of :func:`relative_ce` values over ``names`` (a ratio; x100 = %).

    Arguments and errors as :func:`mce`.
    """
    return _mean_over(relative_ce_values, names, "relative mCE", "relative CE", allow_missing)


# ---------------------------------------------------------------------------------------------------------
# ImageNet-P scores
# ---------------------------------------------------------------------------------------------------------


def fr(
    fp: Mapping[str, float], reference_fp: Mapping[str, float] | Reference, *, allow_missing: bool = False
) -> dict[str, float]:
    """Flip rate FR_p = FP_p(f) / FP_p(ref) per perturbation (a ratio; x100 = %).

    Args:
        fp: perturbation -> the model's flip probability (fraction, :func:`flip_probability`).
        reference_fp: perturbation -> the reference's FP (e.g. :data:`ALEXNET_P_FP`), or a
            :class:`Reference`. Both should be at the same difficulty.
        allow_missing: leave out perturbations the reference lacks instead of raising.

    Raises:
        SpecError: an FP outside [0, 1]; a perturbation the reference lacks; a zero reference FP.
    """
    table = reference_fp.fp if isinstance(reference_fp, Reference) else reference_fp
    num = {p: _fraction(v, f"FP of {p}") for p, v in fp.items()}
    den = {p: _fraction(v, f"reference FP of {p}") for p, v in table.items()}
    return _ratios(num, den, "flip probability", _ref_name(reference_fp), allow_missing)


def t5d(
    ut5d: Mapping[str, float], reference: Mapping[str, float] | Reference, *, allow_missing: bool = False
) -> dict[str, float]:
    """Top-5 distance T5D_p = uT5D_p(f) / uT5D_p(ref) per perturbation (a ratio; x100 = %).

    Args:
        ut5d: perturbation -> the model's uT5D (:func:`unnormalized_t5d`).
        reference: perturbation -> the reference's uT5D (e.g. :data:`ALEXNET_P_UT5D`), or a
            :class:`Reference`.
        allow_missing: leave out perturbations the reference lacks instead of raising.

    Raises:
        SpecError: a negative uT5D; a perturbation the reference lacks; a zero reference uT5D.
    """
    table = reference.ut5d if isinstance(reference, Reference) else reference
    num = {p: _number(v, f"uT5D of {p}", 0.0) for p, v in ut5d.items()}
    den = {p: _number(v, f"reference uT5D of {p}", 0.0) for p, v in table.items()}
    return _ratios(num, den, "top-5 distance", _ref_name(reference), allow_missing)


@overload
def mfr(
    fr_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[False] = ...
) -> float: ...
@overload
def mfr(
    fr_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[True]
) -> tuple[float, list[str]]: ...
def mfr(fr_values, names=BENCHMARK_PERTURBATIONS, *, allow_missing=False):
    """Mean flip rate mFR: the mean of FR_p over ``names`` (default the 10 :data:`BENCHMARK_PERTURBATIONS`).

    For CIFAR-10-P as ``cifar-p-eval.py`` averages, pass ``names=CIFAR_P_EVAL_PERTURBATIONS``.
    Arguments and errors as :func:`mce`.
    """
    return _mean_over(fr_values, names, "mFR", "FR", allow_missing)


@overload
def mt5d(
    t5d_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[False] = ...
) -> float: ...
@overload
def mt5d(
    t5d_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[True]
) -> tuple[float, list[str]]: ...
def mt5d(t5d_values, names=BENCHMARK_PERTURBATIONS, *, allow_missing=False):
    """Mean top-5 distance mT5D: the mean of T5D_p over ``names`` (default the 10 test perturbations).

    Arguments and errors as :func:`mce`.
    """
    return _mean_over(t5d_values, names, "mT5D", "T5D", allow_missing)
