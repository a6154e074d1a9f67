"""Read state_dicts saved by other packages into our models.

:func:`adapt_state_dict` is applied by :func:`~shiftattack.models.loading.load_weights`
before it compares keys, so files saved from the ``antialiased_cnns`` package
(Zhang, ICML 2019) load into the matching ``ARCH_blurF`` model:

* their BlurPool keeps its filter as a *persistent* buffer ``<path>.filt``;
  ours (:class:`~shiftattack.models.blurpool.BlurPool2d`) rebuilds it and does
  not save it. Each such entry is checked against our filter (a different
  value means a different filter size or a different layer) and dropped;
* their DenseNet checkpoints use the old torchvision key style
  ``denselayer1.norm.1.weight``, renamed to ``denselayer1.norm1.weight``;
* checkpoints written before PyTorch 0.4.1 lack BatchNorm's
  ``num_batches_tracked``; it is filled with 0, as ``load_state_dict`` does for them.

Everything else is passed through unchanged; the caller reports what still
does not match.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from shiftattack.errors import ModelError
from shiftattack.models.blurpool import FILTER_NAMES, BlurPool2d

__all__ = ["adapt_state_dict"]

_OLD_DENSE_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$")


def adapt_state_dict(model: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Return a copy of ``state`` adapted to ``model`` (see the module docstring).

    Args:
        model: the model the state will be loaded into.
        state: a state_dict, e.g. from ``antialiased_cnns.resnet18(filter_size=4)``.

    Returns:
        a new dict; ``state`` is not modified.

    Raises:
        ModelError: a ``filt`` entry for one of our BlurPool layers whose shape
            or values differ from that layer's filter.
    """
    own = model.state_dict()
    modules = dict(model.named_modules())
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        path = key[: -len(".filt")] if key.endswith(".filt") else None
        if path is not None and key not in own and isinstance(modules.get(path), BlurPool2d):
            _check_filter(key, value, modules[path])
            continue
        match = _OLD_DENSE_KEY.match(key)
        if match and key not in own and match.group(1) + match.group(2) in own:
            key = match.group(1) + match.group(2)
        out[key] = value
    for key in own:
        if key.endswith(".num_batches_tracked") and key not in out:
            prefix = key[: -len("num_batches_tracked")]
            if prefix + "running_mean" in out:
                out[key] = torch.zeros((), dtype=torch.long)
    return out


def _check_filter(key: str, value: Tensor, blur: BlurPool2d) -> None:
    ours = blur.filt
    if blur.channels is None and value.dim() == 4:  # a layer for any channel count: one filter per channel
        ours = ours.expand(value.shape[0], -1, -1, -1)
    name = f"{blur.filter_size} ({FILTER_NAMES[blur.filter_size]})"
    if tuple(value.shape) != tuple(ours.shape):
        raise ModelError(
            f"{key}: the file holds a blur filter of shape {tuple(value.shape)}, but this model's layer "
            f"expects {tuple(ours.shape)} for filter_size {name}; "
            "the weights were saved from a model with another filter size or layout")
    if not torch.allclose(value.detach().cpu().to(torch.float64), ours.cpu().to(torch.float64), atol=1e-6):
        raise ModelError(
            f"{key}: the file's blur filter differs from this model's binomial filter of size {name}; "
            "expected the normalised binomial kernel the layer was built with")
