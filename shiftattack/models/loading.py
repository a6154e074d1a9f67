"""Build a model from a command-line spec and load its weights safely.

Model specs (DESIGN.md ``--model``):

* a registry name (``shiftattack.models.list_models()``), e.g. ``small_cnn``;
* ``torchvision:NAME`` — ``torchvision.models.get_model(NAME, weights=None)``;
* ``package.module:callable`` — an importable factory;
* ``path/to/file.py:callable`` — a factory in a Python file.

Every factory is called without arguments and must return an ``nn.Module``
mapping (N, 3, H, W) floats in [0, 1] to logits (N, classes). Weights are read
with ``torch.load(weights_only=True)`` (never unpickling code); a state_dict that
does not match gets a message listing the missing and unexpected keys and the
shape mismatches.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from shiftattack.errors import ModelError, SpecError
from shiftattack.models._registry import create_model, is_model, list_models
from shiftattack.models.weights import (  # noqa: F401  (also importable from here)
    _load_state,
    classes_in_weights,
    file_sha256,
    load_weights,
    read_state_dict,
)

__all__ = ["Normalize", "load_model", "load_weights", "file_sha256"]


class Normalize(nn.Module):
    """Wrap a model that expects normalised input: ``model((x - mean) / std)``.

    Args:
        model: the wrapped classifier.
        mean, std: per-channel statistics (C values each).

    Shape:
        input (N, C, H, W) in [0, 1] -> the model's output.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise SpecError(f"--mean has {len(mean)} values but --std has {len(std)}")
        if any(s <= 0 for s in std):
            raise SpecError(f"--std values must be positive, got {list(std)}")
        self.model = model
        stats = torch.tensor([list(mean), list(std)], dtype=torch.float32).view(2, 1, -1, 1, 1)
        self.register_buffer("mean", stats[0], persistent=False)
        self.register_buffer("std", stats[1], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


def _split_spec(spec: str) -> tuple[str, str]:
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise SpecError(
            f"invalid model spec {spec!r}; expected a registered name ({', '.join(list_models())}), "
            "torchvision:NAME, package.module:callable or path/to/file.py:callable")
    return target, name


def _factory_from_file(path: Path, name: str):
    if not path.is_file():
        raise SpecError(f"model file not found: {path}")
    module_name = f"_shiftattack_user_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpecError(f"cannot import model file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # user code: report, do not hide
        raise ModelError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, name):
        raise SpecError(f"{path} defines no {name!r}")
    return getattr(module, name)


def _build(spec: str) -> nn.Module:
    if is_model(spec):
        return create_model(spec)
    target, name = _split_spec(spec)
    if target == "torchvision":
        import torchvision

        try:
            return torchvision.models.get_model(name, weights=None)
        except ValueError as exc:
            raise SpecError(f"unknown torchvision model {name!r}: {exc}") from None
    if target.endswith(".py"):
        factory = _factory_from_file(Path(target), name)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise SpecError(f"cannot import module {target!r} for model spec {spec!r}: {exc}") from None
        if not hasattr(module, name):
            raise SpecError(f"module {target!r} defines no {name!r}")
        factory = getattr(module, name)
    if not callable(factory):
        raise SpecError(f"{spec!r} is not callable")
    try:
        model = factory()
    except Exception as exc:
        raise ModelError(f"calling {spec} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"{spec} returned {type(model).__name__}; expected a torch.nn.Module")
    return model


def load_model(
    spec: str,
    weights: str | Path | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    trust_pickle: bool = False,
) -> nn.Module:
    """Build the model of ``spec``, load ``weights`` and wrap it in :class:`Normalize`.

    ``trust_pickle`` allows a weights file that only full unpickling reads (see
    :func:`read_state_dict`). Returns the model in eval mode on the CPU; its input is
    (N, 3, H, W) in [0, 1].
    """
    model = _build(spec)
    if weights is not None:
        state = read_state_dict(weights, trust_pickle)
        if is_model(spec):  # a registry model trained on another number of classes (e.g. the demo's 8)
            classes = classes_in_weights(model, state)
            if classes is not None:
                model = create_model(spec, num_classes=classes)
        _load_state(model, state, Path(weights))
    if (mean is None) != (std is None):
        raise SpecError("give both --mean and --std, or neither")
    if mean is not None and std is not None:
        model = Normalize(model, mean, std)
    return model.eval()
