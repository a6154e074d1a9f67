"""Attacks against independent brute force; re-verification; streaming memory bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _brute import brute_grid, margin_of, np_crop, np_shift, pred_of
from _models import LiarModel, make_problem

from shiftattack import attack, make_canvas, rotate_translate
from shiftattack.attacks import GradientAttack, GridAttack, RandomAttack, Search, VerificationError
from shiftattack.errors import ModelError, SpecError
from shiftattack.runtime.engine import ModelRunner, margins
from shiftattack.shifts.threats import ThreatModel, parse_shifts

K = 2

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def problem():
    return make_problem(n=24, size=12)


@pytest.fixture(scope="module")
def brute(problem):
    model, x, y = problem
    return {mode: brute_grid(model, x, y, K, mode) for mode in ("circular", "zero", "reflect", "replicate")}


def _check_against_brute(result, ref, model, x, y, mode, crop_size=None):
    robust = torch.tensor(ref["robust"])
    assert torch.equal(result.robust, robust)
    assert result.worst_case_accuracy == pytest.approx(float(robust.double().mean()), abs=0)
    for i in range(len(y)):
        dx, dy = result.shift_list(i)
        if robust[i]:  # the exact minimum margin over the whole set, at the reported shift
            assert float(result.worst_margin[i]) == pytest.approx(ref["min_margin"][i], abs=1e-9)
            assert ref["margins"][i][(dx, dy)] == pytest.approx(ref["min_margin"][i], abs=1e-9)
        else:  # the reported shift really fools the model, evaluated independently
            img = x[i].numpy()
            view = np_crop(img, dx, dy, crop_size) if mode == "crop" else np_shift(img, dx, dy, mode)
            assert pred_of(model, view) != int(y[i])
            assert float(result.worst_margin[i]) == pytest.approx(margin_of(model, view, int(y[i])), abs=1e-9)


@pytest.mark.parametrize("mode", ["circular", "zero", "reflect", "replicate"])
@pytest.mark.parametrize("early_exit", [True, False])
@pytest.mark.parametrize("batch_size", [7, 1000])
def test_grid_equals_brute_force(problem, brute, mode, early_exit, batch_size):
    model, x, y = problem
    result = GridAttack(ThreatModel(parse_shifts(f"grid:{K}"), mode=mode), batch_size=batch_size,
                        early_exit=early_exit)(model, x, y, device="cpu")
    _check_against_brute(result, brute[mode], model, x, y, mode)
    assert 0 < result.worst_case_accuracy < result.clean_accuracy  # the problem is not trivial
    if not early_exit:
        assert (result.n_evaluated == (2 * K + 1) ** 2).logical_or(result.clean_pred != result.labels).all()
        searched = ~result.robust & (result.clean_pred == result.labels)  # (0, 0) ends the others
        for i in searched.nonzero().squeeze(1).tolist():  # minimum margin for every searched image
            assert float(result.worst_margin[i]) == pytest.approx(brute[mode]["min_margin"][i], abs=1e-9)


@pytest.mark.parametrize("order", ["radius", "adaptive", "far_first"])
def test_accuracy_vs_radius_from_one_pass(problem, brute, order):
    model, x, y = problem
    result = GridAttack(ThreatModel(parse_shifts(f"grid:{K}"), mode="zero"), order=order,
                        early_exit=order == "radius")(model, x, y, device="cpu")
    radii = torch.tensor(brute["zero"]["fool_radius"])
    expected = [(float(k), float((radii > k).double().mean())) for k in range(K + 1)]
    assert result.accuracy_vs_radius() == expected


@pytest.mark.parametrize("order", ["adaptive", "far_first"])
def test_other_orders_with_early_exit_have_no_curve_but_same_flags(problem, brute, order):
    model, x, y = problem
    result = GridAttack(ThreatModel(parse_shifts(f"grid:{K}"), mode="zero"), order=order)(
        model, x, y, device="cpu")
    assert result.accuracy_vs_radius() is None
    assert torch.equal(result.robust, torch.tensor(brute["zero"]["robust"]))
    robust = result.robust
    assert torch.allclose(result.worst_margin[robust],
                          torch.tensor(brute["zero"]["min_margin"], dtype=torch.float64)[robust])


def test_early_exit_saves_work(problem):
    model, x, y = problem
    threat = ThreatModel(parse_shifts(f"grid:{K}"), mode="zero")
    fast = GridAttack(threat)(model, x, y, device="cpu")
    full = GridAttack(threat, early_exit=False)(model, x, y, device="cpu")
    assert torch.equal(fast.robust, full.robust)
    assert int(fast.n_evaluated.sum()) < int(full.n_evaluated.sum())
    assert (fast.n_evaluated[fast.clean_pred != fast.labels] == 1).all()
    # one pair per forward pass: a fooled image stops exactly at its first failing member
    single = GridAttack(threat, batch_size=1, order="far_first")(model, x, y, device="cpu")
    members = [tuple(int(v) for v in row[:2]) for row in threat.shifts.ordered("far_first")[:-1]]
    for i in ((~single.robust) & (single.clean_pred == y)).nonzero().squeeze(1).tolist():
        img = x[i].numpy()
        first = next(k for k, (dx, dy) in enumerate(members)
                     if pred_of(model, np_shift(img, dx, dy, "zero")) != int(y[i]))
        assert int(single.n_evaluated[i]) == 1 + first + 1
        assert single.shift_list(i) == list(members[first])


def test_crop_mode_equals_brute_force(problem):
    model, x, y = problem
    canvas = make_canvas(x, 3, "reflect")  # 18x18 canvases, 12x12 windows
    result = attack(model, canvas, y, shifts=f"grid:{K}", mode="crop", crop_size=(12, 12), device="cpu")
    ref = brute_grid(model, canvas, y, K, "crop", crop_size=(12, 12))
    _check_against_brute(result, ref, model, canvas, y, "crop", crop_size=(12, 12))


def test_crop_on_padded_canvas_equals_pad_mode(problem):
    model, x, y = problem
    crop = attack(model, make_canvas(x, K, "replicate"), y, shifts=f"grid:{K}", mode="crop", device="cpu")
    pad = attack(model, x, y, shifts=f"grid:{K}", mode="replicate", device="cpu")
    assert torch.equal(crop.robust, pad.robust)
    assert torch.allclose(crop.worst_margin, pad.worst_margin)


def test_list_set_and_identity_handling(problem, brute):
    model, x, y = problem
    result = attack(model, x, y, shifts="list:2,-1;-2,2", mode="circular", device="cpu")
    for i in range(len(y)):
        ms = [brute["circular"]["margins"][i][s] for s in [(0, 0), (2, -1), (-2, 2)]]
        assert bool(result.robust[i]) == (min(ms) > 0)


def test_subpixel_grid_matches_formula(problem):
    model, x, y = problem
    result = attack(model, x, y, shifts="grid:1:0.5", mode="zero", interpolation="bilinear", device="cpu",
                    early_exit=False)
    for i in range(0, len(y), 5):
        best = math.inf
        for dy in np.linspace(-1, 1, 5):
            for dx in np.linspace(-1, 1, 5):
                i0, j0 = math.floor(dx), math.floor(dy)
                a, b = dx - i0, dy - j0
                img = x[i].numpy()

                def s(u, v, img=img):
                    return np_shift(img, u, v, "zero")

                view = ((1 - a) * (1 - b) * s(i0, j0) + a * (1 - b) * s(i0 + 1, j0)
                        + (1 - a) * b * s(i0, j0 + 1) + a * b * s(i0 + 1, j0 + 1))
                best = min(best, margin_of(model, view, int(y[i])))
        assert float(result.worst_margin[i]) == pytest.approx(best, abs=1e-9)


def test_rotation_grid_equals_loop(problem):
    model, x, y = problem
    result = attack(model, x, y, shifts="rt:1:20:3:5", mode="zero", interpolation="bilinear", device="cpu")
    members = parse_shifts("rt:1:20:3:5").params
    for i in range(len(y)):
        with torch.no_grad():
            views = rotate_translate(x[i : i + 1].expand(len(members), -1, -1, -1), members[:, 2].to(x.dtype),
                                     members[:, 0].to(x.dtype), members[:, 1].to(x.dtype))
            wrong = (model(views).argmax(1) != y[i]).any() | (model(x[i : i + 1]).argmax(1) != y[i]).any()
        assert bool(result.robust[i]) == (not bool(wrong))


def test_grid_memory_bounded_by_batch_size(problem):
    model, x, y = problem
    seen = []

    def recording(inp):
        seen.append(inp.shape[0])
        return model(inp)

    for spec in ("grid:1", "grid:5"):
        seen.clear()
        GridAttack(ThreatModel(parse_shifts(spec), mode="zero"), batch_size=16)(recording, x, y, device="cpu")
        assert max(seen) <= 16


def test_liar_model_failures_are_never_reported_or_dropped(problem, brute):
    """A forward pass that lies (any one call: the clean pass, a search batch, a confirmation) is
    caught by the separate pass: the attack raises instead of reporting the failure, or of
    dropping it and counting the image robust."""
    model, x, y = problem
    threat = ThreatModel(parse_shifts(f"grid:{K}"), mode="zero")
    honest = GridAttack(threat, batch_size=16)(LiarModel(model, 0, 0), x, y, device="cpu")
    assert torch.equal(honest.robust, torch.tensor(brute["zero"]["robust"]))
    calls = LiarModel(model, 0, 0)
    GridAttack(threat, batch_size=16)(calls, x, y, device="cpu")
    raised = 0
    for batch_size, lie in [(64, 2)] + [(16, call) for call in range(1, calls.calls + 1)]:
        try:
            result = GridAttack(threat, batch_size=batch_size)(LiarModel(model, lie, lie), x, y, device="cpu")
        except VerificationError as exc:
            assert "depends on the batch" in str(exc) and "model.eval()" in str(exc)
            raised += 1
            continue
        # no disagreement: the lie fell on a confirmation pass of real failures (both passes say
        # "wrong"), so the outcome is still the true one
        assert torch.equal(result.robust, torch.tensor(brute["zero"]["robust"]))
        for i in (~result.robust).nonzero().squeeze(1).tolist():
            dx, dy = result.shift_list(i)
            assert pred_of(model, np_shift(x[i].numpy(), dx, dy, "zero")) != int(y[i])
    assert raised >= calls.calls // 2


@pytest.mark.parametrize("make", [
    lambda t: RandomAttack(ThreatModel(parse_shifts("random:2:6"), mode="zero"), batch_size=32, seed=3),
    lambda t: GradientAttack(ThreatModel(parse_shifts("grid:2"), mode="zero"), steps=4, restarts=2),
    lambda t: GradientAttack(ThreatModel(parse_shifts("grid:2"), mode="zero", interpolation="bilinear"),
                             steps=4, restarts=2),
])
def test_heuristic_attacks_report_only_verified_failures(problem, make):
    model, x, y = problem
    atk = make(None)
    result = atk(model, x, y, device="cpu")
    fooled = (~result.robust).nonzero().squeeze(1)
    assert fooled.numel() > 0
    params = result.worst_params[fooled]
    assert (params[:, :2].abs() <= 2).all()
    with torch.no_grad():
        views = atk.threat.apply(x[fooled], params)
        assert (model(views).argmax(1) != y[fooled]).all()
    # the first search call lies: its failures are not confirmed, which is an error, not "robust"
    with pytest.raises(VerificationError, match="depends on the batch"):
        atk(LiarModel(model, 2, 2), x, y, device="cpu")


def test_random_attack_keeps_highest_loss_failure(problem):
    model, x, y = problem
    threat = ThreatModel(parse_shifts("random:2:8"), mode="circular")
    result = RandomAttack(threat, seed=5)(model, x, y, device="cpu")
    correct = (result.clean_pred == y).nonzero().squeeze(1)
    draws = threat.shifts.draw(len(correct), integer=True, generator=torch.Generator().manual_seed(5))
    for row, i in enumerate(correct.tolist()):
        with torch.no_grad():
            logits = model(threat.apply(x[i : i + 1].expand(8, -1, -1, -1), draws[row]))
        m = margins(logits, y[i].expand(8))
        loss = torch.nn.functional.cross_entropy(logits, y[i].expand(8), reduction="none")
        if (m < 0).any():
            assert not bool(result.robust[i])
            best = loss.masked_fill(m >= 0, -math.inf).argmax()
            assert torch.equal(result.worst_params[i], draws[row][best])
        else:
            assert bool(result.robust[i])


def test_gradient_is_weaker_or_equal_to_grid(problem):
    model, x, y = problem
    grid = attack(model, x, y, shifts="grid:2", mode="zero", device="cpu")
    grad = attack(model, x, y, shifts="grid:2", mode="zero", method="gradient", device="cpu")
    # the gradient attack evaluates integer members of the same box, so it can never beat the grid
    assert bool((grad.robust | ~grid.robust).all())
    assert grad.worst_case_accuracy >= grid.worst_case_accuracy
    assert (grad.worst_params == grad.worst_params.round()).all()


def test_exact_attack_raises_when_failure_cannot_be_confirmed(problem):
    model, x, y = problem
    atk = GridAttack(ThreatModel(parse_shifts("grid:1"), mode="zero"))
    n = len(y)
    claimed = Search(fooled=torch.ones(n, dtype=torch.bool), params=torch.zeros(n, 3, dtype=torch.float64),
                     margin=torch.zeros(n, dtype=torch.float64), n_evaluated=torch.ones(n, dtype=torch.long))
    with torch.no_grad():
        assert (model(x).argmax(1) == y).any()  # some claimed failures are false
    with pytest.raises(VerificationError):
        atk._reverify(ModelRunner(model, "cpu", dtype=x.dtype), x, y, claimed)


def test_model_errors_are_clear(problem):
    _, x, y = problem
    threat = ThreatModel(parse_shifts("grid:1"), mode="zero")
    with pytest.raises(ModelError, match="shape"):
        GridAttack(threat)(lambda inp: inp.mean(dim=(2, 3))[:, :, None], x, y, device="cpu")
    with pytest.raises(ModelError, match="NaN"):
        GridAttack(threat)(lambda inp: torch.full((inp.shape[0], 4), math.nan), x, y, device="cpu")
    with pytest.raises(ModelError, match="labels"):
        GridAttack(threat)(lambda inp: inp.flatten(1)[:, :2], x, y.clamp(min=3), device="cpu")
    with pytest.raises(SpecError, match="too large"):
        GridAttack(ThreatModel(parse_shifts("grid:12"), mode="zero"))(lambda inp: inp, x, y, device="cpu")
    with pytest.raises(SpecError):
        GridAttack(ThreatModel(parse_shifts("random:1:3"), mode="zero"))



class _CountingModel(torch.nn.Module):
    """Wraps a model and records the batch size of every call."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x):
        self.calls.append(int(x.shape[0]))
        return self.inner(x)


@pytest.mark.parametrize("early_exit", [True, False])
def test_grid_spends_its_forward_passes_in_full_batches(problem, early_exit):
    """Every input the model sees is counted (search pairs in ``n_evaluated``, the separate pass
    in ``n_reverified``, one per image), and only the last batch of each of the three phases
    (clean pass, search, re-verification) may be short: no small confirmation passes."""
    model, x, y = problem
    counting = _CountingModel(model).eval()
    b = 10
    result = GridAttack(ThreatModel(parse_shifts(f"grid:{K}"), mode="zero"), batch_size=b,
                        early_exit=early_exit)(counting, x, y, device="cpu")
    assert 0 < result.worst_case_accuracy < result.clean_accuracy
    assert sum(counting.calls) == int(result.n_evaluated.sum()) + result.n_reverified
    assert result.n_reverified == len(y)  # every failure and every survivor, once
    assert sum(1 for c in counting.calls if c < b) <= 3
    assert result.to_json()["n_reverified"] == len(y)
