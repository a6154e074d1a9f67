"""Control variants of ``cifar_convnet`` that separate what CMod changes (issue 18, claim 3).

CMod (:mod:`.cmod`) changes two things in the stem at once: half the channels get
*Gabor* kernels, and those channels replace *conv - max-pool* by *conv at the
subsampled positions - modulus*. Two controls tell which of the two matters, and
whether anti-aliasing the stem alone is enough:

* ``cifar_convnet_gabor_maxpool``: the same split, the same learnt Gabor bank, but its
  channels keep the baseline's pipeline on the real part of the kernels:
  conv (stride 1) - BN - ReLU - MaxPool(2). Only the modulus is taken away.
* ``cifar_convnet_blurstem{F}``: the baseline with a MaxBlurPool(2, F) in the stem only
  (every later down-sampling stays a plain max-pool), the anti-aliasing CMod's
  modulus stands in for, applied where CMod acts.

Both take (N, 3, H, W) floats in [0, 1] (H, W >= 8) and return (N, classes) logits.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shiftattack.errors import SpecError, check_shape
from shiftattack.models._registry import register_model
from shiftattack.models.blurpool import MaxBlurPool2d
from shiftattack.models.cifar import CifarConvNet, conv_bn_relu
from shiftattack.models.gabor import GaborBank

__all__ = ["GaborMaxPoolStem", "cifar_convnet_gabor_maxpool", "cifar_convnet_blurstem"]


class GaborMaxPoolStem(nn.Module):
    """Free channels conv - BN - ReLU - MaxPool(2); Gabor channels Re(Gabor) conv - BN - ReLU - MaxPool(2).

    Args:
        free_channels: ordinary learnt 5x5 (``kernel_size``) channels.
        gabor_channels: channels whose kernels are the real parts of a learnt
            :class:`~shiftattack.models.gabor.GaborBank` (frequency, orientation, envelope
            and colour mix learnt, as in CMod), convolved at every position.
        kernel_size: odd conv side; padding ``kernel_size // 2``.

    Shape:
        (N, 3, H, W) -> (N, free + gabor, H // 2, W // 2).
    """

    def __init__(self, free_channels: int, gabor_channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        if free_channels < 1 or gabor_channels < 1 or kernel_size < 3 or kernel_size % 2 == 0:
            raise SpecError(f"GaborMaxPoolStem needs free and gabor channels >= 1 and an odd kernel >= 3, "
                            f"got {free_channels}, {gabor_channels}, {kernel_size}")
        self.free = nn.Sequential(*conv_bn_relu(3, free_channels, kernel_size), nn.MaxPool2d(2))
        self.gabor = GaborBank(gabor_channels, 3, kernel_size)
        self.gabor_norm = nn.BatchNorm2d(gabor_channels)
        self.padding = kernel_size // 2

    def forward(self, x: Tensor) -> Tensor:
        check_shape(x, ["N", 3, "H", "W"], "GaborMaxPoolStem input")
        weight = self.gabor().real.to(x.dtype)  # (G, 3, k, k)
        g = F.relu(self.gabor_norm(F.conv2d(x, weight, padding=self.padding)))
        return torch.cat([self.free(x), F.max_pool2d(g, 2)], 1)


def cifar_convnet_gabor_maxpool(num_classes: int = 10, width: int = 32, gabor_channels: int | None = None
                                ) -> CifarConvNet:
    """:class:`CifarConvNet` whose stem is :class:`GaborMaxPoolStem` (half the channels Gabor)."""
    gabor = width // 2 if gabor_channels is None else gabor_channels
    return CifarConvNet(num_classes=num_classes, width=width, stem=GaborMaxPoolStem(width - gabor, gabor))


def cifar_convnet_blurstem(filter_size: int, num_classes: int = 10, width: int = 32,
                           pad_mode: str = "reflect") -> CifarConvNet:
    """:class:`CifarConvNet` with MaxBlurPool(2, ``filter_size``) in the stem, plain max-pools after it."""
    stem = nn.Sequential(*conv_bn_relu(3, width, 5),
                         MaxBlurPool2d(width, kernel_size=2, filter_size=filter_size, pad_mode=pad_mode))
    return CifarConvNet(num_classes=num_classes, width=width, stem=stem)


register_model(cifar_convnet_gabor_maxpool)
for _f in (2, 3, 5, 7):
    register_model(partial(cifar_convnet_blurstem, _f), name=f"cifar_convnet_blurstem{_f}")
