"""Trap models for the soundness tests: each computes something its layers' types do not say.

Every class here subclasses a standard layer (or wraps one) and overrides ``forward``,
so a bound method that lowers layers by ``isinstance`` would certify a look-alike
network instead of the model that runs. Built for 32x32 RGB inputs and 10 classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualSequential(nn.Sequential):
    """A residual block written as a ``Sequential`` subclass: ``x + children(x)``."""

    def forward(self, x):
        return x + super().forward(x)


class BatchNormReLU(nn.BatchNorm2d):
    """timm's ``BatchNormAct2d`` pattern: batch norm by ``F.batch_norm``, then an activation."""

    def __init__(self, c: int) -> None:
        super().__init__(c)
        self.act = nn.ReLU()

    def forward(self, x):
        torch._assert(x.ndim == 4, "expected (N, C, H, W)")
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return self.act(x)


class BatchNormTanh(nn.BatchNorm2d):
    """Batch norm through ``super().forward``, then tanh (no sound rule: must be refused)."""

    def forward(self, x):
        return torch.tanh(super().forward(x))


class OffsetHead(nn.Linear):
    """A head that post-processes its logits: ``W x + b - offset`` (the offset changes predictions)."""

    def __init__(self, d: int, k: int, offset: torch.Tensor) -> None:
        super().__init__(d, k)
        self.register_buffer("offset", offset)

    def forward(self, x):
        return 2.0 * super().forward(x) - self.offset


class SortedHead(nn.Linear):
    """A head returning its logits sorted (no sound rule: must be refused)."""

    def forward(self, x):
        return torch.sort(super().forward(x), dim=1).values


class InPlaceResidual(nn.Module):
    """``relu_`` on a tensor that is used again: ``relu(x) + relu(x)``, not ``x + relu(x)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        z = F.relu(y, inplace=True)
        return y + z


class BandHead(nn.Linear):
    """Looks like a constant head; its forward adds a spike that fools it in one narrow band.

    ``v = (w . x - f0) / (f1 - f0)`` is 0 on the image itself and 1 on its 1-px right shift;
    between them it moves linearly, and the class ``wrong`` wins only while ``v`` lies in
    ``(lo, hi)``, a band narrower than the dense attack's 1/4-px step.
    """

    def __init__(self, w: torch.Tensor, f0: float, f1: float, label: int, wrong: int, lo: float = 0.3,
                 hi: float = 0.45) -> None:
        d = w.numel()
        super().__init__(d, 10)
        with torch.no_grad():
            self.weight.zero_()
            self.bias.zero_()
            self.bias[label] = 0.01
        mid = (lo + hi) / 2
        self.band_in = nn.Linear(d, 3)
        self.band_out = nn.Linear(3, 10, bias=False)
        with torch.no_grad():
            scale = 1.0 / (f1 - f0)
            self.band_in.weight.copy_(torch.stack([w.flatten() * scale] * 3))
            self.band_in.bias.copy_(torch.tensor([-f0 * scale - lo, -f0 * scale - mid, -f0 * scale - hi]))
            self.band_out.weight.zero_()
            self.band_out.weight[wrong] = torch.tensor([10.0, -20.0, 10.0])

    def forward(self, x):
        return super().forward(x) + self.band_out(F.relu(self.band_in(x)))


def small_net(seed: int, *, block: nn.Module | None = None, norm: nn.Module | None = None,
              head: nn.Module | None = None) -> nn.Module:
    """conv(3->4) -> norm -> ReLU -> max-pool 2 -> [block] -> conv(4->8) -> ReLU -> avg-pool -> head."""
    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, 4, 3, padding=1), norm if norm is not None else nn.BatchNorm2d(4)]
    if not isinstance(norm, BatchNormReLU):
        layers.append(nn.ReLU())
    layers.append(nn.MaxPool2d(2))
    if block is not None:
        layers.append(block)
    layers += [nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
               head if head is not None else nn.Linear(32, 10)]
    model = nn.Sequential(*layers)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.5)
    return model.eval()


def trap_models(seed: int = 0) -> dict[str, nn.Module]:
    """name -> model, every trap but the band (which is built per image)."""
    torch.manual_seed(seed)
    offset = torch.zeros(10)
    offset[::2] = 0.3
    res = ResidualSequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    return {
        "residual_sequential": small_net(seed, block=res),
        "batchnorm_act": small_net(seed, norm=BatchNormReLU(4)),
        "batchnorm_tanh": small_net(seed, norm=BatchNormTanh(4)),
        "offset_head": small_net(seed, head=OffsetHead(32, 10, offset)),
        "sorted_head": small_net(seed, head=SortedHead(32, 10)),
        "inplace_residual": small_net(seed, block=InPlaceResidual(4)),
    }


def zero_shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Whole-pixel zero-fill shift by DESIGN.md's contract (pad by K, take the window at (K - dy, K - dx))."""
    k = max(abs(dx), abs(dy))
    h, w = x.shape[-2:]
    return F.pad(x, (k, k, k, k))[..., k - dy : k - dy + h, k - dx : k - dx + w]


def zero_shift_bilinear(x: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """Sub-pixel zero-fill shift, bilinear between the four whole-pixel shifts around (dx, dy)."""
    import math

    i, j = math.floor(dx), math.floor(dy)
    a, b = dx - i, dy - j
    return ((1 - a) * (1 - b) * zero_shift(x, i, j) + a * (1 - b) * zero_shift(x, i + 1, j)
            + (1 - a) * b * zero_shift(x, i, j + 1) + a * b * zero_shift(x, i + 1, j + 1))


def band_trap(image: torch.Tensor, label: int, wrong: int) -> nn.Module:
    """Flatten -> :class:`BandHead` for one (3, H, W) image: fooled only for dx in about (0.3, 0.45).

    The feature is a horizontal ramp (content moving right raises it), so between the whole
    shifts 0 and 1 px it moves linearly and elsewhere it stays away from the band.
    """
    x = image.double()[None]
    w = (torch.arange(x.shape[-1], dtype=torch.float64) - (x.shape[-1] - 1) / 2).expand(*x.shape[1:])
    f0 = float((w * x).sum())
    f1 = float((w * zero_shift(x, 1, 0)).sum())
    return nn.Sequential(nn.Flatten(), BandHead(w.float(), f0, f1, label, wrong)).eval()
