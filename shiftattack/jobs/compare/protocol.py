"""The shift-robustness protocol a leaderboard is scored under, and the models it ranks.

A :class:`Protocol` is written into every leaderboard with its sha256; a leaderboard folder
only takes units scored under the same protocol and data, so two protocols are never
merged silently. :class:`ModelEntry` is one ranked model (a ``--model`` spec and how to load it).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shiftattack.errors import SpecError

__all__ = ["METRICS", "ModelEntry", "Protocol", "parse_entries", "read_entries"]

#: leaderboard metrics: name -> (higher is better, what it is)
METRICS: dict[str, tuple[bool, str]] = {
    "clean_accuracy": (True, "top-1 accuracy on the unshifted images"),
    "worst_case_circular": (True, "exact worst-case accuracy over grid:K, circular shifts"),
    "worst_case_crop": (
        True,
        "exact worst-case accuracy over grid:K, crops of the image size from a canvas padded by K (zero)",
    ),
    "consistency": (True, "percent of random pairs of crops (content shifts within K) with the same top-1"),
    "flip_rate": (
        False,
        "percent of adjacent crop pairs (distance 1..D, three directions) whose top-1 differ",
    ),
    "certified_accuracy": (True, "exact certificate over grid:K, circular (every member enumerated)"),
    "corruption_error": (False, "mean top-1 error over the corruption suite's corruptions x severities"),
}


@dataclass(frozen=True)
class Protocol:
    """How every model of a leaderboard is scored.

    Attributes:
        radius: K of the shift grid ``grid:K`` ((2K+1)^2 integer shifts, px); also the canvas pad
            of crop mode and the largest content shift of the consistency pairs.
        consistency_repeats: random pairs per image for consistency (Zhang: 5).
        flip_distance: largest pair distance D of the flip rate (px, at most ``radius``).
        certify: add the exact certificate (circular, grid:K).
        corruptions: a corruption suite (``cifar10-c``, ``imagenet-c``) or None.
        corruption_severities: severities of the suite.
        corruption_limit: images per corruption x severity (the first of the class-balanced subset).
        seed: seed of every random draw (consistency pairs, corruption noise).
    """

    radius: int = 2
    consistency_repeats: int = 5
    flip_distance: int = 2
    certify: bool = False
    corruptions: str | None = None
    corruption_severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    corruption_limit: int = 500
    seed: int = 0
    version: int = field(default=1)

    def __post_init__(self) -> None:
        if not isinstance(self.radius, int) or self.radius < 1:
            raise SpecError(f"--radius must be a whole number >= 1, got {self.radius!r}")
        if not 1 <= self.flip_distance <= self.radius:
            raise SpecError(f"--flip-distance must be in 1..radius ({self.radius}), got {self.flip_distance}")
        if self.consistency_repeats < 1:
            raise SpecError(f"--consistency-repeats must be >= 1, got {self.consistency_repeats}")
        if (
            any(s not in (1, 2, 3, 4, 5) for s in self.corruption_severities)
            or not self.corruption_severities
        ):
            raise SpecError(f"severities must be among 1..5, got {self.corruption_severities}")

    @property
    def shifts(self) -> str:
        return f"grid:{self.radius}"

    def metrics(self) -> list[str]:
        """The metrics this protocol scores, in column order."""
        names = ["clean_accuracy", "worst_case_circular", "worst_case_crop", "consistency", "flip_rate"]
        return (
            names
            + (["certified_accuracy"] if self.certify else [])
            + (["corruption_error"] if self.corruptions else [])
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["corruption_severities"] = list(self.corruption_severities)
        out["shifts"] = self.shifts
        out["definitions"] = {m: METRICS[m][1] for m in self.metrics()}
        return out

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ModelEntry:
    """One model of a leaderboard: a name, a ``--model`` spec and how to load it."""

    name: str
    spec: str
    weights: str | None = None
    pretrained: bool = False
    antialias: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    random_weights: bool = False

    def load_options(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "pretrained": self.pretrained,
            "random_weights": self.random_weights,
            "antialias": self.antialias,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
        }


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _default_name(spec: str, weights: str | None, antialias: int | None) -> str:
    base = spec.split(":", 1)[1] if spec.startswith(("torchvision:", "timm:", "hf:")) else spec
    base = Path(base).name if "/" in base else base
    if weights:
        stem = Path(weights).stem  # a generic file name says less than its folder's
        generic = stem in ("model", "weights", "checkpoint", "pytorch_model", "best", "last")
        base += "@" + (Path(weights).parent.name or stem if generic else stem)
    return base + (f"+aa{antialias}" if antialias else "")


def _unique(entries: list[ModelEntry]) -> list[ModelEntry]:
    seen: dict[str, int] = {}
    out = []
    for e in entries:
        name = e.name
        if name in seen:
            seen[name] += 1
            name = f"{name}-{seen[e.name]}"
        else:
            seen[name] = 1
        out.append(ModelEntry(name, e.spec, e.weights, e.pretrained, e.antialias, e.mean, e.std, e.random_weights))
    return out


def parse_entries(
    models: list[str], *, pretrained: bool = False, antialias: int | None = None, random_weights: bool = False
) -> list[ModelEntry]:
    """``--model SPEC[@WEIGHTS]`` values (the weights file after the last ``@``) as entries."""
    entries = []
    for text in models:
        spec, sep, weights = text.rpartition("@")
        if not sep or not spec:
            spec, weights = text, ""
        if not spec:
            raise SpecError(f"--model {text!r}: expected SPEC or SPEC@WEIGHTS")
        entries.append(
            ModelEntry(
                _default_name(spec, weights or None, antialias),
                spec,
                weights or None,
                pretrained and not weights,
                antialias,
                random_weights=random_weights and not weights and not pretrained,
            )
        )
    return _unique(entries)


def _floats(text: str, column: str, path: Path) -> tuple[float, ...] | None:
    if not text.strip():
        return None
    try:
        return tuple(float(v) for v in re.split(r"[;, ]+", text.strip()))
    except ValueError:
        raise SpecError(f"{path}: column {column} must hold numbers separated by ';', got {text!r}") from None


def read_entries(path: str | Path) -> list[ModelEntry]:
    """Entries from a CSV (columns ``spec`` and optional ``name, weights, pretrained, antialias, mean,
    std``; mean/std as ``0.485;0.456;0.406``) or a JSON list of objects with those keys.

    Relative weights paths are taken relative to the file's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"--models file not found: {path}")
    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(path.read_text())
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise SpecError(f"{path} must hold a JSON list of objects with a 'spec' key each")
        else:
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
    except (OSError, ValueError, csv.Error) as exc:
        raise SpecError(f"cannot read --models file {path}: {exc}") from None
    known = {"name", "spec", "weights", "pretrained", "antialias", "mean", "std", "random_weights"}
    entries = []
    for i, row in enumerate(rows, start=1):
        unknown = set(row) - known
        if unknown:
            raise SpecError(f"{path}: row {i} has unknown columns {sorted(unknown)}; known: {sorted(known)}")
        spec = str(row.get("spec") or "").strip()
        if not spec:
            raise SpecError(f"{path}: row {i} has no spec")
        weights = str(row.get("weights") or "").strip() or None
        if weights and not Path(weights).is_absolute():
            weights = str(path.parent / weights)
        aa_text = str(row.get("antialias") or "").strip()
        try:
            aa = int(aa_text) if aa_text else None
        except ValueError:
            raise SpecError(
                f"{path}: row {i}: antialias must be a filter size 1-7, got {aa_text!r}"
            ) from None
        pre = str(row.get("pretrained") or "").strip().lower() in ("1", "true", "yes")
        mean = row.get("mean")
        std = row.get("std")
        mean = tuple(mean) if isinstance(mean, list) else _floats(str(mean or ""), "mean", path)
        std = tuple(std) if isinstance(std, list) else _floats(str(std or ""), "std", path)
        name = str(row.get("name") or "").strip() or _default_name(spec, weights, aa)
        rand = str(row.get("random_weights") or "").strip().lower() in ("1", "true", "yes")
        entries.append(ModelEntry(name, spec, weights, pre, aa, mean, std, rand))
    if not entries:
        raise SpecError(f"--models file {path} lists no models")
    return _unique(entries)
