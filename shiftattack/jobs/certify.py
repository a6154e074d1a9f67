"""The ``certify`` job: load model and data, certify chunk by chunk (resumable), write the certificate.

Images are certified in chunks of ``chunk_size``; each finished chunk's records go
to ``DIR/units/`` at once (:class:`~shiftattack.runtime.units.UnitStore`), so ``--resume``
redoes only the chunk that was running. When all chunks are done the records are
assembled into ``DIR/certificate.json`` (:mod:`.document`) and ``DIR/certificate.csv``.
No wall-clock time goes into the certificate, so the same inputs give the same file; times
go to ``DIR/timing.json`` (:mod:`~shiftattack.runtime.timing`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from shiftattack._progress import tqdm
from shiftattack._version import __version__
from shiftattack.api import load_images_and_model
from shiftattack.attacks import VerificationError
from shiftattack.certify.document import METHODS, seal, state_sha256
from shiftattack.certify.methods import build_threat, certify_chunk, check_model, curve, describe
from shiftattack.data.loaders import resolved_data_spec
from shiftattack.defaults import BOUND_ATTACK_STEP, BOUND_BATCH, BOUND_MAX_PIECES, BOUND_MIN_WIDTH, CHUNK_SIZE
from shiftattack.errors import ShiftAttackError, SpecError
from shiftattack.jobs.config import RunConfig
from shiftattack.models.loading import (
    check_weights_given,
    file_sha256,
    model_source,
    resolved_model_spec,
    weights_sha256,
)
from shiftattack.runtime.distributed import current, run_units
from shiftattack.runtime.engine import resolve_device
from shiftattack.runtime.precision import autocast_dtype, check_precision
from shiftattack.runtime.precision import describe as describe_precision
from shiftattack.runtime.results import check_output_dir, write_csv, write_json
from shiftattack.runtime.timing import UnitClock
from shiftattack.runtime.units import open_run

__all__ = ["CertifyConfig", "Inputs", "run_certify", "build_threat", "load_inputs", "config_from_document",
           "located_model"]


@dataclass(kw_only=True)
class CertifyConfig(RunConfig):
    """Everything a certify run needs (the command line's options); see ``shiftattack certify --help``.

    Besides :class:`~shiftattack.jobs.config.RunConfig`'s fields: the ``method`` and its settings
    (exact: ``order``; smooth: ``sigma``, ``n0``, ``n``, ``alpha``; bound: ``attack_step``,
    ``max_pieces``, ``min_width``, ``bound_batch``).
    """

    method: str
    order: str = "radius"
    sigma: float = 1.0
    n0: int = 100
    n: int = 1000
    alpha: float = 0.001
    attack_step: float = BOUND_ATTACK_STEP
    max_pieces: int = BOUND_MAX_PIECES
    min_width: float = BOUND_MIN_WIDTH
    bound_batch: int = BOUND_BATCH


@dataclass
class Inputs:
    """What a run (or its verification) loads: data, model, model inputs, threat, fingerprints."""

    data: Any
    model: torch.nn.Module
    images: torch.Tensor
    threat: Any
    fingerprints: dict[str, Any]


def load_inputs(cfg: CertifyConfig, progress: bool = False) -> Inputs:
    """Load the data and model of ``cfg``, build the canvases and threat, fingerprint both.

    ``images`` are (N, 3, H, W) floats in [0, 1] (the canvases in crop mode).
    """
    data, model, images = load_images_and_model(
        cfg.data, cfg.model, weights=cfg.weights, mean=cfg.mean, std=cfg.std, limit=cfg.limit,
        trust_pickle=cfg.trust_pickle, pretrained=cfg.pretrained, antialias=cfg.antialias,
        init_seed=0 if cfg.random_weights else None, strict=cfg.strict,
        resize=cfg.resize, mode=cfg.mode, canvas_pad=cfg.canvas_pad, canvas_pad_mode=cfg.canvas_pad_mode,
        fill=cfg.fill, progress=progress,
    )
    threat = build_threat(cfg, tuple(images.shape[-2:]))
    fingerprints = {
        "weights_sha256": weights_sha256(cfg.model, cfg.weights, cfg.pretrained),
        "state_sha256": state_sha256(model),
        "data_sha256": data.fingerprint(),
    }
    return Inputs(data, model, images, threat, fingerprints)


def config_from_document(doc: dict[str, Any], device: str = "auto",
                         trust_pickle: bool = False) -> CertifyConfig:
    """The configuration that produced a certificate (for ``verify``)."""
    m, d, t, meth = doc["model"], doc["data"], doc["threat"], doc["method"]
    try:
        return CertifyConfig(
            method=meth["name"],
            model=m["spec"],
            data=d["spec"],
            shifts=t["spec"],
            mode=t["mode"],
            out="",
            weights=m.get("weights"),
            pretrained=bool(m.get("pretrained", False)),
            random_weights=bool(m.get("random_weights", False)),
            antialias=m.get("antialias"),
            trust_pickle=trust_pickle,
            mean=m.get("mean"),
            std=m.get("std"),
            limit=d.get("limit"),
            resize=d.get("resize"),
            fill=t.get("fill", 0.0),
            crop_size=tuple(t["crop_size"]) if t.get("crop_size") else None,
            canvas_pad=d.get("canvas_pad", 0),
            canvas_pad_mode=d.get("canvas_pad_mode", "zero"),
            batch_size=meth.get("batch_size", 256),
            device=device,
            order=meth.get("order", "radius"),
            chunk_size=meth.get("chunk_size", CHUNK_SIZE),
            sigma=meth.get("sigma", 1.0),
            n0=meth.get("n0", 100),
            n=meth.get("n", 1000),
            alpha=meth.get("alpha", 0.001),
            seed=meth.get("seed", 0),
            attack_step=meth.get("attack_step", BOUND_ATTACK_STEP),
            max_pieces=meth.get("max_pieces", BOUND_MAX_PIECES),
            min_width=meth.get("min_width", BOUND_MIN_WIDTH),
            bound_batch=meth.get("bound_batch", BOUND_BATCH),
            precision=(doc.get("precision") or {}).get("name", "fp32"),
        )
    except (KeyError, TypeError) as exc:
        raise ShiftAttackError(f"the certificate does not say how it was made: missing {exc}") from None


def _identity(cfg: CertifyConfig, fingerprints: dict[str, Any]) -> dict[str, Any]:
    keep = {k: v for k, v in asdict(cfg).items() if k not in ("out", "overwrite", "resume", "device")}
    return {**keep, **fingerprints, "version": __version__}


def run_certify(cfg: CertifyConfig, progress: bool = True) -> dict[str, Any] | None:
    """Run the job described by ``cfg`` and return the certificate document it wrote.

    Under ``torchrun`` the chunks are shared among the processes and rank 0 writes the
    certificate; the other ranks return None.
    """
    if cfg.method not in METHODS:
        raise SpecError(f"unknown method {cfg.method!r}; expected one of {', '.join(METHODS)}")
    if cfg.chunk_size < 1:
        raise SpecError(f"chunk size must be >= 1, got {cfg.chunk_size}")
    autocast_dtype(cfg.precision)  # an unknown name is an error before anything is read
    if cfg.method == "bound" and cfg.precision != "fp32":
        raise SpecError(f"--method bound propagates bounds in float32, which is not sound for the model at "
                        f"--precision {cfg.precision}; use --precision fp32, or --method exact")
    check_weights_given(cfg.model, cfg.weights, cfg.pretrained, cfg.random_weights)
    check_output_dir(cfg.out, cfg.overwrite or cfg.resume)
    ctx = current()
    show = progress and ctx.is_main
    device = resolve_device(ctx.device(cfg.device))
    inputs = load_inputs(cfg, show)
    data, model, images, threat, fingerprints = (
        inputs.data,
        inputs.model,
        inputs.images,
        inputs.threat,
        inputs.fingerprints,
    )
    if not ctx.all_ok(fingerprints["state_sha256"] == ctx.broadcast(fingerprints["state_sha256"])):
        raise ShiftAttackError(
            "the processes loaded different models (a factory that initialises its network at random "
            "builds another one in each process); seed it in the factory or give --weights to certify "
            "under torchrun"
        )
    check_precision(cfg.precision, device)
    check_model(cfg, model, images, data.indices, threat, device)
    path, store = open_run(cfg.out, _identity(cfg, fingerprints), overwrite=cfg.overwrite,
                           resume=cfg.resume, ctx=ctx)
    start = time.perf_counter()
    clock = UnitClock(ctx, passes=lambda unit: sum(r["n_evaluated"] for r in unit["records"]), start=start)
    n = len(data)
    starts = {f"chunk-{lo:08d}": lo for lo in range(0, n, cfg.chunk_size)}

    def compute(key: str, tick) -> dict[str, Any]:
        lo = starts[key]
        hi = min(lo + cfg.chunk_size, n)
        try:
            chunk = certify_chunk(
                cfg, model, images[lo:hi], data.labels[lo:hi], data.indices[lo:hi], threat, device, show
            )
        except VerificationError as exc:  # name the image by its index in the data, not in the chunk
            raise exc.renumbered(lo, data.indices) from None
        return {"records": chunk}

    bar = tqdm(total=n, disable=not show, unit="img", desc=f"certify {cfg.method}") if ctx.is_main else None
    with store.undo_on_failure():  # a failure before the first chunk leaves no folder behind
        units = run_units(list(starts), clock.wrap(compute), stored=store.get, store=store.put, ctx=ctx,
                          bar=bar, weight=lambda key: min(cfg.chunk_size, n - starts[key]))
    if bar is not None:
        bar.close()
    if units is None:
        return None
    units = clock.split(units)
    records = [r for u in units.values() for r in u["records"]]
    doc = _document(cfg, threat, records, fingerprints, device, data)
    write_json(path / "certificate.json", doc)
    _write_csv(path / "certificate.csv", records, data)
    doc["_timing"] = clock.document(device=str(device), processes=ctx.world_size, units=len(starts),
                                    units_computed_per_process=ctx.units_computed)
    write_json(path / "timing.json", doc["_timing"])
    doc["_seconds"] = time.perf_counter() - start
    return doc


def _document(
    cfg: CertifyConfig,
    threat,
    records: list[dict],
    fingerprints: dict,
    device: torch.device,
    data,
) -> dict[str, Any]:
    n = len(records)
    certified = sum(r["certified"] for r in records)
    robust = sum(r["robust"] for r in records)
    method = describe(cfg, threat)
    doc = {
        "method": method,
        "certified_accuracy": certified / n,
        "clean_accuracy": sum(r["clean_pred"] == r["label"] for r in records) / n,
        "worst_case_accuracy": robust / n,
        "n_images": n,
        "threat": threat.to_json(),
        "certified_accuracy_vs_radius": curve(cfg, threat, records),
        "n_evaluated": sum(r["n_evaluated"] for r in records),
        "model": {
            "spec": cfg.model,
            "weights": cfg.weights,
            "pretrained": cfg.pretrained,
            "random_weights": cfg.random_weights,
            "antialias": cfg.antialias,
            "mean": cfg.mean,
            "std": cfg.std,
            "weights_sha256": fingerprints["weights_sha256"],
            "state_sha256": fingerprints["state_sha256"],
            **located_model(cfg.model, cfg.weights),
        },
        "data": {
            "spec": cfg.data,
            "limit": cfg.limit,
            "resize": cfg.resize,
            "n_images": n,
            "image_size": list(data.images.shape[-2:]),
            "sha256": fingerprints["data_sha256"],
            "resolved_spec": resolved_data_spec(cfg.data),
            "canvas_pad": cfg.canvas_pad,
            "canvas_pad_mode": cfg.canvas_pad_mode,
            "warnings": data.warnings,
        },
        "versions": {"shiftattack": __version__, "torch": torch.__version__},
        "device": str(device),
        "dtype": "float32",
        "precision": describe_precision(cfg.precision, device),
        "images": records,
    }
    if cfg.method == "smooth":  # no attack on the smoothed classifier: robust means certified
        doc["worst_case_accuracy"] = None
        doc["smoothed_accuracy"] = sum(r["smoothed_pred"] == r["label"] for r in records) / n
    elif certified > robust:  # cannot happen for a sound method; refuse to write such a file
        raise ShiftAttackError(
            f"internal error: {certified} images certified but only {robust} survive the attack"
        )
    return seal(doc)


def located_model(spec: str, weights: str | None) -> dict[str, Any]:
    """Where the model's files are, from any directory: its spec with local paths absolute, the
    weights file's absolute path, and the sha256 of a ``file.py`` spec's source (None when none)."""
    source = model_source(spec)
    return {
        "resolved_spec": resolved_model_spec(spec),
        "weights_path": None if weights is None else str(Path(weights).resolve()),
        "source_sha256": None if source is None else file_sha256(source),
    }


def _write_csv(path: Path, records: list[dict], data) -> None:
    """One row per image; the last three columns say where it came from and name its classes."""
    header = [
        "index",
        "label",
        "clean_pred",
        "certified",
        "robust",
        "worst_dx",
        "worst_dy",
        "worst_margin",
        "n_evaluated",
        "certified_radius",
    ]
    smooth = any("smoothed_pred" in r for r in records)
    if smooth:
        header.append("smoothed_pred")
    header += ["source", "true_class", "pred_class"]
    rows = (
        [
            r["index"],
            r["label"],
            r["clean_pred"],
            int(r["certified"]),
            int(r["robust"]),
            *r["worst_shift"][:2],
            "" if r["worst_margin"] is None else f"{r['worst_margin']:.6g}",
            r["n_evaluated"],
            "" if r.get("certified_radius") is None else r["certified_radius"],
            *([r["smoothed_pred"]] if smooth else []),
            name,
            data.class_name(r["label"]),
            data.class_name(r["clean_pred"]),
        ]
        for r, name in zip(records, data.source_names(), strict=True)
    )
    write_csv(path, header, rows)
