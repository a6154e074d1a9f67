"""Name -> corruption function registry, with the published severity parameters per suite.

A corruption function takes ``(x, param, generator)`` with ``x`` float (N, 3, H, W)
in [0, 1] and one severity's parameter (a number or a tuple), and returns the
corrupted batch, same shape, clipped to [0, 1].
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from shiftattack.errors import SpecError

__all__ = ["Corruption", "register_corruption", "get_corruption", "list_corruptions", "SUITES"]

SUITES = ("imagenet", "cifar10")
# The published order: the 15 benchmark corruptions, then the 4 held-out ones (imagenet_c's numbering 0-18).
ORDER = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
         "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
         "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate")
CorruptionFn = Callable[[torch.Tensor, Any, "torch.Generator | None"], torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    """A registered corruption: its function, its five severities per suite, and its group."""

    name: str
    fn: CorruptionFn
    params: dict[str, tuple]
    group: str
    held_out: bool = False


_CORRUPTIONS: dict[str, Corruption] = {}


def register_corruption(name: str, *, imagenet: Sequence, cifar10: Sequence, group: str,
                        held_out: bool = False) -> Callable[[CorruptionFn], CorruptionFn]:
    """Decorator: register ``fn`` under ``name`` with severities 1..5 for each suite."""

    def add(fn: CorruptionFn) -> CorruptionFn:
        if name in _CORRUPTIONS:
            raise ValueError(f"corruption {name!r} is registered twice")
        params = {"imagenet": tuple(imagenet), "cifar10": tuple(cifar10)}
        if any(len(p) != 5 for p in params.values()):
            raise ValueError(f"{name}: need 5 severities per suite")
        _CORRUPTIONS[name] = Corruption(name, fn, params, group, held_out)
        return fn

    return add


def list_corruptions(pattern: str = "*", *, held_out: bool | None = None) -> list[str]:
    """Registered corruption names matching ``pattern``, in the benchmark's order.

    ``held_out=False`` keeps the 15 benchmark corruptions, ``True`` the 4 held-out ones.
    """
    names = sorted(_CORRUPTIONS, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return [n for n in names if fnmatch.fnmatch(n, pattern)
            and (held_out is None or _CORRUPTIONS[n].held_out == held_out)]


def get_corruption(name: str) -> Corruption:
    """The registered :class:`Corruption` called ``name`` (its function, severity parameters and group).

    Raises:
        SpecError: no corruption of that name (the message lists the registered ones).
    """
    if name not in _CORRUPTIONS:
        raise SpecError(f"unknown corruption {name!r}; available: {', '.join(_CORRUPTIONS)}")
    return _CORRUPTIONS[name]
