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
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ModelError, SpecError
from ._registry import create_model, is_model, list_models
from .compat import adapt_state_dict

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


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file (weights fingerprints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mismatch_message(model: nn.Module, state: Mapping[str, Tensor], path: Path) -> str | None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if isinstance(state[k], Tensor) and state[k].shape != own[k].shape
    ]
    if not (missing or unexpected or shapes):
        return None

    def few(items: list[str]) -> str:
        return ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")

    lines = [f"weights in {path} do not match the model:"]
    if missing:
        lines.append(f"  missing keys: {few(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys: {few(unexpected)}")
    if shapes:
        lines.append(f"  shape mismatches: {few(shapes)}")
    return "\n".join(lines)


def load_weights(model: nn.Module, path: str | Path, trust_pickle: bool = False) -> nn.Module:
    """Load a state_dict file into ``model`` safely (``weights_only=True``).

    Accepts a plain state_dict or a checkpoint dict holding one under
    ``state_dict`` or ``model``; strips a ``module.`` prefix (DataParallel).

    Raises:
        ModelError: unreadable file, a pickled whole model, or mismatched keys/shapes.
    """
    return _load_state(model, read_state_dict(path, trust_pickle), Path(path))


def _load_state(model: nn.Module, state: Mapping[str, Tensor], path: Path) -> nn.Module:
    """Load an already-read state_dict into ``model`` (adapting known layouts), or raise ModelError."""
    state = adapt_state_dict(model, state)
    message = _mismatch_message(model, state, path)
    if message:
        raise ModelError(message)
    model.load_state_dict(state)
    return model


def read_state_dict(path: str | Path, trust_pickle: bool = False) -> dict[str, Tensor]:
    """The state_dict in a weights file (``weights_only=True``; a checkpoint's ``state_dict`` or
    ``model`` entry; a ``module.`` prefix stripped).

    A file that ``weights_only=True`` refuses (a pickled whole model, or other pickled objects)
    is unpickled only with ``trust_pickle=True``, because unpickling runs code from the file;
    a pickled ``nn.Module`` then gives its ``state_dict()``.

    Raises:
        ModelError: a missing or unreadable file, a pickled file without ``trust_pickle``, or one
            that holds no state_dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if not trust_pickle:
            raise ModelError(
                f"cannot read weights {path} with torch.load(weights_only=True): {str(exc).splitlines()[0]} "
                "The file holds pickled objects (a whole model?), and unpickling would run code from it. "
                "Re-save it as a state_dict (torch.save(model.state_dict(), path)), or pass --trust-pickle "
                "(trust_pickle=True) if you trust the file.") from None
        state = _unpickle(path)
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state_dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _unpickle(path: Path):
    """``torch.load(weights_only=False)``: only on the user's explicit --trust-pickle."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # the file's own code may fail in any way: report it, do not hide it
        raise ModelError(f"cannot unpickle {path} (--trust-pickle): {type(exc).__name__}: {exc}") from None


def classes_in_weights(model: nn.Module, state: Mapping[str, Tensor]) -> int | None:
    """The class count a state_dict was trained with, when it differs from ``model``'s only there.

    True when every tensor that differs in shape differs only in its first dimension, where
    the model has its class count and the file one common other count (the classifier's
    weight and bias). Returns that count, else None.
    """
    own = model.state_dict()
    differ = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if not differ:
        return None
    counts = {state[k].shape[0] for k in differ}
    model_counts = {own[k].shape[0] for k in differ}
    same_rest = all(own[k].shape[1:] == state[k].shape[1:] and own[k].dim() == state[k].dim() for k in differ)
    return counts.pop() if same_rest and len(counts) == 1 and len(model_counts) == 1 else None


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
