"""Randomized smoothing over translations: exact composition, Clopper-Pearson, radii, abstention, verify."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, norm
from torch import nn

from shiftattack.certify.document import seal
from shiftattack.certify.smooth import (
    SmoothConfig,
    band_limit,
    band_limited_shift,
    clopper_pearson_lower,
    smooth_certify,
)
from shiftattack.cli import main
from shiftattack.shifts import shift_fourier

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("size", [(8, 8), (7, 9), (6, 5)])
def test_band_limited_shifts_compose_exactly(size):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, *size, generator=g, dtype=torch.float64)
    px = band_limit(x)
    a = torch.tensor([0.3, -1.7, 2.25], dtype=torch.float64)
    b = torch.tensor([-0.8, 0.45, 1.5], dtype=torch.float64)
    one = band_limited_shift(band_limited_shift(px, a, b), -b, a)
    both = band_limited_shift(px, a - b, b + a)
    assert torch.allclose(one, both, atol=1e-12)
    # integer shifts of P x are rolls; P is idempotent and commutes with shifts
    assert torch.allclose(
        band_limited_shift(
            px, torch.full((3,), 2.0, dtype=torch.float64), torch.full((3,), -1.0, dtype=torch.float64)
        ),
        torch.roll(px, (-1, 2), dims=(-2, -1)),
        atol=1e-12,
    )
    assert torch.allclose(band_limit(px), px, atol=1e-12)


def test_without_band_limiting_even_sizes_do_not_compose():
    """Why P exists: the real-part convention at the Nyquist frequency breaks composition."""
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h = torch.tensor([0.5], dtype=torch.float64)
    z = torch.zeros(1, dtype=torch.float64)
    twice = shift_fourier(shift_fourier(x, h, z), h, z)
    assert (twice - shift_fourier(x, 2 * h, z)).abs().max() > 1e-3


@pytest.mark.parametrize(
    "k,n,alpha", [(0, 10, 0.01), (1, 10, 0.05), (57, 100, 0.001), (1000, 1000, 0.001), (9876, 10000, 0.01)]
)
def test_clopper_pearson_matches_scipy(k, n, alpha):
    expect = binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low
    assert clopper_pearson_lower(k, n, alpha) == pytest.approx(expect, abs=1e-12)


class Constant(nn.Module):
    def __init__(self, cls: int, k: int = 4) -> None:
        super().__init__()
        self.cls, self.k = cls, k

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.k, dtype=x.dtype)
        out[:, self.cls] = 1
        return out


class HalfPlane(nn.Module):
    """Class 0 when the image's bright spot sits in the left half, else class 1: a shift of the
    spot's own width flips it, so under smoothing with a large sigma P(class) is near 1/2."""

    def forward(self, x):
        w = x.shape[-1]
        left = x[..., : w // 2].sum((1, 2, 3))
        right = x[..., w // 2 :].sum((1, 2, 3))
        return torch.stack([left - right, right - left, torch.zeros_like(left)], 1)


def test_radius_of_an_always_correct_model_is_the_closed_form():
    cfg = SmoothConfig(sigma=2.0, n0=10, n=500, alpha=0.01, seed=3)
    x = torch.rand(2, 3, 8, 8)
    rows = smooth_certify(Constant(2), x, torch.tensor([2, 1]), torch.tensor([0, 1]), cfg, batch_size=64)
    p = 0.01 ** (1 / 500)  # Clopper-Pearson lower bound for 500 hits of 500
    for row in rows:
        assert row["n_top"] == 500 and row["top_class"] == 2
        assert row["p_lower"] == pytest.approx(p, rel=1e-9)
        assert row["radius"] == pytest.approx(2.0 * norm.ppf(p), rel=1e-9)


def test_abstains_where_the_smoothed_vote_is_split_and_is_seeded():
    x = torch.zeros(4, 1, 8, 8)
    x[..., 3:5, 3:5] = 1  # a spot on the boundary of the two halves
    cfg = SmoothConfig(sigma=3.0, n0=20, n=200, alpha=0.001, seed=0)
    labels, idx = torch.zeros(4, dtype=torch.long), torch.arange(4)
    rows = smooth_certify(HalfPlane(), x, labels, idx, cfg, batch_size=50)
    assert all(r["radius"] is None and r["prediction"] == -1 for r in rows)
    again = smooth_certify(HalfPlane(), x[2:], labels[2:], idx[2:], cfg, batch_size=7)
    assert again == rows[2:]  # per-image seeds: independent of batching and of the other images
    other = smooth_certify(HalfPlane(), x, labels, idx, SmoothConfig(sigma=3.0, n0=20, n=200, seed=1))
    assert [r["n_top"] for r in other] != [r["n_top"] for r in rows]


MODEL_FILE = textwrap.dedent(
    """
    import torch
    from torch import nn

    def factory():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, 3))
    """
)


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.random((12, 8, 8, 3)) * 255).astype(np.uint8)
    (tmp_path / "model.py").write_text(MODEL_FILE)
    ns: dict = {}
    exec(MODEL_FILE, ns)
    net = ns["factory"]().eval()
    with torch.no_grad():
        y = net(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy()
    y[::4] = (y[::4] + 1) % 3
    np.savez(tmp_path / "data.npz", x=x, y=y)
    return {"model": f"{tmp_path / 'model.py'}:factory", "data": tmp_path / "data.npz", "tmp": tmp_path}


def _certify(files, out, *extra):
    return main(
        [
            "certify",
            "--method",
            "smooth",
            "--model",
            files["model"],
            "--data",
            str(files["data"]),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--quiet",
            "--n0",
            "16",
            "--n",
            "64",
            *extra,
        ]
    )


def test_cli_smooth_certificate_verify_and_tampering(files, capsys):
    out = files["tmp"] / "smooth"
    assert _certify(files, out, "--shifts", "l2:0.5", "--mode", "circular", "--sigma", "0.75") == 0
    doc = json.loads((out / "certificate.json").read_text())
    assert doc["method"]["name"] == "smooth" and "smoothed classifier" in doc["method"]["claim"]
    assert doc["threat"]["interpolation"].startswith("fourier")
    for rec in doc["images"]:
        ok = rec["smoothed_pred"] == rec["label"] and rec["radius"] is not None and rec["radius"] > 0.5
        assert rec["certified"] == ok
        if rec["radius"] is not None:
            assert rec["radius"] == pytest.approx(0.75 * norm.ppf(rec["p_lower"]))
    curve = doc["certified_accuracy_vs_radius"]
    assert curve[0]["radius"] == 0 and all(
        a["certified_accuracy"] >= b["certified_accuracy"] for a, b in zip(curve, curve[1:], strict=False)
    )
    assert main(["verify", str(out), "--quiet"]) == 0
    pristine = (out / "certificate.json").read_text()
    edited = json.loads(pristine)
    edited["images"][1]["n_top"] -= 1
    (out / "certificate.json").write_text(json.dumps(seal(edited)))
    assert main(["verify", str(out), "--quiet"]) == 1
    assert "n_top" in capsys.readouterr().err
    # box:R is certified through the L2 ball of radius R * sqrt(2) that covers it
    box = files["tmp"] / "box"
    assert _certify(files, box, "--shifts", "box:0.5", "--mode", "circular", "--sigma", "0.75") == 0
    assert json.loads((box / "certificate.json").read_text())["threat"]["l2_radius"] == pytest.approx(
        0.5 * math.sqrt(2)
    )


def test_smooth_needs_circular_mode_and_a_radius(files, capsys):
    assert _certify(files, files["tmp"] / "a", "--shifts", "l2:1", "--mode", "zero") == 2
    assert "--mode circular" in capsys.readouterr().err
    assert _certify(files, files["tmp"] / "b", "--shifts", "grid:1", "--mode", "circular") == 2
    assert "l2:R" in capsys.readouterr().err


CORNER_FILE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Corner(nn.Module):
        # class 0 when pixel (0, 0) is bright, else class 1
        def forward(self, x):
            v = x[:, 0, 0, 0]
            return 10 * torch.stack([v - 0.5, 0.5 - v, torch.zeros_like(v)], 1)

    def factory():
        return Corner()
    """
)


def test_clean_pred_is_the_base_model_and_smoothed_pred_the_smoothed_classifier(tmp_path, capsys):
    """A bright corner pixel: the base model says 0 on the unshifted image, while under shifts of
    sigma = 3 px the pixel leaves the corner, so the smoothed classifier says 1 (the label)."""
    x = np.zeros((4, 8, 8, 3), np.uint8)
    x[:, 0, 0] = 255
    np.savez(tmp_path / "data.npz", x=x, y=np.ones(4, np.int64))
    (tmp_path / "corner.py").write_text(CORNER_FILE)
    files = {"model": f"{tmp_path / 'corner.py'}:factory", "data": tmp_path / "data.npz"}
    out = tmp_path / "cert"
    assert _certify(files, out, "--shifts", "l2:0.5", "--mode", "circular", "--sigma", "3") == 0
    doc = json.loads((out / "certificate.json").read_text())
    got = [(r["clean_pred"], r["smoothed_pred"], r["certified"]) for r in doc["images"]]
    assert got == [(0, 1, True)] * 4
    assert (doc["clean_accuracy"], doc["smoothed_accuracy"], doc["certified_accuracy"]) == (0.0, 1.0, 1.0)
    assert "smoothed_pred" in (out / "certificate.csv").read_text().splitlines()[0]
    assert main(["verify", str(out), "--quiet"]) == 0
    pristine = json.loads((out / "certificate.json").read_text())
    for key, value, message in (("clean_pred", 1, "clean prediction 1 recorded, 0 recomputed"),
                                ("smoothed_pred", -1, "smoothed prediction -1")):
        edited = json.loads(json.dumps(pristine))
        edited["images"][2][key] = value
        if key == "smoothed_pred":
            edited["images"][2]["certified"] = edited["images"][2]["robust"] = False
            edited["certified_accuracy"] = 0.75
            edited["smoothed_accuracy"] = 0.75
            edited["certified_accuracy_vs_radius"] = None
        else:
            edited["clean_accuracy"] = 0.25
        (out / "certificate.json").write_text(json.dumps(seal(edited)))
        assert main(["verify", str(out), "--quiet"]) == 1
        assert message in capsys.readouterr().err
    old_style = json.loads(json.dumps(pristine))  # a certificate of the old layout: no smoothed_pred
    for rec in old_style["images"]:
        rec["clean_pred"] = rec.pop("smoothed_pred")
    old_style["clean_accuracy"] = 1.0
    (out / "certificate.json").write_text(json.dumps(seal(old_style)))
    assert main(["verify", str(out), "--quiet"]) == 1
    assert "no 'smoothed_pred' field" in capsys.readouterr().err
