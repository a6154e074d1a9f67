"""Tests of shiftattack.shifts against independent index arithmetic and the DESIGN.md contracts.

The reference shift (:func:`ref_shift`) is written from the definitions only: for every output
pixel (i, j) it computes the source pixel (i - dy, j - dx) and resolves it per border mode with
NumPy integer arithmetic (modulo, clamp, mirror without repeating the edge, or "outside -> fill").
It never calls F.pad, torch.roll or the library.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shiftattack.errors import ShapeError, SpecError
from shiftattack.shifts import (
    INTEGER_MODES,
    Shift,
    crop_gather,
    crop_window,
    rotate_translate,
    shift,
    shift_bilinear,
    shift_fourier,
    shift_gather,
)

pytestmark = pytest.mark.usefixtures("one_thread")


FAST = settings(max_examples=50, deadline=None)

INDEX_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.int32]
FLOAT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]

# ----------------------------------------------------------------------------- reference code


def ref_source(n: int, d: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Source index of each destination index 0..n-1 under a content shift d, and an 'inside' mask.

    The destination index k shows the source index k - d, resolved by the border rule.
    """
    s = np.arange(n, dtype=np.int64) - d
    inside = np.ones(n, dtype=bool)
    if mode == "circular":
        src = np.mod(s, n)
    elif mode == "zero":
        inside = (s >= 0) & (s < n)
        src = np.clip(s, 0, n - 1)  # value unused where outside
    elif mode == "replicate":
        src = np.clip(s, 0, n - 1)
    elif mode == "reflect":
        if n == 1:
            src = np.zeros(n, dtype=np.int64)
        else:  # mirror about the edge pixel without repeating it (numpy.pad 'reflect'), periodic 2(n-1)
            period = 2 * (n - 1)
            r = np.mod(np.abs(s), period)
            src = np.where(r >= n, period - r, r)
    else:  # pragma: no cover - test bug
        raise AssertionError(mode)
    return src, inside


def ref_shift(x: torch.Tensor, dxs, dys, mode: str, fill=0) -> torch.Tensor:
    """Per-image reference shift by pure indexing; dxs, dys are Python ints or per-image lists."""
    n, _, h, w = x.shape
    dxs = [dxs] * n if isinstance(dxs, int) else list(dxs)
    dys = [dys] * n if isinstance(dys, int) else list(dys)
    out = torch.empty_like(x)
    fill_t = torch.tensor(fill, dtype=x.dtype)
    for b in range(n):
        rows, rin = ref_source(h, int(dys[b]), mode)
        cols, cin = ref_source(w, int(dxs[b]), mode)
        block = x[b][:, torch.from_numpy(rows)[:, None], torch.from_numpy(cols)[None, :]]
        mask = torch.from_numpy(rin[:, None] & cin[None, :])
        out[b] = torch.where(mask, block, fill_t)
    return out


def ref_crop(canvas: torch.Tensor, dxs, dys, size) -> torch.Tensor:
    """Per-image window of the canvas at top-left ((Hs-h)//2 - dy, (Ws-w)//2 - dx) by slicing."""
    n, _, hs, ws = canvas.shape
    h, w = size
    dxs = [dxs] * n if isinstance(dxs, int) else list(dxs)
    dys = [dys] * n if isinstance(dys, int) else list(dys)
    outs = []
    for b in range(n):
        top, left = (hs - h) // 2 - int(dys[b]), (ws - w) // 2 - int(dxs[b])
        assert top >= 0 and left >= 0
        outs.append(canvas[b : b + 1, :, top : top + h, left : left + w])
    return torch.cat(outs)


def make_images(shape, dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype in (torch.uint8, torch.int32):
        return torch.randint(0, 256, shape, generator=g).to(dtype)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def fill_for(dtype, choice: int):
    """Fill values exactly representable in every dtype under test."""
    if dtype in (torch.uint8, torch.int32):
        return [0, 7, 255][choice]
    return [0.0, 0.5, -1.25][choice]


def shift_range(mode: str, h: int, w: int) -> int:
    """Largest |shift| drawn for a mode: any for circular/zero/replicate, < size for reflect."""
    if mode == "reflect":
        return min(h, w) - 1
    if mode == "circular":
        return 2 * max(h, w) + 1
    return max(h, w) + 2


@st.composite
def image_cases(draw, dtypes=INDEX_DTYPES, modes=INTEGER_MODES, max_side=9, max_n=3):
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(1, 2))
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    dtype = draw(st.sampled_from(dtypes))
    mode = draw(st.sampled_from(modes))
    seed = draw(st.integers(0, 2**31 - 1))
    return make_images((n, c, h, w), dtype, seed), mode


def test_reference_reflect_matches_numpy_pad() -> None:
    """Sanity check of the reference itself: reflect == numpy.pad(mode='reflect') then window."""
    for n in range(2, 7):
        row = np.arange(n)
        for d in range(-(n - 1), n):
            k = abs(d)
            padded = np.pad(row, k, mode="reflect")
            want = padded[k - d : k - d + n]
            got, _ = ref_source(n, d, "reflect")
            np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------- 1. integer modes


@pytest.mark.parametrize(
    "mode, dx, want",
    [
        ("circular", 2, [3, 4, 0, 1, 2]),
        ("circular", -2, [2, 3, 4, 0, 1]),
        ("zero", 2, [9, 9, 0, 1, 2]),
        ("zero", -2, [2, 3, 4, 9, 9]),
        ("reflect", 2, [2, 1, 0, 1, 2]),
        ("reflect", -2, [2, 3, 4, 3, 2]),
        ("replicate", 2, [0, 0, 0, 1, 2]),
        ("replicate", -2, [2, 3, 4, 4, 4]),
        ("zero", 0, [0, 1, 2, 3, 4]),
    ],
)
def test_hand_computed_rows_and_columns(mode: str, dx: int, want: list[int]) -> None:
    """Hand-computed 1-D examples: content moves right for dx > 0 and down for dy > 0."""
    # three identical rows (reflect pads every side by K, so it needs K < H as well)
    rows = torch.arange(5.0).expand(1, 1, 3, 5).contiguous()
    for out in (shift(rows, dx, 0, mode, fill=9.0),
                shift(rows, torch.tensor([dx]), torch.tensor([0]), mode, fill=9.0)):
        assert all(out[0, 0, r].tolist() == want for r in range(3))
    cols = rows.transpose(-2, -1).contiguous()
    out = shift(cols, 0, dx, mode, fill=9.0)
    assert all(out[0, 0, :, c].tolist() == want for c in range(3))


def test_docstring_example() -> None:
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    want = torch.tensor([[0.0, 0.0, 1.0], [0.0, 3.0, 4.0], [0.0, 6.0, 7.0]])
    assert torch.equal(shift(x, 1, 0, "zero")[0, 0], want)


@FAST
@given(case=image_cases(), data=st.data())
def test_scalar_shift_equals_reference(case, data) -> None:
    x, mode = case
    _, _, h, w = x.shape
    r = shift_range(mode, h, w)
    dx = data.draw(st.integers(-r, r), label="dx")
    dy = data.draw(st.integers(-r, r), label="dy")
    fill = fill_for(x.dtype, data.draw(st.integers(0, 2), label="fill"))
    out = shift(x, dx, dy, mode, fill=fill)
    assert out.dtype == x.dtype and out.shape == x.shape
    assert torch.equal(out, ref_shift(x, dx, dy, mode, fill))


@FAST
@given(case=image_cases(), data=st.data())
def test_per_image_tensor_shift_equals_reference(case, data) -> None:
    x, mode = case
    n, _, h, w = x.shape
    r = shift_range(mode, h, w)
    dxs = data.draw(st.lists(st.integers(-r, r), min_size=n, max_size=n), label="dxs")
    dys = data.draw(st.lists(st.integers(-r, r), min_size=n, max_size=n), label="dys")
    fill = fill_for(x.dtype, data.draw(st.integers(0, 2), label="fill"))
    index_dtype = data.draw(st.sampled_from([torch.int64, torch.int32, torch.int16]), label="idx")
    out = shift(x, torch.tensor(dxs, dtype=index_dtype), torch.tensor(dys, dtype=index_dtype), mode, fill)
    assert out.dtype == x.dtype and out.shape == x.shape
    want = ref_shift(x, dxs, dys, mode, fill)
    assert torch.equal(out, want)
    # each image alone through the scalar path gives the same image
    for b in range(n):
        assert torch.equal(shift(x[b : b + 1], dxs[b], dys[b], mode, fill), want[b : b + 1])


@FAST
@given(case=image_cases(modes=("zero",)), data=st.data())
def test_mixed_int_and_tensor_arguments(case, data) -> None:
    x, mode = case
    n, _, h, w = x.shape
    r = shift_range(mode, h, w)
    dx = data.draw(st.integers(-r, r), label="dx")
    dys = data.draw(st.lists(st.integers(-r, r), min_size=n, max_size=n), label="dys")
    assert torch.equal(shift(x, dx, torch.tensor(dys), mode), ref_shift(x, dx, dys, mode))
    # a 0-dim tensor is broadcast to the batch
    assert torch.equal(shift(x, torch.tensor(dx), dys[0], mode), ref_shift(x, dx, dys[0], mode))


@FAST
@given(case=image_cases(modes=("circular",)), data=st.data())
def test_circular_equals_torch_roll(case, data) -> None:
    x, _ = case
    n, _, h, w = x.shape
    r = shift_range("circular", h, w)
    dx = data.draw(st.integers(-r, r), label="dx")
    dy = data.draw(st.integers(-r, r), label="dy")
    assert torch.equal(shift(x, dx, dy, "circular"), torch.roll(x, (dy, dx), dims=(-2, -1)))
    dxs = data.draw(st.lists(st.integers(-r, r), min_size=n, max_size=n), label="dxs")
    dys = data.draw(st.lists(st.integers(-r, r), min_size=n, max_size=n), label="dys")
    want = torch.cat([torch.roll(x[b : b + 1], (dys[b], dxs[b]), dims=(-2, -1)) for b in range(n)])
    assert torch.equal(shift(x, torch.tensor(dxs), torch.tensor(dys), "circular"), want)


@FAST
@given(case=image_cases(modes=("zero", "reflect", "replicate")), data=st.data())
def test_padded_modes_equal_pad_then_window(case, data) -> None:
    """DESIGN.md: pad by K with F.pad, take the HxW window at top-left (K - dy, K - dx)."""
    x, mode = case
    _, _, h, w = x.shape
    r = shift_range(mode, h, w)
    dx = data.draw(st.integers(-r, r), label="dx")
    dy = data.draw(st.integers(-r, r), label="dy")
    fill = fill_for(x.dtype, data.draw(st.integers(0, 2), label="fill"))
    k = max(abs(dx), abs(dy))
    if mode == "reflect" and k < min(h, w) - 1:
        k += data.draw(st.integers(0, min(h, w) - 1 - k), label="extra pad")  # any K works
    if mode == "zero":
        padded = F.pad(x, (k, k, k, k), mode="constant", value=fill)
    else:
        padded = F.pad(x, (k, k, k, k), mode=mode)
    want = padded[..., k - dy : k - dy + h, k - dx : k - dx + w]
    assert torch.equal(shift(x, dx, dy, mode, fill=fill), want)


def test_zero_shift_is_a_copy() -> None:
    x = torch.rand(2, 3, 5, 7)
    for mode in INTEGER_MODES:
        out = shift(x, 0, 0, mode)
        assert torch.equal(out, x)
        out.add_(1.0)  # the result does not alias the input
        assert not torch.equal(out, x)


def test_empty_batch() -> None:
    x = torch.rand(0, 3, 5, 7)
    for mode in INTEGER_MODES:
        out = shift(x, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), mode)
        assert out.shape == (0, 3, 5, 7)
        assert shift(x, 1, -1, mode).shape == (0, 3, 5, 7)


# ----------------------------------------------------------------------------- 2. circular group action


@FAST
@given(case=image_cases(modes=("circular",), dtypes=[torch.float32, torch.uint8]), data=st.data())
def test_circular_shifts_compose_and_invert(case, data) -> None:
    x, _ = case
    n, _, h, w = x.shape
    r = 3 * max(h, w)
    a, b, c, d = (data.draw(st.integers(-r, r)) for _ in range(4))
    assert torch.equal(shift(shift(x, a, b), c, d), shift(x, a + c, b + d))
    assert torch.equal(shift(shift(x, a, b), -a, -b), x)
    assert torch.equal(shift(x, w, 0), x)
    assert torch.equal(shift(x, 0, h), x)
    assert torch.equal(shift(x, -w, 2 * h), x)
    # per-image tensors compose too
    av = torch.tensor(data.draw(st.lists(st.integers(-r, r), min_size=n, max_size=n)))
    bv = torch.tensor(data.draw(st.lists(st.integers(-r, r), min_size=n, max_size=n)))
    assert torch.equal(shift(shift(x, av, bv), -av, -bv), x)
    assert torch.equal(shift(shift(x, av, bv), c, d), shift(x, av + c, bv + d))
    assert torch.equal(shift(x, torch.full((n,), w), torch.full((n,), -h)), x)


# ----------------------------------------------------------------------------- 3. crop windows


@st.composite
def crop_cases(draw, max_side=10, min_extra=0):
    n = draw(st.integers(1, 3))
    h = draw(st.integers(1, max_side - 2))
    w = draw(st.integers(1, max_side - 2))
    hs = h + draw(st.integers(min_extra, 6))
    ws = w + draw(st.integers(min_extra, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    canvas = make_images((n, 2, hs, ws), torch.float32, seed)
    # admissible shifts: top = (hs-h)//2 - dy in [0, hs-h]
    dy_lo, dy_hi = (hs - h) // 2 - (hs - h), (hs - h) // 2
    dx_lo, dx_hi = (ws - w) // 2 - (ws - w), (ws - w) // 2
    dxs = draw(st.lists(st.integers(dx_lo, dx_hi), min_size=n, max_size=n))
    dys = draw(st.lists(st.integers(dy_lo, dy_hi), min_size=n, max_size=n))
    return canvas, (h, w), dxs, dys, (dx_lo, dx_hi, dy_lo, dy_hi)


@FAST
@given(case=crop_cases())
def test_crop_window_equals_slicing(case) -> None:
    canvas, size, dxs, dys, _ = case
    out = crop_window(canvas, torch.tensor(dxs), torch.tensor(dys), size)
    assert out.shape == (canvas.shape[0], canvas.shape[1], *size)
    assert torch.equal(out, ref_crop(canvas, dxs, dys, size))
    assert torch.equal(crop_window(canvas, dxs[0], dys[0], size), ref_crop(canvas, dxs[0], dys[0], size))


def test_crop_window_centre_and_direction() -> None:
    canvas = torch.arange(8 * 10.0).reshape(1, 1, 8, 10)
    centre = crop_window(canvas, 0, 0, (4, 4))
    assert torch.equal(centre, canvas[..., 2:6, 3:7])
    right = crop_window(canvas, 1, 0, (4, 4))  # content moves right: new column j shows old j - 1
    assert torch.equal(right[..., :, 1:], centre[..., :, :-1])
    down = crop_window(canvas, 0, 2, (4, 4))  # content moves down by 2
    assert torch.equal(down[..., 2:, :], centre[..., :-2, :])


@FAST
@given(case=crop_cases())
def test_crop_window_leaving_the_canvas_raises(case) -> None:
    canvas, size, dxs, dys, (dx_lo, dx_hi, dy_lo, dy_hi) = case
    for dx, dy in [(dx_hi + 1, 0), (dx_lo - 1, 0), (0, dy_hi + 1), (0, dy_lo - 1)]:
        with pytest.raises(SpecError):
            crop_window(canvas, dx, dy, size)
    # one bad image among good ones is enough
    bad = list(dxs)
    bad[-1] = dx_hi + 1
    with pytest.raises(SpecError):
        crop_window(canvas, torch.tensor(bad), torch.tensor(dys), size)


def test_crop_window_larger_than_canvas_raises() -> None:
    with pytest.raises(SpecError):
        crop_window(torch.rand(1, 1, 5, 5), 0, 0, (6, 5))
    with pytest.raises(SpecError):
        crop_window(torch.rand(1, 1, 5, 5), 0, 0, (5, 6))


@FAST
@given(case=image_cases(dtypes=[torch.float32, torch.uint8], modes=("zero", "reflect", "replicate")),
       data=st.data())
def test_crop_of_padded_canvas_equals_shift(case, data) -> None:
    x, mode = case
    n, _, h, w = x.shape
    kmax = shift_range(mode, h, w)
    k = data.draw(st.integers(0, kmax), label="K")
    dxs = data.draw(st.lists(st.integers(-k, k), min_size=n, max_size=n), label="dxs")
    dys = data.draw(st.lists(st.integers(-k, k), min_size=n, max_size=n), label="dys")
    pad_mode = "constant" if mode == "zero" else mode
    canvas = F.pad(x, (k, k, k, k), mode=pad_mode)
    got = crop_window(canvas, torch.tensor(dxs), torch.tensor(dys), (h, w))
    assert torch.equal(got, shift(x, torch.tensor(dxs), torch.tensor(dys), mode))


# ----------------------------------------------------------------------------- 4. bilinear


@FAST
@given(case=image_cases(dtypes=FLOAT_DTYPES), data=st.data())
def test_bilinear_at_integers_is_bit_exact(case, data) -> None:
    x, mode = case
    n, _, h, w = x.shape
    assume(mode != "reflect" or min(h, w) >= 2)  # 1-px reflect: see test_bilinear_zero_shift_needs_no_room
    r = shift_range(mode, h, w)
    dx = data.draw(st.integers(-r, r), label="dx")
    dy = data.draw(st.integers(-r, r), label="dy")
    fill = fill_for(x.dtype, data.draw(st.integers(0, 2), label="fill"))
    got = shift_bilinear(x, float(dx), float(dy), mode, fill)
    assert got.dtype == x.dtype
    assert torch.equal(got, shift(x, dx, dy, mode, fill))
    # boundary values +-r exactly
    for bx, by in [(r, -r), (-r, r), (r, r)]:
        assert torch.equal(shift_bilinear(x, float(bx), float(by), mode, fill), shift(x, bx, by, mode, fill))
    dxs = data.draw(st.lists(st.integers(-r, r), min_size=n, max_size=n), label="dxs")
    dys = data.draw(st.lists(st.integers(-r, r), min_size=n, max_size=n), label="dys")
    got = shift_bilinear(x, torch.tensor(dxs, dtype=torch.float64), torch.tensor(dys, dtype=torch.float64),
                         mode, fill)
    assert torch.equal(got, shift(x, torch.tensor(dxs), torch.tensor(dys), mode, fill))


@FAST
@given(case=crop_cases(min_extra=2))  # room >= 1 on every side; room 0 is tested below
def test_bilinear_crop_at_integers_including_boundaries(case) -> None:
    canvas, size, dxs, dys, (dx_lo, dx_hi, dy_lo, dy_hi) = case
    got = shift_bilinear(canvas, torch.tensor(dxs, dtype=torch.float32),
                         torch.tensor(dys, dtype=torch.float32), "crop", size=size)
    assert torch.equal(got, ref_crop(canvas, dxs, dys, size))
    for dx, dy in [(dx_hi, dy_hi), (dx_lo, dy_lo), (dx_hi, dy_lo), (dx_lo, dy_hi)]:
        got = shift_bilinear(canvas, float(dx), float(dy), "crop", size=size)
        assert torch.equal(got, ref_crop(canvas, dx, dy, size)), (dx, dy)


def bilinear_reference(x: torch.Tensor, dx: float, dy: float, exact) -> torch.Tensor:
    """(1-a)(1-b)S(i,j) + a(1-b)S(i+1,j) + (1-a)b S(i,j+1) + ab S(i+1,j+1), i = floor(dx), a = dx - i."""
    i, j = math.floor(dx), math.floor(dy)
    a, b = dx - i, dy - j
    out = torch.zeros_like(exact(i, j))
    for wgt, ii, jj in [((1 - a) * (1 - b), i, j), (a * (1 - b), i + 1, j),
                        ((1 - a) * b, i, j + 1), (a * b, i + 1, j + 1)]:
        if wgt != 0:
            out = out + wgt * exact(ii, jj)
    return out


@FAST
@given(case=image_cases(dtypes=[torch.float64], modes=INTEGER_MODES + ("crop",), max_n=1), data=st.data())
def test_bilinear_equals_formula_at_fractional_shifts(case, data) -> None:
    x, mode = case
    _, _, h, w = x.shape
    assume(mode != "reflect" or min(h, w) >= 2)  # 1-px reflect: see test_bilinear_zero_shift_needs_no_room
    fill = fill_for(x.dtype, data.draw(st.integers(0, 2), label="fill"))
    if mode == "crop":
        k = data.draw(st.integers(0, 3), label="K")
        k = max(k, 1)  # room >= 1: see test_bilinear_zero_shift_needs_no_room
        canvas = F.pad(x, (k + 1, k, k, k + 2), mode="replicate") + 0.25  # uneven room on each side
        size = (h, w)
        lo_x, hi_x = (canvas.shape[3] - w) // 2 - (canvas.shape[3] - w), (canvas.shape[3] - w) // 2
        lo_y, hi_y = (canvas.shape[2] - h) // 2 - (canvas.shape[2] - h), (canvas.shape[2] - h) // 2
        dx = data.draw(st.floats(lo_x, hi_x, allow_nan=False), label="dx")
        dy = data.draw(st.floats(lo_y, hi_y, allow_nan=False), label="dy")
        got = shift_bilinear(canvas, dx, dy, "crop", size=size)
        want = bilinear_reference(canvas, dx, dy, lambda i, j: ref_crop(canvas, i, j, size))
    else:
        r = shift_range(mode, h, w)
        dx = data.draw(st.floats(-r, r, allow_nan=False), label="dx")
        dy = data.draw(st.floats(-r, r, allow_nan=False), label="dy")
        got = shift_bilinear(x, dx, dy, mode, fill)
        want = bilinear_reference(x, dx, dy, lambda i, j: ref_shift(x, i, j, mode, fill))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


@FAST
@given(case=image_cases(dtypes=[torch.float32], max_n=3), data=st.data())
def test_bilinear_float32_per_image_matches_formula(case, data) -> None:
    """Eighth-pixel shifts are exact in float32, so float32 agrees with the formula to 1e-6."""
    x, mode = case
    x = torch.sigmoid(x)  # values in (0, 1): float32 rounding stays far below 1e-6
    n, _, h, w = x.shape
    assume(mode != "reflect" or min(h, w) >= 2)  # 1-px reflect: see test_bilinear_zero_shift_needs_no_room
    r = shift_range(mode, h, w)
    dxs = [q / 8 for q in data.draw(st.lists(st.integers(-8 * r, 8 * r), min_size=n, max_size=n))]
    dys = [q / 8 for q in data.draw(st.lists(st.integers(-8 * r, 8 * r), min_size=n, max_size=n))]
    got = shift_bilinear(x, torch.tensor(dxs), torch.tensor(dys), mode)
    want = torch.cat([bilinear_reference(x[b : b + 1], dxs[b], dys[b],
                                         lambda i, j, b=b: ref_shift(x[b : b + 1], i, j, mode))
                      for b in range(n)])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", INTEGER_MODES)
def test_bilinear_is_continuous_across_integers(mode: str) -> None:
    x = make_images((1, 2, 5, 7), torch.float64, 3).clamp(-2, 2)
    for k in [-3, -1, 0, 1, 2, 4]:
        if mode == "reflect" and abs(k) + 1 >= 5:
            continue
        at = shift_bilinear(x, float(k), float(-k), mode)
        for eps in (1e-6, -1e-6):
            near = shift_bilinear(x, k - eps, -k + eps, mode)
            assert (near - at).abs().max() < 1e-5, (k, eps)
            near = shift_bilinear(x, k + eps, float(-k), mode)
            assert (near - at).abs().max() < 1e-5, (k, eps)


def test_bilinear_crop_is_continuous_at_the_boundary() -> None:
    canvas = make_images((1, 1, 9, 9), torch.float64, 5)
    at = shift_bilinear(canvas, 2.0, -2.0, "crop", size=(5, 5))
    near = shift_bilinear(canvas, 2.0 - 1e-6, -2.0 + 1e-6, "crop", size=(5, 5))
    assert (near - at).abs().max() < 1e-5


@pytest.mark.parametrize("mode", INTEGER_MODES + ("crop",))
def test_bilinear_gradcheck_and_nonzero_gradient(mode: str) -> None:
    x = make_images((2, 1, 4, 5), torch.float64, 11)
    kwargs = {"size": (2, 3)} if mode == "crop" else {}

    def f(img, dx, dy):
        return shift_bilinear(img, dx, dy, mode, **kwargs)

    dx = torch.tensor([0.3, -0.6], dtype=torch.float64, requires_grad=True)
    dy = torch.tensor([-0.45, 0.7], dtype=torch.float64, requires_grad=True)
    img = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (img, dx, dy))
    wts = make_images(f(x, dx, dy).shape, torch.float64, 12)
    for point in ([0.3, -0.6], [1.0, -1.0], [0.0, 0.0]):
        dx = torch.tensor(point, dtype=torch.float64, requires_grad=True)
        dy = torch.tensor(point[::-1], dtype=torch.float64, requires_grad=True)
        (f(x, dx, dy) * wts).sum().backward()
        for g in (dx.grad, dy.grad):
            assert g is not None and torch.isfinite(g).all() and (g != 0).all(), (point, g)


@pytest.mark.parametrize(
    "shape, mode, size",
    [((1, 1, 8, 8), "crop", (8, 8)), ((1, 1, 9, 9), "crop", (8, 8)), ((1, 1, 6, 9), "crop", (5, 5)),
     ((1, 1, 1, 5), "reflect", None), ((1, 1, 4, 1), "reflect", None)],
)
def test_bilinear_zero_shift_needs_no_room(shape, mode, size) -> None:
    x = make_images(shape, torch.float32, 0)
    if mode == "crop":
        want = crop_window(x, 0, 0, size)
    else:
        want = shift(x, 0, 0, mode)
    assert torch.equal(shift_bilinear(x, 0.0, 0.0, mode, size=size), want)


def test_bilinear_crop_needs_size() -> None:
    with pytest.raises(SpecError):
        shift_bilinear(torch.rand(1, 1, 8, 8), 0.5, 0.5, "crop")


# ----------------------------------------------------------------------------- 5. Fourier


@FAST
@given(case=image_cases(dtypes=[torch.float32, torch.float64], modes=("circular",), max_side=12),
       data=st.data())
def test_fourier_matches_roll_at_integers(case, data) -> None:
    x, _ = case
    x = torch.sigmoid(x)  # images in (0, 1), as the toolkit assumes
    n, _, h, w = x.shape
    r = max(h, w)  # large shifts have their own test below
    tol = 1e-5 if x.dtype == torch.float32 else 1e-10
    dx = data.draw(st.integers(-r, r), label="dx")
    dy = data.draw(st.integers(-r, r), label="dy")
    got = shift_fourier(x, dx, dy)
    assert got.dtype == x.dtype
    assert (got - torch.roll(x, (dy, dx), dims=(-2, -1))).abs().max() <= tol
    dxs = data.draw(st.lists(st.integers(-r, r), min_size=n, max_size=n), label="dxs")
    dys = data.draw(st.lists(st.integers(-r, r), min_size=n, max_size=n), label="dys")
    got = shift_fourier(x, torch.tensor(dxs, dtype=x.dtype), torch.tensor(dys, dtype=x.dtype))
    assert (got - shift(x, torch.tensor(dxs), torch.tensor(dys), "circular")).abs().max() <= tol


@FAST
@given(data=st.data())
def test_fourier_composes(data) -> None:
    """Shift by a then b == shift by a + b. On an even axis the Nyquist term is real-projected
    (documented), so there only integer shifts compose; odd axes take any real shift."""
    h = data.draw(st.integers(1, 9), label="h")
    w = data.draw(st.integers(1, 9), label="w")
    x = make_images((2, 2, h, w), torch.float64, data.draw(st.integers(0, 2**31 - 1)))

    def amount(size):
        if size % 2:
            return data.draw(st.floats(-6, 6, allow_nan=False))
        return float(data.draw(st.integers(-6, 6)))

    ax, ay, bx, by = amount(w), amount(h), amount(w), amount(h)
    twice = shift_fourier(shift_fourier(x, ax, ay), bx, by)
    torch.testing.assert_close(twice, shift_fourier(x, ax + bx, ay + by), atol=1e-10, rtol=0)
    torch.testing.assert_close(shift_fourier(twice, -ax - bx, -ay - by), x, atol=1e-10, rtol=0)


@FAST
@given(data=st.data())
def test_fourier_shifts_band_limited_signal_exactly(data) -> None:
    """A sampled sinusoid below Nyquist, shifted by real (dx, dy), is the sampled shifted sinusoid."""
    h = data.draw(st.integers(3, 12), label="h")
    w = data.draw(st.integers(3, 12), label="w")
    p = data.draw(st.integers(-((w - 1) // 2), (w - 1) // 2), label="p")
    q = data.draw(st.integers(-((h - 1) // 2), (h - 1) // 2), label="q")
    phi = data.draw(st.floats(0, 6.3), label="phi")
    dx = data.draw(st.floats(-10, 10, allow_nan=False), label="dx")
    dy = data.draw(st.floats(-10, 10, allow_nan=False), label="dy")
    i = torch.arange(h, dtype=torch.float64)[:, None]
    j = torch.arange(w, dtype=torch.float64)[None, :]

    def wave(ii, jj):
        return torch.cos(2 * math.pi * (p * jj / w + q * ii / h) + phi)[None, None]

    torch.testing.assert_close(shift_fourier(wave(i, j), dx, dy), wave(i - dy, j - dx), atol=1e-10, rtol=0)


def test_fourier_gradcheck() -> None:
    x = make_images((2, 1, 5, 6), torch.float64, 4)
    dx = torch.tensor([0.3, -1.7], dtype=torch.float64, requires_grad=True)
    dy = torch.tensor([2.2, 0.4], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(shift_fourier, (x.clone().requires_grad_(True), dx, dy))
    shift_fourier(x, dx, dy).pow(2).mul(torch.arange(6.0, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(dx.grad).all() and (dx.grad != 0).all()


def test_fourier_float32_precision_for_large_shifts() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 224, 224)
    err = (shift_fourier(x, 112, 112) - torch.roll(x, (112, 112), dims=(-2, -1))).abs().max()
    assert err <= 1e-5, float(err)
    x = torch.rand(1, 1, 16, 16)  # a circular shift by 1000 px is a roll by 8 px
    err = (shift_fourier(x, 1000, 0) - torch.roll(x, (0, 1000), dims=(-2, -1))).abs().max()
    assert err <= 1e-5, float(err)


# ----------------------------------------------------------------------------- 6. rotation


@FAST
@given(case=image_cases(dtypes=[torch.float32, torch.float64], modes=("zero",)), data=st.data())
def test_rotate_translate_angle_zero_is_zero_shift(case, data) -> None:
    x, _ = case
    n, _, h, w = x.shape
    r = max(h, w) + 1
    dxs = data.draw(st.lists(st.integers(-r, r), min_size=n, max_size=n), label="dxs")
    dys = data.draw(st.lists(st.integers(-r, r), min_size=n, max_size=n), label="dys")
    got = rotate_translate(x, 0.0, torch.tensor(dxs, dtype=x.dtype), torch.tensor(dys, dtype=x.dtype))
    assert got.dtype == x.dtype
    want = shift(x, torch.tensor(dxs), torch.tensor(dys), "zero")
    assert (got - want).abs().max() <= 1e-5
    got = rotate_translate(x, 0.0, float(dxs[0]), float(dys[0]))
    assert (got - shift(x, dxs[0], dys[0], "zero")).abs().max() <= 1e-5


@pytest.mark.parametrize("size", [3, 5, 7, 6])
def test_rotation_by_90_matches_rot90(size: int) -> None:
    x = make_images((2, 3, size, size), torch.float32, size)
    # positive angle = counter-clockwise on screen = torch.rot90 with k=1 on dims (H, W)
    assert (rotate_translate(x, 90.0, 0.0, 0.0) - torch.rot90(x, 1, dims=(-2, -1))).abs().max() < 1e-5
    assert (rotate_translate(x, -90.0, 0.0, 0.0) - torch.rot90(x, -1, dims=(-2, -1))).abs().max() < 1e-5
    assert (rotate_translate(x, 180.0, 0.0, 0.0) - torch.rot90(x, 2, dims=(-2, -1))).abs().max() < 1e-5


def test_rotation_direction_single_pixel() -> None:
    """A pixel right of the centre goes to the top for +90 degrees (y axis down, counter-clockwise)."""
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 4] = 1.0
    out = rotate_translate(x, 90.0, 0.0, 0.0)[0, 0]
    assert out[0, 2] > 0.999 and out.sum() < 1.0 + 1e-5


def test_rotate_then_translate() -> None:
    x = make_images((2, 1, 7, 7), torch.float64, 9)
    got = rotate_translate(x, torch.tensor([90.0, -90.0], dtype=torch.float64), 2.0, -1.0)
    want = torch.cat([shift(torch.rot90(x[:1], 1, dims=(-2, -1)), 2, -1, "zero"),
                      shift(torch.rot90(x[1:], -1, dims=(-2, -1)), 2, -1, "zero")])
    assert (got - want).abs().max() < 1e-5


def test_rotate_translate_differentiable() -> None:
    x = make_images((2, 1, 5, 6), torch.float64, 2)
    angle = torch.tensor([17.3, -8.9], dtype=torch.float64, requires_grad=True)
    dx = torch.tensor([0.37, -1.21], dtype=torch.float64, requires_grad=True)
    dy = torch.tensor([-0.52, 0.83], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, u, v: rotate_translate(x, a, u, v), (angle, dx, dy))
    rotate_translate(x, angle, dx, dy).sum().backward()
    assert torch.isfinite(angle.grad).all() and (angle.grad != 0).all()


# ----------------------------------------------------------------------------- 7. Shift module


@FAST
@given(case=image_cases(dtypes=[torch.float32, torch.float64]), data=st.data())
def test_module_agrees_with_functions(case, data) -> None:
    x, mode = case
    _, _, h, w = x.shape
    assume(mode != "reflect" or min(h, w) >= 2)  # 1-px reflect: see test_bilinear_zero_shift_needs_no_room
    r = shift_range(mode, h, w)
    dx = data.draw(st.integers(-r, r), label="dx")
    dy = data.draw(st.integers(-r, r), label="dy")
    fill = fill_for(x.dtype, data.draw(st.integers(0, 2), label="fill"))
    assert torch.equal(Shift(dx, dy, mode, "exact", fill)(x), shift(x, dx, dy, mode, fill))
    assert torch.equal(Shift(float(dx), float(dy), mode, "exact", fill)(x), shift(x, dx, dy, mode, fill))
    fx = data.draw(st.floats(-r, r, allow_nan=False), label="fx")
    fy = data.draw(st.floats(-r, r, allow_nan=False), label="fy")
    assert torch.equal(Shift(fx, fy, mode, "bilinear", fill)(x), shift_bilinear(x, fx, fy, mode, fill))
    assert torch.equal(Shift(fx, fy, "circular", "fourier")(x), shift_fourier(x, fx, fy))


def test_module_default_and_repr() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(Shift(2, -1)(x), torch.roll(x, (-1, 2), dims=(-2, -1)))
    assert "mode='circular'" in repr(Shift(2, -1))


@pytest.mark.parametrize(
    "args",
    [
        (0.5, 0, "zero", "exact"),
        (1, 2.25, "circular", "exact"),
        (0.5, 0.5, "zero", "fourier"),
        (0.5, 0.5, "reflect", "fourier"),
        (1, 1, "nearest", "exact"),
        (1, 1, "crop", "exact"),
        (1, 1, "zero", "cubic"),
    ],
)
def test_module_rejects_bad_arguments(args) -> None:
    with pytest.raises(SpecError):
        Shift(*args)


# ----------------------------------------------------------------------------- 8. device and dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_outputs_keep_dtype(dtype) -> None:
    x = torch.rand(2, 1, 5, 7).to(dtype)
    for mode in INTEGER_MODES:
        assert shift(x, 1, -2, mode).dtype == dtype
        assert shift(x, torch.tensor([1, 0]), torch.tensor([0, -1]), mode).dtype == dtype
        assert shift_bilinear(x, 0.5, -1.5, mode).dtype == dtype
    assert crop_window(x, 1, 0, (3, 3)).dtype == dtype
    if dtype != torch.bfloat16:  # FFT / grid_sample need float32 or float64 on CPU
        assert shift_fourier(x, 0.5, 1).dtype == dtype
        assert rotate_translate(x, 10.0, 0.5, 1.0).dtype == dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    x = make_images((3, 2, 8, 9), torch.float32, 1)
    xc = x.cuda()
    dxs, dys = torch.tensor([2, -3, 0]), torch.tensor([-1, 4, 8])
    for mode in INTEGER_MODES:
        if mode == "reflect":
            dys = torch.tensor([-1, 4, 7])
        got = shift(xc, dxs.cuda(), dys, mode)  # shifts on CPU are moved to the image's device
        assert got.device == xc.device and got.dtype == x.dtype
        assert torch.equal(got.cpu(), shift(x, dxs, dys, mode))
        assert torch.equal(shift(xc, 2, -3, mode).cpu(), shift(x, 2, -3, mode))
        got = shift_bilinear(xc, 0.25, -1.5, mode)
        assert got.device == xc.device
        torch.testing.assert_close(got.cpu(), shift_bilinear(x, 0.25, -1.5, mode), atol=1e-6, rtol=0)
    assert torch.equal(crop_window(xc, 1, -1, (4, 5)).cpu(), crop_window(x, 1, -1, (4, 5)))
    torch.testing.assert_close(shift_fourier(xc, 0.5, 1.5).cpu(), shift_fourier(x, 0.5, 1.5),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(rotate_translate(xc, 30.0, 1.0, 0.0).cpu(),
                               rotate_translate(x, 30.0, 1.0, 0.0), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- 9. errors


@pytest.mark.parametrize("shape", [(5, 7), (3, 5, 7), (1, 1, 1, 5, 7)])
def test_wrong_rank_raises_shape_error(shape) -> None:
    x = torch.rand(shape)
    with pytest.raises(ShapeError):
        shift(x, 1, 0)
    with pytest.raises(ShapeError):
        crop_window(x, 0, 0, (2, 2))
    with pytest.raises(ShapeError):
        shift_bilinear(x, 0.5, 0.0)
    with pytest.raises(ShapeError):
        shift_fourier(x, 0.5, 0.0)
    with pytest.raises(ShapeError):
        rotate_translate(x, 1.0, 0.0, 0.0)


def test_non_tensor_input_raises_shape_error() -> None:
    with pytest.raises(ShapeError):
        shift(np.zeros((1, 1, 3, 3)), 1, 0)


@pytest.mark.parametrize("dx", [1.0, 0.5, torch.tensor([1.0, 2.0]), torch.tensor(1.0), "1", None, True])
def test_non_integer_exact_shift_raises_spec_error(dx) -> None:
    x = torch.rand(2, 1, 5, 5)
    with pytest.raises(SpecError):
        shift(x, dx, 0)
    with pytest.raises(SpecError):
        shift(x, 0, dx if not isinstance(dx, bool) else 1.5)
    with pytest.raises(SpecError):
        crop_window(x, dx, 0, (3, 3))


@pytest.mark.parametrize("length", [1, 3])
def test_wrong_length_shift_tensor_raises_shape_error(length: int) -> None:
    x = torch.rand(2, 1, 5, 5)
    d = torch.zeros(length, dtype=torch.long)
    with pytest.raises(ShapeError):
        shift(x, d, 0, "zero")
    with pytest.raises(ShapeError):
        shift(x, 0, d, "circular")
    with pytest.raises(ShapeError):
        crop_window(x, d, 0, (3, 3))
    with pytest.raises(ShapeError):
        shift_bilinear(x, d.double(), 0.0)
    with pytest.raises(ShapeError):
        shift_fourier(x, 0.0, d.double())
    with pytest.raises(ShapeError):
        shift(x, torch.zeros(2, 1, dtype=torch.long), 0)


@pytest.mark.parametrize(
    "h, w, dx, dy", [(5, 7, 5, 0), (5, 7, 0, -5), (5, 7, 6, 0), (4, 4, -4, 4), (1, 3, 1, 0)]
)
def test_reflect_too_far_raises_spec_error(h, w, dx, dy) -> None:
    x = torch.rand(2, 1, h, w)
    with pytest.raises(SpecError):
        shift(x, dx, dy, "reflect")
    with pytest.raises(SpecError):
        shift(x, torch.tensor([0, dx]), torch.tensor([0, dy]), "reflect")
    with pytest.raises(SpecError):
        shift_bilinear(x, float(dx), float(dy), "reflect")


def test_reflect_largest_allowed_shift_works() -> None:
    x = torch.rand(1, 1, 5, 7)
    assert torch.equal(shift(x, 4, -4, "reflect"), ref_shift(x, 4, -4, "reflect"))


@pytest.mark.parametrize("mode", ["nearest", "crop", "wrap", "", "Zero"])
def test_unknown_mode_raises_spec_error(mode: str) -> None:
    x = torch.rand(1, 1, 5, 5)
    with pytest.raises(SpecError):
        shift(x, 1, 0, mode)
    with pytest.raises(SpecError):
        shift(x, torch.tensor([1]), torch.tensor([0]), mode)
    if mode != "crop":
        with pytest.raises(SpecError):
            shift_bilinear(x, 0.5, 0.0, mode)


@pytest.mark.parametrize("mode", ["circular", "zero", "reflect", "replicate", "crop"])
@pytest.mark.parametrize("n_distinct", [1, 3, 30])
def test_grouped_and_indexed_paths_agree_with_per_image_shifts(mode, n_distinct):
    """Few distinct shifts take the sliced path, many the per-pixel index path: both exact."""
    gen = torch.Generator().manual_seed(n_distinct)
    x = torch.rand(6, 3, 9, 11, generator=gen)
    index = torch.randint(0, 6, (40,), generator=gen)
    choices = torch.tensor([(a, b) for a in range(-3, 4) for b in range(-3, 4)])[:n_distinct]
    pick = choices[torch.randint(0, n_distinct, (40,), generator=gen)]
    dx, dy = pick[:, 0], pick[:, 1]
    rows = zip(index.tolist(), dx.tolist(), dy.tolist(), strict=True)
    if mode == "crop":
        out = crop_gather(x, index, dx, dy, (3, 5))
        ref = [crop_window(x[i : i + 1], a, b, (3, 5)) for i, a, b in rows]
    else:
        out = shift_gather(x, index, dx, dy, mode, fill=0.5)
        ref = [shift(x[i : i + 1], a, b, mode, 0.5) for i, a, b in rows]
    assert torch.equal(out, torch.cat(ref))
