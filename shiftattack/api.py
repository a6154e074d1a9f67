"""One-call API: ``attack(model, images, labels, shifts=..., mode=...) -> AttackResult``.

The command line only parses arguments and calls these functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from shiftattack.attacks import (
    Attack,
    AttackResult,
    FoolboxSpatialAttack,
    GradientAttack,
    GridAttack,
    RandomAttack,
)
from shiftattack.errors import SpecError
from shiftattack.shifts.functional import INTEGER_MODES
from shiftattack.shifts.threats import ThreatModel, default_crop_size, parse_shifts

__all__ = ["ATTACKS", "attack", "make_attack", "make_canvas", "load_images_and_model"]

#: Attack names accepted by :func:`make_attack` (``auto``: grid for finite sets, random for random:).
ATTACKS = ("auto", "grid", "random", "gradient", "foolbox")


def make_canvas(images: Tensor, pad: int, mode: str = "zero", fill: float = 0.0) -> Tensor:
    """Pad images (N, C, H, W) by ``pad`` px on every side to make crop-mode canvases.

    ``mode`` is ``zero`` (fill value), ``reflect`` or ``replicate``. CIFAR-10's
    usual protocol is a 40x40 canvas (``pad=4``) around the 32x32 image.
    """
    if pad < 0:
        raise SpecError(f"canvas padding must be >= 0, got {pad}")
    if pad == 0:
        return images
    if mode not in INTEGER_MODES or mode == "circular":
        raise SpecError(f"canvas padding mode must be zero, reflect or replicate, got {mode!r}")
    if mode == "reflect" and pad >= min(images.shape[-2:]):
        raise SpecError(f"reflect padding of {pad} px needs images larger than {pad} px")
    if mode == "zero":
        return F.pad(images, (pad,) * 4, mode="constant", value=fill)
    return F.pad(images, (pad,) * 4, mode=mode)


def load_images_and_model(
    data: str,
    model: str,
    *,
    weights: str | None = None,
    mean=None,
    std=None,
    limit: int | None = None,
    resize: int | None = None,
    mode: str = "zero",
    canvas_pad: int = 0,
    canvas_pad_mode: str = "zero",
    fill: float = 0.0,
    progress: bool = False,
    trust_pickle: bool = False,
    strict: bool = False,
    pretrained: bool = False,
    antialias: int | None = None,
    init_seed: int | None = None,
):
    """Load a ``--data`` spec and a ``--model`` spec as the attack and certify commands take them.

    Returns ``(dataset, model, images)``: the :class:`~shiftattack.data.LabeledImages`, the model
    (eval mode, CPU) and float images (N, 3, H, W) in [0, 1], padded into canvases in crop mode.
    """
    from shiftattack.data import load_dataset
    from shiftattack.errors import ShiftAttackError
    from shiftattack.models import load_model

    dataset = load_dataset(data, limit=limit, progress=progress, resize=resize, strict=strict)
    if len(dataset) == 0:
        raise ShiftAttackError(f"{data} holds no images")
    net = load_model(model, weights, mean, std, trust_pickle=trust_pickle, pretrained=pretrained,
                     antialias=antialias, init_seed=init_seed)
    images = dataset.float_images()
    if mode == "crop":
        images = make_canvas(images, canvas_pad, canvas_pad_mode, fill)
    elif canvas_pad:
        raise SpecError("--canvas-pad applies to --mode crop only")
    return dataset, net, images


def make_attack(
    threat: ThreatModel,
    name: str = "auto",
    *,
    batch_size: int = 256,
    early_exit: bool = True,
    order: str = "adaptive",
    seed: int = 0,
    steps: int = 10,
    restarts: int = 3,
) -> Attack:
    """Build the attack ``name`` for ``threat`` with the relevant hyper-parameters."""
    kind = threat.shifts.kind
    if name == "auto":
        name = "random" if kind == "random" else "grid"
    if name == "grid":
        return GridAttack(threat, batch_size=batch_size, early_exit=early_exit, order=order)
    if name == "random":
        return RandomAttack(threat, batch_size=batch_size, seed=seed)
    if name == "gradient":
        return GradientAttack(threat, batch_size=batch_size, steps=steps, restarts=restarts, seed=seed)
    if name == "foolbox":
        if kind not in ("grid", "rotation") or threat.mode != "zero":
            raise SpecError("the foolbox SpatialAttack runs a zero-fill grid: use --shifts grid:K "
                            "or rt:K:DEG with --mode zero")
        sets = threat.shifts.params
        n_t = int(math.isqrt(int(sets[:, :2].unique(dim=0).shape[0])))
        n_r = int(sets[:, 2].unique().numel())
        return FoolboxSpatialAttack(max_translation=threat.shifts.radius, num_translations=n_t,
                                    max_rotation=threat.shifts.max_angle, num_rotations=n_r,
                                    batch_size=batch_size)
    raise SpecError(f"unknown attack {name!r}; expected one of {', '.join(ATTACKS)}")


def attack(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    labels: Tensor,
    *,
    shifts: str = "grid:3",
    mode: str = "zero",
    interpolation: str = "exact",
    fill: float = 0.0,
    crop_size: tuple[int, int] | None = None,
    method: str = "auto",
    batch_size: int = 256,
    device: str | torch.device = "auto",
    progress: bool = False,
    precision: str = "fp32",
    **kwargs,
) -> AttackResult:
    """Attack ``model`` with worst-case shifts and return the per-image result.

    Args:
        model: maps (N, 3, H, W) floats in [0, 1] to logits (N, classes).
        images: (N, 3, H, W) floats in [0, 1] (the canvases in crop mode).
        labels: (N,) integer labels.
        shifts: a shift-set spec (``grid:3``, ``random:3:10``, ``list:1,0;0,1``, ``engstrom``).
        mode: ``circular``, ``zero``, ``reflect``, ``replicate`` or ``crop``.
        interpolation: ``exact``, ``bilinear`` or ``fourier`` for sub-pixel members.
        fill: vacated value in zero mode.
        crop_size: model input (h, w) in crop mode (default: canvas minus 2 * radius).
        method: one of :data:`ATTACKS`.
        batch_size: (image, shift) pairs per forward pass.
        device: ``auto``, ``cpu``, ``cuda``...
        progress: show a progress bar.
        precision: ``fp32``, ``bf16`` or ``fp16``: run the model under ``torch.autocast`` with that
            dtype; the result (``result.precision``) is about the model at that precision.
        **kwargs: attack hyper-parameters (``early_exit``, ``order``, ``seed``,
            ``steps``, ``restarts``).

    Example:
        >>> import torch
        >>> from shiftattack import attack
        >>> from shiftattack.models import SmallCNN
        >>> net = SmallCNN(num_classes=10).eval()
        >>> result = attack(net, torch.rand(4, 3, 32, 32), torch.arange(4), shifts="grid:1", device="cpu")
        >>> result.n_images, result.threat.shifts.size
        (4, 9)
    """
    shift_set = parse_shifts(shifts)
    if mode == "crop" and crop_size is None:
        crop_size = default_crop_size(shift_set, tuple(images.shape[-2:]))
    threat = ThreatModel(shift_set, mode=mode, interpolation=interpolation, fill=fill, crop_size=crop_size)
    runner = make_attack(threat, method, batch_size=batch_size, **kwargs)
    return runner(model, images, labels, device=device, progress=progress, precision=precision)
