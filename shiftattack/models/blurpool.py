"""BlurPool anti-aliasing (Zhang, ICML 2019): low-pass filter, then subsample.

A BlurPool is a depthwise convolution with a fixed, normalised binomial kernel
(sizes 1 to 7: ``[1]``, ``[1, 1]`` "Rect-2", ``[1, 2, 1]`` "Tri-3",
``[1, 3, 3, 1]`` "Bin-4", ``[1, 4, 6, 4, 1]`` "Bin-5", ... "Bin-7"), applied with
stride ``s`` after padding by ``floor((size - 1) / 2)`` before and
``ceil((size - 1) / 2)`` after, on both axes (the published recipe). Size 1 is
plain subsampling ``x[..., ::s, ::s]``.

The paper's replacements (blur always after the non-linearity):

* ``MaxPool(k, s)``  ->  ``MaxPool(k, 1)`` then ``BlurPool(s)``   (:class:`MaxBlurPool2d`)
* ``Conv(s) + ReLU`` ->  ``Conv(1) + ReLU`` then ``BlurPool(s)``   (:func:`blur_strided_conv`)
* ``AvgPool(k, s)``  ->  ``BlurPool(s)``

The functional form :func:`blur_pool2d` and the module :class:`BlurPool2d` share
one implementation; the module keeps its filter as a non-persistent buffer
(absent from ``state_dict``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shiftattack.errors import ShapeError, SpecError

__all__ = [
    "PAD_MODES",
    "FILTER_NAMES",
    "binomial_filter",
    "blur_pool2d",
    "BlurPool2d",
    "MaxBlurPool2d",
    "blur_strided_conv",
]

PAD_MODES = ("reflect", "replicate", "zero", "circular")
FILTER_NAMES = {1: "Subsample", 2: "Rect-2", 3: "Tri-3", 4: "Bin-4", 5: "Bin-5", 6: "Bin-6", 7: "Bin-7"}


def _check_args(filter_size: int, stride: int, pad_mode: str) -> None:
    if not isinstance(filter_size, int) or not 1 <= filter_size <= 7:
        raise SpecError(f"filter_size must be an integer from 1 to 7, got {filter_size!r}")
    if not isinstance(stride, int) or stride < 1:
        raise SpecError(f"stride must be a positive integer, got {stride!r}")
    if pad_mode not in PAD_MODES:
        raise SpecError(f"pad_mode must be one of {', '.join(PAD_MODES)}, got {pad_mode!r}")


def binomial_filter(
    filter_size: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Tensor:
    """The normalised 2-D binomial kernel of side ``filter_size`` (1 to 7).

    Returns:
        (filter_size, filter_size) tensor, the outer product of
        ``[comb(n - 1, k) for k in range(n)]`` with itself, summing to 1.

    Examples:
        >>> binomial_filter(3) * 16
        tensor([[1., 2., 1.],
                [2., 4., 2.],
                [1., 2., 1.]])
    """
    _check_args(filter_size, 1, "zero")
    taps = torch.tensor([math.comb(filter_size - 1, k) for k in range(filter_size)], dtype=torch.float64)
    kernel = taps[:, None] * taps[None, :]
    return (kernel / kernel.sum()).to(dtype=dtype or torch.get_default_dtype(), device=device)


def _padding(filter_size: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) as ``F.pad`` takes them: floor before, ceil after."""
    before, after = (filter_size - 1) // 2, filter_size // 2
    return (before, after, before, after)


def _blur_pool(x: Tensor, kernel: Tensor | None, filter_size: int, stride: int, pad_mode: str) -> Tensor:
    """Shared implementation; ``kernel`` is the (C, 1, F, F) depthwise weight (None for size 1)."""
    if x.dim() != 4:
        raise ShapeError(f"BlurPool input must have shape (N, C, H, W), got {tuple(x.shape)}")
    if filter_size == 1:
        return x[..., ::stride, ::stride]
    pad = _padding(filter_size)
    if pad_mode in ("reflect", "circular") and (x.shape[-2] <= pad[3] or x.shape[-1] <= pad[1]):
        raise ShapeError(
            f"{pad_mode} padding by {pad[1]} px needs maps larger than that, got {tuple(x.shape[-2:])}")
    if x.device.type == "cpu":
        # oneDNN's depthwise convolution has no fast bf16/fp16 backward on CPUs (measured 3x to 30x
        # slower than float32), so under autocast or in half precision the blur runs in float32.
        with torch.autocast("cpu", enabled=False):
            wide = x.float() if x.dtype in (torch.bfloat16, torch.float16) else x
            return _pad_conv(wide, kernel, stride, pad, pad_mode).to(x.dtype)
    return _pad_conv(x, kernel, stride, pad, pad_mode)


def _pad_conv(
    x: Tensor, kernel: Tensor, stride: int, pad: tuple[int, int, int, int], pad_mode: str
) -> Tensor:
    x = F.pad(x, pad) if pad_mode == "zero" else F.pad(x, pad, mode=pad_mode)
    return F.conv2d(x, kernel.to(dtype=x.dtype, device=x.device), stride=stride, groups=x.shape[1])


def blur_pool2d(x: Tensor, filter_size: int = 4, stride: int = 2, pad_mode: str = "reflect") -> Tensor:
    """Blur every channel with the binomial kernel, then subsample by ``stride``.

    Args:
        x: (N, C, H, W) feature maps.
        filter_size: kernel side, 1 to 7 (1 = plain subsampling).
        stride: subsampling factor.
        pad_mode: ``reflect`` (default, the paper's), ``replicate``, ``zero`` or ``circular``.

    Returns:
        (N, C, ceil(H / stride), ceil(W / stride)).

    Examples:
        >>> blur_pool2d(torch.ones(1, 2, 8, 8), 3).shape
        torch.Size([1, 2, 4, 4])
    """
    _check_args(filter_size, stride, pad_mode)
    if x.dim() != 4:
        raise ShapeError(f"blur_pool2d input must have shape (N, C, H, W), got {tuple(x.shape)}")
    kernel = None
    if filter_size > 1:
        kernel = binomial_filter(filter_size, dtype=x.dtype, device=x.device).expand(x.shape[1], 1, -1, -1)
    return _blur_pool(x, kernel, filter_size, stride, pad_mode)


class BlurPool2d(nn.Module):
    """Module form of :func:`blur_pool2d` for ``channels`` input channels.

    ``channels=None`` accepts any channel count (the filter is broadcast over the
    channels at each call), for a layer whose input width cannot be known before
    the first forward (after a module that concatenates branches, say).

    Shape:
        (N, channels, H, W) -> (N, channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(
        self, channels: int | None, filter_size: int = 4, stride: int = 2, pad_mode: str = "reflect"
    ) -> None:
        super().__init__()
        _check_args(filter_size, stride, pad_mode)
        self.channels, self.filter_size, self.stride, self.pad_mode = channels, filter_size, stride, pad_mode
        kernel = binomial_filter(filter_size)[None, None].repeat(channels or 1, 1, 1, 1)
        self.register_buffer("filt", kernel, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or (self.channels is not None and x.shape[1] != self.channels):
            raise ShapeError(
                f"BlurPool2d expects (N, {self.channels or 'C'}, H, W), got {tuple(x.shape)}")
        kernel = self.filt if self.channels is not None else self.filt.expand(x.shape[1], -1, -1, -1)
        return _blur_pool(x, kernel, self.filter_size, self.stride, self.pad_mode)

    def extra_repr(self) -> str:
        channels = "any channels" if self.channels is None else self.channels
        return (f"{channels}, filter_size={self.filter_size} ({FILTER_NAMES[self.filter_size]}), "
                f"stride={self.stride}, pad_mode={self.pad_mode!r}")


class MaxBlurPool2d(nn.Sequential):
    """``MaxPool2d(kernel_size, stride=1)`` then :class:`BlurPool2d` (the paper's MaxBlurPool).

    Replaces ``MaxPool2d(kernel_size, stride)``. Children ``0`` (max) and ``1``
    (blur), the layout the ``antialiased_cnns`` package uses.

    Shape:
        (N, channels, H, W) -> (N, channels, ceil((H - k + 1) / stride), ...) for padding 0.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 2,
        filter_size: int = 4,
        stride: int = 2,
        pad_mode: str = "reflect",
        padding: int = 0,
    ) -> None:
        super().__init__(
            nn.MaxPool2d(kernel_size, stride=1, padding=padding),
            BlurPool2d(channels, filter_size=filter_size, stride=stride, pad_mode=pad_mode),
        )


def blur_strided_conv(
    conv: nn.Conv2d,
    after: nn.Module | None = None,
    filter_size: int = 4,
    pad_mode: str = "reflect",
) -> nn.Sequential:
    """Replace a strided ``Conv(s)`` (+ ``after``: BN, ReLU) by ``Conv(1)``, ``after``, ``BlurPool(s)``.

    The new convolution shares nothing with ``conv`` but copies its weights, so a
    converted model starts from the baseline's parameters.

    Returns:
        ``nn.Sequential(conv_stride1, *after, BlurPool2d)``.
    """
    stride = conv.stride[0]
    if conv.stride[0] != conv.stride[1]:
        raise SpecError(f"only square strides can be blurred, got {conv.stride}")
    new = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=1, padding=conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )
    new.load_state_dict(conv.state_dict())
    layers: list[nn.Module] = [new]
    if after is not None:
        layers.append(after)
    layers.append(BlurPool2d(conv.out_channels, filter_size=filter_size, stride=stride, pad_mode=pad_mode))
    return nn.Sequential(*layers)
