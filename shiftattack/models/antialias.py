"""Anti-alias a CNN the way Zhang (ICML 2019) and the ``antialiased_cnns`` package do.

:func:`antialias` returns a deep copy of a model with every subsampling layer
replaced by its blurred form, keeping the baseline's weights (the fine-tuning
start of the paper's "filter-4 fine-tuned" models) and its parameter count.

For torchvision's ResNet, VGG, AlexNet, DenseNet and MobileNetV2 the result has
the module tree, ``state_dict`` keys (less the ``filt`` buffers, which our
:class:`~shiftattack.models.blurpool.BlurPool2d` does not save) and computation
of the ``antialiased_cnns`` (v0.2+) model of the same architecture and filter size:

==============  =============================================================================
ResNet          stem conv keeps stride 2 (``pool_only=True``); ``maxpool`` ->
                ``Sequential(MaxPool2d(2, stride=1), BlurPool(s))`` (kernel 2, no padding, not
                torchvision's 3/pad 1); strided block: the strided conv gets stride 1 and the
                *next* conv becomes ``Sequential(BlurPool(s), conv)`` (``conv2`` of a
                BasicBlock, ``conv3`` of a Bottleneck), i.e. blur after the ReLU; shortcut
                ``downsample`` -> ``Sequential(BlurPool(s), conv1x1, bn)``.
VGG             every ``MaxPool2d(2, 2)`` in ``features`` -> ``MaxPool2d(2, 1), BlurPool(2)``,
                flattened into ``features`` (later indices shift by one per pool).
AlexNet         ``Conv(11, stride 4)`` -> ``Conv(11, stride 2), ReLU, BlurPool(2)``; each
                ``MaxPool2d(3, 2)`` -> ``MaxPool2d(3, 1), BlurPool(2)``; flattened into
                ``features``.
DenseNet        stem conv keeps stride 2; ``pool0`` -> ``max0 = MaxPool2d(3, 1, padding=1)``
                then ``pool0 = BlurPool(2)``; each transition's ``AvgPool2d(2, 2)`` ->
                ``BlurPool(2)`` (same name ``pool``).
MobileNetV2     stem conv keeps stride 2; a strided block's depthwise conv gets stride 1 and
                ``BlurPool(2)`` is inserted right after its ConvBNReLU6 in ``block.conv``
                (later indices shift by one); the classifier becomes ``Sequential(Linear)``
                (``classifier.0``): the package's MobileNetV2 has no dropout.
==============  =============================================================================

timm ResNet / ResNet-D, EfficientNet, MobileNetV3, RegNet and ConvNeXt models get the
recipes of :mod:`~shiftattack.models.antialias_timm`: the blur goes where timm's own
``aa_layer`` puts it (``resnetblur18`` is ``antialias(timm resnet18, 3)``).

Any other model gets the generic rule. Inside a plain ``nn.Sequential`` (whose
forward order is its child order) replacements are flattened into it:
``MaxPool(k, s)`` -> ``MaxPool(k, 1)`` + ``BlurPool(s)``; ``AvgPool(k, s)`` ->
``BlurPool(s)``; ``Conv(s)`` followed by norm/activation layers -> ``Conv(1)``,
the same followers, then ``BlurPool(s)`` after the last activation (right after
the conv when no activation follows). Elsewhere the forward order is unknown and
a layer is replaced in place (``Conv(s)`` -> ``Sequential(Conv(1), BlurPool(s))``).
A pool's BlurPool takes its channel count from the conv or norm before it in the
same plain ``nn.Sequential`` (through activations, dropout, other pools); where
the tree does not say (after a block that concatenates branches, like SqueezeNet's
Fire and GoogLeNet's Inception, or outside a Sequential) it takes any count. A
ceil-mode max-pool's stride-1 form needs no ceil mode, so its map may come out one
pixel smaller than the baseline's.

Only modules convert: subsampling by functional calls in ``forward``
(``F.max_pool2d``, a strided ``F.conv2d``, ``x[..., ::2, ::2]``) stays aliased.
When nothing was converted :func:`antialias` warns
(:class:`~shiftattack.errors.ConversionWarning`), or raises
:class:`~shiftattack.errors.ConversionError` with ``strict=True``.

With ``filter_size=1`` a BlurPool is plain subsampling ``x[..., ::s, ::s]``:
``Conv(1)`` then subsampling equals ``Conv(s)`` and ``MaxPool(k, 1, p)`` then
subsampling equals ``MaxPool(k, s, p)`` (without ceil mode), so the converted
model computes what the baseline does except where the recipe itself changes a
layer (ResNet's stem pool, DenseNet's average pools, MobileNetV2's dropout).
"""

from __future__ import annotations

import copy
import warnings

from torch import nn
from torchvision.models import VGG, AlexNet, DenseNet, MobileNetV2, ResNet
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

from shiftattack.errors import ConversionError, ConversionWarning, SpecError
from shiftattack.models.antialias_timm import convert_timm, timm_family
from shiftattack.models.blurpool import BlurPool2d, MaxBlurPool2d, _check_args

__all__ = ["ARCHS", "antialias", "detect_arch"]

ARCHS = ("resnet", "vgg", "alexnet", "densenet", "mobilenet_v2", "timm", "generic")

_NORMS = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LocalResponseNorm)
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
                nn.Hardswish, nn.Hardtanh, nn.Mish, nn.Tanh, nn.Sigmoid)


def detect_arch(model: nn.Module) -> str:
    """The conversion recipe :func:`antialias` uses for ``model`` (one of :data:`ARCHS`)."""
    for cls, arch in ((ResNet, "resnet"), (VGG, "vgg"), (AlexNet, "alexnet"), (DenseNet, "densenet"),
                      (MobileNetV2, "mobilenet_v2")):
        if isinstance(model, cls):
            return arch
    if timm_family(model) is not None:
        return "timm"
    return "generic"


def antialias(
    model: nn.Module,
    filter_size: int = 4,
    pad_mode: str = "reflect",
    arch: str | None = None,
    *,
    inplace: bool = False,
    strict: bool = False,
) -> nn.Module:
    """Return an anti-aliased copy of ``model`` with the baseline's weights.

    Args:
        model: a torchvision ResNet (any depth, ResNeXt and wide variants), VGG
            (with or without BN), AlexNet, DenseNet or MobileNetV2, or any CNN
            for the generic rule (see the module docstring).
        filter_size: binomial filter side, 1 to 7 (1 = plain subsampling).
        pad_mode: BlurPool padding: ``reflect`` (the paper's), ``replicate``,
            ``zero`` or ``circular``.
        arch: force a recipe from :data:`ARCHS` (default: :func:`detect_arch`).
        inplace: convert ``model`` itself instead of a deep copy.
        strict: raise instead of warning when nothing was converted.

    Returns:
        the converted model, in the train/eval mode of ``model``; same parameter
        count and parameter values; inputs (N, C, H, W) as before, though the
        smallest usable H and W may grow (reflect padding needs maps larger
        than the pad).

    Raises:
        SpecError: bad ``filter_size``/``pad_mode``/``arch``, a model that
            already holds BlurPool layers, or a layout the recipe does not expect.
        ConversionError: with ``strict=True``, when the model holds no strided
            conv or pooling module, so that nothing was converted.

    Warns:
        ConversionWarning: when nothing was converted (``strict=False``); the
            model is returned unchanged.
    """
    _check_args(filter_size, 2, pad_mode)
    arch = detect_arch(model) if arch is None else arch
    if arch not in _CONVERTERS:
        raise SpecError(f"arch must be one of {', '.join(ARCHS)} or None, got {arch!r}")
    if any(isinstance(m, BlurPool2d) for m in model.modules()):
        raise SpecError("model already contains BlurPool2d layers; pass the baseline model")
    missing = [name for name in _NEEDS.get(arch, ()) if not hasattr(model, name)]
    if missing:
        raise _layout_error(arch, f"{type(model).__name__} has no {', '.join(missing)}")
    if not inplace:
        model = copy.deepcopy(model)
    before = set(model.modules())  # references, so that no id is reused
    _CONVERTERS[arch](model, filter_size, pad_mode)
    for module in model.modules():  # new layers follow the model's train/eval mode
        if module not in before:
            module.training = model.training
    if not any(isinstance(m, BlurPool2d) for m in model.modules()):
        message = (f"antialias() converted nothing in {type(model).__name__}: it holds no strided "
                   "nn.Conv2d, nn.MaxPool2d or nn.AvgPool2d module; subsampling done by functional "
                   "calls in forward (F.max_pool2d, F.avg_pool2d, strided F.conv2d, x[..., ::2, ::2]) "
                   "cannot be converted: make those layers modules, or blur them yourself with "
                   "shiftattack.models.blur_pool2d")
        if strict:
            raise ConversionError(message)
        warnings.warn(message, ConversionWarning, stacklevel=2)
    return model


def _stride(module: nn.Module) -> int:
    stride = module.stride
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    if sh != sw:
        raise SpecError(f"only square strides can be anti-aliased, got {tuple(stride)} in {module}")
    return int(sh)


def _layout_error(arch: str, what: str) -> SpecError:
    return SpecError(f"unexpected {arch} layout: {what}; pass arch='generic' for the generic rule")


def _unit_stride_max(pool: nn.MaxPool2d) -> nn.MaxPool2d:
    if pool.return_indices:
        raise SpecError(f"cannot anti-alias a max-pool that returns indices: {pool}")
    return nn.MaxPool2d(pool.kernel_size, stride=1, padding=pool.padding, dilation=pool.dilation)


# ---------------------------------------------------------------- architecture recipes


def _resnet(model: nn.Module, filter_size: int, pad_mode: str) -> None:
    if not isinstance(getattr(model, "maxpool", None), nn.MaxPool2d):
        raise _layout_error("ResNet", "model.maxpool is not an nn.MaxPool2d")
    model.maxpool = MaxBlurPool2d(model.conv1.out_channels, kernel_size=2, filter_size=filter_size,
                                  stride=_stride(model.maxpool), pad_mode=pad_mode)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            if isinstance(block, BasicBlock):
                strided, after = "conv1", "conv2"
            elif isinstance(block, Bottleneck):
                strided, after = "conv2", "conv3"
            else:
                raise _layout_error("ResNet", f"block {type(block).__name__} is no BasicBlock or Bottleneck")
            conv = getattr(block, strided)
            stride = _stride(conv)
            others = [n for n, m in block.named_modules() if isinstance(m, nn.Conv2d) and m is not conv
                      and not n.startswith("downsample") and _stride(m) != 1]
            if others:
                raise _layout_error("ResNet", f"strided convs other than {strided}: {others}")
            if stride > 1:
                conv.stride = (1, 1)
                blur = BlurPool2d(conv.out_channels, filter_size, stride, pad_mode)
                setattr(block, after, nn.Sequential(blur, getattr(block, after)))
            if block.downsample is not None:
                short = block.downsample[0]
                if not isinstance(short, nn.Conv2d):
                    raise _layout_error("ResNet", "downsample[0] is not a conv")
                short_stride = _stride(short)
                if short_stride > 1:
                    short.stride = (1, 1)
                    blur = BlurPool2d(short.in_channels, filter_size, short_stride, pad_mode)
                    block.downsample = nn.Sequential(blur, *block.downsample)


def _vgg(model: nn.Module, filter_size: int, pad_mode: str) -> None:
    if any(isinstance(m, nn.Conv2d) and _stride(m) != 1 for m in model.features):
        raise _layout_error("VGG", "strided convolution in features")
    _generic(model, filter_size, pad_mode)


def _alexnet(model: nn.Module, filter_size: int, pad_mode: str) -> None:
    # The package keeps stride s / 2 in the first conv and blurs by 2 after its ReLU.
    _rebuild_sequential(model.features, filter_size, pad_mode, _channels_before(model), split_conv=True)


def _densenet(model: nn.Module, filter_size: int, pad_mode: str) -> None:
    features = model.features
    items: list[tuple[str, nn.Module]] = []
    for name, child in features.named_children():
        if isinstance(child, nn.MaxPool2d):
            if name != "pool0":
                raise _layout_error("DenseNet", f"max-pool named {name!r}, expected 'pool0'")
            channels = features.conv0.out_channels
            items += [("max0", _unit_stride_max(child)),
                      ("pool0", BlurPool2d(channels, filter_size, _stride(child), pad_mode))]
            continue
        pool = getattr(child, "pool", None)
        if isinstance(pool, nn.AvgPool2d):
            child.pool = BlurPool2d(child.conv.out_channels, filter_size, _stride(pool), pad_mode)
        items.append((name, child))
    _replace_children(features, items)


def _mobilenet_v2(model: nn.Module, filter_size: int, pad_mode: str) -> None:
    for block in model.features:
        if not isinstance(block, InvertedResidual):
            continue
        layers = list(block.conv)
        for i, layer in enumerate(layers):
            conv = layer[0] if isinstance(layer, nn.Sequential) else layer
            if isinstance(conv, nn.Conv2d) and _stride(conv) > 1:
                stride = _stride(conv)
                conv.stride = (1, 1)
                layers.insert(i + 1, BlurPool2d(conv.out_channels, filter_size, stride, pad_mode))
                break
        block.conv = nn.Sequential(*layers)
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    if len(linears) != 1:
        raise _layout_error("MobileNetV2", "classifier does not hold exactly one Linear")
    model.classifier = nn.Sequential(linears[0])


# ---------------------------------------------------------------- generic rule


_SAME_WIDTH = _ACTIVATIONS + (nn.LocalResponseNorm, nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d,
                              nn.AvgPool2d)


def _width(module: nn.Module) -> int | None:
    """Output channels of ``module`` when its type says them (None: unknown)."""
    if _is_plain_sequential(module):
        return _last_width(list(module.children()))
    for cls, attr in ((nn.Conv2d, "out_channels"), (nn.BatchNorm2d, "num_features"),
                      (nn.InstanceNorm2d, "num_features"), (nn.GroupNorm, "num_channels")):
        if isinstance(module, cls):
            return getattr(module, attr)
    return None


def _last_width(layers: list[nn.Module]) -> int | None:
    """Output channels of ``layers`` run in order, looking back through width-keeping layers."""
    for layer in reversed(layers):
        if not isinstance(layer, _SAME_WIDTH):
            return _width(layer)
    return None


def _channels_before(model: nn.Module) -> dict[int, int | None]:
    """id(strided pool) -> its input channels where the module tree says them for sure.

    Only a pool inside a plain ``nn.Sequential`` has a known predecessor; a pool
    missing from the map (or mapped to None) gets a BlurPool for any channel count.
    """
    channels: dict[int, int | None] = {}
    for module in model.modules():
        if _is_plain_sequential(module):
            layers = list(module.children())
            for i, layer in enumerate(layers):
                if isinstance(layer, nn.MaxPool2d | nn.AvgPool2d) and _stride(layer) > 1:
                    channels[id(layer)] = _last_width(layers[:i])
    return channels


def _generic(model: nn.Module, filter_size: int, pad_mode: str) -> None:
    channels = _channels_before(model)
    if _is_plain_sequential(model):
        _rebuild_sequential(model, filter_size, pad_mode, channels)
    else:
        _convert_children(model, filter_size, pad_mode, channels)


def _is_plain_sequential(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _alone(child: nn.Module, filter_size: int, pad_mode: str, channels: dict[int, int]) -> nn.Module | None:
    """Replacement for a strided layer whose neighbours are unknown (None: not strided)."""
    if isinstance(child, nn.MaxPool2d) and _stride(child) > 1:
        blur = BlurPool2d(channels.get(id(child)), filter_size, _stride(child), pad_mode)
        return nn.Sequential(_unit_stride_max(child), blur)
    if isinstance(child, nn.AvgPool2d) and _stride(child) > 1:
        return BlurPool2d(channels.get(id(child)), filter_size, _stride(child), pad_mode)
    if isinstance(child, nn.Conv2d) and _stride(child) > 1:
        stride = _stride(child)
        child.stride = (1, 1)
        return nn.Sequential(child, BlurPool2d(child.out_channels, filter_size, stride, pad_mode))
    return None


def _convert_children(module: nn.Module, filter_size: int, pad_mode: str, channels: dict[int, int]) -> None:
    for name, child in list(module.named_children()):
        if _is_plain_sequential(child):
            _rebuild_sequential(child, filter_size, pad_mode, channels)
            continue
        new = _alone(child, filter_size, pad_mode, channels)
        if new is None:
            _convert_children(child, filter_size, pad_mode, channels)
        else:
            setattr(module, name, new)


def _rebuild_sequential(
    seq: nn.Sequential, filter_size: int, pad_mode: str, channels: dict[int, int], split_conv: bool = False
) -> None:
    """Apply the generic rule inside ``seq``, flattening replacements into it.

    ``split_conv``: a ``Conv(s)`` keeps stride ``s // 2`` and is blurred by 2
    (AlexNet's first layer in the package) instead of stride 1 and blur ``s``.
    """
    children = list(seq.named_children())
    items: list[tuple[str, nn.Module]] = []
    pending: tuple[int, BlurPool2d] | None = None  # (insert after this many more followers, blur)
    for index, (name, child) in enumerate(children):
        if isinstance(child, nn.Conv2d) and _stride(child) > 1:
            stride = _stride(child)
            keep = stride // 2 if split_conv and stride % 2 == 0 else 1
            child.stride = (keep, keep)
            followers = []
            for _, nxt in children[index + 1:]:
                if not isinstance(nxt, _NORMS + _ACTIVATIONS):
                    break
                followers.append(nxt)
            acts = [i for i, f in enumerate(followers) if isinstance(f, _ACTIVATIONS)]
            blur = BlurPool2d(child.out_channels, filter_size, stride // keep, pad_mode)
            items.append((name, child))
            if acts:
                pending = (acts[-1] + 1, blur)
            else:
                items.append((name + "_blur", blur))
            continue
        if isinstance(child, nn.MaxPool2d) and _stride(child) > 1:
            blur = BlurPool2d(channels.get(id(child)), filter_size, _stride(child), pad_mode)
            items += [(name, _unit_stride_max(child)), (name + "_blur", blur)]
        elif isinstance(child, nn.AvgPool2d) and _stride(child) > 1:
            items.append((name, BlurPool2d(channels.get(id(child)), filter_size, _stride(child), pad_mode)))
        else:
            if _is_plain_sequential(child):
                _rebuild_sequential(child, filter_size, pad_mode, channels)
            elif not isinstance(child, _NORMS + _ACTIVATIONS):
                _convert_children(child, filter_size, pad_mode, channels)
            items.append((name, child))
        if pending is not None:
            left, blur = pending
            if left == 1:
                items.append((name + "_blur", blur))
                pending = None
            else:
                pending = (left - 1, blur)
    _replace_children(seq, items)


def _replace_children(seq: nn.Module, items: list[tuple[str, nn.Module]]) -> None:
    """Set ``seq``'s children to ``items``, renumbered 0, 1, ... when the original names were indices."""
    if all(name.removesuffix("_blur").isdigit() for name, _ in items):
        items = [(str(i), module) for i, (_, module) in enumerate(items)]
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise SpecError(f"anti-aliasing would give duplicate layer names in {type(seq).__name__}: {names}")
    seq._modules.clear()
    for name, module in items:
        seq.add_module(name, module)


_NEEDS = {
    "resnet": ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4"),
    "vgg": ("features",),
    "alexnet": ("features",),
    "densenet": ("features",),
    "mobilenet_v2": ("features", "classifier"),
}

_CONVERTERS = {
    "resnet": _resnet,
    "vgg": _vgg,
    "alexnet": _alexnet,
    "densenet": _densenet,
    "mobilenet_v2": _mobilenet_v2,
    "timm": lambda model, filter_size, pad_mode: convert_timm(model, filter_size, pad_mode, _generic),
    "generic": _generic,
}
