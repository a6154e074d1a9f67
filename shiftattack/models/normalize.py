"""Input normalisation inside a model, without changing its ``state_dict``.

Registered models take (N, 3, H, W) floats in [0, 1]; weights trained on
standardised inputs expect ``(x - mean) / std``. :func:`add_input_normalization`
adds that to the module itself: two non-persistent buffers (they follow
``.to(device)`` and are not saved) and a forward pre-hook (a module-level
function, so ``copy.deepcopy`` and ``pickle`` keep it) that also checks the
input's shape and minimum size with a clear :class:`~shiftattack.errors.ShapeError`.
``state_dict()`` keys stay those of the wrapped architecture, so published
weights load as they are. Calling a submodule directly skips the normalisation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from shiftattack.errors import ShapeError, SpecError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CIFAR10_MEAN", "CIFAR10_STD", "add_input_normalization",
           "set_input_normalization"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def add_input_normalization(
    model: nn.Module,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    min_size: int = 1,
) -> nn.Module:
    """Make ``model`` take [0, 1] images: normalise in a forward pre-hook, in place.

    Adds non-persistent buffers ``input_mean`` and ``input_std`` (1, C, 1, 1), an
    attribute ``min_input_size`` and the pre-hook; ``state_dict`` keys do not change.

    Args:
        model: expects (N, C, H, W) normalised input.
        mean, std: per-channel statistics, C values each (std > 0).
        min_size: smallest H and W accepted; smaller inputs raise ShapeError.

    Returns:
        ``model`` itself, now mapping (N, C, H, W) floats in [0, 1] to its output.
    """
    if hasattr(model, "input_mean"):
        raise SpecError("model already normalises its input (it has an input_mean buffer)")
    _register_stats(model, mean, std)
    model.min_input_size = int(min_size)
    model.register_forward_pre_hook(_normalize_input)
    return model


def set_input_normalization(model: nn.Module, mean, std) -> None:
    """Replace the statistics of a model :func:`add_input_normalization` made (same channel count).

    Raises:
        SpecError: a count other than the model's channels, or std <= 0.
    """
    channels = model.input_mean.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise SpecError(f"--mean and --std need {channels} values each (std > 0), got {list(mean)} and "
                        f"{list(std)}")
    _register_stats(model, mean, std)


def _register_stats(model: nn.Module, mean, std) -> None:
    """The non-persistent (1, C, 1, 1) buffers ``input_mean`` and ``input_std`` (std > 0 checked)."""
    if len(mean) != len(std) or any(s <= 0 for s in std):
        raise SpecError(f"mean and std need one value per channel and std > 0, got {mean!r} and {std!r}")
    model.register_buffer("input_mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1),
                          persistent=False)
    model.register_buffer("input_std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1),
                          persistent=False)


def _normalize_input(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: check (N, C, H, W) and H, W >= module.min_input_size, then normalise."""
    if not args or not isinstance(args[0], Tensor):
        raise ShapeError(f"{type(module).__name__} expects a tensor of shape (N, C, H, W) in [0, 1]")
    x = args[0]
    channels, min_size = module.input_mean.shape[1], module.min_input_size
    if x.dim() != 4 or x.shape[1] != channels or not x.is_floating_point():
        raise ShapeError(f"{type(module).__name__} expects float images of shape (N, {channels}, H, W) in "
                         f"[0, 1], got {tuple(x.shape)} of dtype {x.dtype}")
    if x.shape[-2] < min_size or x.shape[-1] < min_size:
        raise ShapeError(f"{type(module).__name__} needs inputs of at least {min_size}x{min_size} pixels, "
                         f"got {x.shape[-2]}x{x.shape[-1]}; upsample the images, or use a model with fewer "
                         "subsamplings (anti-aliased zoo models: pad_mode='zero'; see "
                         "shiftattack.models.zoo.MIN_INPUT_SIZE)")
    x = (x - module.input_mean.to(x.dtype)) / module.input_std.to(x.dtype)
    return (x, *args[1:])
