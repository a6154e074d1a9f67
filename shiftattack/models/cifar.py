"""``cifar_convnet``: a small, fast CIFAR-size network and its anti-aliased variants.

The CPU workhorse of the experiments: about 36 M multiply-adds per 32x32 image (0.58 M parameters),
trained to over 80 % CIFAR-10 test accuracy in minutes on two CPU cores (see
docs/models.md for the measured command). Layout (``w`` = width, default 32):

    stem:    conv5x5(3 -> w) - BN - ReLU - MaxPool(2)          32 -> 16 px
    stage 1: 2 x [conv3x3 - BN - ReLU] (2w) - MaxPool(2)       16 -> 8 px
    stage 2: 2 x [conv3x3 - BN - ReLU] (4w) - MaxPool(2)        8 -> 4 px
    head:    conv3x3 (8w) - BN - ReLU - global average pool - linear

Every down-sampling is a max-pool, so the stem has exactly the form
Conv - BN - ReLU - MaxPool that CMod replaces (:mod:`.cmod`), and each max-pool
becomes MaxBlurPool in the ``_blurF`` variants (Zhang 2019). Inputs are floats
in [0, 1]; the network normalises them with the CIFAR-10 channel statistics
(non-persistent buffers, so the state_dict holds only learnt tensors).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import Tensor, nn

from shiftattack.models._registry import register_model
from shiftattack.models.aps import ApsPool2d, CircularMaxPool2d
from shiftattack.models.blurpool import MaxBlurPool2d
from shiftattack.models.cmod import cmod_stem
from shiftattack.models.normalize import CIFAR10_MEAN, CIFAR10_STD, add_input_normalization

__all__ = ["CifarConvNet", "CIFAR10_MEAN", "CIFAR10_STD", "conv_bn_relu", "cifar_convnet",
           "cifar_convnet_blur",
           "cifar_convnet_aps", "cifar_convnet_cmod"]


PoolFactory = Callable[[int], nn.Module]


def conv_bn_relu(c_in: int, c_out: int, kernel_size: int = 3, padding_mode: str = "zeros") -> nn.Sequential:
    """Conv2d (no bias, 'same' padding) - BatchNorm2d - ReLU: (N, c_in, H, W) -> (N, c_out, H, W)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False, padding_mode=padding_mode),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def max_pool(channels: int) -> nn.Module:
    """The baseline down-sampling: ``MaxPool2d(2)``."""
    return nn.MaxPool2d(2)


def max_blur_pool(filter_size: int, pad_mode: str = "reflect") -> PoolFactory:
    """A factory of ``MaxBlurPool2d(channels, 2, filter_size)`` (the ``_blurF`` variants)."""
    return lambda channels: MaxBlurPool2d(channels, kernel_size=2, filter_size=filter_size, pad_mode=pad_mode)


class CifarConvNet(nn.Module):
    """The small CIFAR network described in the module docstring.

    Args:
        num_classes: output logits.
        width: channels of the stem (stages use 2x, 4x, 8x).
        pool: ``channels -> nn.Module`` building each 2x down-sampling (max-pool by default).
        stem: replaces the whole stem (conv - BN - ReLU - pool), e.g. a CMod stem; it must map
            (N, 3, H, W) to (N, width, H/2, W/2).
        padding_mode: the convolutions' padding (``"zeros"`` or ``"circular"``).

    Shape:
        (N, 3, H, W) floats in [0, 1], H and W >= 8 -> logits (N, num_classes).
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: int = 32,
        pool: PoolFactory = max_pool,
        stem: nn.Module | None = None,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        w = width
        self.stem = stem if stem is not None else nn.Sequential(
            *conv_bn_relu(3, w, 5, padding_mode), pool(w))
        self.stage1 = nn.Sequential(
            *conv_bn_relu(w, 2 * w, 3, padding_mode), *conv_bn_relu(2 * w, 2 * w, 3, padding_mode),
            pool(2 * w))
        self.stage2 = nn.Sequential(
            *conv_bn_relu(2 * w, 4 * w, 3, padding_mode), *conv_bn_relu(4 * w, 4 * w, 3, padding_mode),
            pool(4 * w))
        self.head = conv_bn_relu(4 * w, 8 * w, 3, padding_mode)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes)
        add_input_normalization(self, CIFAR10_MEAN, CIFAR10_STD, min_size=8)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.stage2(self.stage1(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


def cifar_convnet(num_classes: int = 10, width: int = 32, pool_kernel: int = 2, stem_kernel: int | None = None,
                  stem_stride: int = 2) -> CifarConvNet:
    """The baseline :class:`CifarConvNet` (0.58 M parameters at width 32).

    ``pool_kernel`` k sets every down-sampling to ``MaxPool2d(k, stride=2, padding=(k - 1) // 2)``
    (k = 1 is plain subsampling; sizes stay H/2 for every k), for Mouton et al.'s pooling
    kernel size against stride study (``experiments/stride_homogeneity.py``).

    ``stem_kernel`` and ``stem_stride`` set the stem's pooling alone to
    ``MaxPool2d(stem_kernel, stem_stride, padding=(stem_kernel - 1) // 2)`` (odd kernels keep
    the size H / stride; kernel 1 with stride 1 is no pooling at all), so the stride itself can
    vary (the reproduction's stride arm); the later poolings stay as ``pool_kernel`` says.
    """
    for name, v, top in (("pool_kernel", pool_kernel, 7), ("stem_stride", stem_stride, 2)):
        if not isinstance(v, int) or not 1 <= v <= top:
            raise ValueError(f"{name} must be an integer in 1..{top}, got {v!r}")
    if stem_kernel is not None and (not isinstance(stem_kernel, int) or stem_kernel not in (1, 3, 5, 7)):
        raise ValueError(f"stem_kernel must be 1, 3, 5 or 7 (odd: the output stays H / stride), got {stem_kernel!r}")
    if stem_kernel is None and stem_stride != 2:
        raise ValueError("stem_stride needs a stem_kernel (1, 3, 5 or 7)")
    pad = (pool_kernel - 1) // 2
    pool = max_pool if pool_kernel == 2 else (lambda channels: nn.MaxPool2d(pool_kernel, stride=2, padding=pad))
    stem = None
    if stem_kernel is not None:
        stem = nn.Sequential(*conv_bn_relu(3, width, 5),
                             nn.MaxPool2d(stem_kernel, stride=stem_stride, padding=(stem_kernel - 1) // 2))
    return CifarConvNet(num_classes=num_classes, width=width, pool=pool, stem=stem)


def cifar_convnet_blur(
    filter_size: int, num_classes: int = 10, width: int = 32, pad_mode: str = "reflect"
) -> CifarConvNet:
    """:class:`CifarConvNet` with every ``MaxPool(2)`` replaced by ``MaxBlurPool(2, filter_size)``."""
    return CifarConvNet(num_classes=num_classes, width=width, pool=max_blur_pool(filter_size, pad_mode))


def cifar_convnet_aps(num_classes: int = 10, width: int = 32, filter_size: int = 1) -> CifarConvNet:
    """:class:`CifarConvNet` with adaptive polyphase sampling (Chaman & Dokmanic 2021).

    Every ``MaxPool(2)`` becomes a circular stride-1 max-pool then APS (optionally blurred
    with a binomial of ``filter_size``) and every convolution pads circularly, so the
    logits are exactly invariant to circular shifts of inputs whose sides are divisible by 8.
    """
    def pool(channels: int) -> nn.Module:
        return nn.Sequential(CircularMaxPool2d(2), ApsPool2d(channels, 2, filter_size=filter_size))

    return CifarConvNet(num_classes=num_classes, width=width, pool=pool, padding_mode="circular")


def cifar_convnet_cmod(
    num_classes: int = 10, width: int = 32, filter_size: int | None = None, gabor_channels: int | None = None
) -> CifarConvNet:
    """:class:`CifarConvNet` whose stem is a CMod twin layer (Leterme et al.).

    Half the stem's channels (``gabor_channels``, default ``width // 2``) are CMod: a complex
    Gabor convolution, subsampling by 2, the modulus, a scale-only BN and ReLU; the others keep
    conv - BN - ReLU - MaxPool(2), or MaxBlurPool when ``filter_size`` is given (the "BlurPool
    twin": every later max-pool is then blurred too).
    """
    gabor = width // 2 if gabor_channels is None else gabor_channels
    stem = cmod_stem("cifar", width - gabor, gabor, kernel_size=5, blur_filter_size=filter_size)
    pool = max_pool if filter_size is None else max_blur_pool(filter_size)
    return CifarConvNet(num_classes=num_classes, width=width, pool=pool, stem=stem)


register_model(cifar_convnet)
register_model(cifar_convnet_aps)
register_model(cifar_convnet_cmod)
for _f in (2, 3, 4, 5, 7):
    register_model(partial(cifar_convnet_blur, _f), name=f"cifar_convnet_blur{_f}")
    register_model(partial(cifar_convnet_cmod, filter_size=_f), name=f"cifar_convnet_blur{_f}_cmod")
