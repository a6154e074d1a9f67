"""Tests of shiftattack.metrics: hand-computed answers, brute-force loops, error cases."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from shiftattack.errors import DataError, ModelError, ShapeError, SpecError
from shiftattack.metrics import (
    FlipRateResult,
    accuracy_vs_radius,
    consistency,
    consistency_shifted,
    diagonal_curve,
    flip_rate,
    normalized_flip_rate,
    top1_change,
)

# ----------------------------------------------------------------------------- tiny models

pytestmark = pytest.mark.usefixtures("one_thread")


def column_model(x: torch.Tensor) -> torch.Tensor:
    """Class j = column of the brightest pixel of channel 0 (sharp: logits scaled by 100)."""
    return 100.0 * x[:, 0].amax(dim=1)  # (N, W)


def gap_model(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling + fixed linear map: exactly translation invariant under roll."""
    w = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 1.0, -1.0, 2.0], [2.0, 0.5, 1.0, -3.0]],
                     dtype=x.dtype)
    return x.mean(dim=(2, 3)) @ w


def spot_images(n: int, size: int, positions: list[tuple[int, int]]) -> torch.Tensor:
    """Black images (n, 3, size, size) with one white pixel at (row, col) per image."""
    x = torch.zeros(n, 3, size, size)
    for i, (r, c) in enumerate(positions):
        x[i, :, r, c] = 1.0
    return x


class TinyConv(nn.Module):
    """Small random conv net (float64), not shift invariant (stride-2 max pool, linear head)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1).double()
        self.head = nn.Linear(4 * (size // 2) ** 2, 5).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.max_pool2d(torch.relu(self.conv(x)), 2).flatten(1))


@pytest.fixture(scope="module")
def conv() -> TinyConv:
    return TinyConv(8).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.fixture(scope="module")
def canvas() -> torch.Tensor:
    return torch.rand(6, 3, 14, 14, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


# ----------------------------------------------------------------------------- brute force


def view_one(img: torch.Tensor, dx: int, dy: int, mode: str, size: int = 8) -> torch.Tensor:
    """Independent reference view of one image (3, H, W), by slicing."""
    if mode == "circular":
        h, w = img.shape[-2:]
        rows = [(r - dy) % h for r in range(h)]
        cols = [(c - dx) % w for c in range(w)]
        return img[:, rows][:, :, cols]
    if mode == "zero":
        out = torch.zeros_like(img)
        h, w = img.shape[-2:]
        for r in range(h):
            for c in range(w):
                if 0 <= r - dy < h and 0 <= c - dx < w:
                    out[:, r, c] = img[:, r - dy, c - dx]
        return out
    assert mode == "crop"
    hs, ws = img.shape[-2:]
    top, left = (hs - size) // 2 - dy, (ws - size) // 2 - dx
    return img[:, top : top + size, left : left + size]


def brute_top1(model, img: torch.Tensor, dx: int, dy: int, mode: str) -> int:
    with torch.no_grad():
        return int(model(view_one(img, dx, dy, mode)[None]).argmax(1))


UNITS = {"horizontal": (1, 0), "vertical": (0, 1), "diagonal": (1, 1)}


@pytest.mark.parametrize("mode", ["circular", "zero", "crop"])
def test_flip_rate_matches_brute_force(conv, images, canvas, mode):
    x = canvas if mode == "crop" else images
    bases = [(0, 0), (-1, 1)]
    res = flip_rate(conv, x, mode=mode, size=8, max_distance=2, base_offsets=bases, batch_size=4)
    for name, (ux, uy) in UNITS.items():
        for d in (1, 2):
            flips = sum(
                brute_top1(conv, img, bx, by, mode)
                != brute_top1(conv, img, bx + d * ux, by + d * uy, mode)
                for img in x for bx, by in bases
            )
            assert res.rates[name][d - 1] == pytest.approx(100.0 * flips / (len(x) * len(bases)))
    cells = [r for row in res.rates.values() for r in row]
    assert res.mean_flip_rate == pytest.approx(sum(cells) / len(cells))
    for i, img in enumerate(x):  # per image: the fraction of its 3 x 2 x 2 pairs that flip
        flips = sum(
            brute_top1(conv, img, bx, by, mode) != brute_top1(conv, img, bx + d * ux, by + d * uy, mode)
            for ux, uy in UNITS.values() for d in (1, 2) for bx, by in bases
        )
        assert float(res.per_image[i]) == pytest.approx(flips / 12)
    assert "per_image" not in res.to_json()
    assert res.per_distance[1] == pytest.approx(sum(res.rates[u][0] for u in UNITS) / 3)


@pytest.mark.parametrize(
    "mode,direction", [("circular", (1, 0)), ("zero", (1, 1)), ("crop", (0, -1))]
)
def test_top1_change_matches_brute_force(conv, images, canvas, mode, direction):
    x = canvas if mode == "crop" else images
    res = top1_change(conv, x, mode=mode, size=8, n_shifts=3, direction=direction, batch_size=4)
    changes, mac = 0, 0.0
    for i, img in enumerate(x):
        before = (changes, mac)
        frames = [view_one(img, k * direction[0], k * direction[1], mode) for k in range(4)]
        with torch.no_grad():
            probs = [conv(f[None]).softmax(1)[0] for f in frames]
        c = int(probs[0].argmax())
        for k in range(1, 4):
            changes += int(probs[k].argmax() != probs[k - 1].argmax())
            mac += abs(float(probs[k][c] - probs[k - 1][c]))
        assert float(res.per_image_change[i]) == pytest.approx((changes - before[0]) / 3)
        assert float(res.per_image_mac[i]) == pytest.approx((mac - before[1]) / 3, abs=1e-12)
    assert res.n_pairs == len(x) * 3
    assert res.p_top1_change == changes / res.n_pairs
    assert res.mac == pytest.approx(mac / res.n_pairs, abs=1e-12)


# ----------------------------------------------------------------------------- hand-computed


def test_translation_invariant_model_circular():
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(0)
    res = consistency_shifted(gap_model, x, mode="circular", max_shift=3, generator=g)
    assert res.consistency == 100.0 and res.n_pairs == 25
    fr = flip_rate(gap_model, x, mode="circular", max_distance=3)
    assert fr.mean_flip_rate == 0.0 and all(r == 0.0 for r in fr.per_direction.values())
    tc = top1_change(gap_model, x, mode="circular", n_shifts=4, direction=(1, 1))
    assert tc.p_top1_change == 0.0 and tc.mac == pytest.approx(0.0, abs=1e-6)


def test_flip_rate_column_model_by_hand():
    x = spot_images(3, 8, [(1, 2), (4, 4), (7, 3)])
    res = flip_rate(column_model, x, mode="circular", max_distance=4)
    # a horizontal or diagonal move of 1..4 px changes the bright column; a vertical one never does
    assert res.rates == {"horizontal": [100.0] * 4, "vertical": [0.0] * 4, "diagonal": [100.0] * 4}
    assert res.mean_flip_rate == pytest.approx(200.0 / 3)
    assert res.per_distance == pytest.approx({d: 200.0 / 3 for d in range(1, 5)})
    assert res.n_images == 3 and res.max_distance == 4 and res.mode == "circular"
    only_v = flip_rate(column_model, x, mode="zero", directions=("vertical",), max_distance=2)
    assert only_v.mean_flip_rate == pytest.approx(100.0 / 3)  # the spot in row 7 leaves the image


def test_top1_change_column_model_by_hand():
    x = spot_images(2, 16, [(3, 2), (9, 5)])
    res = top1_change(column_model, x, mode="circular", n_shifts=8, direction=(1, 0))
    assert res.p_top1_change == 1.0
    # p(first class) drops from ~1 to ~0 at the first step, then stays ~0
    assert res.mac == pytest.approx(1 / 8, abs=1e-6)
    still = top1_change(column_model, x, mode="zero", n_shifts=5, direction=(0, 1))
    assert still.p_top1_change == 0.0


def test_diagonal_curve_by_hand():
    # an 8 px window with top-left corner (d, d) sees the spots in columns 5 - d and 6 - d
    canvas = spot_images(2, 12, [(5, 5), (6, 6)])
    labels = torch.tensor([3, 3])
    curve = diagonal_curve(column_model, canvas, labels, size=8, max_offset=4)
    assert curve.offsets == [0, 1, 2, 3, 4]
    assert curve.accuracy == [0.0, 0.0, 0.5, 0.5, 0.0]
    assert curve.correct_prob == pytest.approx([0.0, 0.0, 0.5, 0.5, 0.0], abs=1e-6)
    assert json.loads(json.dumps(curve.to_json()))["accuracy"] == curve.accuracy


def test_consistency_crop_reproduces_documented_draw():
    canvas = spot_images(4, 12, [(6, 6)] * 4)  # spot stays in every 8x8 window
    g = torch.Generator().manual_seed(7)
    res = consistency(column_model, canvas, size=8, n_repeats=3, generator=g)
    # documented protocol: left corners drawn first, shape (repeats, N, 2); agree iff equal columns
    left = torch.randint(0, 4, (3, 4, 2), generator=torch.Generator().manual_seed(7))
    agree = int((left[..., 0] == left[..., 1]).sum())
    assert (res.n_pairs, res.n_agree) == (12, agree)
    assert res.consistency == pytest.approx(100.0 * agree / 12)


def test_consistency_corners_follow_zhangs_randint():
    """Corners in [0, Hs-h-1] like Zhang's randint(32) for 224 windows of 256: never Hs-h itself."""
    hs, ws, h, w = 12, 15, 8, 8
    rows = torch.arange(hs, dtype=torch.float32)[:, None].expand(hs, ws)
    cols = torch.arange(ws, dtype=torch.float32)[None, :].expand(hs, ws)
    canvas = torch.stack([cols, rows, torch.zeros(hs, ws)])[None].repeat(4, 1, 1, 1) / 100
    seen: list[torch.Tensor] = []

    def corner_model(x):  # records each window's top-left canvas coordinates (col, row)
        seen.append((x[:, :2, 0, 0] * 100).round().long())
        return torch.zeros(len(x), 2)

    consistency(corner_model, canvas, size=(h, w), n_repeats=100, generator=torch.Generator().manual_seed(0))
    corners = torch.cat(seen)
    assert len(corners) == 2 * 4 * 100
    assert set(corners[:, 0].tolist()) == set(range(ws - w))  # 0..6 of a 15 px canvas, never 7
    assert set(corners[:, 1].tolist()) == set(range(hs - h))
    seen.clear()
    assert consistency(corner_model, canvas[..., :h, :], size=(h, w), n_repeats=3).consistency == 100.0
    assert set(torch.cat(seen)[:, 1].tolist()) == {0}  # a canvas no taller than the window: row 0


def test_consistency_deterministic_and_bounded(conv, canvas, images):
    def run(seed, **kw):
        g = torch.Generator().manual_seed(seed)
        return consistency(conv, canvas, size=8, n_repeats=2, generator=g, **kw)

    assert run(5) == run(5)
    assert run(5, max_offset=2) == run(5, max_offset=2, batch_size=5)
    assert 0.0 <= run(6).consistency <= 100.0
    const = consistency(lambda v: torch.ones(len(v), 2), canvas, size=(8, 10), n_repeats=2)
    assert const.consistency == 100.0 and const.n_pairs == 12
    g = torch.Generator().manual_seed(1)
    shifted = consistency_shifted(column_model, spot_images(3, 8, [(0, 0), (2, 3), (7, 7)]),
                                  mode="circular", max_shift=2, n_repeats=4, generator=g)
    offsets = torch.randint(-2, 3, (4, 3, 2, 2), generator=torch.Generator().manual_seed(1))
    same_dx = offsets[:, :, 0, 0] == offsets[:, :, 1, 0]  # column model: the pair agrees iff same dx
    assert shifted.n_agree == int(same_dx.sum()) and shifted.n_pairs == 12
    assert shifted.per_image.tolist() == same_dx.double().mean(0).tolist()


# ----------------------------------------------------------------------------- normalised flip rate


def test_normalized_flip_rate(tmp_path):
    res = FlipRateResult(5.0, {"horizontal": 5.0}, {1: 5.0}, {"horizontal": [5.0]}, 1, 10, "crop")
    assert normalized_flip_rate(res, 20.0) == 25.0
    assert normalized_flip_rate(res, res) == 100.0
    top = tmp_path / "ref.json"
    top.write_text(json.dumps({"mean_flip_rate": 10.0}))
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"model": "resnet18", "metrics": {"mean_flip_rate": 2.5}}))
    assert normalized_flip_rate(res, top) == 50.0
    assert normalized_flip_rate(res, str(nested)) == 200.0
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(res.to_json()))
    assert normalized_flip_rate(2.5, saved) == 50.0
    assert json.loads(saved.read_text())["per_distance"] == {"1": 5.0}

    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"metrics": {"flip": 1.0}}))
    with pytest.raises(SpecError, match="mean_flip_rate"):
        normalized_flip_rate(res, missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match="cannot read"):
        normalized_flip_rate(res, bad)
    with pytest.raises(SpecError, match="cannot read"):
        normalized_flip_rate(res, tmp_path / "absent.json")
    with pytest.raises(SpecError, match="positive"):
        normalized_flip_rate(res, 0.0)
    zero = tmp_path / "zero.json"
    zero.write_text(json.dumps({"mean_flip_rate": 0}))
    with pytest.raises(SpecError, match="positive"):
        normalized_flip_rate(res, zero)


# ----------------------------------------------------------------------------- accuracy vs radius


def test_accuracy_vs_radius_by_hand():
    assert accuracy_vs_radius([0, 1, None, 3, 1], 3) == [0.8, 0.4, 0.4, 0.2]
    assert accuracy_vs_radius([None], 0) == [1.0]
    with pytest.raises(ShapeError):
        accuracy_vs_radius([], 2)
    with pytest.raises(SpecError):
        accuracy_vs_radius([-1], 2)
    with pytest.raises(SpecError):
        accuracy_vs_radius([1], -1)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.none() | st.integers(0, 6), min_size=1, max_size=20), st.integers(0, 6))
def test_accuracy_vs_radius_property(radii, k_max):
    curve = accuracy_vs_radius(radii, k_max)
    assert len(curve) == k_max + 1
    assert all(a >= b for a, b in zip(curve, curve[1:], strict=False))
    assert curve[0] == sum(r != 0 for r in radii) / len(radii)


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_raise_typed_errors(conv, images, canvas):
    with pytest.raises(ShapeError):
        flip_rate(conv, images[0], mode="circular")
    with pytest.raises(ShapeError):
        top1_change(conv, (images * 255).to(torch.uint8), mode="circular")
    with pytest.raises(ShapeError):
        consistency_shifted(conv, images[:0], mode="circular", max_shift=1)
    with pytest.raises(SpecError, match="unknown mode"):
        flip_rate(conv, images, mode="bilinear")
    with pytest.raises(SpecError, match="size"):
        top1_change(conv, canvas, mode="crop")
    with pytest.raises(SpecError):
        flip_rate(conv, canvas, mode="crop", size=8, max_distance=4)  # leaves the 14 px canvas
    with pytest.raises(SpecError, match="max_offset"):
        consistency(conv, canvas, size=8, max_offset=4)
    with pytest.raises(SpecError, match="directions"):
        flip_rate(conv, images, mode="circular", directions=("sideways",))
    with pytest.raises(SpecError, match="direction"):
        top1_change(conv, images, mode="circular", direction=(0, 0))
    with pytest.raises(SpecError, match="batch_size"):
        flip_rate(conv, images, mode="circular", batch_size=0)
    with pytest.raises(ShapeError, match="labels"):
        diagonal_curve(conv, canvas, torch.zeros(5, dtype=torch.long), size=8, max_offset=2)
    with pytest.raises(DataError, match="labels"):
        diagonal_curve(conv, canvas, torch.full((6,), 5), size=8, max_offset=2)


@pytest.mark.parametrize(
    "bad_model,match",
    [
        (lambda v: torch.zeros(len(v)), "shape"),
        (lambda v: torch.zeros(len(v) + 1, 3), "shape"),
        (lambda v: torch.full((len(v), 3), float("nan")), "NaN"),
        (lambda v: [[0.0, 1.0]] * len(v), "tensor"),
    ],
)
def test_bad_model_output_raises_model_error(images, bad_model, match):
    with pytest.raises(ModelError, match=match):
        flip_rate(bad_model, images, mode="circular", max_distance=1)
    with pytest.raises(ModelError, match=match):
        consistency_shifted(bad_model, images, mode="zero", max_shift=1)


def test_a_model_that_raises_gives_a_model_error_naming_the_exception(images):
    """The metrics (and so the stability command) report a failing model like the attacks do."""

    def broken(v):
        raise RuntimeError("boom")

    with pytest.raises(ModelError, match=r"the model raised RuntimeError on input of shape .*: boom"):
        flip_rate(broken, images, mode="circular", max_distance=1)
    with pytest.raises(ModelError, match="raised RuntimeError"):
        consistency_shifted(broken, images, mode="zero", max_shift=1)
