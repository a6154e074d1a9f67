"""A name -> factory registry for models (timm's ``register_model`` shape).

Factories take keyword arguments only (``num_classes`` at least) and return an
``nn.Module`` mapping (N, 3, H, W) floats in [0, 1] to logits (N, num_classes).

A name may carry factory arguments as Python literals: ``cifar_convnet(width=16)`` is
``create_model("cifar_convnet", width=16)``. Every command that takes ``--model`` accepts
this form (quote it in a shell).
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Callable
from pathlib import Path

from torch import nn

from shiftattack.errors import SpecError
from shiftattack.models.weights import load_weights

__all__ = ["register_model", "create_model", "list_models", "is_model", "parse_model_name"]

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


def parse_model_name(spec: str) -> tuple[str, dict[str, object]]:
    """``"name"`` -> (name, {}); ``"name(k=v, ...)"`` -> (name, {k: v, ...}).

    Values are Python literals (numbers, strings, booleans, None, tuples).

    Raises:
        SpecError: the arguments are not ``key=literal`` pairs.
    """
    spec = spec.strip()
    if not spec.endswith(")") or "(" not in spec:
        return spec, {}
    name, _, args = spec[:-1].partition("(")
    name = name.strip()
    try:
        call = ast.parse(f"f({args})", mode="eval").body
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            raise ValueError("one pair of parentheses")
        if call.args:
            raise ValueError("positional arguments")
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        if None in kwargs:
            raise ValueError("**arguments")
    except (SyntaxError, ValueError) as exc:
        raise SpecError(
            f"invalid model arguments in {spec!r}: expected name(key=value, ...) with literal values "
            f"such as cifar_convnet(width=16) ({exc})") from None
    return name, kwargs


def is_model(name: str) -> bool:
    """True for a registered name, with or without ``(key=value, ...)`` arguments.

    Only the name is looked up: malformed arguments of a registered name are reported by
    :func:`create_model`, with what was wrong.
    """
    return name.partition("(")[0].strip() in _MODELS


def create_model(
    name: str, *, num_classes: int | None = None, weights: str | Path | None = None, **kwargs
) -> nn.Module:
    """Build a registered model by name.

    Args:
        name: a name from :func:`list_models`, optionally with factory arguments,
            ``"cifar_convnet(width=16)"``.
        num_classes: output logits (the factory's default when None).
        weights: a local state_dict file, read with ``torch.load(weights_only=True)``.
        **kwargs: passed to the factory.

    Returns:
        the model, in train mode as built (eval mode when ``weights`` were loaded).
    """
    spec = name
    name, spec_kwargs = parse_model_name(spec)
    if name not in _MODELS:
        raise SpecError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    kwargs = {**spec_kwargs, **kwargs}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        model = _MODELS[name](**kwargs)
    except (TypeError, ValueError) as exc:
        if not spec_kwargs:
            raise
        raise SpecError(f"model {spec!r}: {name} refused these arguments ({exc})") from None
    if weights is not None:
        load_weights(model, weights)
        model.eval()
    return model
