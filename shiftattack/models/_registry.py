"""A name -> factory registry for models (timm's ``register_model`` shape).

Factories take keyword arguments only (``num_classes`` at least) and return an
``nn.Module`` mapping (N, 3, H, W) floats in [0, 1] to logits (N, num_classes).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from pathlib import Path

from torch import nn

from ..errors import SpecError

__all__ = ["register_model", "create_model", "list_models", "is_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Register a model factory under ``name`` (default: the function's ``__name__``).

    Use as a decorator (``@register_model``) or call it for generated variants:
    ``register_model(partial(_resnet, depth=18, filter_size=3), name="resnet18_blur3")``.
    """

    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or factory.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is registered twice")
        _MODELS[key] = factory
        return factory

    return add if fn is None else add(fn)


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern`` (``"resnet*_blur*"``), sorted."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def is_model(name: str) -> bool:
    return name in _MODELS


def create_model(
    name: str, *, num_classes: int | None = None, weights: str | Path | None = None, **kwargs
) -> nn.Module:
    """Build a registered model by name.

    Args:
        name: a name from :func:`list_models`.
        num_classes: output logits (the factory's default when None).
        weights: a local state_dict file, read with ``torch.load(weights_only=True)``.
        **kwargs: passed to the factory.

    Returns:
        the model, in train mode as built (eval mode when ``weights`` were loaded).
    """
    if name not in _MODELS:
        raise SpecError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = _MODELS[name](**kwargs)
    if weights is not None:
        from .loading import load_weights

        load_weights(model, weights)
        model.eval()
    return model
