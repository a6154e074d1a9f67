"""Find the results documents of one or more runs: attack, certificate, corruption benchmark, training."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shiftattack.errors import DataError

__all__ = ["Entry", "collect", "model_name", "short_spec", "KINDS"]

#: the file names searched for in folders (what each holds is told by its keys)
_FILES = ("certificate.json", "results.json", "train_log.json", "stability.json")
KINDS = ("attack", "certificate", "corruption", "perturbation", "train", "stability")


@dataclass
class Entry:
    """One results document.

    Attributes:
        kind: one of :data:`KINDS`.
        path: the file it was read from.
        doc: the parsed JSON.
        label: a short name for legends: the model spec (a path's last part only, :func:`short_spec`),
            with the folder name when two differ only by it.
    """

    kind: str
    path: Path
    doc: dict
    label: str


def _kind(doc: dict) -> str | None:
    """What a document holds, from its keys (so renamed files are recognised too)."""
    if "certified_accuracy" in doc and "method" in doc:
        return "certificate"
    if "test_accuracy" in doc and "config" in doc:
        return "train"
    if "attack" in doc and "worst_case_accuracy" in doc:
        return "attack"
    if "suite" in doc and "corruptions" in doc:
        return "corruption"
    if "suite" in doc and "perturbations" in doc:
        return "perturbation"
    if "diagonal" in doc and "consistency" in doc:
        return "stability"
    return None


def short_spec(spec: str) -> str:
    """A model spec as a legend shows it: a path's last part (``/home/me/nets/net.py:make`` ->
    ``net.py:make``, ``hf:/data/vit`` -> ``hf:vit``); names and library specs unchanged."""
    prefix, sep, rest = spec.partition(":") if spec.startswith(("hf:", "timm:", "torchvision:")) else ("", "", spec)
    target, colon, name = rest.rpartition(":")
    if colon and target.endswith(".py"):
        rest = f"{Path(target).name}:{name}"
    elif rest.startswith(("/", ".", "~")) or rest.count("/") > 1 or "\\" in rest:  # a folder, not ORG/NAME
        rest = Path(rest).name or rest
    return f"{prefix}{sep}{rest}"


def _model_spec(kind: str, doc: dict) -> str:
    if kind == "train":
        return short_spec(str(doc.get("config", {}).get("model", "model")))
    model = doc.get("model")
    return short_spec(str(model.get("spec", "model")) if isinstance(model, dict) else str(model or "model"))


def model_name(e: Entry) -> str:
    """The model of an entry as tables and legends name it (without the folder the collector adds)."""
    return _model_spec(e.kind, e.doc)


def collect(paths: list[str | Path]) -> list[Entry]:
    """Every results document under ``paths`` (folders are searched recursively; files taken as they are).

    Raises:
        DataError: a path that does not exist, a file that is not JSON, or nothing found at all.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for name in _FILES for f in p.rglob(name) if "units" not in f.parts)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"no such results file or folder: {p}")
    entries = []
    for f in sorted(set(files)):
        try:
            doc = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{f} is not a readable JSON results file ({exc})") from None
        kind = _kind(doc) if isinstance(doc, dict) else None
        if kind is None:
            if f in map(Path, paths):
                raise DataError(
                    f"{f} is not a results document shiftattack writes (attack or benchmark results.json, "
                    "certificate.json, train_log.json or stability.json)"
                )
            continue
        entries.append(Entry(kind, f, doc, _model_spec(kind, doc)))
    if not entries:
        raise DataError(f"no results documents found under {', '.join(map(str, paths))}")
    _disambiguate(entries)
    return entries


def _disambiguate(entries: list[Entry]) -> None:
    """Same kind and model in several folders: add the folder name to the label."""
    seen: dict[tuple[str, str], int] = {}
    for e in entries:
        seen[(e.kind, e.label)] = seen.get((e.kind, e.label), 0) + 1
    for e in entries:
        if seen[(e.kind, e.label)] > 1:
            e.label = f"{e.label} ({e.path.parent.name})"
