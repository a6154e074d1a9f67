"""``certify --method bound``: soundness against dense sampling, never looser than interval arithmetic,
every supported layer, branch and bound, the command line and verify."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _models import make_problem
from torch import nn

from shiftattack.certify.bound import BoundConfig, cell_bounds, certify_bound
from shiftattack.certify.document import seal
from shiftattack.certify.propagate import BoundModel, UnsupportedLayer
from shiftattack.cli import main
from shiftattack.models import create_model
from shiftattack.models.blurpool import BlurPool2d
from shiftattack.models.cmod import cmod_stem
from shiftattack.models.loading import Normalize
from shiftattack.shifts import shift, shift_bilinear

pytestmark = pytest.mark.usefixtures("one_thread")


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, padding_mode="circular")
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn(self.conv(x)))


def _with_stats(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
    return model.eval()


def zoo(seed: int = 0) -> dict[str, nn.Module]:
    """Small networks covering every layer the bound method supports."""
    torch.manual_seed(seed)
    every_layer = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=2, dilation=2),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        Residual(6),
        nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=3),  # 6 -> 3 px: the transpose needs output padding
        nn.BatchNorm2d(6),
        nn.ReLU(),
        BlurPool2d(6, 3, 2),
        nn.AvgPool2d(2),
        nn.Dropout(0.5),
        nn.Identity(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    )
    cmod = nn.Sequential(
        cmod_stem("cifar", 4, 4),
        nn.Conv2d(8, 6, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 6 * 6, 5),
    )
    cmod[0].gabor_norm.running_var.fill_(0.3)
    return {
        "every_layer": _with_stats(Normalize(every_layer, (0.4, 0.5, 0.6), (0.2, 0.3, 0.25)), seed),
        "cmod": _with_stats(cmod, seed),
        "registry_small_cnn": _with_stats(create_model("small_cnn", num_classes=5, width=4), seed),
    }


def _ibp_sequential(model: nn.Sequential, lo: torch.Tensor, hi: torch.Tensor):
    """Independent interval arithmetic for a Sequential of Conv2d, ReLU, MaxPool2d, Flatten, Linear."""
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            c, r = (lo + hi) / 2, (hi - lo) / 2
            c = m(c)
            r = (
                F.conv2d(r, m.weight.abs(), None, m.stride, m.padding)
                if isinstance(m, nn.Conv2d)
                else r @ m.weight.abs().T
            )
            lo, hi = c - r, c + r
        elif isinstance(m, (nn.ReLU, nn.MaxPool2d, nn.Flatten)):
            lo, hi = m(lo), m(hi)
        else:
            raise AssertionError(type(m))
    return lo, hi


def _piece(x: torch.Tensor, i: int, j: int, am: float, bm: float, h: float, mode: str):
    b = x.shape[0]
    corners = tuple(shift(x, i + di, j + dj, mode) for di, dj in ((0, 0), (1, 0), (0, 1), (1, 1)))
    full = lambda v: torch.full((b,), v, dtype=torch.float64)  # noqa: E731
    return cell_bounds(corners, full(am), full(bm), full(h), full(h))


def _sampled_min_margins(model, x, labels, i, j, am, bm, h, mode, n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    worst = torch.full((x.shape[0], 1), math.inf, dtype=torch.float64)
    for _ in range(n):
        a, b = (
            torch.tensor([am, bm], dtype=torch.float64)
            + (2 * torch.rand(2, generator=g, dtype=torch.float64) - 1) * h
        ).tolist()
        with torch.no_grad():
            z = model(shift_bilinear(x, i + a, j + b, mode))
        others = z.scatter(1, labels[:, None], -math.inf).amax(1, keepdim=True)
        worst = torch.minimum(worst, z.gather(1, labels[:, None]) - others)
    return worst.squeeze(1)


@pytest.mark.parametrize("name", ["every_layer", "cmod", "registry_small_cnn"])
@pytest.mark.parametrize("mode", ["zero", "circular"])
def test_piece_bounds_are_sound_on_every_layer(name, mode):
    model = zoo()[name].double()
    x = F.interpolate(
        torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64),
        size=12,
        mode="bilinear",
        align_corners=False,
    )
    labels = torch.tensor([0, 2, 4])
    bm = BoundModel(model, (12, 12))
    for i, j, am, bmid, h in [(0, 0, 0.5, 0.5, 0.5), (-1, 0, 0.3, 0.7, 0.05), (1, -2, 0.9, 0.1, 0.01)]:
        lower = bm.margin_lower(_piece(x, i, j, am, bmid, h, mode), labels).amin(1)
        sampled = _sampled_min_margins(model, x, labels, i, j, am, bmid, h, mode, n=150)
        assert (lower <= sampled + 1e-9).all(), (name, lower, sampled)


def test_bounds_are_never_looser_than_interval_arithmetic_and_tighten_on_small_pieces():
    model, x, labels = make_problem(n=8, size=12)
    bm = BoundModel(model, (12, 12))
    previous = None
    for h in (0.5, 0.1, 0.02):
        piece = _piece(x, 0, -1, 0.5, 0.5, h, "zero")
        ours = bm.margin_lower(piece, labels)
        lo, hi = _ibp_sequential(model, piece.low, piece.high)
        ibp = lo.gather(1, labels[:, None]) - hi
        mask = torch.ones_like(ibp, dtype=torch.bool).scatter(1, labels[:, None], False)
        assert (ours[mask] >= ibp[mask] - 1e-9).all()
        worst = ours.amin(1)
        if previous is not None:
            assert (worst >= previous - 1e-9).all()  # smaller pieces: tighter bounds
        previous = worst
    assert (ours[mask] > ibp[mask] + 1e-6).any()  # and strictly tighter somewhere


def _trained_problem():
    """A small network trained on smooth images (a few hundred steps), not a random one."""
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(64, 3, 3, 3, generator=gen)
    x = F.interpolate(coarse, size=12, mode="bilinear", align_corners=False)
    y = (coarse[:, 0].mean((1, 2)) > coarse[:, 1].mean((1, 2))).long() + 2 * (coarse[:, 2, 1, 1] > 0.5).long()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 4),
    )
    opt = torch.optim.Adam(model.parameters(), 0.01)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y


@pytest.mark.parametrize("trained", [False, True])
def test_certified_images_survive_dense_random_sampling(trained):
    if trained:
        model, x, y = _trained_problem()
    else:
        model, x, y = make_problem(n=24, size=12, dtype=torch.float32)
        model = model.float()
    out = certify_bound(model, x, y, BoundConfig(radius=1, mode="zero", max_pieces=300, batch_size=64))
    certified = out["certified"].nonzero().squeeze(1)
    assert certified.numel() >= 3
    assert bool((out["certified"] <= out["robust"]).all())
    m64 = model.double()
    g = torch.Generator().manual_seed(1)
    shifts = 2 * torch.rand(2000, 2, generator=g, dtype=torch.float64) - 1
    shifts[:8] = torch.tensor([[-1, -1], [-1, 1], [1, -1], [1, 1], [0, 0], [0.5, -1], [-1, 0.25], [1, 0]])
    for k in certified.tolist():
        img = x[k : k + 1].double().expand(200, -1, -1, -1)
        for s in range(0, shifts.shape[0], 200):
            part = shifts[s : s + 200]
            with torch.no_grad():
                pred = m64(shift_bilinear(img, part[:, 0], part[:, 1], "zero")).argmax(1)
            assert bool((pred == y[k]).all()), f"image {k} is certified but a sampled shift fools it"
    model.float()


def test_branch_and_bound_finds_counterexamples_the_attack_misses():
    model, x, y = make_problem(n=24, size=12, dtype=torch.float32)
    out = certify_bound(
        model.float(),
        x.float(),
        y,
        BoundConfig(radius=1, mode="zero", attack_step=1.0, max_pieces=400, batch_size=64),
    )
    found = (out["status"] == 4).nonzero().squeeze(1)
    assert found.numel() >= 1  # a failure between the integer shifts the coarse attack tried
    for k in found.tolist():
        dx, dy = out["worst_params"][k, :2].tolist()
        assert not (float(dx).is_integer() and float(dy).is_integer())
        with torch.no_grad():
            z = model.float()(shift_bilinear(x[k : k + 1].float(), dx, dy, "zero"))
        assert int(z.argmax()) != int(y[k])


def test_aps_is_refused_with_a_clear_message():
    with pytest.raises(UnsupportedLayer, match="polyphase"):
        BoundModel(create_model("cifar_convnet_aps", num_classes=10, width=4).eval(), (32, 32))


def test_cli_bound_certificate_and_verify(tmp_path, capsys):
    model, x, y = make_problem(n=24, size=12, dtype=torch.float32)
    torch.save(model.float().state_dict(), tmp_path / "w.pt")
    np.savez(
        tmp_path / "d.npz", x=(x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8), y=y.numpy()
    )
    tests = Path(__file__).resolve().parent
    (tmp_path / "m.py").write_text(
        f"import sys\nsys.path.insert(0, {str(tests)!r})\nimport torch\n"
        "from _models import position_sensitive_cnn\n"
        "def factory():\n    return position_sensitive_cnn(12, 4, 2, torch.float32)\n"
    )
    out = tmp_path / "cert"
    argv = [
        "certify",
        "--method",
        "bound",
        "--model",
        f"{tmp_path / 'm.py'}:factory",
        "--weights",
        str(tmp_path / "w.pt"),
        "--data",
        str(tmp_path / "d.npz"),
        "--shifts",
        "box:1",
        "--mode",
        "zero",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--quiet",
    ]
    assert main(argv) == 0
    doc = json.loads((out / "certificate.json").read_text())
    assert 0 < doc["certified_accuracy"] <= doc["worst_case_accuracy"] <= doc["clean_accuracy"]
    assert [r["radius"] for r in doc["certified_accuracy_vs_radius"]] == [0, 1]
    rec = next(r for r in doc["images"] if r["certified"])
    assert rec["status"] == "certified" and rec["margin_lower_bound"] > 0 and rec["certified_radius"] == 1
    assert main(["verify", str(out), "--quiet"]) == 0
    pristine = (out / "certificate.json").read_text()
    edited = json.loads(pristine)
    k = next(
        i
        for i, r in enumerate(edited["images"])
        if r["status"] == "unknown" or (not r["certified"] and r["clean_pred"] == r["label"])
    )
    edited["images"][k]["certified"] = edited["images"][k]["robust"] = True
    edited["images"][k]["status"] = "certified"
    edited["certified_accuracy"] = sum(r["certified"] for r in edited["images"]) / len(edited["images"])
    (out / "certificate.json").write_text(json.dumps(seal(edited)))
    assert main(["verify", str(out), "--quiet"]) == 1
    assert "recomputed" in capsys.readouterr().err
    # bad threat specs
    for shifts, mode, message in [
        ("grid:1", "zero", "box:R"),
        ("box:1.5", "zero", "box:R"),
        ("box:1", "reflect", "zero or circular"),
    ]:
        bad = argv.copy()
        bad[bad.index("box:1")] = shifts
        bad[bad.index("zero")] = mode
        bad[bad.index(str(out))] = str(tmp_path / "bad")
        assert main(bad) == 2
        assert message in capsys.readouterr().err
    # bad settings are refused before anything is written
    bad = argv.copy()
    bad[bad.index(str(out))] = str(tmp_path / "bad-batch")
    assert main([*bad, "--bound-batch", "0"]) == 2
    assert "--bound-batch" in capsys.readouterr().err
    assert not (tmp_path / "bad-batch").exists()


def test_bad_settings_are_refused_and_an_exhausted_search_certifies_nothing(tmp_path, capsys):
    model, x, y = make_problem(n=6, size=12, dtype=torch.float32)
    for bad, flag in [
        ({"batch_size": 0}, "--bound-batch"),
        ({"max_pieces": 0}, "--max-pieces"),
        ({"min_width": -1.0}, "--min-width"),
        ({"attack_step": 0.0}, "--attack-step"),
    ]:
        with pytest.raises(Exception, match=flag):
            certify_bound(model.float(), x.float(), y, BoundConfig(radius=1, **bad))
    # a budget too small to verify any cell: nothing is certified, survivors are unknown
    out = certify_bound(model.float(), x.float(), y, BoundConfig(radius=1, max_pieces=1, batch_size=4))
    assert not bool(out["certified"].any())
    survivors = out["status"] != 1
    assert bool((out["status"][survivors & (out["status"] != 3)] == 2).all())


@pytest.mark.parametrize("kind", ["registry_hook", "wrapped_registry", "every_layer", "cmod"])
def test_the_lowered_model_is_the_model(kind):
    """The bounds describe the lowered operations; they must compute exactly what the model does,
    including the input normalisation a registered model applies in a forward pre-hook."""
    torch.manual_seed(0)
    models = {
        "registry_hook": create_model("cifar_convnet", num_classes=5, width=4).eval(),
        "wrapped_registry": Normalize(
            create_model("cifar_convnet", num_classes=5, width=4), (0.3,) * 3, (0.5,) * 3
        ),
        **{k: v for k, v in zoo().items() if k in ("every_layer", "cmod")},
    }
    model = models[kind].eval()
    size = 16 if kind.endswith(("hook", "registry")) else 12
    bm = BoundModel(model, (size, size))
    x = torch.rand(2, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(bm.logits(x), bm.model(x), atol=1e-10)


def test_other_forward_hooks_are_refused():
    model, _, _ = make_problem(n=2, size=12)
    model[0].register_forward_hook(lambda m, i, o: o * 2)
    with pytest.raises(UnsupportedLayer, match="hooks"):
        BoundModel(model, (12, 12))


def test_split_children_tile_their_piece():
    """k x k children of a piece cover it exactly, without overlap, for several k at once."""
    from shiftattack.certify.bound import _split

    g = torch.Generator().manual_seed(0)
    n = 5
    p = {
        "img": torch.arange(n),
        "am": torch.rand(n, generator=g, dtype=torch.float64),
        "bm": torch.rand(n, generator=g, dtype=torch.float64),
        "ha": torch.rand(n, generator=g, dtype=torch.float64) / 4 + 0.01,
        "hb": torch.rand(n, generator=g, dtype=torch.float64) / 4 + 0.01,
    }
    k = torch.tensor([2, 3, 5, 2, 16])
    out = _split(p, k)
    assert out["img"].tolist() == torch.arange(n).repeat_interleave(k * k).tolist()
    for i in range(n):
        mine = out["img"] == i
        area = (4 * out["ha"][mine] * out["hb"][mine]).sum()
        assert math.isclose(float(area), float(4 * p["ha"][i] * p["hb"][i]), rel_tol=1e-12)
        for c, h in (("am", "ha"), ("bm", "hb")):
            edges = torch.cat([out[c][mine] - out[h][mine], out[c][mine] + out[h][mine]])
            assert math.isclose(float(edges.min()), float(p[c][i] - p[h][i]), abs_tol=1e-12)
            assert math.isclose(float(edges.max()), float(p[c][i] + p[h][i]), abs_tol=1e-12)
            assert len(set(torch.round(out[c][mine], decimals=9).tolist())) == int(k[i])


def test_bilinear_extremes_are_the_corner_extremes():
    from shiftattack.certify.linear_bounds import _corner_values, concretize

    g = torch.Generator().manual_seed(1)
    form = torch.randn(6, 4, 3, 5, generator=g, dtype=torch.float64)
    lo = torch.rand(6, 3, generator=g, dtype=torch.float64) - 1
    hi = lo + torch.rand(6, 3, generator=g, dtype=torch.float64)
    corners = _corner_values(form, lo, hi, product=True)
    torch.testing.assert_close(concretize(form, lo, hi, lower=True, product=True), corners.amin(0))
    torch.testing.assert_close(concretize(form, lo, hi, lower=False, product=True), corners.amax(0))


def test_max_pool_upper_line_lies_above_the_window_max():
    """The chord used for negative coefficients of undominated max-pool windows, against sampling."""
    from shiftattack.certify.linear_bounds import max_pool_selection, max_pool_upper_line

    g = torch.Generator().manual_seed(2)
    low = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64)
    high = low + 2 * torch.rand(2, 3, 6, 6, generator=g, dtype=torch.float64)
    index, dominated, best_l, _, others, own = max_pool_selection(low, high, 2, 2, 0)
    assert bool((~dominated).any())
    s, t = max_pool_upper_line(best_l, others, own)
    assert bool(((s >= 0) & (s <= 1)).all())
    for _ in range(300):
        z = low + (high - low) * torch.rand(low.shape, generator=g, dtype=torch.float64)
        zmax = F.max_pool2d(z, 2, 2)
        zj = z.flatten(2).gather(2, index.flatten(2)).reshape(index.shape)
        assert bool((zmax[~dominated] <= (s * zj + t)[~dominated] + 1e-12).all())
        assert bool((zmax[dominated] == zj[dominated]).all())
