"""The ``benchmark`` command: score a model on ImageNet-C/-P or CIFAR-10-C/-P.

Work is split into units (the clean pass, one unit per (corruption, severity) or
per perturbation); each finished unit is stored at once (:class:`UnitStore`), so
``--resume`` recomputes only units that had not finished. When every unit is
done, the counts are turned into the published metrics
(:mod:`shiftattack.metrics.corruption`) and written to ``results.json`` and
``results.csv``. No timings go into ``results.json``, so the same seed gives the
same file.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from shiftattack._progress import tqdm
from shiftattack._version import __version__
from shiftattack.corruptions import check_available, get_corruption, list_corruptions
from shiftattack.corruptions.perturbations import get_perturbation, list_perturbations
from shiftattack.data import LabeledImages, load_dataset
from shiftattack.errors import SpecError
from shiftattack.jobs.benchmark.generate import center_crop
from shiftattack.jobs.benchmark.scores import c_scores, p_scores
from shiftattack.jobs.benchmark.sources import (
    SUITES,
    Suite,
    c_unit_batches,
    check_source,
    p_unit_batches,
    p_unit_length,
)
from shiftattack.metrics.corruption import ALEXNET, Reference, flip_counts, load_reference, t5d_sums
from shiftattack.models import load_model, weights_sha256
from shiftattack.models.loading import check_weights_given
from shiftattack.runtime.batch_probe import probe_batch_size
from shiftattack.runtime.distributed import current, run_units
from shiftattack.runtime.engine import ModelRunner, resolve_device
from shiftattack.runtime.precision import describe as describe_precision
from shiftattack.runtime.results import check_output_dir, write_csv, write_json
from shiftattack.runtime.units import open_run

__all__ = ["BenchmarkConfig", "run_benchmark"]


@dataclass
class BenchmarkConfig:
    """Everything a benchmark run needs (the command line's options).

    ``normalizer``: ``alexnet`` (the published AlexNet errors / flip rates; ImageNet
    suites' default), ``none`` (CIFAR suites' default: no published normaliser
    exists), or a ``results.json`` of the same suite written by this command for a
    reference model. ``batch_size``: images per forward pass, or ``auto`` (a short probe on the first
    batch's images keeps the fastest size, :mod:`~shiftattack.runtime.batch_probe`); ``precision``:
    ``fp32``, ``bf16`` or ``fp16`` (the model under ``torch.autocast``; the scores are about the model
    at that precision).
    """

    suite: str
    model: str
    out: str
    data: str | None = None
    source: str = "generated"
    weights: str | None = None
    pretrained: bool = False
    antialias: int | None = None
    random_weights: bool = False
    trust_pickle: bool = False
    mean: list[float] | None = None
    std: list[float] | None = None
    names: list[str] = field(default_factory=lambda: ["*"])
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    difficulty: int = 1
    limit: int | None = None
    resize: int | None = None
    strict: bool = False
    batch_size: int | str = 256
    device: str = "auto"
    seed: int = 0
    precision: str = "fp32"
    normalizer: str | None = None
    overwrite: bool = False
    resume: bool = False


def _suite(name: str) -> Suite:
    if name not in SUITES:
        raise SpecError(f"unknown suite {name!r}; expected one of {', '.join(SUITES)}")
    return SUITES[name]


def _select(patterns: list[str], available: list[str], what: str) -> list[str]:
    chosen = [n for n in available if any(fnmatch.fnmatch(n, p) for p in patterns)]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatch(n, p) for n in available)]
    if unmatched or not chosen:
        raise SpecError(
            f"no {what} matches {', '.join(unmatched or patterns)}; available: {', '.join(available)}"
        )
    return chosen


def _normalizer(cfg: BenchmarkConfig, suite: Suite) -> Reference | None:
    choice = cfg.normalizer or ("alexnet" if suite.params == "imagenet" else "none")
    if choice == "none":
        return None
    if choice == "alexnet":
        return ALEXNET
    ref = load_reference(choice)
    if ref.suite != suite.name:
        raise SpecError(f"--normalizer {choice} holds {ref.suite} results; this run is {suite.name}")
    return ref


class _BatchSize:
    """The run's batch size: the one asked for, or for ``auto`` the probe's choice on the first images
    the model is given (the probe runs once per process; the scores do not depend on the size)."""

    def __init__(self, requested: int | str) -> None:
        self.requested = requested
        self.probe: dict | None = None

    def __call__(self, runner: ModelRunner, x: torch.Tensor) -> int:
        if self.requested != "auto":
            return int(self.requested)
        if self.probe is None:
            sample = x[:64].to(runner.device).float().div_(255)
            self.probe = probe_batch_size(runner, sample)
        return int(self.probe["batch_size"])

    def describe(self) -> dict[str, Any]:
        """``{"requested": 256 or "auto", "used": size or None, "inputs_per_second": the probe's}``."""
        used = int(self.requested) if self.requested != "auto" else (
            None if self.probe is None else int(self.probe["batch_size"]))
        doc: dict[str, Any] = {"requested": self.requested, "used": used}
        if self.probe is not None:
            doc["probe_inputs_per_second"] = self.probe["inputs_per_second"]
        return doc


def _predict(runner: ModelRunner, x: torch.Tensor, batch_size: int | _BatchSize) -> torch.Tensor:
    """Logits (n, K) for uint8 (n, 3, h, w) images, ``batch_size`` at a time, on the CPU."""
    if isinstance(batch_size, _BatchSize):
        batch_size = batch_size(runner, x)
    out = []
    for start in range(0, x.shape[0], batch_size):
        batch = x[start : start + batch_size].to(runner.device, non_blocking=True).float().div_(255)
        out.append(runner(batch).float().cpu())
    return torch.cat(out) if out else torch.empty(0, runner.num_classes or 0)


def _identity(cfg: BenchmarkConfig, clean: LabeledImages | None) -> dict[str, Any]:
    keep = (
        "suite",
        "model",
        "weights",
        "pretrained",
        "antialias",
        "mean",
        "std",
        "data",
        "source",
        "difficulty",
        "limit",
        "resize",
        "seed",
        "precision",
    )
    ident = {k: v for k, v in asdict(cfg).items() if k in keep}
    # a file replaced in place differs
    ident["weights_sha256"] = weights_sha256(cfg.model, cfg.weights, cfg.pretrained)
    ident["data_fingerprint"] = clean.fingerprint() if clean is not None else None
    return ident


def run_benchmark(cfg: BenchmarkConfig, progress: bool = True) -> dict[str, Any] | None:
    """Run (or resume) a benchmark; write ``results.json`` and ``results.csv``; return the document.

    Under ``torchrun`` the units are shared among the processes; rank 0 writes the
    files and returns the document, the other ranks return None.
    """
    suite = _suite(cfg.suite)
    source = check_source(cfg.source)
    if source == "generated" and cfg.data is None:
        raise SpecError(
            "--source generated (the default) corrupts the clean images of --data; give --data, "
            "or --source FOLDER with the published files"
        )
    if suite.kind == "c":
        names = _select(cfg.names, list_corruptions(), "corruption")
        if source == "generated":  # frost's photographs: before any unit, not at the frost unit
            check_available(names)
        bad = [s for s in cfg.severities if s not in (1, 2, 3, 4, 5)]
        if bad or not cfg.severities:
            raise SpecError(f"severities must be among 1..5, got {cfg.severities}")
        severities = sorted(set(cfg.severities))
    else:
        names = _select(cfg.names, list_perturbations(), "perturbation")
        if cfg.difficulty not in (1, 2, 3):
            raise SpecError(f"difficulty must be 1, 2 or 3, got {cfg.difficulty}")
        severities = []
    if not cfg.resume:
        check_output_dir(cfg.out, cfg.overwrite)
    check_weights_given(cfg.model, cfg.weights, cfg.pretrained, cfg.random_weights)
    reference = _normalizer(cfg, suite)
    ctx = current()
    show = progress and ctx.is_main
    device = resolve_device(ctx.device(cfg.device))
    model = load_model(cfg.model, cfg.weights, cfg.mean, cfg.std, trust_pickle=cfg.trust_pickle,
                       pretrained=cfg.pretrained, antialias=cfg.antialias,
                       init_seed=0 if cfg.random_weights else None)
    model = ctx.sync_model(model)
    if cfg.batch_size != "auto" and (not isinstance(cfg.batch_size, int) or cfg.batch_size < 1):
        raise SpecError(f"batch size must be a positive whole number or auto, got {cfg.batch_size!r}")
    runner = ModelRunner(model, device, precision=cfg.precision)
    sizes = _BatchSize(cfg.batch_size)
    clean = None
    if cfg.data is not None:
        resize = cfg.resize or (suite.resize if source == "generated" else None)
        clean = load_dataset(cfg.data, limit=cfg.limit, progress=show, resize=resize, strict=cfg.strict)
        if len(clean) == 0:
            raise SpecError(f"{cfg.data} holds no images")
    if clean is not None:  # labels against the model's classes, before the output folder is made
        probe = center_crop(clean.images[:1], suite.crop).float().div_(255)
        runner.check_labels(clean.labels, probe)
    out, store = open_run(cfg.out, _identity(cfg, clean), overwrite=True, resume=cfg.resume, ctx=ctx)
    with store.undo_on_failure():  # a failure before the first unit leaves no folder behind
        if suite.kind == "c":
            units = _c_units(cfg, suite, names, severities, clean, source, runner, sizes, store, ctx, show)
        else:
            units = _p_units(cfg, suite, names, clean, source, runner, sizes, store, device, ctx, show)
    if units is None:
        return None
    if suite.kind == "c":
        doc = c_scores(units, names, severities, reference)
    else:
        doc = p_scores(units, names, cfg.difficulty, reference)
    doc = {
        "suite": suite.name,
        **doc,
        "model": {"spec": cfg.model, "weights": cfg.weights, "pretrained": cfg.pretrained,
                  "random_weights": cfg.random_weights,
                  "antialias": cfg.antialias, "mean": cfg.mean, "std": cfg.std,
                  "weights_sha256": weights_sha256(cfg.model, cfg.weights, cfg.pretrained)},
        "data": {
            "spec": cfg.data,
            "source": source,
            "limit": cfg.limit,
            "n_images": len(clean) if clean is not None else None,
            "seed": cfg.seed,
            "warnings": clean.warnings if clean is not None else [],
        },
        "versions": {"shiftattack": __version__, "torch": torch.__version__},
        "precision": describe_precision(cfg.precision, device),
        "batch_size": sizes.describe(),
    }
    write_json(out / "results.json", doc)
    _write_csv(out, suite, doc)
    return doc


def _c_units(cfg, suite, names, severities, clean, source, runner, sizes, store, ctx,
             show) -> dict[str, Any] | None:
    keys = (["clean"] if clean is not None else []) + [f"{n}__s{s}" for n in names for s in severities]
    n_img = len(clean) if clean is not None else None

    def compute(key: str, tick) -> dict[str, Any]:
        if key == "clean":
            batches = (
                (clean.images[s : s + 1000], clean.labels[s : s + 1000]) for s in range(0, len(clean), 1000)
            )
            if suite.crop is not None:
                batches = ((center_crop(x, suite.crop), y) for x, y in batches)
        else:
            name, sev = key.split("__s")
            get_corruption(name)
            batches = c_unit_batches(
                suite,
                name,
                int(sev),
                clean=clean,
                source=source,
                limit=cfg.limit,
                seed=cfg.seed,
                device=runner.device,
            )
        n = correct = 0
        for x, y in batches:
            pred = _predict(runner, x, sizes).argmax(1)
            correct += int((pred == y).sum())
            n += int(y.numel())
            if n_img:
                tick(int(y.numel()))
        return {"n": n, "correct": correct, "error": 1 - correct / n if n else None}

    bar = None
    if ctx.is_main:
        bar = tqdm(total=len(keys) * n_img if n_img else len(keys), unit="img" if n_img else "unit",
                   disable=not show, desc=suite.name)
    units = run_units(keys, compute, stored=store.get, store=store.put, ctx=ctx, bar=bar,
                      weight=lambda key: n_img or 1)
    if bar is not None:
        bar.close()
    return units


def _p_units(cfg, suite, names, clean, source, runner, sizes, store, device, ctx,
             show) -> dict[str, Any] | None:
    lengths = {
        n: p_unit_length(suite, n, clean=clean, source=source, limit=cfg.limit, difficulty=cfg.difficulty)
        for n in names
    }

    def compute(name: str, tick) -> dict[str, Any]:
        noise = get_perturbation(name).noise
        flips = pairs = 0
        t5d = 0.0
        t5d_pairs = n = t = 0
        for frames in p_unit_batches(
            suite,
            name,
            clean=clean,
            source=source,
            limit=cfg.limit,
            difficulty=cfg.difficulty,
            seed=cfg.seed,
            device=device,
        ):
            b, t = frames.shape[:2]
            logits = _predict(runner, frames.flatten(0, 1), sizes).view(b, t, -1)
            f, p = flip_counts(logits.argmax(-1), noise=noise, difficulty=cfg.difficulty)
            d, q = t5d_sums(logits, noise=noise, difficulty=cfg.difficulty)
            flips, pairs, t5d, t5d_pairs, n = flips + f, pairs + p, t5d + d, t5d_pairs + q, n + b
            tick(b)
        return {
            "n": n,
            "frames": t if n else None,
            "flips": flips,
            "pairs": pairs,
            "t5d_sum": t5d,
            "t5d_pairs": t5d_pairs,
        }

    bar = None
    if ctx.is_main:
        bar = tqdm(total=sum(lengths.values()), unit="seq", disable=not show, desc=suite.name)
    units = run_units(list(names), compute, stored=store.get, store=store.put, ctx=ctx, bar=bar,
                      weight=lambda name: lengths[name])
    if bar is not None:
        bar.close()
    return units


def _write_csv(out: Path, suite: Suite, doc: dict[str, Any]) -> None:
    if suite.kind == "c":
        header = ["corruption", "severity", "error", "n_images", "held_out"]
        rows = [
            [name, s, f"{e:.6f}", r["n_images"], int(r["held_out"])]
            for name, r in doc["corruptions"].items()
            for s, e in zip(r["severities"], r["errors"], strict=True)
        ]
        if doc.get("clean_error") is not None:
            rows.insert(0, ["clean", 0, f"{doc['clean_error']:.6f}", doc["n_images"], 0])
    else:
        header = ["perturbation", "difficulty", "fp", "ut5d", "fr", "t5d", "n_sequences", "held_out"]
        rows = [
            [
                name,
                doc["difficulty"],
                f"{r['fp']:.6f}",
                f"{r['ut5d']:.6f}",
                "" if r["fr"] is None else f"{r['fr']:.6f}",
                "" if r["t5d"] is None else f"{r['t5d']:.6f}",
                r["n_sequences"],
                int(r["held_out"]),
            ]
            for name, r in doc["perturbations"].items()
        ]
    write_csv(out / "results.csv", header, rows)
