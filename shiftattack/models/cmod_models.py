"""CMod twins of ResNet and AlexNet: locating a baseline's first layer, builders, :func:`twin`.

Registered models, built on :func:`shiftattack.models.zoo.imagenet_model` (inputs
(N, 3, H, W) in [0, 1], ImageNet normalisation inside, untrained, nothing downloaded):

* ``resnet18_cmod``, ``resnet34_cmod``: torchvision ResNet whose stem is a
  :class:`~shiftattack.models.cmod.CModStem` with 40 free + 24 Gabor channels (the
  paper's ResNet-34 split; ResNet-18 has the same 64-channel stem and uses the same
  split, as the paper's CIFAR-10 ResNet-18 does).
* ``alexnet_cmod``: torchvision AlexNet, 32 free + 32 Gabor channels.
* ``{resnet18,resnet34,alexnet}_blur{F}_cmod`` for F in 2, 3, 4, 5, 7: the zoo's
  BlurPool model ``ARCH_blurF`` (antialiased_cnns layout) with its stem replaced;
  the free channels keep that model's MaxBlurPool (ResNet: ``MaxPool(2, 1)`` +
  ``BlurPool(2)``; AlexNet: also the blurred strided conv ``Conv(11, 2)``, ReLU,
  ``BlurPool(2)``), the Gabor channels are CMod (no blur), as in the paper.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from shiftattack.errors import ModelError, SpecError
from shiftattack.models._registry import register_model
from shiftattack.models.cmod import CModStem, StemGeometry
from shiftattack.models.gabor import fit_gabor
from shiftattack.models.zoo import imagenet_model

__all__ = ["LocatedStem", "TwinFit", "locate_stem", "replace_stem", "cmod_resnet", "cmod_alexnet", "twin",
           "BLUR_SIZES"]

BLUR_SIZES = (2, 3, 4, 5, 7)
_PAD_MODES = {"refl": "reflect", "reflect": "reflect", "repl": "replicate", "replicate": "replicate",
              "zero": "zero", "zeros": "zero", "circular": "circular"}


@dataclass
class LocatedStem:
    """A baseline first layer ``conv -> [bn] -> relu -> [blur] -> pool`` found in a model.

    Attributes:
        parent: the module holding the layers; ``names`` their attribute names
            (``conv`` first), all replaced when the stem is swapped.
        conv, bn: the first convolution and its batch norm (None if absent).
        geometry: conv and pool sizes, with the conv stride before any blur (``m``).
        blur_filter_size: BlurPool filter size of a MaxBlurPool (None: plain max-pool).
        blur_conv: a BlurPool(2) follows the ReLU (antialiased AlexNet's blurred strided conv).
        pad_mode: the BlurPool padding.
    """

    parent: nn.Module
    names: list[str]
    conv: nn.Conv2d
    bn: nn.BatchNorm2d | None
    geometry: StemGeometry
    blur_filter_size: int | None
    blur_conv: bool
    pad_mode: str


def _blur_info(m: nn.Module) -> tuple[int, int, str] | None:
    """(filter size, stride, pad mode) of a BlurPool-like module (ours or antialiased_cnns'), else None."""
    size = getattr(m, "filter_size", getattr(m, "filt_size", None))
    stride = getattr(m, "stride", None)
    if isinstance(m, nn.MaxPool2d) or not isinstance(size, int) or not isinstance(stride, int):
        return None
    mode = str(getattr(m, "pad_mode", getattr(m, "pad_type", "reflect")))
    return size, stride, _PAD_MODES.get(mode, "reflect")


def _int(v: int | tuple[int, ...], what: str) -> int:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if t[0] != t[1]:
        raise ModelError(f"the first layer's {what} must be square, got {t}")
    return int(t[0])


def _parse(parent: nn.Module, names: list[str]) -> LocatedStem:
    conv = getattr(parent, names[0]) if not isinstance(parent, nn.Sequential) else parent[int(names[0])]
    if conv.groups != 1 or _int(conv.dilation, "dilation") != 1 or conv.padding_mode != "zeros":
        raise ModelError("the first conv must have groups=1, dilation=1 and zero padding to get a CMod twin")
    flat: list[tuple[str, nn.Module]] = []
    used: list[str] = [names[0]]
    for name in names[1:]:
        mod = parent[int(name)] if isinstance(parent, nn.Sequential) else getattr(parent, name)
        subs = list(mod.children()) if isinstance(mod, nn.Sequential) and _blur_info(mod) is None else [mod]
        flat += [(name, s) for s in subs]
    bn, relu, blur_conv, pool, blur = None, False, False, None, None
    pad_mode = "reflect"
    for name, mod in flat:
        info = _blur_info(mod)
        if isinstance(mod, nn.BatchNorm2d) and not relu and bn is None:
            bn = mod
        elif isinstance(mod, nn.ReLU) and not relu:
            relu = True
        elif info is not None and relu and pool is None and not blur_conv:
            blur_conv, pad_mode = True, info[2]
            if info[1] != 2:
                raise ModelError(f"a BlurPool before the max-pool must have stride 2, got {info[1]}")
        elif isinstance(mod, nn.MaxPool2d) and relu and pool is None:
            pool = mod
        elif info is not None and pool is not None and blur is None:
            blur, pad_mode = info, info[2]
        else:
            break
        if name not in used:
            used.append(name)
        if pool is not None and (blur is not None or _int(pool.stride, "pool stride") > 1):
            break
    if not relu or pool is None:
        raise ModelError("expected the first layer to be conv -> [BatchNorm2d] -> ReLU -> MaxPool2d (or "
                         f"MaxBlurPool); found {[type(m).__name__ for _, m in flat]} after the conv")
    if pool.ceil_mode or _int(pool.dilation, "pool dilation") != 1:
        raise ModelError("the first max-pool must have ceil_mode=False and dilation=1")
    pool_stride = _int(pool.stride, "pool stride") if blur is None else blur[1]
    if blur is not None and _int(pool.stride, "pool stride") != 1:
        raise ModelError("a MaxBlurPool's max-pool must have stride 1")
    m = _int(conv.stride, "stride") * (2 if blur_conv else 1)
    geometry = StemGeometry(_int(conv.kernel_size, "kernel"), m, _int(conv.padding, "padding"),
                            _int(pool.kernel_size, "pool kernel"), pool_stride,
                            _int(pool.padding, "pool padding"))
    blur_size = None if blur is None else blur[0]
    return LocatedStem(parent, used, conv, bn, geometry, blur_size, blur_conv, pad_mode)


def locate_stem(model: nn.Module) -> LocatedStem:
    """Find the first layer: ``conv1/bn1/relu/maxpool`` attributes (ResNet) or a Sequential run (AlexNet).

    Raises:
        ModelError: no Conv2d, the first one is not followed by [BN], ReLU and a max-pool, or
            the model already has a :class:`~shiftattack.models.cmod.CModStem`.
    """
    if any(isinstance(m, CModStem) for m in model.modules()):
        raise ModelError(f"{type(model).__name__} already has a CModStem first layer; "
                         "twin a baseline instead")
    for module in model.modules():
        if all(isinstance(getattr(module, a, None), nn.Module) for a in ("conv1", "bn1", "relu", "maxpool")) \
                and isinstance(module.conv1, nn.Conv2d):
            return _parse(module, ["conv1", "bn1", "relu", "maxpool"])
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            for i, child in enumerate(module):
                if isinstance(child, nn.Conv2d):
                    return _parse(module, [str(j) for j in range(i, len(module))])
                if any(isinstance(c, nn.Conv2d) for c in child.modules()):
                    break
    raise ModelError(f"no first layer conv -> [BN] -> ReLU -> MaxPool found in {type(model).__name__}; "
                     "expected a ResNet-like (conv1, bn1, relu, maxpool) or a Sequential starting with "
                     "a Conv2d")


def _stem_for(stem: LocatedStem, gabor_channels: int, gabor_index: list[int] | None, **kw) -> CModStem:
    g, total = stem.geometry, stem.conv.out_channels
    if not 1 <= gabor_channels <= total:
        raise SpecError(f"gabor_channels must be 1..{total} (the first layer's channels), "
                        f"got {gabor_channels}")
    new = CModStem(stem.conv.in_channels, total - gabor_channels, gabor_channels, g.kernel_size,
                   g.conv_stride, g.pool_kernel, g.pool_stride, g.pool_padding, g.conv_padding,
                   stem.bn is not None, stem.blur_filter_size, blur_conv=stem.blur_conv,
                   pad_mode=stem.pad_mode, gabor_index=gabor_index, **kw)
    return new.to(stem.conv.weight.device)


def replace_stem(model: nn.Module, new: nn.Module, stem: LocatedStem | None = None) -> nn.Module:
    """Put ``new`` in place of the located first layer (in place); the other stem layers become Identity.

    Later layers keep their names, so their ``state_dict`` keys do not change.
    """
    stem = stem or locate_stem(model)
    for i, name in enumerate(stem.names):
        mod = new if i == 0 else nn.Identity()
        if isinstance(stem.parent, nn.Sequential):
            stem.parent[int(name)] = mod
        else:
            setattr(stem.parent, name, mod)
    return model


def _base(arch: str, num_classes: int, blur_filter_size: int | None, pad_mode: str) -> nn.Module:
    if blur_filter_size is None:
        return imagenet_model(arch, num_classes=num_classes)
    return imagenet_model(arch, num_classes=num_classes, filter_size=blur_filter_size, pad_mode=pad_mode)


def _fresh_stem(model: nn.Module, gabor_channels: int) -> nn.Module:
    stem = locate_stem(model)
    new = _stem_for(stem, gabor_channels, None)
    if new.free is not None:
        nn.init.kaiming_normal_(new.free[0].weight, mode="fan_out", nonlinearity="relu")
    return replace_stem(model, new, stem)


def cmod_resnet(depth: int, num_classes: int = 1000, blur_filter_size: int | None = None,
                gabor_channels: int = 24, pad_mode: str = "reflect") -> nn.Module:
    """A ResNet-18/34 with a CMod stem (64 - ``gabor_channels`` free channels), untrained.

    Args:
        depth: 18 or 34.
        num_classes: logits.
        blur_filter_size: None, or the BlurPool filter size of a BlurPool ResNet (from the zoo).
        gabor_channels: CMod channels (the paper: 24 of 64).
        pad_mode: BlurPool padding.

    Returns:
        a model mapping (N, 3, H, W) in [0, 1] to (N, num_classes) logits.
    """
    if depth not in (18, 34):
        raise SpecError(f"cmod_resnet depth must be 18 or 34, got {depth!r}")
    return _fresh_stem(_base(f"resnet{depth}", num_classes, blur_filter_size, pad_mode), gabor_channels)


def cmod_alexnet(num_classes: int = 1000, blur_filter_size: int | None = None, gabor_channels: int = 32,
                 pad_mode: str = "reflect") -> nn.Module:
    """AlexNet with a CMod stem (32 free + 32 Gabor channels by default), untrained; as :func:`cmod_resnet`.

    AlexNet needs inputs of at least 63 px (more for its blurred forms, see the zoo).
    """
    return _fresh_stem(_base("alexnet", num_classes, blur_filter_size, pad_mode), gabor_channels)


@dataclass
class TwinFit:
    """How well a twin's Gabor channels match the baseline's kernels.

    Attributes:
        gabor_index: first-layer channels turned into CMod channels (ascending).
        residual: (G,) relative residual ``||Re(gabor) - kernel|| / ||kernel||`` of those channels.
        leakage: (G,) negative-frequency leakage of their complex kernels (0 = analytic).
        all_residuals: (C,) residual of the Gabor fit of every first-layer kernel.
    """

    gabor_index: list[int]
    residual: Tensor
    leakage: Tensor
    all_residuals: Tensor


def twin(model: nn.Module, gabor_channels: int | None = None, *, steps: int = 150,
         learn_geometry: bool = True) -> nn.Module:
    """The CMod twin of a trained baseline: Gabor channels fitted to its most Gabor-like kernels.

    Every first-layer kernel is fitted by the real part of a complex Gabor
    (:func:`~shiftattack.models.gabor.fit_gabor`); the ``gabor_channels`` with the
    smallest relative residual plus negative-frequency leakage (band-pass, oriented
    kernels whose complex fit is analytic) become CMod channels,
    the others stay free with their weights. BN statistics carry over: the Gabor
    channels' :class:`~shiftattack.models.cmod.ModulusBatchNorm2d` takes the baseline's
    ``running_var``, ``weight`` and ``bias - weight * running_mean / sqrt(running_var + eps)``;
    without BN the conv bias becomes the CMod bias. Channel positions and every other
    layer are kept, so the rest of the network is unchanged.

    Args:
        model: the baseline (not modified); its first layer conv -> [BN] -> ReLU -> MaxPool
            (or MaxBlurPool) is located by :func:`locate_stem`.
        gabor_channels: CMod channels; default 3/8 of the channels with BN (ResNet: 24 of 64),
            1/2 without (AlexNet: 32 of 64).
        steps: optimisation steps of the fit.
        learn_geometry: keep the Gabor geometry trainable for fine-tuning.

    Returns:
        a deep copy of ``model`` with a :class:`~shiftattack.models.cmod.CModStem`, in
        the baseline's train/eval mode, with the attribute ``cmod_fit`` (:class:`TwinFit`).
    """
    stem = locate_stem(model)
    total = stem.conv.out_channels
    if gabor_channels is None:
        gabor_channels = round(total * 3 / 8) if stem.bn is not None else total // 2
    weight = stem.conv.weight.detach()
    fit = fit_gabor(weight, steps=steps)
    order = torch.argsort(fit.residual + fit.leakage)
    gabor_idx = sorted(int(i) for i in order[:gabor_channels])
    free_idx = [i for i in range(total) if i not in set(gabor_idx)]
    new = _stem_for(stem, gabor_channels, gabor_idx, learn_geometry=learn_geometry)
    gi, fi = torch.tensor(gabor_idx), torch.tensor(free_idx, dtype=torch.long)
    with torch.no_grad():
        new.gabor.load_fit(fit, gi)
        if new.free is not None:
            new.free[0].weight.copy_(weight[fi])
            if stem.conv.bias is not None:
                new.free[0].bias.copy_(stem.conv.bias[fi])
        if stem.bn is not None:
            bn, norm = stem.bn, new.gabor_norm
            if new.free is not None:
                subset = {k: v if v.dim() == 0 else v[fi] for k, v in bn.state_dict().items()}
                new.free[1].load_state_dict(subset)
            std = torch.sqrt(bn.running_var[gi] + bn.eps)
            norm.running_var.copy_(bn.running_var[gi])
            norm.weight.copy_(bn.weight[gi])
            norm.bias.copy_(bn.bias[gi] - bn.weight[gi] * bn.running_mean[gi] / std)
            norm.num_batches_tracked.copy_(bn.num_batches_tracked)
        elif stem.conv.bias is not None:
            new.gabor_bias.copy_(stem.conv.bias[gi])
    out = copy.deepcopy(model)
    replace_stem(out, new.train(model.training), locate_stem(out))
    out.cmod_fit = TwinFit(gabor_idx, fit.residual[gi], fit.leakage[gi], fit.residual)
    return out


for _depth in (18, 34):
    register_model(partial(cmod_resnet, _depth), name=f"resnet{_depth}_cmod")
register_model(partial(cmod_alexnet), name="alexnet_cmod")
for _f in BLUR_SIZES:
    for _depth in (18, 34):
        register_model(partial(cmod_resnet, _depth, blur_filter_size=_f),
                       name=f"resnet{_depth}_blur{_f}_cmod")
    register_model(partial(cmod_alexnet, blur_filter_size=_f), name=f"alexnet_blur{_f}_cmod")
