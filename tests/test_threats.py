"""Tests of shiftattack.shifts.threats: spec parsing, member sets, ordering, validation, apply, JSON."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftattack.errors import SpecError
from shiftattack.shifts import crop_window, rotate_translate, shift, shift_bilinear, shift_fourier
from shiftattack.shifts.threats import ENGSTROM, ShiftSet, ThreatModel, parse_shifts

pytestmark = pytest.mark.usefixtures("one_thread")


FAST = settings(max_examples=50, deadline=None)


def members(s: ShiftSet) -> set[tuple[float, float, float]]:
    return {tuple(float(v) for v in row) for row in s.params}


def cheb(p: torch.Tensor) -> torch.Tensor:
    return p[:, :2].abs().amax(dim=1)


# ----------------------------------------------------------------------------- grid


@FAST
@given(k=st.integers(0, 6))
def test_grid_is_the_integer_box(k: int) -> None:
    s = parse_shifts(f"grid:{k}")
    assert s.kind == "grid" and s.spec == f"grid:{k}"
    assert s.size == (2 * k + 1) ** 2 == s.params.shape[0]
    assert s.params.dtype == torch.float64 and s.params.shape[1] == 3
    box = {(float(dx), float(dy), 0.0) for dx in range(-k, k + 1) for dy in range(-k, k + 1)}
    assert members(s) == box
    assert s.radius == k and s.max_angle == 0 and not s.has_rotation and s.is_integer
    # values are exact whole numbers, not approximately
    assert torch.equal(s.params[:, :2], s.params[:, :2].round())


def test_grid_spec_whitespace_and_whole_float() -> None:
    assert parse_shifts("  grid:2 ").size == 25
    assert parse_shifts("grid:2.0").size == 25


@FAST
@given(k=st.integers(0, 4), m=st.integers(1, 10))
def test_grid_with_step(k: int, m: int) -> None:
    """grid:K:STEP with STEP = 2K/m has m + 1 values per axis: -K, -K + STEP, ..., K."""
    step = 2 * k / m if k else 0.5
    s = parse_shifts(f"grid:{k}:{step!r}")
    n = m + 1 if k else 1
    assert s.size == n * n
    axis = torch.linspace(-k, k, n, dtype=torch.float64) if k else torch.zeros(1, dtype=torch.float64)
    want = torch.tensor(sorted(itertools.product(axis.tolist(), axis.tolist())), dtype=torch.float64)
    got = torch.tensor(sorted(s.params[:, :2].tolist()), dtype=torch.float64)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    assert (s.params[:, 2] == 0).all()
    assert s.params[:, :2].abs().max() == k and s.radius == k
    assert s.is_integer == all(float(v).is_integer() for v in axis.tolist())


def test_grid_step_examples() -> None:
    s = parse_shifts("grid:1:0.5")
    assert s.size == 25
    assert sorted(set(s.params[:, 0].tolist())) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert not s.is_integer
    assert parse_shifts("grid:2:1").is_integer and parse_shifts("grid:2:1").size == 25
    s = parse_shifts("grid:3:2")  # -3, -1, 1, 3: no zero member
    assert sorted(set(s.params[:, 1].tolist())) == [-3.0, -1.0, 1.0, 3.0] and s.is_integer
    assert parse_shifts("grid:1:0.1").size == 21 * 21


# ----------------------------------------------------------------------------- random


@FAST
@given(k=st.sampled_from([0, 1, 2, 3, 2.5, 0.75]), n=st.integers(1, 12),
       deg=st.sampled_from([None, 0, 5, 30]), n_images=st.integers(0, 4), seed=st.integers(0, 2**31 - 1))
def test_random_sets(k, n, deg, n_images, seed) -> None:
    spec = f"random:{k}:{n}" + ("" if deg is None else f":{deg}")
    s = parse_shifts(spec)
    assert s.kind == "random" and s.size == n and s.n_draws == n
    assert s.radius == k and s.max_angle == (deg or 0)
    assert s.params.shape == (0, 3)
    assert s.is_integer == (float(k).is_integer() and not deg)
    for integer in (True, False):
        d = s.draw(n_images, integer, torch.Generator().manual_seed(seed))
        assert d.shape == (n_images, n, 3) and d.dtype == torch.float64
        assert (d[..., :2].abs() <= k).all()
        assert (d[..., 2].abs() <= (deg or 0)).all()
        if integer:
            assert torch.equal(d[..., :2], d[..., :2].round())
            assert (d[..., :2].abs() <= int(k)).all()
        again = s.draw(n_images, integer, torch.Generator().manual_seed(seed))
        assert torch.equal(d, again)
        if not deg:
            assert (d[..., 2] == 0).all()


def test_random_draws_cover_the_box() -> None:
    s = parse_shifts("random:2:400:10")
    d = s.draw(5, True, torch.Generator().manual_seed(0))
    assert set(d[..., 0].flatten().tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0}
    d = s.draw(5, False, torch.Generator().manual_seed(0))
    assert not torch.equal(d[..., :2], d[..., :2].round())
    assert d[..., :2].min() < -1.9 and d[..., :2].max() > 1.9
    assert d[..., 2].min() < -9.5 and d[..., 2].max() > 9.5
    other = s.draw(5, False, torch.Generator().manual_seed(1))
    assert not torch.equal(d, other)


def test_random_set_has_no_members() -> None:
    s = parse_shifts("random:2:5")
    with pytest.raises(SpecError):
        s.ordered()
    with pytest.raises(SpecError):
        list(s.chunks(2))
    with pytest.raises(SpecError):
        parse_shifts("grid:1").draw(2, True)


# ----------------------------------------------------------------------------- list


def test_list_members() -> None:
    s = parse_shifts("list:1,2;-3,0.5;0,0")
    assert s.kind == "list" and s.size == 3
    assert s.params.tolist() == [[1.0, 2.0, 0.0], [-3.0, 0.5, 0.0], [0.0, 0.0, 0.0]]
    assert s.radius == 3.0 and s.max_angle == 0 and not s.has_rotation and not s.is_integer
    assert parse_shifts("list:1,2;-3,0").is_integer


def test_list_members_with_angles() -> None:
    s = parse_shifts("list:1,2,10;-3,0,-25.5;0,0")
    assert s.params.tolist() == [[1.0, 2.0, 10.0], [-3.0, 0.0, -25.5], [0.0, 0.0, 0.0]]
    assert s.max_angle == 25.5 and s.has_rotation and not s.is_integer
    assert s.radius == 3.0
    s = parse_shifts("list:1,0,0;2,-1,0")
    assert s.max_angle == 0 and not s.has_rotation and s.is_integer


@FAST
@given(rows=st.lists(st.tuples(st.integers(-9, 9), st.integers(-9, 9)), min_size=1, max_size=10))
def test_list_roundtrip(rows) -> None:
    s = parse_shifts("list:" + ";".join(f"{a},{b}" for a, b in rows))
    assert s.params.tolist() == [[float(a), float(b), 0.0] for a, b in rows]
    assert s.radius == max(max(abs(a), abs(b)) for a, b in rows)
    assert s.is_integer


# ----------------------------------------------------------------------------- rotation grids


def test_engstrom_set() -> None:
    s = parse_shifts("engstrom")
    assert s.spec == ENGSTROM == "rt:3:30:5:31"
    assert s.kind == "rotation" and s.size == 5 * 5 * 31 == 775
    t = [-3.0, -1.5, 0.0, 1.5, 3.0]
    angles = torch.linspace(-30, 30, 31, dtype=torch.float64).tolist()
    want = {(dx, dy, a) for dx in t for dy in t for a in angles}
    assert members(s) == want
    assert s.radius == 3 and s.max_angle == 30 and s.has_rotation and not s.is_integer
    assert torch.equal(parse_shifts("rt:3:30").params, s.params)
    assert torch.equal(parse_shifts("rt:3:30:5:31").params, s.params)


def test_rt_with_counts() -> None:
    s = parse_shifts("rt:2:10:3:5")
    assert s.size == 3 * 3 * 5
    assert sorted(set(s.params[:, 0].tolist())) == [-2.0, 0.0, 2.0]
    assert sorted(set(s.params[:, 2].tolist())) == [-10.0, -5.0, 0.0, 5.0, 10.0]
    s = parse_shifts("rt:24:30")  # ImageNet: +-24 px, +-30 deg
    assert s.size == 775 and sorted(set(s.params[:, 1].tolist())) == [-24.0, -12.0, 0.0, 12.0, 24.0]
    assert parse_shifts("rt:2:10:1:1").params.tolist() == [[0.0, 0.0, 0.0]]


# ----------------------------------------------------------------------------- ordering and chunks


ORDER_SPECS = ["grid:0", "grid:1", "grid:3", "grid:2:0.5", "grid:3:2", "engstrom", "rt:2:10:3:5",
               "list:3,0;0,0;1,1;-2,1", "list:0.5,0,20;0,0,-5;0,0,0;-0.25,0.25,1;2,2,30"]


@pytest.mark.parametrize("spec", ORDER_SPECS)
def test_ordering(spec: str) -> None:
    s = parse_shifts(spec)
    near = s.ordered("radius")
    far = s.ordered("far_first")
    assert near.shape == far.shape == s.params.shape
    # a permutation of the members
    assert sorted(near.tolist()) == sorted(s.params.tolist()) == sorted(far.tolist())
    rn, rf = cheb(near), cheb(far)
    assert (rn[1:] >= rn[:-1]).all()
    assert (rf[1:] <= rf[:-1]).all()
    assert torch.equal(near, s.ordered())  # radius is the default
    if any(row[:2] == [0.0, 0.0] for row in s.params.tolist()):
        assert near[0, :2].tolist() == [0.0, 0.0]
        if (s.params[:, :2].abs().sum(1) == 0).logical_and(s.params[:, 2] == 0).any():
            assert near[0].tolist() == [0.0, 0.0, 0.0]
    # within one radius, smaller |angle| first
    for r in rn.unique():
        a = near[rn == r, 2].abs()
        assert (a[1:] >= a[:-1]).all()


@FAST
@given(rows=st.lists(st.tuples(st.integers(-16, 16), st.integers(-16, 16), st.integers(-120, 120)),
                     min_size=1, max_size=12))
def test_ordering_random_lists(rows) -> None:
    """Quarter-pixel members with angles up to 30 degrees."""
    spec = "list:" + ";".join(f"{a / 4},{b / 4},{c / 4}" for a, b, c in rows)
    s = parse_shifts(spec)
    rn, rf = cheb(s.ordered("radius")), cheb(s.ordered("far_first"))
    assert (rn[1:] >= rn[:-1]).all() and (rf[1:] <= rf[:-1]).all()


@pytest.mark.parametrize("spec", ["list:0,0,30;0.001,0,0", "rt:0.002:30:3:3", "list:0,0,180;0.01,0,0"])
def test_ordering_radius_dominates_angle(spec: str) -> None:
    s = parse_shifts(spec)
    rn, rf = cheb(s.ordered("radius")), cheb(s.ordered("far_first"))
    assert (rn[1:] >= rn[:-1]).all() and (rf[1:] <= rf[:-1]).all()


@pytest.mark.parametrize("spec", ["grid:2", "engstrom", "grid:1:0.5", "list:1,1;0,0;2,0"])
@pytest.mark.parametrize("order", ["radius", "far_first"])
def test_chunks_concatenate_to_ordered(spec: str, order: str) -> None:
    s = parse_shifts(spec)
    full = s.ordered(order)
    for size in (1, 2, 7, 64, s.size, s.size + 3):
        parts = list(s.chunks(size, order))
        assert all(0 < p.shape[0] <= size for p in parts)
        assert len(parts) == -(-s.size // size)
        assert torch.equal(torch.cat(parts), full)


def test_unknown_order() -> None:
    with pytest.raises(SpecError):
        parse_shifts("grid:1").ordered("nearest")


# ----------------------------------------------------------------------------- invalid specs


@pytest.mark.parametrize(
    "spec",
    ["grid", "grid:", "grid:-1", "grid:1.5", "grid:2:0.3", "grid:2:0", "grid:2:-1", "grid:1:2:3", "grid:nan",
     "grid:inf", "grid:x", "random:2", "random:2:0", "random:2:1.5", "random:-1:3", "random:2:3:-5",
     "random:nan:3", "random:2:3:4:5", "list:", "list:1", "list:a,b", "list:1,2,3,4", "list:1,2;",
     "list:1,nan", "rt:3", "rt:3:30:5", "rt:-1:30", "rt:3:-30", "rt:3:30:0:31", "rt:3:30:5:0", "foo:1",
     "", "engstrom:1"],
)
def test_invalid_specs_raise_spec_error(spec: str) -> None:
    with pytest.raises(SpecError):
        parse_shifts(spec)


# ----------------------------------------------------------------------------- ThreatModel validation


def test_threat_model_defaults() -> None:
    tm = ThreatModel(parse_shifts("grid:2"))
    assert tm.mode == "zero" and tm.interpolation == "exact" and tm.exact and tm.fill == 0.0


@pytest.mark.parametrize(
    "spec, kwargs",
    [
        ("grid:1:0.5", {"mode": "zero", "interpolation": "exact"}),
        ("list:0.5,0", {"mode": "circular"}),
        ("random:2.5:4", {"mode": "zero", "interpolation": "exact"}),
        ("engstrom", {"mode": "zero", "interpolation": "exact"}),
        ("grid:1", {"mode": "zero", "interpolation": "fourier"}),
        ("grid:1", {"mode": "reflect", "interpolation": "fourier"}),
        ("grid:1", {"mode": "crop", "interpolation": "fourier", "crop_size": (4, 4)}),
        ("engstrom", {"mode": "circular", "interpolation": "bilinear"}),
        ("engstrom", {"mode": "circular", "interpolation": "fourier"}),
        ("rt:1:10:3:3", {"mode": "reflect", "interpolation": "bilinear"}),
        ("list:1,1,5", {"mode": "crop", "interpolation": "bilinear", "crop_size": (4, 4)}),
        ("grid:1", {"mode": "crop"}),
        ("grid:1", {"mode": "crop", "interpolation": "bilinear"}),
        ("grid:1", {"mode": "wrap"}),
        ("grid:1", {"mode": "Zero"}),
        ("grid:1", {"interpolation": "cubic"}),
    ],
)
def test_threat_model_validation(spec, kwargs) -> None:
    with pytest.raises(SpecError):
        ThreatModel(parse_shifts(spec), **kwargs)


@pytest.mark.parametrize(
    "spec, kwargs",
    [
        ("grid:1", {"mode": "circular"}),
        ("grid:1", {"mode": "reflect"}),
        ("grid:1", {"mode": "replicate", "interpolation": "bilinear"}),
        ("grid:1:0.5", {"mode": "circular", "interpolation": "fourier"}),
        ("random:2:4", {"mode": "zero"}),
        ("engstrom", {"mode": "zero", "interpolation": "bilinear"}),
        ("grid:1", {"mode": "crop", "crop_size": (4, 4)}),
    ],
)
def test_threat_model_accepts(spec, kwargs) -> None:
    ThreatModel(parse_shifts(spec), **kwargs)


@pytest.mark.parametrize("k, h, w, ok", [(4, 5, 5, True), (5, 5, 5, False), (4, 5, 9, True), (4, 4, 9, False),
                                         (6, 9, 5, False), (0, 1, 1, True)])
@pytest.mark.parametrize("mode", ["circular", "zero", "reflect", "replicate"])
def test_check_fits_image_size(k, h, w, ok, mode) -> None:
    tm = ThreatModel(parse_shifts(f"grid:{k}"), mode=mode)
    if ok:
        tm.check_fits(h, w)
        x = torch.rand(1, 1, h, w)
        for p in tm.shifts.ordered():  # every member then applies
            tm.apply(x, p[None])
    else:
        with pytest.raises(SpecError):
            tm.check_fits(h, w)


def test_check_fits_fractional_radius_rounds_up() -> None:
    tm = ThreatModel(parse_shifts("random:4.5:3"), mode="reflect", interpolation="bilinear")
    with pytest.raises(SpecError):
        tm.check_fits(5, 5)  # bilinear at 4.5 needs the exact shift by 5
    tm.check_fits(6, 6)


@FAST
@given(k=st.integers(0, 3), ch=st.integers(1, 6), cw=st.integers(1, 6), eh=st.integers(0, 8),
       ew=st.integers(0, 8))
def test_check_fits_crop_iff_every_member_fits(k, ch, cw, eh, ew) -> None:
    """check_fits passes exactly when every member's window stays inside the canvas."""
    h, w = ch + eh, cw + ew
    tm = ThreatModel(parse_shifts(f"grid:{k}"), mode="crop", crop_size=(ch, cw))
    params = tm.shifts.ordered()
    canvas = torch.rand(params.shape[0], 1, h, w)
    try:
        tm.check_fits(h, w)
        fits = True
    except SpecError:
        fits = False
    try:
        out = tm.apply(canvas, params)
        applies = True
        assert out.shape == (params.shape[0], 1, ch, cw)
    except SpecError:
        applies = False
    assert fits == applies
    assert tm.input_size(h, w) == (ch, cw)


def test_check_fits_crop_examples() -> None:
    tm = ThreatModel(parse_shifts("grid:2"), mode="crop", crop_size=(8, 8))
    tm.check_fits(12, 12)
    tm.check_fits(12, 13)
    for h, w in [(11, 12), (12, 11), (10, 10), (7, 20), (20, 7)]:
        with pytest.raises(SpecError):
            tm.check_fits(h, w)


def test_crop_bilinear_radius_zero_applies() -> None:
    tm = ThreatModel(parse_shifts("grid:0"), mode="crop", interpolation="bilinear", crop_size=(8, 8))
    tm.check_fits(8, 8)
    x = torch.rand(1, 1, 8, 8)
    assert torch.equal(tm.apply(x, tm.shifts.ordered()), x)


# ----------------------------------------------------------------------------- apply


def _images(n: int, h: int, w: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(n, 2, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("mode", ["circular", "zero", "reflect", "replicate"])
@pytest.mark.parametrize("fill", [0.0, 0.5])
def test_apply_exact(mode: str, fill: float) -> None:
    tm = ThreatModel(parse_shifts("grid:2"), mode=mode, fill=fill)
    params = tm.shifts.ordered()
    x = _images(params.shape[0], 5, 7, 0)
    out = tm.apply(x, params)
    for b, (dx, dy, _) in enumerate(params.tolist()):
        assert torch.equal(out[b : b + 1], shift(x[b : b + 1], int(dx), int(dy), mode, fill))


def test_apply_exact_random_draws() -> None:
    tm = ThreatModel(parse_shifts("random:3:4"), mode="replicate")
    d = tm.shifts.draw(6, True, torch.Generator().manual_seed(3))
    x = _images(6, 8, 9, 1)
    for k in range(4):
        p = d[:, k]
        want = shift(x, p[:, 0].long(), p[:, 1].long(), "replicate")
        assert torch.equal(tm.apply(x, p), want)


def test_apply_exact_crop() -> None:
    tm = ThreatModel(parse_shifts("grid:2"), mode="crop", crop_size=(5, 6))
    params = tm.shifts.ordered()
    canvas = _images(params.shape[0], 9, 11, 2)
    tm.check_fits(9, 11)
    out = tm.apply(canvas, params)
    assert out.shape == (params.shape[0], 2, 5, 6)
    for b, (dx, dy, _) in enumerate(params.tolist()):
        assert torch.equal(out[b : b + 1], crop_window(canvas[b : b + 1], int(dx), int(dy), (5, 6)))
    # crop window of a zero-padded canvas equals the zero-mode shift
    x = _images(params.shape[0], 5, 6, 3)
    padded = tm.apply(F.pad(x, (2, 2, 2, 2)), params)
    assert torch.equal(padded, ThreatModel(parse_shifts("grid:2"), mode="zero").apply(x, params))


@pytest.mark.parametrize("mode", ["circular", "zero", "reflect", "replicate", "crop"])
def test_apply_bilinear(mode: str) -> None:
    crop = (4, 5) if mode == "crop" else None
    tm = ThreatModel(parse_shifts("grid:1:0.5"), mode=mode, interpolation="bilinear", fill=0.25,
                     crop_size=crop)
    params = tm.shifts.ordered()
    x = _images(params.shape[0], 8, 9, 4, torch.float64)
    tm.check_fits(8, 9)
    out = tm.apply(x, params)
    for b, (dx, dy, _) in enumerate(params.tolist()):
        want = shift_bilinear(x[b : b + 1], dx, dy, mode, 0.25, crop)
        torch.testing.assert_close(out[b : b + 1], want, atol=1e-12, rtol=0)
        if float(dx).is_integer() and float(dy).is_integer():  # exact at whole pixels
            exact = (crop_window(x[b : b + 1], int(dx), int(dy), crop) if mode == "crop"
                     else shift(x[b : b + 1], int(dx), int(dy), mode, 0.25))
            assert torch.equal(out[b : b + 1], exact)


def test_apply_fourier() -> None:
    tm = ThreatModel(parse_shifts("grid:1:0.5"), mode="circular", interpolation="fourier")
    params = tm.shifts.ordered()
    x = _images(params.shape[0], 7, 7, 5, torch.float64)
    out = tm.apply(x, params)
    for b, (dx, dy, _) in enumerate(params.tolist()):
        torch.testing.assert_close(out[b : b + 1], shift_fourier(x[b : b + 1], dx, dy), atol=1e-12, rtol=0)
        if float(dx).is_integer() and float(dy).is_integer():
            roll = torch.roll(x[b : b + 1], (int(dy), int(dx)), dims=(-2, -1))
            torch.testing.assert_close(out[b : b + 1], roll, atol=1e-10, rtol=0)


def test_apply_rotation() -> None:
    tm = ThreatModel(parse_shifts("engstrom"), mode="zero", interpolation="bilinear")
    params = tm.shifts.ordered()[::25][:31]
    x = _images(params.shape[0], 9, 9, 6)
    out = tm.apply(x, params)
    assert out.dtype == x.dtype
    for b, (dx, dy, a) in enumerate(params.tolist()):
        torch.testing.assert_close(out[b : b + 1], rotate_translate(x[b : b + 1], a, dx, dy),
                                   atol=1e-6, rtol=0)


def test_apply_bilinear_is_differentiable_in_params() -> None:
    tm = ThreatModel(parse_shifts("grid:1:0.5"), mode="zero", interpolation="bilinear")
    x = _images(2, 6, 6, 7, torch.float64)
    p = torch.tensor([[0.3, -0.4, 0.0], [-0.7, 0.2, 0.0]], dtype=torch.float64, requires_grad=True)
    (tm.apply(x, p) * torch.arange(36.0, dtype=torch.float64).reshape(6, 6)).sum().backward()
    assert torch.isfinite(p.grad).all() and (p.grad[:, :2] != 0).all()


# ----------------------------------------------------------------------------- JSON


def test_to_json() -> None:
    tm = ThreatModel(parse_shifts("grid:2"), mode="zero", fill=0.5)
    assert tm.to_json() == {"spec": "grid:2", "kind": "grid", "n_shifts": 25, "radius": 2.0,
                            "mode": "zero", "interpolation": "exact", "fill": 0.5}
    tm = ThreatModel(parse_shifts("engstrom"), mode="zero", interpolation="bilinear")
    assert tm.to_json() == {"spec": "rt:3:30:5:31", "kind": "rotation", "n_shifts": 775, "radius": 3.0,
                            "max_angle_deg": 30.0, "mode": "zero", "interpolation": "bilinear", "fill": 0.0}
    tm = ThreatModel(parse_shifts("random:3:10"), mode="crop", crop_size=(24, 24))
    assert tm.to_json() == {"spec": "random:3:10", "kind": "random", "n_shifts": 10, "radius": 3.0,
                            "mode": "crop", "interpolation": "exact", "crop_size": [24, 24]}
    tm = ThreatModel(parse_shifts("list:1,0;0,-2"), mode="circular")
    assert tm.to_json() == {"spec": "list:1,0;0,-2", "kind": "list", "n_shifts": 2, "radius": 2.0,
                            "mode": "circular", "interpolation": "exact"}


@pytest.mark.parametrize("spec", ["grid:3", "grid:1:0.5", "engstrom", "rt:2:10:3:5", "list:1,2,3;0,0",
                                  "random:2:7:15"])
def test_to_json_roundtrips(spec: str) -> None:
    s = parse_shifts(spec)
    interp = "exact" if s.is_integer else "bilinear"
    tm = ThreatModel(s, mode="zero", interpolation=interp)
    data = json.loads(json.dumps(tm.to_json()))
    again = parse_shifts(data["spec"])
    assert torch.equal(again.params, s.params) and again.size == s.size == data["n_shifts"]
    assert data["radius"] == s.radius


@pytest.mark.parametrize("mode, spec, interp", [
    *[(mode, spec, interp) for mode in ("circular", "zero", "reflect", "replicate", "crop")
      for spec, interp in (("grid:2", "exact"), ("grid:1:0.5", "bilinear"))],
    ("zero", "rt:1:10:3:3", "bilinear"),  # rotations are zero-fill only
])
def test_apply_to_equals_apply_on_selected_rows(mode, spec, interp):
    size = (8, 8) if mode == "crop" else None
    tm = ThreatModel(parse_shifts(spec), mode=mode, interpolation=interp, fill=0.25, crop_size=size)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 12, 12, generator=gen)
    index = torch.tensor([4, 0, 0, 2, 3, 1, 4])
    members = tm.shifts.params
    params = members[torch.randint(0, len(members), (7,), generator=gen)]
    assert torch.equal(tm.apply_to(images, index, params), tm.apply(images[index], params))
