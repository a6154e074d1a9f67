"""Named ImageNet CNNs from torchvision, plain and anti-aliased (Zhang, ICML 2019).

Importing this module registers, for ARCH in :data:`ARCHS` (resnet18, resnet34,
resnet50, resnet101, resnet152, alexnet, vgg16, vgg16_bn, densenet121,
mobilenet_v2) and F in :data:`FILTER_SIZES` (2, 3, 4, 5, 7):

* ``ARCH``: ``torchvision.models.ARCH(weights=None)``, torchvision's keys;
* ``ARCH_blurF``: the same model anti-aliased with filter size F by
  :func:`~shiftattack.models.antialias.antialias`, whose layout, ``state_dict``
  keys and computation are those of ``antialiased_cnns.ARCH(filter_size=F)``;
  its ``.filt`` entries are checked and dropped on loading
  (:func:`~shiftattack.models.compat.adapt_state_dict`).

Factories take ``num_classes=1000`` and, for ``_blurF`` names, ``pad_mode``
(``reflect``, the paper's, ``replicate``, ``zero`` or ``circular``). Nothing is
ever downloaded: load weights with ``create_model(name, weights=path)``.

Input normalisation
-------------------
Registered models map (N, 3, H, W) floats in [0, 1] to logits (N, num_classes),
but ImageNet weights expect ``(x - mean) / std`` with :data:`IMAGENET_MEAN` and
:data:`IMAGENET_STD`. :func:`add_input_normalization` adds it to the torchvision
module itself, with no wrapper:

* two non-persistent buffers ``input_mean`` and ``input_std`` of shape
  (1, 3, 1, 1): they follow ``.to(device)`` / ``.to(dtype)`` and are not in
  ``state_dict``;
* a forward pre-hook (a module-level function, so ``copy.deepcopy`` and
  ``pickle`` keep it) that checks the input shape and size, then normalises.

So ``state_dict()``, ``named_parameters()`` and the module tree are exactly
those of the torchvision / antialiased_cnns model and their files load as they
are. Calling a submodule (``model.features``) directly skips the normalisation.
:func:`~shiftattack.models.antialias.antialias` of a registered baseline keeps
the hook, but not a size check for the new blur layers (these raise their own
ShapeError on maps too small for reflect padding).

Input sizes
-----------
:data:`MIN_INPUT_SIZE` gives, per registered name, the smallest square side H = W
the model accepts with the default ``reflect`` padding, which needs feature maps
larger than the pad; a smaller input raises :class:`~shiftattack.errors.ShapeError`.
On 32x32 inputs (CIFAR-10) these run: every baseline but AlexNet (ResNets from
1x1, DenseNet-121 from 29x29, VGG16 from 32x32), and ``resnet*_blur2/3``,
``densenet121_blur2/3``, ``mobilenet_v2_blur2/3``. The other ``_blurF`` names
need larger inputs with reflect padding (``resnet*_blur4/5``: 35, ``_blur7``: 51)
or ``pad_mode="zero"``/``"replicate"``, with which every ResNet, DenseNet,
MobileNetV2 and VGG16 name runs on 32x32 (:data:`MIN_INPUT_SIZE_PADDED`).
AlexNet needs 63x63, its blurred forms 79 to 111 (63 with zero padding).
"""

from __future__ import annotations

from functools import partial

import torchvision
from torch import nn

from shiftattack.errors import SpecError
from shiftattack.models._registry import register_model
from shiftattack.models.antialias import antialias
from shiftattack.models.normalize import IMAGENET_MEAN, IMAGENET_STD, add_input_normalization

__all__ = [
    "ARCHS",
    "FILTER_SIZES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MIN_INPUT_SIZE",
    "MIN_INPUT_SIZE_PADDED",
    "add_input_normalization",
    "build_unnormalized",
    "imagenet_model",
    "min_input_size",
]

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "alexnet", "vgg16", "vgg16_bn",
         "densenet121", "mobilenet_v2")
FILTER_SIZES = (2, 3, 4, 5, 7)

# Smallest H = W each model accepts, found by forward passes (tests/test_zoo.py checks them):
# (baseline, blur2, blur3, blur4, blur5, blur7) with reflect padding, then any blur with zero padding.
_SIZES = {
    "resnet": ((1, 19, 19, 35, 35, 51), 3),
    "alexnet": ((63, 79, 79, 95, 95, 111), 63),
    "vgg16": ((32, 48, 48, 64, 64, 80), 32),
    "densenet121": ((29, 17, 17, 33, 33, 49), 1),
    "mobilenet_v2": ((1, 17, 17, 33, 33, 49), 1),
}


def _size_row(arch: str) -> tuple[tuple[int, ...], int]:
    return _SIZES[next(key for key in _SIZES if arch.startswith(key))]


#: Smallest square input side per registered name, with the default reflect padding.
MIN_INPUT_SIZE: dict[str, int] = {}
#: The same for ``_blurF`` names built with ``pad_mode="zero"`` or ``"replicate"`` (the blur then
#: adds no limit of its own); a lower bound with ``"circular"``.
MIN_INPUT_SIZE_PADDED: dict[str, int] = {}
for _arch in ARCHS:
    (_base, *_blurred), _padded = _size_row(_arch)
    MIN_INPUT_SIZE[_arch] = _base
    for _size, _side in zip(FILTER_SIZES, _blurred, strict=True):
        MIN_INPUT_SIZE[f"{_arch}_blur{_size}"] = _side
        MIN_INPUT_SIZE_PADDED[f"{_arch}_blur{_size}"] = _padded


def min_input_size(arch: str, filter_size: int | None = None, pad_mode: str = "reflect") -> int:
    """Smallest square input side H = W that ``arch`` (anti-aliased with ``filter_size``) accepts."""
    name = arch if filter_size is None else f"{arch}_blur{filter_size}"
    table = MIN_INPUT_SIZE if filter_size is None or pad_mode == "reflect" else MIN_INPUT_SIZE_PADDED
    if name not in table:
        raise SpecError(f"no input size known for {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def build_unnormalized(
    arch: str, num_classes: int = 1000, filter_size: int | None = None, pad_mode: str = "reflect"
) -> nn.Module:
    """The torchvision model ``arch`` (optionally anti-aliased), expecting ImageNet-normalised input.

    Args:
        arch: any ``torchvision.models`` classification name that
            :func:`~shiftattack.models.antialias.antialias` handles, e.g. one of :data:`ARCHS`.
        num_classes: output logits.
        filter_size: None for the baseline, else the blur filter size (1 to 7).
        pad_mode: blur padding; only with ``filter_size``.

    Returns:
        a model mapping (N, 3, H, W) normalised images to logits (N, num_classes), in train mode.
    """
    if filter_size is None and pad_mode != "reflect":
        raise SpecError(f"pad_mode applies to anti-aliased models only; got pad_mode={pad_mode!r} "
                        "with filter_size=None")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise SpecError(f"num_classes must be a positive integer, got {num_classes!r}")
    try:
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    except ValueError as exc:
        raise SpecError(f"unknown torchvision model {arch!r}: {exc}") from None
    if filter_size is not None:
        model = antialias(model, filter_size=filter_size, pad_mode=pad_mode, inplace=True)
    return model


def imagenet_model(
    arch: str, num_classes: int = 1000, filter_size: int | None = None, pad_mode: str = "reflect"
) -> nn.Module:
    """:func:`build_unnormalized` plus :func:`add_input_normalization` with ImageNet statistics.

    Returns:
        a model mapping (N, 3, H, W) floats in [0, 1] to logits (N, num_classes),
        with H, W >= :func:`min_input_size` (checked when known).

    Examples:
        >>> import torch
        >>> model = imagenet_model("resnet18", num_classes=10, filter_size=3).eval()
        >>> model(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """
    model = build_unnormalized(arch, num_classes, filter_size, pad_mode)
    try:
        min_size = min_input_size(arch, filter_size, pad_mode)
    except SpecError:
        min_size = 1
    return add_input_normalization(model, IMAGENET_MEAN, IMAGENET_STD, min_size=min_size)


for _arch in ARCHS:
    register_model(partial(imagenet_model, _arch), name=_arch)
    for _size in FILTER_SIZES:
        register_model(partial(imagenet_model, _arch, filter_size=_size), name=f"{_arch}_blur{_size}")
