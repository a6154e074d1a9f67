"""The ``attack`` job: attack the images chunk by chunk (resumable, shardable), write results.json.

Images are attacked in chunks of ``chunk_size`` (default 500); each finished chunk's
per-image records go to ``DIR/units/`` at once (:class:`~shiftattack.runtime.units.UnitStore`),
so after a crash ``--resume`` redoes only the chunks that were running. Under
``torchrun`` the chunks are shared among the processes (:mod:`shiftattack.runtime.distributed`).
A chunk's result depends only on its images and the run's options (random draws use a
seed derived from the run seed and the chunk), so the file is the same for any number of
processes and for an interrupted and resumed run. No wall-clock time goes into
``results.json`` (it goes to ``DIR/timing.json``), so the same inputs give the same bytes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from shiftattack._progress import tqdm
from shiftattack._version import __version__
from shiftattack.api import make_attack, make_canvas
from shiftattack.attacks import AttackResult, VerificationError
from shiftattack.certify.document import state_sha256
from shiftattack.data import load_dataset
from shiftattack.errors import DataError, NonFiniteLogits, SpecError, check_images
from shiftattack.jobs.config import RunConfig
from shiftattack.models import load_model, weights_sha256
from shiftattack.models.loading import check_weights_given
from shiftattack.runtime.batch_probe import probe_batch_size
from shiftattack.runtime.distributed import current, run_units
from shiftattack.runtime.engine import ModelRunner, resolve_device
from shiftattack.runtime.precision import describe as describe_precision
from shiftattack.runtime.results import check_output_dir, write_csv, write_json
from shiftattack.runtime.timing import UnitClock
from shiftattack.runtime.units import open_run, unit_seed
from shiftattack.shifts.threats import ThreatModel, command_crop_size, parse_shifts

__all__ = ["AttackConfig", "run_attack"]


@dataclass(kw_only=True)
class AttackConfig(RunConfig):
    """Everything an attack run needs (the command line's options); see ``shiftattack attack --help``.

    Besides :class:`~shiftattack.jobs.config.RunConfig`'s fields: the sub-pixel ``interp``, the
    search (``method``, ``early_exit``, ``order``, ``steps``, ``restarts``) and speed options.
    """

    interp: str = "exact"
    method: str = "auto"
    early_exit: bool = True
    order: str = "adaptive"
    steps: int = 10
    restarts: int = 3
    channels_last: bool = False
    compile: bool = False


def _threat(cfg: AttackConfig, size: tuple[int, int]) -> ThreatModel:
    shift_set = parse_shifts(cfg.shifts)
    crop = cfg.crop_size
    if cfg.mode == "crop":
        crop = command_crop_size(shift_set, size, cfg.canvas_pad, cfg.crop_size)
    return ThreatModel(shift_set, mode=cfg.mode, interpolation=cfg.interp, fill=cfg.fill, crop_size=crop)


def _search_kwargs(cfg: AttackConfig, seed: int) -> dict[str, Any]:
    method = cfg.method
    if method in ("auto", "grid"):
        if cfg.shifts.startswith("random"):
            return {"seed": seed}
        return {"early_exit": cfg.early_exit, "order": cfg.order}
    if method == "random":
        return {"seed": seed}
    if method == "gradient":
        return {"seed": seed, "steps": cfg.steps, "restarts": cfg.restarts}
    return {}


def _identity(cfg: AttackConfig, data, model) -> dict[str, Any]:
    """What the stored units depend on: the options, the weights file's, the parameters' and the data's
    content (the parameters: a factory that initialises at random builds another model each time)."""
    keep = {k: v for k, v in asdict(cfg).items() if k not in ("out", "overwrite", "resume", "device")}
    weights = weights_sha256(cfg.model, cfg.weights, cfg.pretrained)  # a file replaced in place differs
    return {**keep, "weights_sha256": weights, "state_sha256": state_sha256(model),
            "data_fingerprint": data.fingerprint(), "version": __version__}


def _check_inputs(threat: ThreatModel, runner: ModelRunner, images: torch.Tensor,
                  labels: torch.Tensor, first_index: int = 0) -> None:
    """What would fail inside the first chunk, checked before the output folder is made.

    Pixel range and finiteness, the shifts against the image size, and the labels
    against the model's classes (one forward pass on the first image, unshifted).
    """
    check_images(images)
    threat.check_fits(images.shape[-2], images.shape[-1])
    dev = runner.device
    probe = threat.apply_to(images[:1].to(dev, runner.dtype), torch.zeros(1, dtype=torch.long, device=dev),
                            torch.zeros(1, 3, dtype=torch.float64, device=dev))
    try:
        runner.check_labels(labels, probe)
    except NonFiniteLogits as exc:
        raise exc.at(first_index, (0, 0)) from None


def _batch_size(cfg: AttackConfig, runner: ModelRunner, threat: ThreatModel, sample: torch.Tensor, store,
                ctx) -> tuple[int, dict | None]:
    """The batch size of the run: ``cfg.batch_size``, or for ``auto`` the fastest of a short probe on
    the run's own model inputs (:mod:`~shiftattack.runtime.batch_probe`), rank 0's on every rank.

    The choice is kept in ``units/batch_size.probe`` (JSON), so ``--resume`` goes on with it (a different
    batch composition could change a margin's last bits). Returns ``(size, probe or None)``.
    """
    if cfg.batch_size != "auto":
        return int(cfg.batch_size), None
    kept = store.dir / "batch_size.probe"  # JSON, but not *.json: it is not a finished unit
    probe = json.loads(kept.read_text()) if cfg.resume and kept.is_file() else None
    if probe is None and ctx.is_main:
        n = sample.shape[0]
        inputs = threat.apply_to(sample.to(runner.device, runner.dtype), torch.arange(n, device=runner.device),
                                 torch.zeros(n, 3, dtype=torch.float64, device=runner.device))
        probe = probe_batch_size(runner, inputs)
        write_json(kept, probe)
    probe = ctx.broadcast(probe)
    return int(probe["batch_size"]), probe


def _chunk_record(result: AttackResult, indices: torch.Tensor) -> dict[str, Any]:
    radius = None if result.fooled_radius is None else [
        None if math.isinf(r) else r for r in result.fooled_radius.tolist()]
    return {"images": result.image_records(indices), "fooled_radius": radius,
            "n_reverified": result.n_reverified}


def merge_chunks(threat: ThreatModel, attack: str, exact: bool, info: dict,
                 chunks: list[dict], precision: dict | None = None) -> AttackResult:
    """One :class:`AttackResult` from the stored records of every chunk, in order (``precision``:
    :func:`~shiftattack.runtime.precision.describe` of the runs' model evaluations, default fp32)."""
    records = [r for c in chunks for r in c["images"]]
    params = torch.zeros(len(records), 3, dtype=torch.float64)
    for i, r in enumerate(records):
        params[i, : len(r["worst_shift"])] = torch.tensor(r["worst_shift"], dtype=torch.float64)
    radii = None
    if all(c["fooled_radius"] is not None for c in chunks):
        radii = torch.tensor([math.inf if v is None else v for c in chunks for v in c["fooled_radius"]],
                             dtype=torch.float64)
    return AttackResult(
        attack=attack, threat=threat,
        labels=torch.tensor([r["label"] for r in records], dtype=torch.long),
        clean_pred=torch.tensor([r["clean_pred"] for r in records], dtype=torch.long),
        robust=torch.tensor([r["robust"] for r in records], dtype=torch.bool),
        worst_params=params,
        worst_margin=torch.tensor([r["worst_margin"] for r in records], dtype=torch.float64),
        n_evaluated=torch.tensor([r["n_evaluated"] for r in records], dtype=torch.long),
        fooled_radius=radii, exact=exact, seconds=math.nan, info=info,
        **({} if precision is None else {"precision": precision}),
        n_reverified=None if any(c.get("n_reverified") is None for c in chunks)
        else sum(c["n_reverified"] for c in chunks),
    )


def run_attack(cfg: AttackConfig, progress: bool = True) -> dict[str, Any] | None:
    """Run (or resume) the attack job; write ``results.json``, ``results.csv`` and ``timing.json``.

    Returns the ``results.json`` document (with ``"_seconds"``, the wall time) on rank 0
    and None on the other ranks of a distributed run.
    """
    if cfg.chunk_size < 1:
        raise SpecError(f"chunk size must be >= 1, got {cfg.chunk_size}")
    check_weights_given(cfg.model, cfg.weights, cfg.pretrained, cfg.random_weights)
    check_output_dir(cfg.out, cfg.overwrite or cfg.resume)  # fail before the data are read
    ctx = current()
    start = time.perf_counter()
    show = progress and ctx.is_main
    device = resolve_device(ctx.device(cfg.device))
    data = load_dataset(cfg.data, limit=cfg.limit, progress=show, resize=cfg.resize, strict=cfg.strict)
    if len(data) == 0:
        raise DataError(f"{cfg.data} holds no images")
    if cfg.canvas_pad and cfg.mode != "crop":
        raise SpecError("--canvas-pad applies to --mode crop only")
    model = load_model(cfg.model, cfg.weights, cfg.mean, cfg.std, trust_pickle=cfg.trust_pickle,
                       pretrained=cfg.pretrained, antialias=cfg.antialias,
                       init_seed=0 if cfg.random_weights else None)
    ctx.sync_model(model)

    def images(lo: int, hi: int) -> torch.Tensor:
        """Float images lo:hi in [0, 1] (canvases in crop mode), made per chunk (the data stay uint8)."""
        x = data.float_images(lo, hi)
        return make_canvas(x, cfg.canvas_pad, cfg.canvas_pad_mode, cfg.fill) if cfg.mode == "crop" else x

    first = images(0, 1)
    threat = _threat(cfg, tuple(first.shape[-2:]))
    if cfg.batch_size != "auto":  # options checked before the output folder is made
        make_attack(threat, cfg.method, batch_size=cfg.batch_size, **_search_kwargs(cfg, cfg.seed))
    runner = ModelRunner(model, device, first.dtype, channels_last=cfg.channels_last, compile=cfg.compile,
                         precision=cfg.precision)
    _check_inputs(threat, runner, first, data.labels, int(data.indices[0]))
    path, store = open_run(cfg.out, _identity(cfg, data, model), overwrite=cfg.overwrite, resume=cfg.resume, ctx=ctx)
    with store.undo_on_failure():
        batch_size, probe = _batch_size(cfg, runner, threat, images(0, min(len(data), 64)), store, ctx)
    template = make_attack(threat, cfg.method, batch_size=batch_size, **_search_kwargs(cfg, cfg.seed))
    clock = UnitClock(ctx, passes=lambda chunk: sum(r["n_evaluated"] for r in chunk["images"]), start=start)
    n = len(data)
    starts = {f"chunk-{lo:08d}": lo for lo in range(0, n, cfg.chunk_size)}

    def compute(key: str, tick) -> dict[str, Any]:
        lo = starts[key]
        hi = min(lo + cfg.chunk_size, n)
        attack = make_attack(threat, cfg.method, batch_size=batch_size,
                             **_search_kwargs(cfg, unit_seed(cfg.seed, "attack", lo)))
        try:
            result = attack(runner, images(lo, hi), data.labels[lo:hi], progress=show)
        except VerificationError as exc:  # name the image by its index in the data, not in the chunk
            raise exc.renumbered(lo, data.indices) from None
        except NonFiniteLogits as exc:
            raise exc.renumbered(lo, data.indices) from None
        return _chunk_record(result, data.indices[lo:hi])

    bar = tqdm(total=n, unit="img", desc=f"attack {template.name}", disable=not show) if ctx.is_main else None
    with store.undo_on_failure():  # a failure before the first chunk leaves no folder behind
        chunks = run_units(list(starts), clock.wrap(compute), stored=store.get, store=store.put, ctx=ctx,
                           bar=bar, weight=lambda key: min(cfg.chunk_size, n - starts[key]))
    if bar is not None:
        bar.close()
    if chunks is None:
        return None
    chunks = clock.split(chunks)
    info = template.describe()
    if "seed" in info:
        info["seed_per_chunk"] = "unit_seed(seed, 'attack', first image of the chunk)"
    info["chunk_size"] = cfg.chunk_size
    info["batch_size"] = batch_size
    if probe is not None:
        info["batch_size_chosen_by"] = "--batch-size auto (the probe's figures are in timing.json)"
    result = merge_chunks(threat, template.name, template.exact, info, list(chunks.values()),
                          describe_precision(cfg.precision, device))
    doc = result.to_json(torch.tensor([r["index"] for c in chunks.values() for r in c["images"]]))
    doc["model"] = {"spec": cfg.model, "weights": cfg.weights, "pretrained": cfg.pretrained,
                    "random_weights": cfg.random_weights, "antialias": cfg.antialias, "mean": cfg.mean, "std": cfg.std,
                    "weights_sha256": weights_sha256(cfg.model, cfg.weights, cfg.pretrained)}
    doc["data"] = {"spec": cfg.data, "limit": cfg.limit, "resize": cfg.resize, "n_images": n,
                   "image_size": list(data.images.shape[-2:]), "warnings": data.warnings}
    doc["versions"] = {"shiftattack": __version__, "torch": torch.__version__}
    write_json(path / "results.json", doc)
    _write_csv(path / "results.csv", doc, threat.shifts.has_rotation, data)
    timing = clock.document(device=str(device), processes=ctx.world_size, units=len(starts),
                            units_computed_per_process=ctx.units_computed, batch_size_probe=probe)
    write_json(path / "timing.json", timing)
    doc["_seconds"] = time.perf_counter() - start
    doc["_timing"] = timing
    return doc


def _write_csv(path: Path, doc: dict[str, Any], rotation: bool, data) -> None:
    """One row per image; the last three columns say where it came from and name its classes."""
    header = ["index", "label", "clean_pred", "robust", "worst_dx", "worst_dy"]
    header += ["worst_angle", "worst_margin", "n_evaluated"] if rotation else ["worst_margin", "n_evaluated"]
    header += ["source", "true_class", "pred_class"]
    rows = ([r["index"], r["label"], r["clean_pred"], int(r["robust"]), *r["worst_shift"],
             f"{r['worst_margin']:.6g}", r["n_evaluated"], name, data.class_name(r["label"]),
             data.class_name(r["clean_pred"])]
            for r, name in zip(doc["images"], data.source_names(), strict=True))
    write_csv(path, header, rows)
