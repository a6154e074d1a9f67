"""A small, deterministic supervised training loop (SGD, one-cycle or cosine schedule, flip + crop).

Enough to train the CIFAR-size models the tests, benchmarks and experiments need,
on the CPU or a GPU; it is not a general training framework. The command-line job
around it (files, logs, checkpoints) is :mod:`shiftattack.jobs.train`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shiftattack._progress import tqdm
from shiftattack.defaults import PRECISIONS, SCHEDULES
from shiftattack.errors import ShapeError, SpecError, check_shape

__all__ = ["train_classifier", "evaluate_accuracy", "augment", "bf16_is_fast", "PRECISIONS", "SCHEDULES"]



def augment(x: Tensor, pad: int, generator: torch.Generator, pad_mode: str = "zero") -> Tensor:
    """Random horizontal flip and random ``H x W`` crop of the image padded by ``pad`` px (per image).

    Args:
        x: (N, C, H, W) float images.
        pad: crop padding in pixels (0: flips only).
        generator: CPU generator drawing the flips and offsets.
        pad_mode: ``zero`` (torchvision's ``RandomCrop(padding=pad)``) or ``reflect``.

    Returns:
        (N, C, H, W) augmented copy.
    """
    n, c, h, w = x.shape
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if pad == 0:
        return x
    canvas = F.pad(x, (pad,) * 4) if pad_mode == "zero" else F.pad(x, (pad,) * 4, mode=pad_mode)
    top = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(n, c, h, w + 2 * pad)
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(n, c, h, w)
    return canvas.gather(2, rows).gather(3, cols)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast is the fast choice here: CUDA with bf16 support, or a CPU with AVX-512 BF16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def _as_float(x: Tensor, device: torch.device) -> Tensor:
    x = x.to(device, non_blocking=True)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def _schedule(opt: torch.optim.Optimizer, name: str, steps: int, warmup: float):
    if name == "onecycle":  # linear warm-up to lr, linear decay to 0
        rise = max(1, int(warmup * steps))

        def factor(step: int) -> float:
            return step / rise if step < rise else max(0.0, (steps - step) / max(1, steps - rise))
    elif name == "cosine":
        def factor(step: int) -> float:
            return 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    else:
        raise SpecError(f"schedule must be one of {', '.join(SCHEDULES)}, got {name!r}")
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def train_classifier(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.0,
    schedule: str = "onecycle",
    warmup: float = 0.25,
    augment_pad: int = 4,
    augment_pad_mode: str = "zero",
    precision: str = "fp32",
    channels_last: bool = False,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> nn.Module:
    """Train ``model`` in place with SGD (Nesterov momentum) and return it in eval mode.

    Args:
        model: a classifier mapping (N, C, H, W) in [0, 1] to logits.
        images: training images, uint8 (N, C, H, W) in 0..255 or float in [0, 1]
            (uint8 keeps memory at a quarter; batches are converted on the device).
        labels: (N,) int64.
        epochs: passes over the data.
        batch_size: images per step (the last, smaller batch of an epoch is dropped
            when it is under half a batch, which keeps BatchNorm statistics sane).
        lr: peak learning rate.
        weight_decay: L2 penalty (not applied to biases and BatchNorm parameters).
        label_smoothing: cross-entropy label smoothing.
        schedule: ``onecycle`` (linear warm-up for ``warmup`` of the steps, then linear
            decay to 0) or ``cosine``.
        augment_pad, augment_pad_mode: random-crop padding in pixels (0 disables crops;
            horizontal flips are always on) and how the border is filled.
        precision: ``fp32``, ``bf16`` (autocast) or ``auto`` (bf16 where :func:`bf16_is_fast`).
        channels_last: NHWC memory format (faster convolutions on recent CPUs and GPUs).
        device: where to train.
        seed: seeds the shuffling and the augmentation (the initial weights are the caller's).
        progress: show a progress bar.
        on_epoch: called after every epoch with ``{"epoch", "loss", "train_accuracy", "lr",
            "seconds", "state"}`` (training loss and accuracy are running means over the epoch;
            ``state()`` returns the optimiser, schedule and random-generator state to resume from).
        resume: a ``state()`` dict saved after some epoch, with the model's weights of that
            epoch already loaded: training continues with the next epoch, exactly as if it
            had not stopped.
    """
    check_shape(images, ["N", "C", "H", "W"], "images")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ShapeError(f"images must be uint8 or float, got {images.dtype}")
    if labels.shape != (images.shape[0],):
        raise ShapeError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    if precision not in PRECISIONS:
        raise SpecError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    use_bf16 = precision == "bf16" or (precision == "auto" and bf16_is_fast(device))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device=device, memory_format=fmt)
    gen = torch.Generator().manual_seed(seed)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=lr, momentum=momentum, nesterov=momentum > 0)
    n = images.shape[0]
    per_epoch = n // batch_size + (1 if n % batch_size >= max(1, batch_size // 2) else 0)
    per_epoch = max(per_epoch, 1)
    sched = _schedule(opt, schedule, epochs * per_epoch, warmup)
    labels = labels.to(device)
    first = 0
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        gen.set_state(resume["generator"])
        first = int(resume["epoch"])

    def state(epoch: int) -> dict[str, Any]:
        return copy.deepcopy({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                              "generator": gen.get_state(), "epoch": epoch})

    bar = tqdm(total=epochs * per_epoch, initial=first * per_epoch, disable=not progress, leave=False,
               desc="training", unit="step")
    for epoch in range(first, epochs):
        model.train()
        start, seen, correct, loss_sum = time.perf_counter(), 0, 0, 0.0
        order = torch.randperm(n, generator=gen)
        for step in range(per_epoch):
            idx = order[step * batch_size: (step + 1) * batch_size]
            x = augment(_as_float(images[idx], device), augment_pad, gen, augment_pad_mode)
            x = x.contiguous(memory_format=fmt)
            y = labels[idx.to(device)]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(idx)
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            bar.update(1)
            bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{loss_sum / seen:.3f}",
                            acc=f"{correct / seen:.3f}")
        if on_epoch is not None:
            on_epoch({"epoch": epoch + 1, "loss": loss_sum / seen, "train_accuracy": correct / seen,
                      "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - start,
                      "state": lambda e=epoch + 1: state(e)})
    bar.close()
    return model.to(memory_format=torch.contiguous_format).eval()


@torch.inference_mode()
def evaluate_accuracy(
    model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 512,
    device: torch.device | str | None = None,
) -> float:
    """Top-1 accuracy of ``model`` on (N, C, H, W) images (uint8 or float in [0, 1]), as a fraction.

    Runs in float32 on ``device`` (default: the model's).
    """
    model.eval()
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    correct = 0
    for s in range(0, images.shape[0], batch_size):
        x = _as_float(images[s: s + batch_size], device)
        correct += int((model(x).argmax(1).cpu() == labels[s: s + batch_size].cpu()).sum())
    return correct / max(images.shape[0], 1)
