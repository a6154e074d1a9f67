"""First-layer cost per channel of RMax, BlurPool (MaxBlurPool) and CMod (the paper's Table III).

Counting convention, per output channel of the first layer, for one square
``input_size`` x ``input_size`` image (exact output sizes, borders included):

* compute: multiply-adds. A real conv output element costs ``C_in * k * k``; a
  CMod output element two of those (real and imaginary kernels) plus 2 for the
  modulus (``re * re + im * im``); a BlurPool output element ``F * F``. Max-pool
  comparisons, BN, bias and ReLU are not counted (no multiply-adds, or folded
  into the conv at inference).
* memory: elements of the activation tensors the layer creates and autograd
  keeps: conv output, BN output (in place ReLU adds none), max-pool output plus
  its int64 argmax indices (2 float32 elements each), BlurPool outputs; CMod:
  the real and imaginary maps, the modulus, and the BN (ResNet) or bias (AlexNet)
  output. In float32 elements (bytes / 4).

RMax is the baseline ``Conv(m) -> [BN] -> ReLU -> MaxPool(q, s, r)``; BlurPool is
antialiased_cnns' stem: ``MaxPool(q, 1, r) + BlurPool(s)`` and, for AlexNet
(``blur_conv``), ``Conv(m / 2) -> ReLU -> BlurPool(2)`` before it; CMod is
:func:`~shiftattack.models.cmod.cmod2d` at stride ``m * s``. With this
convention and 224 px inputs the ratios to RMax are (compute / memory):
AlexNet BlurPool 3.96 / 4.62, CMod 0.48 / 0.56; ResNet BlurPool 1.02 / 1.91,
CMod 0.50 / 0.36; the paper's Table III gives 4.0 / 4.7, 0.5 / 0.6, 1.0 / 1.9
and 0.5 / 0.4 (:data:`PAPER_TABLE_III`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from shiftattack.errors import SpecError
from shiftattack.models.blurpool import BlurPool2d, MaxBlurPool2d
from shiftattack.models.cmod import CModStem, StemGeometry

__all__ = ["PAPER_TABLE_III", "STEMS", "LayerCost", "FirstLayerCost", "first_layer_cost"]

PAPER_TABLE_III = {
    "alexnet": {"blurpool": (4.0, 4.7), "cmod": (0.5, 0.6)},
    "resnet": {"blurpool": (1.0, 1.9), "cmod": (0.5, 0.4)},
}
# name -> (geometry, batch_norm, blur_conv in the BlurPool model)
STEMS: dict[str, tuple[StemGeometry, bool, bool]] = {
    "resnet": (StemGeometry(7, 2, 3, 3, 2, 1), True, False),
    "alexnet": (StemGeometry(11, 4, 2, 3, 2, 0), False, True),
}


@dataclass
class LayerCost:
    """Per-channel cost: ``macs`` (multiply-adds) and ``memory`` (float32 elements)."""

    macs: int
    memory: int


@dataclass
class FirstLayerCost:
    """Per-channel first-layer costs and their ratios to RMax.

    Attributes:
        stem: architecture name or ``"custom"``.
        input_size: image side (px).
        blur_filter_size: BlurPool filter size used for the BlurPool column.
        rmax, blurpool, cmod: :class:`LayerCost` of one channel.
        ratios: ``{"blurpool": (compute, memory), "cmod": (compute, memory)}`` relative to RMax.
        seconds: measured forward time (s) of a whole stem of each kind, when measured.
        paper: the paper's ratios for this stem, when known.
    """

    stem: str
    input_size: int
    blur_filter_size: int
    rmax: LayerCost
    blurpool: LayerCost
    cmod: LayerCost
    ratios: dict[str, tuple[float, float]] = field(default_factory=dict)
    seconds: dict[str, float] | None = None
    paper: dict[str, tuple[float, float]] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _rmax(g: StemGeometry, n: int, cin: int, bn: bool) -> LayerCost:
    nc, no = g.conv_size(n), g.output_size(n)
    return LayerCost(nc * nc * cin * g.kernel_size**2, nc * nc * (2 if bn else 1) + 3 * no * no)


def _blurpool(g: StemGeometry, n: int, cin: int, bn: bool, blur_conv: bool, f: int) -> LayerCost:
    k = g.kernel_size
    if blur_conv:
        n2 = (n + 2 * g.conv_padding - k) // (g.conv_stride // 2) + 1
        nc = (n2 + 1) // 2
        macs, mem = n2 * n2 * cin * k * k + f * f * nc * nc, n2 * n2 * (2 if bn else 1) + nc * nc
    else:
        nc = g.conv_size(n)
        macs, mem = nc * nc * cin * k * k, nc * nc * (2 if bn else 1)
    n1, no = nc + 2 * g.pool_padding - g.pool_kernel + 1, g.output_size(n)
    return LayerCost(macs + f * f * no * no, mem + 3 * n1 * n1 + no * no)


def _cmod(g: StemGeometry, n: int, cin: int) -> LayerCost:
    no = g.output_size(n)
    return LayerCost(no * no * (2 * cin * g.kernel_size**2 + 2), 4 * no * no)


def _time(stem: nn.Module, x: torch.Tensor, repeats: int) -> float:
    stem.eval()
    with torch.no_grad():
        stem(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            stem(x)
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _stems(g: StemGeometry, cin: int, cout: int, bn: bool, blur_conv: bool, f: int) -> dict[str, nn.Module]:
    k, m, p = g.kernel_size, g.conv_stride, g.conv_padding
    rmax = [nn.Conv2d(cin, cout, k, m, p, bias=not bn)] + ([nn.BatchNorm2d(cout)] if bn else [])
    rmax += [nn.ReLU(inplace=True), nn.MaxPool2d(g.pool_kernel, g.pool_stride, g.pool_padding)]
    blur = [nn.Conv2d(cin, cout, k, m // 2 if blur_conv else m, p, bias=not bn)] + (
        [nn.BatchNorm2d(cout)] if bn else [])
    blur += [nn.ReLU(inplace=True)] + ([BlurPool2d(cout, f, 2)] if blur_conv else [])
    blur += [MaxBlurPool2d(cout, g.pool_kernel, f, g.pool_stride, padding=g.pool_padding)]
    cmod = CModStem(cin, 0, cout, k, m, g.pool_kernel, g.pool_stride, g.pool_padding, p, bn)
    return {"rmax": nn.Sequential(*rmax), "blurpool": nn.Sequential(*blur), "cmod": cmod}


def first_layer_cost(
    model_or_arch: nn.Module | str | StemGeometry, *, input_size: int = 224, blur_filter_size: int = 3,
    in_channels: int = 3, batch_norm: bool | None = None, blur_conv: bool | None = None,
    measure_time: bool = False, batch: int = 8, out_channels: int = 64, repeats: int = 5,
) -> FirstLayerCost:
    """Per-channel first-layer compute and memory of RMax, BlurPool and CMod (see the module docstring).

    Args:
        model_or_arch: ``"resnet"``/``"resnet18"``/``"resnet34"``, ``"alexnet"``, a
            :class:`~shiftattack.models.cmod.StemGeometry`, or a model whose first
            layer :func:`~shiftattack.models.cmod_models.locate_stem` finds.
        input_size: square input side (px).
        blur_filter_size: BlurPool filter size (1-7).
        in_channels: input colours (for a geometry; a model's conv gives its own).
        batch_norm, blur_conv: for a geometry (defaults True / False); else taken from the arch or model.
        measure_time: also time a forward pass of a whole ``out_channels``-channel stem
            of each kind on a ``batch`` of random images (median of ``repeats``, CPU
            or the current device of nothing: inputs are on the CPU).

    Returns:
        :class:`FirstLayerCost`.

    Examples:
        >>> cost = first_layer_cost("resnet")
        >>> [round(v, 2) for v in cost.ratios["cmod"]]
        [0.5, 0.36]
    """
    name = "custom"
    if isinstance(model_or_arch, str):
        name = "resnet" if model_or_arch in ("resnet18", "resnet34") else model_or_arch
        if name not in STEMS:
            raise SpecError(f"unknown stem {model_or_arch!r}; expected resnet, resnet18, resnet34, alexnet, "
                            "a StemGeometry or a model")
        g, bn, bc = STEMS[name]
    elif isinstance(model_or_arch, StemGeometry):
        g, bn, bc = model_or_arch, True if batch_norm is None else batch_norm, bool(blur_conv)
    elif isinstance(model_or_arch, nn.Module):
        from shiftattack.models.cmod_models import locate_stem

        stem = locate_stem(model_or_arch)
        g, bn, in_channels = stem.geometry, stem.bn is not None, stem.conv.in_channels
        bc = stem.blur_conv if blur_conv is None else blur_conv
    else:
        raise SpecError(f"model_or_arch must be an arch name, a StemGeometry or a model, got "
                        f"{type(model_or_arch).__name__}")
    if g.output_size(input_size) < 1:
        raise SpecError(f"input_size {input_size} is too small for the stem {g}")
    if bc and g.conv_stride % 2:
        raise SpecError(f"blur_conv needs an even conv stride, got {g.conv_stride}")
    costs = {"rmax": _rmax(g, input_size, in_channels, bn),
             "blurpool": _blurpool(g, input_size, in_channels, bn, bc, blur_filter_size),
             "cmod": _cmod(g, input_size, in_channels)}
    base = costs["rmax"]
    ratios = {k: (costs[k].macs / base.macs, costs[k].memory / base.memory) for k in ("blurpool", "cmod")}
    seconds = None
    if measure_time:
        x = torch.rand(batch, in_channels, input_size, input_size)
        stems = _stems(g, in_channels, out_channels, bn, bc, blur_filter_size)
        seconds = {k: _time(s, x, repeats) for k, s in stems.items()}
    return FirstLayerCost(name, input_size, blur_filter_size, costs["rmax"], costs["blurpool"], costs["cmod"],
                          ratios, seconds, PAPER_TABLE_III.get(name))
