"""The ``compare`` job: score many models on one dataset under one protocol and write a leaderboard.

Every (model, metric) pair is a unit stored in ``OUT/units/`` the moment it finishes, so
``--resume`` after an interruption (even ``kill -9``) recomputes at most the running units and
writes the same bytes; under ``torchrun`` the units are shared among the processes. The
folder's identity is the protocol and the data: a resumed or extended leaderboard (more
models) must use both unchanged, or it is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from shiftattack._progress import tqdm
from shiftattack._version import __version__
from shiftattack.data import load_dataset
from shiftattack.errors import DataError, SpecError
from shiftattack.jobs.compare.leaderboard import build_leaderboard, write_leaderboard
from shiftattack.jobs.compare.protocol import ModelEntry, Protocol
from shiftattack.jobs.compare.units import UNITS
from shiftattack.models import load_model, weights_sha256
from shiftattack.runtime.distributed import current, run_units
from shiftattack.runtime.engine import ModelRunner, resolve_device
from shiftattack.runtime.precision import check_precision
from shiftattack.runtime.precision import describe as describe_precision
from shiftattack.runtime.results import check_output_dir, write_json
from shiftattack.runtime.timing import UnitClock
from shiftattack.runtime.units import open_run
from shiftattack.shifts.threats import parse_shifts
from shiftattack.threats import ThreatModel

__all__ = ["CompareConfig", "run_compare"]


@dataclass(kw_only=True)
class CompareConfig:
    """What ``shiftattack compare`` runs.

    Attributes:
        entries: the models to rank (at least one, distinct names).
        data: a ``--data`` spec; limit, resize, strict: how to read it.
        out: the output folder; overwrite, resume: what to do with an existing one.
        protocol: how every model is scored.
        sort_by: the ranking metric.
        batch_size: (image, shift) pairs per forward pass; device: ``auto``, ``cpu``, ``cuda``.
        precision: ``fp32``, ``bf16`` or ``fp16``: every model runs under ``torch.autocast`` with that
            dtype, and the leaderboard ranks the models at that precision.
        trust_pickle: allow weights files that only full unpickling reads.
    """

    entries: list[ModelEntry]
    data: str
    out: str
    protocol: Protocol = field(default_factory=Protocol)
    sort_by: str = "worst_case_circular"
    limit: int | None = None
    resize: int | None = None
    strict: bool = False
    batch_size: int = 256
    device: str = "auto"
    precision: str = "fp32"
    trust_pickle: bool = False
    overwrite: bool = False
    resume: bool = False


def _unit_names(protocol: Protocol) -> list[str]:
    names = ["worst_case_circular", "worst_case_crop", "consistency", "flip_rate"]
    return (
        names
        + (["certified_accuracy"] if protocol.certify else [])
        + (["corruption_error"] if protocol.corruptions else [])
    )


def _model_key(entry: ModelEntry, sha: str | None) -> str:
    """A file-name-safe key of a model and how it is loaded (a changed file gives a new key)."""
    ident = json.dumps({"spec": entry.spec, **entry.load_options(), "sha256": sha}, sort_keys=True)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", entry.name)[:60]
    return f"{slug}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def _threats(protocol: Protocol, size: tuple[int, int]) -> dict[str, Any]:
    shifts = parse_shifts(protocol.shifts)
    threats = {
        "circular": ThreatModel(shifts, mode="circular").to_json(),
        "crop": {
            **ThreatModel(shifts, mode="crop", crop_size=size).to_json(),
            "canvas_pad": protocol.radius,
            "canvas_pad_mode": "zero",
        },
    }
    blob = json.dumps(threats, sort_keys=True).encode()
    return {"threats": threats, "threats_sha256": hashlib.sha256(blob).hexdigest()}


def _load(entry: ModelEntry, trust_pickle: bool) -> torch.nn.Module:
    return load_model(
        entry.spec,
        entry.weights,
        entry.mean,
        entry.std,
        trust_pickle=trust_pickle,
        pretrained=entry.pretrained,
        antialias=entry.antialias,
        init_seed=0 if entry.random_weights else None,
    )


def run_compare(cfg: CompareConfig, progress: bool = True) -> dict[str, Any] | None:
    """Score every model of ``cfg`` and write ``leaderboard.{json,csv,html}`` in ``cfg.out``.

    Returns the leaderboard document on rank 0 (None on other ranks).
    """
    if not cfg.entries:
        raise SpecError("compare needs at least one --model (or a --models file)")
    names = [e.name for e in cfg.entries]
    if len(set(names)) != len(names):
        raise SpecError(f"model names must be distinct, got {names}")
    if cfg.sort_by not in cfg.protocol.metrics():
        raise SpecError(f"--sort-by must be one of {', '.join(cfg.protocol.metrics())}, got {cfg.sort_by!r}")
    check_output_dir(cfg.out, cfg.overwrite or cfg.resume)
    ctx = current()
    show = progress and ctx.is_main
    start = time.perf_counter()
    data = load_dataset(cfg.data, limit=cfg.limit, progress=show, resize=cfg.resize, strict=cfg.strict)
    if len(data) == 0:
        raise DataError(f"{cfg.data} holds no images")
    images, labels = data.float_images(), data.labels
    fingerprints = {e.name: weights_sha256(e.spec, e.weights, e.pretrained) for e in cfg.entries}
    for entry in cfg.entries:  # every spec and weights file checked before any unit runs
        _load(entry, cfg.trust_pickle)
    device = resolve_device(ctx.device(cfg.device))
    check_precision(cfg.precision, device)
    header = {
        "data": {
            "spec": cfg.data,
            "limit": cfg.limit,
            "resize": cfg.resize,
            "n_images": len(data),
            "image_size": list(images.shape[-2:]),
            "fingerprint": data.fingerprint(),
            "warnings": data.warnings,
        },
        **_threats(cfg.protocol, tuple(images.shape[-2:])),
        "precision": describe_precision(cfg.precision, device),
        "version": __version__,
    }
    identity = {
        "job": "compare",
        "protocol": cfg.protocol.to_json(),
        "protocol_sha256": cfg.protocol.sha256(),
        "data": header["data"],
        "precision": cfg.precision,
        "version": __version__,
    }
    path, store = open_run(cfg.out, identity, overwrite=cfg.overwrite, resume=cfg.resume, ctx=ctx)
    clock = UnitClock(ctx, start=start)
    keyed = {e.name: _model_key(e, fingerprints[e.name]) for e in cfg.entries}
    units = _unit_names(cfg.protocol)
    keys = [f"{keyed[e.name]}--{u}" for e in cfg.entries for u in units]
    by_key = {f"{keyed[e.name]}--{u}": (e, u) for e in cfg.entries for u in units}
    loaded: dict[str, ModelRunner] = {}

    def runner_of(entry: ModelEntry) -> ModelRunner:
        if entry.name not in loaded:
            loaded.clear()
            loaded[entry.name] = ModelRunner(_load(entry, cfg.trust_pickle), device, torch.float32,
                                             precision=cfg.precision)
        return loaded[entry.name]

    def compute(key: str, tick) -> dict[str, Any]:
        entry, unit = by_key[key]
        if show:
            tqdm.write(f"[compare] {entry.name}: {unit}")
        return UNITS[unit](runner_of(entry), images, labels, cfg.protocol, cfg.batch_size)

    bar = tqdm(total=len(keys), unit="unit", desc="compare", disable=not show) if ctx.is_main else None
    with store.undo_on_failure():
        done = run_units(keys, clock.wrap(compute), stored=store.get, store=store.put, ctx=ctx, bar=bar)
    if bar is not None:
        bar.close()
    if done is None:
        return None
    done = clock.split(done)
    results = {e.name: {u: done[f"{keyed[e.name]}--{u}"] for u in units} for e in cfg.entries}
    doc = build_leaderboard(cfg.entries, results, fingerprints, cfg.protocol, header, cfg.sort_by)
    write_leaderboard(Path(path), doc)
    write_json(Path(path) / "timing.json", clock.document(
        device=str(device), batch_size=cfg.batch_size, processes=ctx.world_size,
        units_computed_per_process=ctx.units_computed))
    return doc
