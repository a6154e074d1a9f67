"""The ``shiftattack train`` job: data in, a weights file, checkpoints and a JSON log out.

Writes into the output folder:

* ``model.pt`` — the final ``state_dict`` (load with ``torch.load(weights_only=True)``
  or ``--weights`` / ``create_model(name, weights=...)``);
* ``checkpoint.pt`` — weights plus optimiser, schedule and generator state after the
  last finished epoch (``--resume`` continues from it; also ``weights_only``-loadable);
* ``train_log.json`` — the configuration, one entry per epoch (loss, training
  accuracy, learning rate, seconds), the test accuracy at the end, the wall time,
  versions, the sha256 of ``model.pt`` and the normalised total variation of the
  first-layer kernels (:func:`~shiftattack.models.smoothness.filter_smoothness`).

Every file is written to a temporary name and renamed, so a killed run leaves the
last complete checkpoint and never a half-written file.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from shiftattack._version import __version__
from shiftattack.data import load_dataset
from shiftattack.errors import DataError, ModelError, OutputError, SpecError
from shiftattack.jobs.train_config import TrainConfig
from shiftattack.models import create_model, file_sha256, is_model, load_model
from shiftattack.models.antialias import antialias
from shiftattack.models.smoothness import filter_smoothness
from shiftattack.models.train import bf16_is_fast, evaluate_accuracy, train_classifier
from shiftattack.runtime.engine import resolve_device
from shiftattack.runtime.results import check_output_dir, open_output_dir, remove_if_empty, write_json, write_torch

__all__ = ["TrainConfig", "run_training", "default_test_spec"]


def default_test_spec(data: str) -> str | None:
    """``PATH:train`` -> ``PATH:test`` (the held-out split of the same source); otherwise None."""
    return data[: -len(":train")] + ":test" if data.endswith(":train") else None


def _num_classes(labels: torch.Tensor, classes: list[str] | None) -> int:
    return len(classes) if classes else int(labels.max()) + 1


def _build_model(cfg: TrainConfig, num_classes: int, sample: torch.Tensor) -> torch.nn.Module:
    """The model to train: registry models get ``num_classes`` outputs; others must give them.

    ``sample``: one (1, 3, H, W) float image, to count the outputs of a library or factory model.
    A timm model with another class count gets a new classifier (``reset_classifier``), as for
    fine-tuning published weights on a new dataset.
    """
    if is_model(cfg.model) and cfg.weights is None and not cfg.pretrained:
        model = create_model(cfg.model, num_classes=num_classes)
        return model if cfg.antialias is None else antialias(model, filter_size=cfg.antialias, inplace=True)
    model = load_model(cfg.model, cfg.weights, trust_pickle=cfg.trust_pickle, pretrained=cfg.pretrained,
                       antialias=cfg.antialias)
    with torch.no_grad():
        outputs = model.eval()(sample).shape[-1]
    if outputs != num_classes and hasattr(model, "reset_classifier"):
        model.reset_classifier(num_classes)
    elif outputs != num_classes:
        raise ModelError(f"{cfg.model} gives {outputs} logits but the data has {num_classes} classes; "
                         "give a model (or weights) with that many outputs")
    return model


def _smoothness(model: torch.nn.Module) -> dict[str, Any] | None:
    """Normalised total variation of the first convolution's kernels (None when there is none)."""
    try:
        return filter_smoothness(model)
    except ModelError:
        return None


def run_training(cfg: TrainConfig, progress: bool = True, log=print) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data`` and write the output folder; returns the log document.

    Raises:
        OutputError: the folder exists and is not empty (without ``overwrite`` or ``resume``),
            or ``resume`` finds no checkpoint.
        SpecError / DataError / ModelError: bad model or data specs.
    """
    if cfg.epochs < 1:
        raise SpecError(f"--epochs must be at least 1, got {cfg.epochs}")
    out = Path(cfg.out)
    checkpoint_path, log_path = out / "checkpoint.pt", out / "train_log.json"
    if cfg.resume:
        if not checkpoint_path.is_file():
            raise OutputError(f"--resume: no checkpoint at {checkpoint_path}")
    else:
        check_output_dir(out, cfg.overwrite)
    test_spec = cfg.test_data or default_test_spec(cfg.data)
    train = load_dataset(cfg.data, limit=cfg.limit, progress=progress)
    if len(train) == 0:
        raise DataError(f"{cfg.data} holds no images")
    test = load_dataset(test_spec, limit=cfg.test_limit, progress=progress) if test_spec else None
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = _build_model(cfg, _num_classes(train.labels, train.classes), train.images[:1].float().div(255))
    resume_state, epochs_log = None, []
    if cfg.resume:
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        resume_state = saved["train_state"]
        epochs_log = list(saved["log"])
        log(f"resuming after epoch {resume_state['epoch']} of {cfg.epochs}")
    fresh = not out.exists()
    path = open_output_dir(out, overwrite=True)
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if bf16_is_fast(device) else "fp32"
    header = {
        "config": {**asdict(cfg), "test_data": test_spec, "precision_used": precision},
        "data": {"train": {"spec": cfg.data, "n_images": len(train), "fingerprint": train.fingerprint()},
                 "test": None if test is None else {"spec": test_spec, "n_images": len(test),
                                                    "fingerprint": test.fingerprint()}},
        "environment": {"shiftattack": __version__, "torch": torch.__version__, "device": str(device),
                        "threads": torch.get_num_threads(), "machine": platform.machine()},
    }
    started = time.perf_counter() - sum(e["seconds"] for e in epochs_log)

    def on_epoch(info: dict[str, Any]) -> None:
        entry = {k: v for k, v in info.items() if k != "state"}
        epochs_log.append(entry)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        write_torch(checkpoint_path, {"model": state, "train_state": info["state"](), "log": epochs_log})
        write_json(log_path, {**header, "epochs": epochs_log, "finished": False})
        if progress:
            log(f"epoch {entry['epoch']}/{cfg.epochs}: loss {entry['loss']:.3f}, "
                f"train acc {entry['train_accuracy']:.3f}, {entry['seconds']:.0f} s")

    try:
        train_classifier(
            model, train.images, train.labels, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
            momentum=cfg.momentum, weight_decay=cfg.weight_decay, label_smoothing=cfg.label_smoothing,
            schedule=cfg.schedule, warmup=cfg.warmup, augment_pad=cfg.augment_pad, precision=precision,
            channels_last=cfg.channels_last, device=device, seed=cfg.seed, progress=progress,
            on_epoch=on_epoch, resume=resume_state,
        )
    except BaseException:  # before the first epoch's checkpoint: leave no folder behind
        if fresh:
            remove_if_empty(path)
        raise
    train_seconds = time.perf_counter() - started
    test_accuracy = None if test is None else evaluate_accuracy(model, test.images, test.labels)
    model_path = path / "model.pt"
    write_torch(model_path, {k: v.detach().cpu() for k, v in model.state_dict().items()})
    doc = {**header, "epochs": epochs_log, "finished": True, "train_seconds": train_seconds,
           "total_seconds": time.perf_counter() - started, "test_accuracy": test_accuracy,
           "weights": {"file": "model.pt", "sha256": file_sha256(model_path)},
           "filter_smoothness": _smoothness(model)}
    write_json(log_path, doc)
    if progress:
        acc = "no test split" if test_accuracy is None else f"test accuracy {test_accuracy:.4f}"
        log(f"trained {cfg.model} for {cfg.epochs} epochs in {train_seconds:.0f} s; {acc}; "
            f"wrote {model_path}")
    return doc

