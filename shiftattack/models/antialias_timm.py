"""Anti-aliasing recipes for timm CNNs, placed where timm's own ``aa_layer`` puts its blur.

timm builds anti-aliased models by passing ``aa_layer=BlurPool2d`` (``resnetblur18``,
``resnetblur50d``, ...): a block's strided conv gets stride 1 and the block's ``aa`` slot
(an ``nn.Identity``, or ``None`` in ``ConvNormAct``) becomes a BlurPool of that stride,
applied after the conv's norm and activation. The recipes here do the same to a model
built without it, so the converted model has the layout and ``state_dict`` keys of timm's
anti-aliased model and, for filter sizes 3 and 5 (where our padding equals timm's), the
same outputs for the same weights:

============  ================================================================================
ResNet/-D     stem ``maxpool`` -> ``Sequential(MaxPool2d(3, 1, 1), BlurPool(2))`` (timm's layout);
              each BasicBlock / Bottleneck ``aa`` slot filled (``conv1`` / ``conv2`` to stride 1)
EfficientNet  every block's ``aa`` slot (``conv_dw``, ``conv``, ``conv_exp`` to stride 1)
MobileNetV3   as EfficientNet (the same block classes)
RegNet        every ``ConvNormAct`` ``aa`` slot of the blocks (``conv2``)
ConvNeXt      no ``aa`` slots in timm: each stage's ``downsample`` ``Sequential(norm,
              Conv2d(2, stride 2))`` by the generic rule (``Conv2d(2, stride 1)`` then BlurPool)
============  ================================================================================

As in timm's ``aa_layer`` models (and Zhang's ResNet, ``pool_only=True``), the network's stem
conv (``pretrained_cfg["first_conv"]``) keeps its stride, and so do residual shortcuts
(``downsample`` / ``shortcut`` of a block: a strided 1x1 conv, or ResNet-D's average pool).
Other timm models get the generic rule of :mod:`~shiftattack.models.antialias`.
"""

from __future__ import annotations

from torch import nn

from shiftattack.errors import SpecError
from shiftattack.models.blurpool import BlurPool2d

__all__ = ["TIMM_FAMILIES", "convert_timm", "timm_family"]

TIMM_FAMILIES = ("resnet", "efficientnet", "mobilenetv3", "regnet", "convnext")
_SHORTCUTS = ("downsample", "shortcut")


def timm_family(model: nn.Module) -> str | None:
    """The timm family of ``model`` (one of :data:`TIMM_FAMILIES`), or None (not a timm model we know)."""
    module = type(model).__module__
    if not module.startswith("timm."):
        return None
    leaf = module.rsplit(".", 1)[-1]
    return leaf if leaf in TIMM_FAMILIES else None


def _stride(conv: nn.Module) -> int:
    stride = conv.stride if isinstance(conv.stride, tuple) else (conv.stride, conv.stride)
    if stride[0] != stride[1]:
        raise SpecError(f"only square strides can be anti-aliased, got {tuple(stride)} in {conv}")
    return int(stride[0])


def _owner(path: str) -> str:
    return path.rpartition(".")[0]


def _fill_aa_slots(model: nn.Module, filter_size: int, pad_mode: str, skip: set[str]) -> int:
    """Give every ``aa`` slot (Identity or None) beside one strided conv a BlurPool; returns how many."""
    filled = 0
    for path, module in list(model.named_modules()):
        if path in skip or any(part in _SHORTCUTS for part in path.split(".")):
            continue
        if "aa" not in module._modules and "aa" not in module.__dict__:
            continue
        slot = getattr(module, "aa", None)
        if slot is not None and not isinstance(slot, nn.Identity):
            continue
        strided = [c for c in module.children() if isinstance(c, nn.Conv2d) and _stride(c) > 1]
        if len(strided) != 1:
            continue
        conv = strided[0]
        stride = _stride(conv)
        conv.stride = (1, 1)
        module.aa = BlurPool2d(conv.out_channels, filter_size, stride, pad_mode)
        filled += 1
    return filled


def _resnet_stem_pool(model: nn.Module, filter_size: int, pad_mode: str) -> None:
    pool = getattr(model, "maxpool", None)
    if isinstance(pool, nn.MaxPool2d) and _stride(pool) > 1:
        channels = model.bn1.num_features if hasattr(model, "bn1") else None
        model.maxpool = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            BlurPool2d(channels, filter_size, _stride(pool), pad_mode),
        )


def _convnext_downsamples(model: nn.Module, filter_size: int, pad_mode: str, generic) -> None:
    for stage in model.stages:
        down = getattr(stage, "downsample", None)
        if isinstance(down, nn.Sequential) and any(
            isinstance(m, nn.Conv2d) and _stride(m) > 1 for m in down.children()
        ):
            generic(down, filter_size, pad_mode)


def convert_timm(model: nn.Module, filter_size: int, pad_mode: str, generic) -> None:
    """Anti-alias timm ``model`` in place by its family's recipe (see the module docstring).

    ``generic(module, filter_size, pad_mode)``: the generic rule of
    :mod:`~shiftattack.models.antialias` (ConvNeXt's downsampling layers), passed in so that
    this module does not import that one.
    """
    family = timm_family(model)
    if family is None:
        raise SpecError(f"{type(model).__name__} is not a timm {'/'.join(TIMM_FAMILIES)} model")
    first = getattr(model, "pretrained_cfg", {}).get("first_conv") or ""
    first = first if isinstance(first, str) else ""
    skip = {first, _owner(first)} if first else set()  # the stem conv and a ConvNormAct holding it
    skip.discard("")
    if family == "resnet":
        _resnet_stem_pool(model, filter_size, pad_mode)
    if family == "convnext":
        _convnext_downsamples(model, filter_size, pad_mode, generic)
        return
    _fill_aa_slots(model, filter_size, pad_mode, skip)
