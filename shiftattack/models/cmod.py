"""CMod first layers (Leterme, Polisano, Perrier, Alahari, EUSIPCO 2024, arXiv 2212.00394).

A CNN's first layer ``Conv(stride m) -> [BN] -> ReLU -> MaxPool(q, stride s)`` is read
as RMax (real conv, subsample by ``m``, max-pool) followed by bias and ReLU. For
kernels that are band-pass and oriented (Gabor-like), RMax is close to CMod:
a complex conv with a Gabor kernel whose real part is the RMax kernel, subsampled by
``m * s``, then the modulus, which is nearly shift invariant. :class:`CModStem` is
the "mathematical twin" first layer: ``free_channels`` channels keep the baseline's
Conv + [BN] + ReLU + MaxPool (or MaxBlurPool, the BlurPool "Blur" variant),
``gabor_channels`` channels are CMod with :class:`~shiftattack.models.gabor.GaborBank`
kernels, then (with BN) :class:`ModulusBatchNorm2d` (scale only, no mean-centring)
or (without BN) a bias, then ReLU.

Alignment. Pooled output ``i`` of the baseline covers input pixels centred at
``m * s * i + c0`` with ``c0 = m * ((q - 1) / 2 - r) - p + (k - 1) / 2`` (``p``, ``r``
the conv and pool paddings); the CMod conv is evaluated at exactly these centres
(a half-pixel remainder, e.g. for a 2x2 pool after a stride-1 conv, moves the
Gabor envelope by half a pixel) and cropped to the baseline's output size, so a
twin's channels sit where the baseline's were. :func:`cmod2d` is the functional
form; the module calls it. :func:`cmod_stem` builds the three stems in use:

=========  ======================================  ======================  ==============
preset     baseline                                split (free + Gabor)    output (224 px)
=========  ======================================  ======================  ==============
resnet     Conv 7/2 pad 3, BN, ReLU, MaxPool 3/2/1  40 + 24 (ResNet-18/34)  56 x 56
alexnet    Conv 11/4 pad 2 + bias, ReLU, MaxPool    32 + 32                 27 x 27
           3/2/0
cifar      Conv k/1 pad k//2, BN, ReLU, MaxPool     caller's choice         H/2 x W/2
           2/2/0
=========  ======================================  ======================  ==============

Caveat for the cifar stem: RMax approximates CMod only when the max-pool window
spans about a carrier period; a 2x2 pool after a stride-1 conv spans 2 px, so a
twin of a trained CIFAR stem is not output-equivalent (its BN statistics carry
over only roughly), and 3x3 kernels are too small to be analytic (their Gabor
fits leak 0.15-0.5 of their energy to negative frequencies): use k >= 5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shiftattack.errors import ShapeError, SpecError, check_shape
from shiftattack.models.blurpool import BlurPool2d, MaxBlurPool2d
from shiftattack.models.gabor import GaborBank

__all__ = ["StemGeometry", "cmod2d", "ModulusBatchNorm2d", "CModStem", "cmod_stem", "STEM_PRESETS"]

# preset -> (kernel_size, conv_stride, pool_kernel, pool_stride, pool_padding, conv_padding, batch_norm)
STEM_PRESETS = {
    "resnet": (7, 2, 3, 2, 1, 3, True),
    "alexnet": (11, 4, 3, 2, 0, 2, False),
    "cifar": (5, 1, 2, 2, 0, 2, True),
}


@dataclass(frozen=True)
class StemGeometry:
    """The baseline stem ``Conv(k, stride m, padding p) -> [BN] -> ReLU -> MaxPool(q, s, r)``.

    Attributes:
        kernel_size, conv_stride, conv_padding: ``k``, ``m``, ``p`` (px).
        pool_kernel, pool_stride, pool_padding: ``q``, ``s``, ``r`` (conv-output px).
    """

    kernel_size: int
    conv_stride: int
    conv_padding: int
    pool_kernel: int
    pool_stride: int
    pool_padding: int

    def __post_init__(self) -> None:
        vals = (self.kernel_size, self.conv_stride, self.pool_kernel, self.pool_stride)
        bad_pad = min(self.conv_padding, self.pool_padding) < 0
        if any(not isinstance(v, int) or v < 1 for v in vals) or bad_pad:
            raise SpecError(f"stem sizes must be positive integers and paddings >= 0, got {self}")
        if 2 * self.pool_padding > self.pool_kernel:
            raise SpecError(f"pool padding {self.pool_padding} must be at most half the pool kernel "
                            f"{self.pool_kernel} (as torch's MaxPool2d requires)")

    @property
    def stride(self) -> int:
        """Total subsampling factor ``m * s``."""
        return self.conv_stride * self.pool_stride

    @property
    def centre(self) -> float:
        """``c0``: input coordinate (px) of the centre of pooled output 0."""
        m, q, r = self.conv_stride, self.pool_kernel, self.pool_padding
        return m * ((q - 1) / 2 - r) - self.conv_padding + (self.kernel_size - 1) / 2

    def conv_size(self, n: int) -> int:
        return (n + 2 * self.conv_padding - self.kernel_size) // self.conv_stride + 1

    def output_size(self, n: int) -> int:
        """Baseline output side for an input side ``n`` (0 or less: too small)."""
        c = self.conv_size(n)
        return (c + 2 * self.pool_padding - self.pool_kernel) // self.pool_stride + 1 if c > 0 else 0

    def cmod_layout(self, n: int, kernel_size: int) -> tuple[int, int, float]:
        """(pad before, pad after, envelope shift) for a CMod conv of side ``kernel_size`` on side ``n``.

        Pads may be negative (crop). The shift (px, in ``(-0.5, 0.5]``) moves the
        Gabor envelope so its centre lands on ``stride * i + c0`` exactly.
        """
        ideal = (kernel_size - 1) / 2 - self.centre
        before = math.floor(ideal + 0.5)
        out = self.output_size(n)
        after = (out - 1) * self.stride + kernel_size - n - before
        return before, after, before - ideal


def cmod2d(x: Tensor, kernels: Tensor, stride: int, padding: int | Sequence[int] = 0,
           output_size: tuple[int, int] | None = None, eps: float = 1e-12) -> Tensor:
    """Complex convolution, subsampling by ``stride``, modulus.

    Args:
        x: (N, C, H, W) real input.
        kernels: complex (G, C, kh, kw) kernels.
        stride: subsampling factor (px).
        padding: zeros added before the conv: an int for all sides, or
            ``(left, right, top, bottom)`` as ``F.pad`` takes them; negative values crop.
        output_size: ``(h, w)``: keep the first ``h`` rows and ``w`` columns
            (ShapeError if the conv gives fewer).
        eps: added under the square root (``sqrt(re**2 + im**2 + eps)``), so the
            gradient is finite at 0.

    Returns:
        (N, G, h, w) modulus ``|sum_c (x_c * k_gc)|`` at ``stride * i`` (cross-correlation, as ``F.conv2d``).

    Examples:
        >>> k = torch.complex(torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5))
        >>> cmod2d(torch.rand(2, 3, 16, 16), k, 2, padding=2).shape
        torch.Size([2, 4, 8, 8])
    """
    check_shape(x, ["N", "C", "H", "W"], "cmod2d input")
    check_shape(kernels, ["G", x.shape[1], "kh", "kw"], "cmod2d kernels")
    if not kernels.is_complex():
        raise ShapeError(f"cmod2d kernels must be a complex tensor, got dtype {kernels.dtype}")
    pad = [padding] * 4 if isinstance(padding, int) else list(padding)
    if len(pad) != 4:
        raise SpecError(f"padding must be an int or (left, right, top, bottom), got {padding!r}")
    if any(pad):
        x = F.pad(x, pad)
    g = kernels.shape[0]
    weight = torch.cat([kernels.real, kernels.imag], 0).to(x.dtype)
    z = F.conv2d(x, weight, stride=stride)
    if output_size is not None:
        h, w = output_size
        if z.shape[-2] < h or z.shape[-1] < w:
            raise ShapeError(f"cmod2d gives {tuple(z.shape[-2:])} outputs, fewer than output_size {(h, w)}")
        z = z[..., :h, :w]
    return torch.sqrt(z[:, :g] ** 2 + z[:, g:] ** 2 + eps)


class ModulusBatchNorm2d(nn.BatchNorm2d):
    """Batch norm for moduli of zero-mean complex responses: scale only, then bias.

    ``y = x / sqrt(P + eps) * |weight| + bias`` with ``P`` half the mean of ``x**2``
    over (N, H, W) in training (a running average, ``running_var``, in eval). For
    ``x = |z|`` and ``z`` a band-pass analytic response of a real input, ``P`` is
    the variance of ``Re z``, what the baseline's BN divides its conv output by,
    so a twin can copy the baseline's BN statistics (:func:`~.cmod_models.twin`).
    ``running_mean`` is unused (kept at 0 for the state_dict layout of BatchNorm2d).

    Shape:
        (N, C, H, W) -> (N, C, H, W).
    """

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if self.training or self.running_var is None:
            power = x.pow(2).mean((0, 2, 3)) / 2
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked += 1
                    mom = self.momentum if self.momentum is not None else 1.0 / int(self.num_batches_tracked)
                    self.running_var.mul_(1 - mom).add_(power.detach(), alpha=mom)
        else:
            power = self.running_var
        out = x / torch.sqrt(power + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight.abs()[None, :, None, None] + self.bias[None, :, None, None]
        return out


def _order_perm(free: int, gabor: int, gabor_index: Sequence[int] | None) -> Tensor:
    total = free + gabor
    if gabor_index is None:
        return torch.arange(total)
    idx = [int(i) for i in gabor_index]
    if len(idx) != gabor or len(set(idx)) != gabor or any(not 0 <= i < total for i in idx):
        raise SpecError(f"gabor_index must list {gabor} distinct output positions in 0..{total - 1}, "
                        f"got {idx}")
    free_pos = [i for i in range(total) if i not in set(idx)]
    perm = torch.empty(total, dtype=torch.long)
    perm[torch.tensor(free_pos, dtype=torch.long)] = torch.arange(free)
    perm[torch.tensor(idx, dtype=torch.long)] = torch.arange(free, total)
    return perm


class CModStem(nn.Module):
    """Twin first layer: free channels as the baseline, Gabor channels through CMod.

    Args:
        in_channels: input colours.
        free_channels: channels kept as Conv + [BN] + ReLU + MaxPool (or MaxBlurPool).
        gabor_channels: CMod channels (complex Gabor conv, modulus, [scale-only BN] + bias, ReLU).
        kernel_size, conv_stride, conv_padding: the baseline conv's ``k``, ``m``, ``p``.
        pool_kernel, pool_stride, pool_padding: the baseline max-pool's ``q``, ``s``, ``r``.
        batch_norm: the baseline has BN after the conv (ResNet); else the conv has a bias (AlexNet).
        blur_filter_size: None for the plain stem; 1-7 for the Blur variant, where the
            free channels' ``MaxPool(q, s)`` becomes ``MaxPool(q, 1)`` + ``BlurPool(s)``.
        blur_conv: with ``blur_filter_size``, also replace the free conv's stride ``m`` by
            ``m / 2`` followed by ``BlurPool(2)`` after the ReLU (antialiased AlexNet).
        pad_mode: BlurPool padding.
        gabor_index: output positions of the Gabor channels (default: the last ones);
            the free channels fill the other positions in order.
        learn_geometry: learn the Gabor frequencies, orientations and envelopes (else fixed).

    Shape:
        (N, in_channels, H, W) -> (N, free + gabor, h, w), ``h`` and ``w`` the
        baseline stem's output sizes (:meth:`StemGeometry.output_size`).

    Examples:
        >>> stem = CModStem(3, 40, 24, 7, 2, 3, 2, 1, 3, batch_norm=True)
        >>> stem(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 64, 16, 16])
    """

    def __init__(
        self, in_channels: int, free_channels: int, gabor_channels: int, kernel_size: int, conv_stride: int,
        pool_kernel: int, pool_stride: int, pool_padding: int, conv_padding: int, batch_norm: bool,
        blur_filter_size: int | None = None, *, blur_conv: bool = False, pad_mode: str = "reflect",
        gabor_index: Sequence[int] | None = None, learn_geometry: bool = True,
    ) -> None:
        super().__init__()
        if free_channels < 0 or gabor_channels < 1:
            raise SpecError(f"need free_channels >= 0 and gabor_channels >= 1, got {free_channels}, "
                            f"{gabor_channels}")
        self.geometry = StemGeometry(kernel_size, conv_stride, conv_padding, pool_kernel, pool_stride,
                                     pool_padding)
        if blur_conv and (blur_filter_size is None or conv_stride % 2):
            raise SpecError(f"blur_conv needs a blur_filter_size and an even conv stride, got "
                            f"{blur_filter_size} and {conv_stride}")
        self.in_channels, self.free_channels, self.gabor_channels = in_channels, free_channels, gabor_channels
        self.batch_norm, self.blur_filter_size, self.blur_conv = batch_norm, blur_filter_size, blur_conv
        self.free: nn.Sequential | None = None
        if free_channels:
            stride = conv_stride // 2 if blur_conv else conv_stride
            layers: list[nn.Module] = [nn.Conv2d(in_channels, free_channels, kernel_size, stride=stride,
                                                 padding=conv_padding, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(free_channels))
            layers.append(nn.ReLU(inplace=True))
            if blur_conv:
                layers.append(BlurPool2d(free_channels, blur_filter_size, 2, pad_mode))
            if blur_filter_size is None:
                layers.append(nn.MaxPool2d(pool_kernel, pool_stride, pool_padding))
            else:
                layers.append(MaxBlurPool2d(free_channels, pool_kernel, blur_filter_size, pool_stride,
                                            pad_mode, pool_padding))
            self.free = nn.Sequential(*layers)
        self.gabor = GaborBank(gabor_channels, in_channels, kernel_size, learn_geometry=learn_geometry)
        if batch_norm:
            self.gabor_norm: nn.Module = ModulusBatchNorm2d(gabor_channels)
        else:
            self.gabor_bias = nn.Parameter(torch.zeros(gabor_channels))
        perm = _order_perm(free_channels, gabor_channels, gabor_index)
        self.register_buffer("perm", perm, persistent=False)
        self._layout: dict[tuple[int, int], tuple[list[int], tuple[float, float]]] = {}

    @property
    def out_channels(self) -> int:
        return self.free_channels + self.gabor_channels

    def layout(self, h: int, w: int) -> tuple[list[int], tuple[float, float]]:
        """CMod ``(left, right, top, bottom)`` padding and envelope shift ``(dy, dx)`` for H x W inputs."""
        if (h, w) not in self._layout:
            k = self.geometry.kernel_size
            top, bottom, dy = self.geometry.cmod_layout(h, k)
            left, right, dx = self.geometry.cmod_layout(w, k)
            self._layout[(h, w)] = ([left, right, top, bottom], (dy, dx))
        return self._layout[(h, w)]

    def gabor_modulus(self, x: Tensor) -> Tensor:
        """The Gabor channels' modulus before the norm / bias and ReLU, (N, G, h, w)."""
        h, w = x.shape[-2:]
        out = (self.geometry.output_size(h), self.geometry.output_size(w))
        if min(out) < 1:
            raise ShapeError(f"input {h}x{w} is too small for a stem of kernel {self.geometry.kernel_size}")
        pad, shift = self.layout(h, w)
        return cmod2d(x, self.gabor(shift), self.geometry.stride, pad, out)

    def forward(self, x: Tensor) -> Tensor:
        check_shape(x, ["N", self.in_channels, "H", "W"], "CModStem input")
        g = self.gabor_modulus(x)
        if self.batch_norm:
            g = self.gabor_norm(g)
        else:
            g = g + self.gabor_bias.view(1, -1, 1, 1).to(g.dtype)
        g = F.relu(g)
        parts = [g] if self.free is None else [self.free(x), g]
        if parts[0].shape[-2:] != g.shape[-2:]:
            raise ShapeError(f"free channels give {tuple(parts[0].shape[-2:])} maps but CMod gives "
                             f"{tuple(g.shape[-2:])}; the stem geometry is inconsistent")
        return torch.cat(parts, 1).index_select(1, self.perm)

    def extra_repr(self) -> str:
        g = self.geometry
        return (f"free={self.free_channels}, gabor={self.gabor_channels}, kernel={g.kernel_size}, "
                f"conv_stride={g.conv_stride}, pool=({g.pool_kernel}, {g.pool_stride}, {g.pool_padding}), "
                f"batch_norm={self.batch_norm}, blur_filter_size={self.blur_filter_size}")


def cmod_stem(preset: str, free_channels: int, gabor_channels: int, *, kernel_size: int | None = None,
              blur_filter_size: int | None = None, **kwargs) -> CModStem:
    """A :class:`CModStem` for a ``resnet``, ``alexnet`` or ``cifar`` baseline stem (see the module table).

    Args:
        preset: one of :data:`STEM_PRESETS`.
        free_channels, gabor_channels: the split (ResNet: 40 + 24, AlexNet: 32 + 32).
        kernel_size: ``cifar`` only: the conv side ``k`` (odd, default 5; padding ``k // 2``).
        blur_filter_size: BlurPool variant for the free channels (AlexNet also blurs its strided conv).
        **kwargs: passed to :class:`CModStem` (``gabor_index``, ``pad_mode``, ``learn_geometry``).

    Examples:
        >>> cmod_stem("cifar", 16, 16)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 32, 16, 16])
    """
    if preset not in STEM_PRESETS:
        raise SpecError(f"unknown stem preset {preset!r}; expected one of {', '.join(STEM_PRESETS)}")
    k, m, q, s, r, p, bn = STEM_PRESETS[preset]
    if kernel_size is not None:
        if preset != "cifar" or kernel_size % 2 == 0 or kernel_size < 1:
            raise SpecError(f"kernel_size applies to the cifar preset only and must be odd, "
                            f"got {kernel_size!r}")
        k, p = kernel_size, kernel_size // 2
    blur_conv = preset == "alexnet" and blur_filter_size is not None
    return CModStem(3, free_channels, gabor_channels, k, m, q, s, r, p, bn, blur_filter_size,
                    blur_conv=blur_conv, **kwargs)
