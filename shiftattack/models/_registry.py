"""A name -> factory registry for models (timm's ``register_model`` shape)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn

from ..errors import SpecError

__all__ = ["register_model", "create_model", "list_models", "is_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under its ``__name__``."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern``, sorted."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def is_model(name: str) -> bool:
    return name in _MODELS


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name, passing keyword arguments to its factory."""
    if name not in _MODELS:
        raise SpecError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _MODELS[name](**kwargs)
