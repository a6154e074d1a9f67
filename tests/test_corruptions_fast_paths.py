"""The faster implementations of issue 22 (item 2) against their references, beyond the published sizes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from shiftattack.corruptions import corrupt
from shiftattack.corruptions._pil_box import box_resize
from shiftattack.corruptions.blur import _defocus_kernel, _fft_side
from shiftattack.errors import DataError, ShapeError


def test_box_resize_equals_pillow_at_any_sizes():
    """Both pass orders (Pillow 13 shrinks the height first when it shrinks far more), up and down."""
    rng, gen = random.Random(0), torch.Generator().manual_seed(0)
    for _ in range(300):
        big, small = (rng.randint(1, 70), rng.randint(1, 70)), (rng.randint(1, 90), rng.randint(1, 90))
        u = torch.randint(0, 256, (3, *big), generator=gen, dtype=torch.int32)
        want = Image.fromarray(u.permute(1, 2, 0).numpy().astype(np.uint8)).resize(small[::-1], Image.BOX)
        np.testing.assert_array_equal(box_resize(u, small).permute(1, 2, 0).numpy(), np.asarray(want))


@pytest.mark.parametrize("shape", [(1, 3, 37, 53), (2, 3, 61, 20)])
def test_pixelate_equals_pillow_on_odd_shapes(shape):
    x = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(1)).float() / 255
    for s, f in enumerate((0.6, 0.5, 0.4, 0.3, 0.25), 1):
        got = corrupt(x, "pixelate", s)
        h, w = shape[-2:]
        for img, out in zip(x, got, strict=True):
            pil = Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
            want = pil.resize((int(w * f), int(h * f)), Image.BOX).resize((w, h), Image.BOX)
            np.testing.assert_array_equal((out * 255).round().permute(1, 2, 0).numpy(), np.asarray(want))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_defocus_fft_equals_the_direct_convolution(layout):
    x = torch.rand(2, 3, 40, 44, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = x.contiguous(memory_format=layout)
    for s, (radius, alias) in enumerate(((3, .1), (4, .5), (6, .5), (8, .5), (10, .5)), 1):
        k = _defocus_kernel(radius, alias)
        r = k.shape[-1] // 2
        padded = torch.nn.functional.pad(x.contiguous(), (r, r, r, r), mode="reflect")
        want = torch.nn.functional.conv2d(padded, k.expand(3, 1, -1, -1), groups=3).clamp(0, 1)
        torch.testing.assert_close(corrupt(x, "defocus_blur", s), want, atol=1e-12, rtol=0)


def test_fft_sides_are_smooth_and_large_enough():
    for n in range(1, 600):
        side = _fft_side(n)
        m = side
        for p in (2, 3):
            while m % p == 0:
                m //= p
        assert side >= n and m == 1 and side < 2 * n + 1


def test_the_fast_image_check_still_refuses_what_it_should():
    x = torch.rand(1, 3, 8, 8)
    for bad in (float("nan"), float("inf"), -float("inf")):
        y = x.clone()
        y[0, 1, 2, 3] = bad
        with pytest.raises(DataError):
            corrupt(y, "contrast", 1)
    with pytest.raises(ShapeError):
        corrupt(torch.randint(0, 255, (1, 3, 8, 8)), "contrast", 1)
    big = torch.full((1, 3, 8, 8), 3e38)  # finite, but its sum overflows: the full check decides
    assert corrupt(big, "contrast", 1).shape == big.shape


def test_jpeg_and_motion_blur_give_channels_last_inputs_the_same_result():
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    xl = x.contiguous(memory_format=torch.channels_last)
    for name in ("jpeg_compression", "motion_blur", "pixelate", "defocus_blur"):
        a = corrupt(x, name, 3, generator=torch.Generator().manual_seed(0))
        b = corrupt(xl, name, 3, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def _smooth_images(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Natural-looking float (N, 3, H, W): bicubic-enlarged coarse noise, quantised to 8 bits."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
        out.append(np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC)))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 224, 224), (2, 3, 32, 32), (1, 3, 37, 53), (3, 3, 61, 20)])
def test_pixelate_pillow_path_equals_the_torch_path(shape, dtype):
    """RGB on the CPU runs Pillow itself; the torch reproduction (other devices) gives the same values."""
    from shiftattack.corruptions.digital import _quantise, pixelate

    gen = torch.Generator().manual_seed(4)
    h, w = shape[-2:]
    noise = torch.rand(shape, generator=gen, dtype=dtype)
    smooth = _smooth_images(shape[0], h, w, 5).to(dtype)
    for x in (noise, smooth, noise.contiguous(memory_format=torch.channels_last)):
        for f in (0.95, 0.9, 0.85, 0.75, 0.65, 0.6, 0.5, 0.4, 0.3, 0.25):
            small = (max(1, int(h * f)), max(1, int(w * f)))
            want = box_resize(box_resize(_quantise(x), small), (h, w)).to(dtype) / 255
            got = pixelate(x, f)
            assert got.dtype == dtype
            torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_nearest_enlargement_is_used_only_where_it_is_pillows_box():
    from shiftattack.corruptions.digital import _nearest_is_box

    rng = np.random.default_rng(6)
    assert all(_nearest_is_box(s, 224) for s in (134, 112, 89, 67, 56))
    assert all(_nearest_is_box(s, 32) for s in (30, 28, 27, 24, 20))
    assert not _nearest_is_box(4, 6)  # where Pillow's NEAREST rounds differently, BOX is used
    for n_in, n_out in [(134, 224), (56, 224), (27, 32), (4, 6), (2, 7), (33, 100)]:
        img = Image.fromarray(rng.integers(0, 256, (n_in, n_in, 3), dtype=np.uint8))
        same = np.array_equal(np.asarray(img.resize((n_out, n_out), Image.NEAREST)),
                              np.asarray(img.resize((n_out, n_out), Image.BOX)))
        assert same or not _nearest_is_box(n_in, n_out)
