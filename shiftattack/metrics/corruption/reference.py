"""Reference models (normalisers): :class:`Reference`, the published AlexNet, reference files.

Part of :mod:`shiftattack.metrics.corruption` (see its docstring for the definitions)."""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shiftattack.errors import SpecError
from shiftattack.metrics.corruption.constants import (
    _SEVERITIES,
    ALEXNET_C_ERRORS,
    ALEXNET_CLEAN_ERROR,
    ALEXNET_P_FP,
    ALEXNET_P_UT5D,
    _difficulty,
    _errors5,
    _fraction,
    _number,
)

__all__ = ['ALEXNET', 'Reference', 'load_reference']


# ---------------------------------------------------------------------------------------------------------
# Reference models (normalisers)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A normalising model's published or measured numbers.

    Attributes:
        name: the model, e.g. ``"AlexNet (Hendrycks & Dietterich 2019, published)"``.
        suite: the benchmark suite of the numbers (``imagenet-c``, ``cifar10-p``, ...), or a
            family (``imagenet``) when it holds both C and P numbers, as :data:`ALEXNET` does.
        corruption_errors: per corruption, either its 5 per-severity top-1 errors (a tuple,
            severities 1..5) or one severity-averaged error (a float); fractions.
        clean_error: clean top-1 error (fraction), or None if unknown.
        fp: per perturbation, flip probability (fraction).
        ut5d: per perturbation, unnormalised top-5 distance.
        difficulty: the ImageNet-P difficulty of ``fp``/``ut5d``, None if not stated.
        source: where the numbers come from (a citation or a file path).
    """

    name: str
    suite: str
    corruption_errors: dict[str, float | tuple[float, ...]] = field(default_factory=dict)
    clean_error: float | None = None
    fp: dict[str, float] = field(default_factory=dict)
    ut5d: dict[str, float] = field(default_factory=dict)
    difficulty: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        errs: dict[str, float | tuple[float, ...]] = {}
        for c, v in dict(self.corruption_errors).items():
            what = f"reference {self.name!r}: error of {c}"
            errs[c] = _fraction(v, what) if isinstance(v, numbers.Real) else _errors5(v, what)
        object.__setattr__(self, "corruption_errors", errs)
        if self.clean_error is not None:
            object.__setattr__(self, "clean_error", _fraction(self.clean_error, f"{self.name}: clean error"))
        object.__setattr__(
            self, "fp", {p: _fraction(v, f"{self.name}: FP of {p}") for p, v in dict(self.fp).items()}
        )
        object.__setattr__(
            self,
            "ut5d",
            {p: _number(v, f"{self.name}: uT5D of {p}", 0.0) for p, v in dict(self.ut5d).items()},
        )
        if self.difficulty is not None:
            object.__setattr__(self, "difficulty", _difficulty(self.difficulty))

    def covers(self, suite: str) -> bool:
        """Whether these numbers may normalise results of ``suite`` (``imagenet`` covers imagenet-c/-p)."""
        return suite == self.suite or suite.rsplit("-", 1)[0] == self.suite

    def mean_errors(self) -> dict[str, float]:
        """Severity-averaged error per corruption (fractions)."""
        return {c: _mean_error(v) for c, v in self.corruption_errors.items()}

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready dict (per-severity errors as lists)."""
        return {
            "name": self.name,
            "suite": self.suite,
            "source": self.source,
            "clean_error": self.clean_error,
            "difficulty": self.difficulty,
            "corruption_errors": {
                c: list(v) if isinstance(v, tuple) else v for c, v in self.corruption_errors.items()
            },
            "fp": dict(self.fp),
            "ut5d": dict(self.ut5d),
        }


def _mean_error(v: float | tuple[float, ...]) -> float:
    return sum(v) / len(v) if isinstance(v, tuple) else float(v)


#: AlexNet as published (METRICS.md): severity-averaged ImageNet-C errors, clean error, ImageNet-P
#: FP and uT5D. The published tables do not state the ImageNet-P difficulty (``test.py`` defaults to 1).
ALEXNET = Reference(
    name="AlexNet (Hendrycks & Dietterich 2019, published)",
    suite="imagenet",
    corruption_errors=dict(ALEXNET_C_ERRORS),
    clean_error=ALEXNET_CLEAN_ERROR,
    fp=dict(ALEXNET_P_FP),
    ut5d=dict(ALEXNET_P_UT5D),
    source="Hendrycks & Dietterich, ICLR 2019 (reference/METRICS.md, ImageNet-C and ImageNet-P)",
)


def _field(record: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in record or record[key] is None:
        raise SpecError(f"{where} lacks {key!r}")
    return record[key]


def load_reference(path: str | os.PathLike, *, suite: str | None = None) -> Reference:
    """Read a reference model's ``results.json`` (written by the benchmark command) as a normaliser.

    C suites (``<name>-c``): ``{"suite", "model", "clean_error", "corruptions": {name:
    {"errors": [e1..e5], "severities": [1..5] (optional), "mean_error"}}}``. The 5
    per-severity errors are kept; a record with only ``mean_error`` is kept as an
    average; a record measured at only some severities cannot normalise (error).
    ``clean_error`` may be null (relative CE then needs it from elsewhere).

    P suites (``<name>-p``): ``{"suite", "model", "difficulty" (optional), "perturbations":
    {name: {"fp", "ut5d", "difficulty" (optional)}}}``.

    Args:
        path: the JSON file.
        suite: if given, the suite the file must hold (e.g. ``cifar10-c``).

    Returns:
        A :class:`Reference`; ``name`` is the file's model spec, ``source`` the path.

    Raises:
        SpecError: unreadable or invalid JSON, an unknown or unexpected suite, missing
            fields or out-of-range values; the message names the file and the field.
    """
    where = f"reference file {os.fspath(path)!r}"
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise SpecError(f"cannot read {where}: {exc}") from None
    except ValueError as exc:
        raise SpecError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{where} must hold a JSON object (a benchmark results.json)")
    file_suite = _field(doc, "suite", where)
    if not isinstance(file_suite, str) or not file_suite.endswith(("-c", "-p")):
        raise SpecError(
            f"{where}: suite must name a C or P benchmark (e.g. cifar10-c, imagenet-p), got {file_suite!r}"
        )
    if suite is not None and file_suite != suite:
        raise SpecError(f"{where} holds {file_suite} results; expected {suite}")
    model = doc.get("model")
    name = str(model.get("spec", model) if isinstance(model, dict) else model) if model else os.fspath(path)
    try:
        if file_suite.endswith("-c"):
            return _c_reference(doc, name, file_suite, where)
        return _p_reference(doc, name, file_suite, where)
    except SpecError as exc:
        msg = str(exc)
        raise SpecError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def _c_reference(doc: Mapping[str, Any], name: str, suite: str, where: str) -> Reference:
    records = _field(doc, "corruptions", where)
    if not isinstance(records, dict) or not records:
        raise SpecError(f"{where}: 'corruptions' must map corruption names to their results")
    errors: dict[str, float | tuple[float, ...]] = {}
    for c, rec in records.items():
        at = f"{where}, corruption {c!r}"
        if not isinstance(rec, dict):
            raise SpecError(f"{at} must be an object")
        if rec.get("errors") is not None:
            sev = rec.get("severities", list(range(1, len(rec["errors"]) + 1)))
            if list(sev) != list(range(1, _SEVERITIES + 1)):
                raise SpecError(
                    f"{at} was measured at severities {list(sev)}; a normaliser needs all of 1..{_SEVERITIES}"
                )
            errors[c] = _errors5(rec["errors"], f"{at} errors")
        elif rec.get("mean_error") is not None:
            errors[c] = _fraction(rec["mean_error"], f"{at} mean_error")
        else:
            raise SpecError(f"{at} lacks 'errors' (5 per-severity errors) and 'mean_error'")
    clean = doc.get("clean_error")
    return Reference(
        name=name,
        suite=suite,
        corruption_errors=errors,
        clean_error=None if clean is None else _fraction(clean, f"{where} clean_error"),
        source=where.removeprefix("reference file ").strip("'"),
    )


def _p_reference(doc: Mapping[str, Any], name: str, suite: str, where: str) -> Reference:
    records = _field(doc, "perturbations", where)
    if not isinstance(records, dict) or not records:
        raise SpecError(f"{where}: 'perturbations' must map perturbation names to their results")
    fp: dict[str, float] = {}
    ut5d: dict[str, float] = {}
    difficulties = set()
    if doc.get("difficulty") is not None:
        difficulties.add(_difficulty(doc["difficulty"]))
    for p, rec in records.items():
        at = f"{where}, perturbation {p!r}"
        if not isinstance(rec, dict):
            raise SpecError(f"{at} must be an object")
        fp[p] = _fraction(_field(rec, "fp", at), f"{at} fp")
        ut5d[p] = _number(_field(rec, "ut5d", at), f"{at} ut5d", 0.0)
        if rec.get("difficulty") is not None:
            difficulties.add(_difficulty(rec["difficulty"]))
    if len(difficulties) > 1:
        raise SpecError(f"{where} mixes difficulties {sorted(difficulties)}; a normaliser needs one")
    return Reference(
        name=name,
        suite=suite,
        fp=fp,
        ut5d=ut5d,
        difficulty=difficulties.pop() if difficulties else None,
        source=where.removeprefix("reference file ").strip("'"),
    )
