"""Adaptive polyphase sampling (APS, Chaman & Dokmanic, CVPR 2021): shift-invariant subsampling.

A strided layer keeps polyphase component ``(0, 0)`` of the ``s**2`` components
``x[..., i::s, j::s]``, so a one-pixel shift changes which pixels survive. APS keeps, per
sample, the component of largest norm (l2, l1 or linf over channels and pixels). A circular
shift permutes the components (and circularly shifts each), so the same pixels win and the
output is a circular shift of the unshifted one: with circular padding everywhere and global
pooling at the end a network is *exactly* invariant to integer circular shifts (when every
subsampled map has sides divisible by its stride). Ties go to the first phase ``i * s + j``:
deterministic but not shift-equivariant; generic inputs have no exact ties. Beyond the public
code: any stride, non-square maps, any device, an optional binomial blur, a reusable phase.

**Map sizes not divisible by the stride.** Component ``(i, j)`` is
``x[..., (i + s*k) % H, (j + s*l) % W]`` for ``k < ceil(H / s)``, ``l < ceil(W / s)``: the
short components are completed by wrapping around (the circular continuation of the map),
so all have the shape ``ceil(H / s) x ceil(W / s)`` of :func:`.blur_pool2d` and component
``(0, 0)`` is plain ``x[..., ::s, ::s]``. Exact invariance is claimed only for divisible sizes.

**Residual blocks.** In 1-D with ``s = 2``, shifting the input by 1 turns component 0 into
component 1 with output offset 0, but component 1 into component 0 with offset 1. If the
main path and the shortcut of a strided block chose their components independently, one
branch could be shifted by 0 and the other by 1, and their sum would be no shifted copy of
the unshifted sum. :class:`ApsResNet` therefore chooses the phase once per block (on the
main path, after the first conv-BN-ReLU) and applies the same phase to the shortcut: both
branches then move by the same offset, and the block stays exactly shift-equivariant.
"""

from __future__ import annotations

import copy
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

from shiftattack.errors import ShapeError, SpecError, check_shape
from shiftattack.models._registry import register_model
from shiftattack.models.blurpool import PAD_MODES, _blur_pool, binomial_filter
from shiftattack.models.normalize import IMAGENET_MEAN, IMAGENET_STD, add_input_normalization
from shiftattack.models.small import SmallCNN

__all__ = ["NORMS", "aps_pool2d", "ApsPool2d", "circular_max_pool2d", "CircularMaxPool2d", "ApsConv2d",
           "aps_convert", "ApsBasicBlock", "ApsBottleneck", "ApsResNet", "aps_resnet", "small_cnn_aps"]

NORMS = ("l2", "l1", "linf")


def _check_args(stride: int, norm: str, filter_size: int, pad_mode: str) -> None:
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise SpecError(f"stride must be a positive integer, got {stride!r}")
    if norm not in NORMS:
        raise SpecError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if not isinstance(filter_size, int) or not 1 <= filter_size <= 7:
        raise SpecError(f"filter_size must be an integer from 1 to 7, got {filter_size!r}")
    if pad_mode not in PAD_MODES:
        raise SpecError(f"pad_mode must be one of {', '.join(PAD_MODES)}, got {pad_mode!r}")


def _wrap(x: Tensor, dim: int, before: int, after: int) -> Tensor:
    """Circular padding of one axis by any amount (F.pad refuses pads larger than the map)."""
    if before == 0 and after == 0:
        return x
    n = x.shape[dim]
    return x.index_select(dim, torch.arange(-before, n + after, device=x.device) % n)


def _circular_pad(x: Tensor, total: int) -> Tensor:
    """Pad H and W circularly by ``total`` px each: floor(total / 2) before, the rest after."""
    return _wrap(_wrap(x, 2, total // 2, total - total // 2), 3, total // 2, total - total // 2)


def _check_input(x: Tensor, name: str, channels: int | None, index: Tensor | None, stride: int) -> None:
    check_shape(x, ["N", "C" if channels is None else channels, "H", "W"], name)
    if not x.is_floating_point():
        raise ShapeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if index is None:
        return
    check_shape(index, [x.shape[0]], "APS phase index")
    if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
        raise ShapeError(f"APS phase index must be an integer tensor, got dtype {index.dtype}")
    if index.numel() and bool(((index < 0) | (index >= stride * stride)).any()):
        raise SpecError(f"APS phase index values must lie in [0, {stride * stride}) for stride {stride}, "
                        f"got min {int(index.min())}, max {int(index.max())}")


def _aps(x: Tensor, stride: int, norm: str, filter_size: int, pad_mode: str,
         kernel: Tensor, index: Tensor | None) -> tuple[Tensor, Tensor]:
    """Shared implementation; ``kernel`` is the (1, 1, F, F) blur. Returns (output, index)."""
    n, c = x.shape[:2]
    if filter_size > 1:
        kernel = kernel.to(dtype=x.dtype, device=x.device).expand(c, 1, -1, -1)
        if pad_mode == "circular":
            x = F.conv2d(_circular_pad(x, filter_size - 1), kernel, groups=c)
        else:
            x = _blur_pool(x, kernel, filter_size, 1, pad_mode)
    s = stride
    h, w = -(-x.shape[2] // s), -(-x.shape[3] // s)
    x = _wrap(_wrap(x, 2, 0, h * s - x.shape[2]), 3, 0, w * s - x.shape[3])
    comps = x.reshape(n, c, h, s, w, s)  # comps[:, :, k, i, l, j] = x[:, :, i + s*k, j + s*l]
    if index is None:
        low = x.dtype in (torch.float16, torch.bfloat16)  # half norms overflow: use float32
        v = comps.float() if low else comps
        if norm == "l2":
            score = v.square().sum(dim=(1, 2, 4))
        else:
            score = v.abs().sum(dim=(1, 2, 4)) if norm == "l1" else v.abs().amax(dim=(1, 2, 4))
        index = score.reshape(n, s * s).argmax(dim=1)  # the first maximum on ties
    index = index.to(device=x.device, dtype=torch.long)
    out = comps.permute(0, 3, 5, 1, 2, 4)[torch.arange(n, device=x.device), index // s, index % s]
    return out, index


def aps_pool2d(x: Tensor, stride: int = 2, norm: str = "l2", filter_size: int = 1, pad_mode: str = "circular",
               return_index: bool = False, *, index: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """Subsample by ``stride``, keeping per sample the polyphase component of largest norm.

    Args:
        x: (N, C, H, W) float feature maps, any size (see the module notes for H, W not
            divisible by ``stride``).
        stride: subsampling factor, 1 or more (1 only blurs).
        norm: ``l2`` (default), ``l1`` or ``linf``, taken over channels and pixels.
        filter_size: binomial blur applied first at stride 1 (1 to 7; 1 = no blur).
        pad_mode: padding of the blur: ``circular`` (default, exactly shift-equivariant),
            ``reflect``, ``replicate`` or ``zero``.
        return_index: also return the chosen phases.
        index: (N,) integer phases ``i * stride + j`` to use instead of choosing (reuse a
            choice, e.g. the main path's on a residual shortcut).

    Shape:
        (N, C, H, W) -> (N, C, ceil(H / stride), ceil(W / stride)).

    Returns:
        the subsampled maps, and with ``return_index`` also the (N,) int64 phases ``i * stride + j``.

    Examples:
        >>> x = torch.zeros(1, 1, 4, 4); x[0, 0, 1, 3] = 1.0
        >>> y, idx = aps_pool2d(x, return_index=True)
        >>> y.shape, idx.tolist()
        (torch.Size([1, 1, 2, 2]), [3])
        >>> torch.equal(aps_pool2d(x.roll((1, 1), (2, 3))), y.roll((1, 1), (2, 3)))
        True
    """
    _check_args(stride, norm, filter_size, pad_mode)
    _check_input(x, "aps_pool2d input", None, index, stride)
    kernel = binomial_filter(filter_size, dtype=x.dtype, device=x.device)[None, None]
    out, idx = _aps(x, stride, norm, filter_size, pad_mode, kernel, index)
    return (out, idx) if return_index else out


class ApsPool2d(nn.Module):
    """Module form of :func:`aps_pool2d`; the blur is a non-persistent buffer (absent from ``state_dict``).

    Args:
        channels: expected input channels, or None to accept any.
        stride, norm, filter_size, pad_mode: as in :func:`aps_pool2d`.

    Shape:
        (N, channels, H, W) -> (N, channels, ceil(H / stride), ceil(W / stride)).

    Examples:
        >>> pool = ApsPool2d(8, stride=3, filter_size=3)
        >>> pool(torch.rand(2, 8, 9, 7)).shape
        torch.Size([2, 8, 3, 3])
    """

    def __init__(self, channels: int | None, stride: int = 2, norm: str = "l2", filter_size: int = 1,
                 pad_mode: str = "circular") -> None:
        super().__init__()
        _check_args(stride, norm, filter_size, pad_mode)
        if channels is not None and (not isinstance(channels, int) or channels < 1):
            raise SpecError(f"channels must be a positive integer or None, got {channels!r}")
        self.channels, self.stride, self.norm = channels, stride, norm
        self.filter_size, self.pad_mode = filter_size, pad_mode
        self.register_buffer("filt", binomial_filter(filter_size)[None, None], persistent=False)

    def forward(self, x: Tensor, index: Tensor | None = None,
                return_index: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Subsample ``x``; ``index`` and ``return_index`` as in :func:`aps_pool2d`."""
        _check_input(x, "ApsPool2d input", self.channels, index, self.stride)
        out, idx = _aps(x, self.stride, self.norm, self.filter_size, self.pad_mode, self.filt, index)
        return (out, idx) if return_index else out

    def extra_repr(self) -> str:
        return (f"{self.channels}, stride={self.stride}, norm={self.norm!r}, filter_size={self.filter_size}, "
                f"pad_mode={self.pad_mode!r}")


def circular_max_pool2d(x: Tensor, kernel_size: int, dilation: int = 1) -> Tensor:
    """Stride-1 max pooling over circularly padded maps: same size, exactly shift-equivariant.

    Pads ``dilation * (kernel_size - 1)`` px per axis, floor half before and the rest after
    (``kernel_size = 2``: 0 before, 1 after), indices taken modulo the map size.

    Shape:
        (N, C, H, W) -> (N, C, H, W).

    Examples:
        >>> circular_max_pool2d(torch.tensor([[[[1., 0., 0., 2.]]]]), 2)
        tensor([[[[1., 0., 2., 2.]]]])
    """
    if not isinstance(kernel_size, int) or kernel_size < 1 or not isinstance(dilation, int) or dilation < 1:
        raise SpecError(f"kernel_size and dilation must be positive integers, got {kernel_size!r} and "
                        f"{dilation!r}")
    check_shape(x, ["N", "C", "H", "W"], "circular_max_pool2d input")
    total = dilation * (kernel_size - 1)
    return F.max_pool2d(_circular_pad(x, total), kernel_size, stride=1, dilation=dilation)


class CircularMaxPool2d(nn.Module):
    """Module form of :func:`circular_max_pool2d`. Shape: (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, kernel_size: int, dilation: int = 1) -> None:
        super().__init__()
        circular_max_pool2d(torch.zeros(1, 1, 1, 1), kernel_size, dilation)  # validates the arguments
        self.kernel_size, self.dilation = kernel_size, dilation

    def forward(self, x: Tensor) -> Tensor:
        return circular_max_pool2d(x, self.kernel_size, self.dilation)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, dilation={self.dilation}"


class ApsConv2d(nn.Conv2d):
    """A stride-1 ``Conv2d``, then ``self.aps``: :func:`aps_convert`'s strided conv (same keys).

    Shape: (N, C_in, H, W) -> (N, C_out, ceil(H / s), ceil(W / s)).
    """

    def forward(self, x: Tensor) -> Tensor:
        return self.aps(super().forward(x))


def _convert(parent: nn.Module, aps: dict, strict: bool) -> None:
    for name, child in parent.named_children():
        if isinstance(child, nn.Conv2d) and not isinstance(child, ApsConv2d):
            k, d = child.kernel_size, child.dilation
            p = (0, 0) if child.padding == "valid" else child.padding
            if strict and p != "same" and any(2 * p[a] != d[a] * (k[a] - 1) for a in (0, 1)):
                raise SpecError(f"{name}: {child} does not keep the map size (needs padding = dilation * "
                                "(kernel_size - 1) / 2), so it cannot be made shift-equivariant; "
                                "pass strict=False to convert it anyway")
            stride = child.stride[0]
            if child.stride[1] != stride:
                raise SpecError(f"{name}: only square strides can be replaced by APS, got {child.stride}")
            if stride == 1:
                child.padding_mode = "circular"
                continue
            new = ApsConv2d(child.in_channels, child.out_channels, k, stride=1, padding=child.padding,
                            dilation=d, groups=child.groups, bias=child.bias is not None,
                            padding_mode="circular", device=child.weight.device, dtype=child.weight.dtype)
            new.load_state_dict(child.state_dict())
            new.aps = ApsPool2d(child.out_channels, stride, **aps)
            setattr(parent, name, new)
        elif isinstance(child, nn.MaxPool2d):
            k, s, d = (child.kernel_size, child.stride, child.dilation)
            if not all(isinstance(v, int) for v in (k, s, d)):
                raise SpecError(f"{name}: only square max pools can be converted, got {child}")
            pool = CircularMaxPool2d(k, d)
            setattr(parent, name, pool if s == 1 else nn.Sequential(pool, ApsPool2d(None, s, **aps)))
        elif strict and isinstance(child, (nn.AvgPool2d, nn.LPPool2d, nn.FractionalMaxPool2d)):
            raise SpecError(f"{name}: strided {type(child).__name__} is not supported by aps_convert; "
                            "pass strict=False to keep it as it is")
        else:
            _convert(child, aps, strict)


def aps_convert(model: nn.Module, *, norm: str = "l2", filter_size: int = 1, pad_mode: str = "circular",
                strict: bool = True) -> nn.Module:
    """An APS copy of a plain feed-forward CNN (``model`` itself is left unchanged).

    * ``Conv2d(s)`` -> :class:`ApsConv2d` (stride 1, circular padding, then APS(s)), same keys;
    * ``MaxPool2d(k, s)`` -> :class:`CircularMaxPool2d` ``(k)`` then APS(s): its own -inf padding
      (``padding``, ``ceil_mode``: ignored) would break equivariance, so it pads circularly.

    Exact invariance needs, in addition, convs that keep the map size (checked with ``strict``),
    maps divisible by the strides and global pooling at the end (not checked). Residual networks
    need one phase per block: use :func:`aps_resnet` (torchvision blocks are refused).

    Args:
        model: the CNN. norm, filter_size, pad_mode: as in :func:`aps_pool2d`.
        strict: refuse convolutions that change the map size and unsupported strided pools.

    Returns:
        the converted deep copy.
    """
    _check_args(2, norm, filter_size, pad_mode)
    if any(isinstance(m, (tv_resnet.BasicBlock, tv_resnet.Bottleneck)) for m in model.modules()):
        raise SpecError("aps_convert handles plain feed-forward CNNs; for residual networks use aps_resnet "
                        "(one polyphase choice shared by each block's main path and shortcut)")
    model = copy.deepcopy(model)
    _convert(model, dict(norm=norm, filter_size=filter_size, pad_mode=pad_mode), strict)
    return model


class _ApsBlock:
    """Forward of a strided residual block with one APS phase shared by main path and shortcut."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)  # the torchvision block's
        self.aps: ApsPool2d | None = None
        self.aps_shortcut: ApsPool2d | None = None
        self.shared_phase = True

    def _add_aps(self, conv: nn.Conv2d, aps: dict, shared_phase: bool) -> None:
        if self.stride == 1:
            return
        conv.stride = (1, 1)
        self.downsample[0].stride = (1, 1)
        self.aps = ApsPool2d(conv.out_channels, self.stride, **aps)
        self.aps_shortcut = ApsPool2d(self.downsample[0].in_channels, self.stride, **aps)
        self.shared_phase = shared_phase

    def _subsample(self, out: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.aps(out, return_index=True) if self.aps is not None else (out, None)

    def _shortcut(self, x: Tensor, index: Tensor | None) -> Tensor:
        a = self.aps_shortcut
        if a is not None:  # the main path's index needs no checks (and no device sync)
            index = index if self.shared_phase else None
            x = _aps(x, a.stride, a.norm, a.filter_size, a.pad_mode, a.filt, index)[0]
        return x if self.downsample is None else self.downsample(x)


class ApsBasicBlock(_ApsBlock, tv_resnet.BasicBlock):
    """torchvision's ``BasicBlock`` (same keys) with APS after the first conv-BN-ReLU when strided."""

    def forward(self, x: Tensor) -> Tensor:
        out, index = self._subsample(self.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self._shortcut(x, index))


class ApsBottleneck(_ApsBlock, tv_resnet.Bottleneck):
    """torchvision's ``Bottleneck`` (same keys) with APS after the 3x3 conv-BN-ReLU when strided."""

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out, index = self._subsample(self.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self._shortcut(x, index))


class ApsResNet(tv_resnet.ResNet):
    """torchvision's ResNet with every stride replaced by stride 1 + APS and circular conv padding.

    Stem: conv 7x7 (stride 1) - BN - ReLU - ``conv1_aps`` (APS 2) - ``maxpool`` (circular max
    3x3, then APS 2). Strided blocks share one phase between main path and shortcut (module
    notes). Exactly invariant to integer circular shifts of inputs whose sides are divisible
    by 32. The ``state_dict`` keys are torchvision's, so its weights load unchanged.

    Args:
        block: :class:`ApsBasicBlock` or :class:`ApsBottleneck`. layers: blocks per stage.
        num_classes: logits. norm, filter_size, pad_mode: of every APS layer (:func:`aps_pool2d`).
        shared_phase: False lets each shortcut choose its own phase (not exact; for ablations).
        **kwargs: to torchvision's ``ResNet`` (``zero_init_residual``, ``width_per_group``, ...).

    Shape: (N, 3, H, W) -> (N, num_classes).
    """

    def __init__(self, block: type, layers: list[int], num_classes: int = 1000, *, norm: str = "l2",
                 filter_size: int = 1, pad_mode: str = "circular",
                 shared_phase: bool = True, **kwargs) -> None:
        _check_args(2, norm, filter_size, pad_mode)
        super().__init__(block, layers, num_classes=num_classes, **kwargs)
        aps = dict(norm=norm, filter_size=filter_size, pad_mode=pad_mode)
        self.conv1.stride = (1, 1)
        self.conv1_aps = ApsPool2d(self.conv1.out_channels, 2, **aps)
        self.maxpool = nn.Sequential(CircularMaxPool2d(3), ApsPool2d(self.conv1.out_channels, 2, **aps))
        for m in list(self.modules()):
            if isinstance(m, nn.Conv2d):
                m.padding_mode = "circular"
            if isinstance(m, ApsBasicBlock):
                m._add_aps(m.conv1, aps, shared_phase)
            elif isinstance(m, ApsBottleneck):
                m._add_aps(m.conv2, aps, shared_phase)

    def _forward_impl(self, x: Tensor) -> Tensor:
        check_shape(x, ["N", 3, "H", "W"], "ApsResNet input")
        x = self.conv1_aps(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.maxpool(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_DEPTHS = {18: (ApsBasicBlock, [2, 2, 2, 2]), 34: (ApsBasicBlock, [3, 4, 6, 3]),
           50: (ApsBottleneck, [3, 4, 6, 3]), 101: (ApsBottleneck, [3, 4, 23, 3]),
           152: (ApsBottleneck, [3, 8, 36, 3])}


def aps_resnet(depth: int = 18, num_classes: int = 1000, filter_size: int = 1, norm: str = "l2",
               pad_mode: str = "circular", normalize: bool = True, **kwargs) -> ApsResNet:
    """An APS ResNet of the given ``depth`` (18, 34, 50, 101, 152), randomly initialised.

    Takes (N, 3, H, W) floats in [0, 1] (``normalize=True``) and returns (N, num_classes)
    logits, exactly invariant to circular shifts when H and W are divisible by 32. Other
    arguments as in :class:`ApsResNet`; torchvision ``resnet{depth}`` weights load strictly.

    Examples:
        >>> model = aps_resnet(18, num_classes=10).eval()
        >>> x = torch.rand(1, 3, 32, 32)
        >>> logits = model(torch.cat([x, x.roll((5, 11), dims=(2, 3))]))  # a circular shift by (5, 11) px
        >>> bool((logits[0] - logits[1]).abs().max() < 1e-4)
        True
    """
    if depth not in _DEPTHS:
        raise SpecError(f"depth must be one of {', '.join(map(str, _DEPTHS))}, got {depth!r}")
    block, layers = _DEPTHS[depth]
    model = ApsResNet(block, layers, num_classes, filter_size=filter_size, norm=norm, pad_mode=pad_mode,
                      **kwargs)
    return add_input_normalization(model, IMAGENET_MEAN, IMAGENET_STD) if normalize else model


def small_cnn_aps(num_classes: int = 10, width: int = 32, filter_size: int = 1, **kwargs) -> nn.Module:
    """:class:`.SmallCNN` through :func:`aps_convert` (not registered): exactly invariant to circular
    shifts of inputs with sides divisible by 8; inputs as SmallCNN's (no normalisation)."""
    return aps_convert(SmallCNN(num_classes=num_classes, width=width, **kwargs), filter_size=filter_size)


register_model(partial(aps_resnet, depth=18), name="resnet18_aps")
register_model(partial(aps_resnet, depth=34), name="resnet34_aps")
