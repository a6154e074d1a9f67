"""Read weights files safely and load them into a model.

Weights are read with ``torch.load(weights_only=True)`` (never unpickling code) unless the
caller trusts the file; a state_dict that does not match gets a message listing the missing
and unexpected keys and the shape mismatches. Kept apart from :mod:`.loading` so that the
registry (which loads weights) and the spec loader (which uses the registry) need not import
each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from shiftattack.errors import ModelError
from shiftattack.models.compat import adapt_state_dict

__all__ = ["file_sha256", "load_weights", "read_state_dict", "classes_in_weights", "state_matches"]


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


def state_matches(model: nn.Module, state: Mapping[str, Tensor]) -> bool:
    """Whether ``state`` (after the known layout adaptations) has exactly ``model``'s keys and shapes."""
    try:
        adapted = adapt_state_dict(model, state)
    except ModelError:  # a saved blur filter of another size: another layout
        return False
    return _mismatch_message(model, adapted, Path("-")) is None


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
    kind = file_kind(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind is None:
        with open(path, "rb") as fh:
            head = fh.read(16)
        raise ModelError(
            f"{path} is not a weights file: not a PyTorch checkpoint (torch.save writes a zip archive or a "
            f"pickle) and not safetensors; it starts with {head!r}. Expected a state_dict saved with "
            "torch.save(model.state_dict(), path) or safetensors.torch.save_file(model.state_dict(), path)")
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


def file_kind(path: Path) -> str | None:
    """``"torch"`` (a zip archive or a pickle, as ``torch.save`` writes), ``"safetensors"`` or None."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30):
        return "safetensors"  # an 8-byte header length, then the JSON header
    return None


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ModelError(f"{path} is a safetensors file; reading it needs the safetensors package "
                         "(pip install safetensors)") from None
    try:
        return dict(load_file(str(path), device="cpu"))
    except Exception as exc:  # a damaged file: say so, not the library's internals
        raise ModelError(f"cannot read safetensors file {path}: {exc}") from None


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
