"""BlurPool against an explicit binomial depthwise convolution written here, all sizes and pad modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from shiftattack.errors import ShapeError, SpecError
from shiftattack.models import BlurPool2d, MaxBlurPool2d, binomial_filter, blur_pool2d, blur_strided_conv
from shiftattack.models.blurpool import PAD_MODES

pytestmark = pytest.mark.usefixtures("one_thread")

PASCAL = {1: [1], 2: [1, 1], 3: [1, 2, 1], 4: [1, 3, 3, 1], 5: [1, 4, 6, 4, 1], 6: [1, 5, 10, 10, 5, 1],
          7: [1, 6, 15, 20, 15, 6, 1]}
NUMPY_PAD = {"reflect": "reflect", "replicate": "edge", "zero": "constant", "circular": "wrap"}


def reference(x: np.ndarray, size: int, stride: int, pad_mode: str) -> np.ndarray:
    """Pad floor/ceil of (size-1)/2 with NumPy, correlate with the binomial kernel by loops, subsample."""
    taps = np.array(PASCAL[size], dtype=np.float64)
    kernel = np.outer(taps, taps) / taps.sum() ** 2
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    padded = np.pad(x, ((0, 0), (0, 0), (before, after), (before, after)), mode=NUMPY_PAD[pad_mode])
    n, c, h, w = x.shape
    out = np.zeros((n, c, h, w))
    for i in range(size):
        for j in range(size):
            out += kernel[i, j] * padded[:, :, i:i + h, j:j + w]
    return out[:, :, ::stride, ::stride]


@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize("size", range(1, 8))
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_matches_explicit_binomial_convolution(size, pad_mode, stride):
    x = torch.randn(2, 3, 11, 9, generator=torch.Generator().manual_seed(size), dtype=torch.float64)
    want = reference(x.numpy(), size, stride, pad_mode)
    got = blur_pool2d(x, size, stride, pad_mode)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    module = BlurPool2d(3, size, stride, pad_mode).double()
    assert torch.equal(module(x), got)


def test_filters_are_normalised_binomials_and_not_in_state_dict():
    for size, taps in PASCAL.items():
        kernel = binomial_filter(size, dtype=torch.float64)
        assert kernel.sum().item() == pytest.approx(1.0)
        np.testing.assert_allclose(kernel.numpy() * sum(taps) ** 2, np.outer(taps, taps))
    layer = BlurPool2d(4, 3)
    assert "filt" in dict(layer.named_buffers()) and layer.state_dict() == {}


def test_size_one_is_plain_subsampling():
    x = torch.randn(1, 2, 7, 8)
    assert torch.equal(blur_pool2d(x, 1, 2), x[..., ::2, ::2])


def test_output_size_is_ceil():
    assert blur_pool2d(torch.randn(1, 1, 7, 10), 4, 3).shape[-2:] == (3, 4)


def test_max_blur_pool_is_max_then_blur():
    x = torch.randn(2, 3, 10, 10)
    want = blur_pool2d(nn.functional.max_pool2d(x, 2, stride=1), 5, 2, "reflect")
    assert torch.equal(MaxBlurPool2d(3, kernel_size=2, filter_size=5)(x), want)


def test_strided_conv_replacement_blurs_after_relu_and_keeps_weights():
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    relu = nn.ReLU()
    new = blur_strided_conv(conv, relu, filter_size=3)
    assert new[0].stride == (1, 1) and torch.equal(new[0].weight, conv.weight)
    x = torch.randn(1, 3, 8, 8)
    dense = relu(nn.functional.conv2d(x, conv.weight, conv.bias, padding=1))
    assert torch.allclose(new(x), blur_pool2d(dense, 3, 2))
    # filter size 1 equals the original strided convolution followed by the ReLU
    assert torch.allclose(blur_strided_conv(conv, relu, filter_size=1)(x), relu(conv(x)), atol=1e-6)


def test_gradients_flow_and_device_dtype_follow_input():
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    BlurPool2d(2, 4).double()(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert blur_pool2d(x.detach().half(), 3).dtype == torch.half


@pytest.mark.parametrize(
    "bad", [dict(filter_size=0), dict(filter_size=8), dict(stride=0), dict(pad_mode="mirror")])
def test_bad_arguments_are_named(bad):
    with pytest.raises(SpecError):
        blur_pool2d(torch.zeros(1, 1, 4, 4), **{"filter_size": 3, **bad})


def test_bad_shapes_are_named():
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        blur_pool2d(torch.zeros(4, 4), 3)
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        BlurPool2d(3, 3)(torch.zeros(1, 2, 4, 4))


def test_channels_none_accepts_any_width_and_equals_the_fixed_layer():
    free = BlurPool2d(None, filter_size=4, stride=2)
    for channels in (1, 5, 12):
        x = torch.rand(2, channels, 9, 9)
        assert torch.equal(free(x), BlurPool2d(channels, 4, 2)(x))
    assert "any channels" in repr(free)
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        free(torch.rand(3, 8, 8))
    from shiftattack.models.compat import adapt_state_dict  # a saved per-channel filter still loads

    model = nn.Sequential(nn.Conv2d(3, 6, 3), free)
    state = {**model.state_dict(), "1.filt": binomial_filter(4).expand(6, 1, 4, 4).clone()}
    assert adapt_state_dict(model, state).keys() == model.state_dict().keys()
