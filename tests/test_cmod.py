"""CMod first layers: Gabor kernels and fits, the stem, twins of baselines, cost, shift stability."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from shiftattack.errors import ModelError, ShapeError, SpecError
from shiftattack.models._registry import create_model
from shiftattack.models.blurpool import MaxBlurPool2d
from shiftattack.models.cmod import (
    STEM_PRESETS,
    CModStem,
    ModulusBatchNorm2d,
    StemGeometry,
    cmod2d,
    cmod_stem,
)
from shiftattack.models.cmod_cost import PAPER_TABLE_III, first_layer_cost
from shiftattack.models.cmod_models import locate_stem, twin
from shiftattack.models.gabor import fit_gabor, gabor_kernels, negative_frequency_leakage
from shiftattack.models.zoo import imagenet_model

pytestmark = pytest.mark.usefixtures("one_thread")

# (k, m, q, s, r, p, batch_norm, test input side)
STEMS = {
    "resnet": (7, 2, 3, 2, 1, 3, True, 64),
    "alexnet": (11, 4, 3, 2, 0, 2, False, 99),
    "cifar": (5, 1, 2, 2, 0, 2, True, 32),
}


def _baseline(name: str, channels: int = 16) -> nn.Sequential:
    k, m, q, s, r, p, bn, _ = STEMS[name]
    layers = [nn.Conv2d(3, channels, k, m, p, bias=not bn)] + ([nn.BatchNorm2d(channels)] if bn else [])
    return nn.Sequential(*layers, nn.ReLU(), nn.MaxPool2d(q, s, r))


def _random_gabors(n: int, k: int, seed: int, noise: float = 0.0):
    """Real parts of random complex Gabors (random colour mix and phase), plus relative noise."""
    g = torch.Generator().manual_seed(seed)
    freq = torch.rand(n, generator=g) * 1.4 + 0.8
    theta = torch.rand(n, generator=g) * math.pi
    sigma = torch.maximum(torch.full((n,), 0.25 * k), 2.0 / freq)
    sigma = torch.stack([sigma, sigma * (0.8 + 0.5 * torch.rand(n, generator=g))], 1)
    centre = (torch.rand(n, 2, generator=g) - 0.5)
    mix = torch.complex(torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g))
    clean = (mix[:, :, None, None] * gabor_kernels(freq, theta, sigma, centre, (k, k))[:, None]).real
    scale = clean.flatten(1).norm(dim=1).view(-1, 1, 1, 1) / math.sqrt(3 * k * k)
    return clean, clean + noise * scale * torch.randn(clean.shape, generator=g)


def _gabor_baseline(name: str, gabor_pos: list[int], channels: int = 16, noise: float = 0.05, seed: int = 0):
    """A baseline stem whose channels ``gabor_pos`` are noisy Gabor real parts, the others random."""
    model = _baseline(name, channels).eval()
    k = STEMS[name][0]
    clean, noisy = _random_gabors(len(gabor_pos), k, seed, noise)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        model[0].weight.copy_(0.3 * torch.randn(model[0].weight.shape, generator=g))
        model[0].weight[gabor_pos] = noisy
        if isinstance(model[1], nn.BatchNorm2d):
            model[1].running_mean.uniform_(-0.1, 0.1, generator=g)
            model[1].running_var.uniform_(0.5, 2.0, generator=g)
            model[1].weight.uniform_(0.5, 1.5, generator=g)
            model[1].bias.uniform_(-0.2, 0.2, generator=g)
    return model, clean


# ---------------------------------------------------------------- Gabor kernels and fits


def test_gabor_kernels_are_band_pass_unit_norm_and_analytic():
    freq = torch.tensor([0.5, 1.0, 2.0, 3.0])
    sigma = (2.5 / freq)[:, None].repeat(1, 2)
    theta = torch.tensor([0.0, 0.7, 1.9, 2.8])
    k = gabor_kernels(freq, theta, sigma, torch.zeros(4, 2), (31, 31))
    assert k.real.sum((1, 2)).abs().max() < 1e-5 and k.imag.sum((1, 2)).abs().max() < 1e-5
    assert torch.allclose(k.abs().pow(2).sum((1, 2)), torch.ones(4), atol=1e-5)
    leak = negative_frequency_leakage(k, theta)
    assert leak[:2].max() < 0.001 and leak[2] < 0.02  # analytic while freq + bandwidth < pi
    assert leak[3] > 0.2  # near Nyquist the spectrum wraps round: a poor CMod kernel
    real = torch.complex(k.real, torch.zeros_like(k.real))
    assert torch.allclose(negative_frequency_leakage(real, theta), torch.full((4,), 0.5, dtype=torch.float64),
                          atol=0.03)
    sf = torch.tensor([1.5, 2.0, 2.5])
    leak = negative_frequency_leakage(gabor_kernels(torch.ones(3), torch.zeros(3), sf[:, None].repeat(1, 2),
                                                    torch.zeros(3, 2), (41, 41)), torch.zeros(3))
    assert leak[0] < 0.03 and leak[1] < 0.005 and leak[2] < 0.001


@pytest.mark.parametrize("k", [7, 11])
def test_fit_recovers_noisy_gabors_and_rejects_other_kernels(k):
    clean, noisy = _random_gabors(12, k, seed=k, noise=0.05)
    fit = fit_gabor(noisy)
    assert fit.residual.max() < 0.08
    err = (fit.kernels().real.float() - clean).flatten(1).norm(dim=1) / clean.flatten(1).norm(dim=1)
    assert err.max() < 0.05
    assert fit.leakage.max() < 0.12
    r = torch.arange(k) - (k - 1) / 2
    rr = r.view(-1, 1) ** 2 + r.view(1, -1) ** 2
    g = torch.Generator().manual_seed(0)
    others = torch.cat([
        torch.exp(-rr / 8)[None, None] * torch.randn(4, 3, 1, 1, generator=g),  # low-pass blobs
        (torch.exp(-rr / 2) - 0.25 * torch.exp(-rr / 8))[None, None] * torch.randn(4, 3, 1, 1, generator=g),
        torch.randn(4, 3, k, k, generator=g),  # white noise
    ])
    assert fit_gabor(others).residual.min() > 0.4


# ---------------------------------------------------------------- stem, functional form, alignment


@pytest.mark.parametrize("blur", [None, 3])
@pytest.mark.parametrize("name", sorted(STEMS))
def test_stem_output_matches_baseline_shape(name, blur):
    k, m, q, s, r, p, bn, n = STEMS[name]
    stem = CModStem(3, 10, 6, k, m, q, s, r, p, bn, blur, blur_conv=blur is not None and m == 4)
    for side in (n, n + 3):
        x = torch.rand(2, 3, side, side + 1)
        assert stem(x).shape == _baseline(name)(x).shape
        assert stem.geometry.output_size(side) == _baseline(name)(x).shape[-2]
    if blur is not None:
        assert isinstance(stem.free[-1], MaxBlurPool2d) and stem.free[-1][1].filter_size == 3


def test_presets_match_the_test_stems():
    for name, (k, m, q, s, r, p, bn, n) in STEMS.items():
        assert STEM_PRESETS[name] == (k, m, q, s, r, p, bn)
        stem = cmod_stem(name, 10, 6, blur_filter_size=2)
        assert stem(torch.rand(1, 3, n, n)).shape == _baseline(name)(torch.rand(1, 3, n, n)).shape
    assert cmod_stem("cifar", 4, 4, kernel_size=7).geometry.conv_padding == 3
    with pytest.raises(SpecError, match="unknown stem preset"):
        cmod_stem("vgg", 4, 4)


def test_functional_equals_module_and_explicit_complex_conv():
    stem = CModStem(3, 4, 5, 7, 2, 3, 2, 1, 3, batch_norm=True).eval()
    x = torch.rand(2, 3, 40, 40)
    pad, shift = stem.layout(40, 40)
    size = (stem.geometry.output_size(40),) * 2
    kernels = stem.gabor(shift)
    assert torch.equal(stem.gabor_modulus(x), cmod2d(x, kernels, 4, pad, size))
    re = F.conv2d(F.pad(x, pad), kernels.real, stride=4)[..., :size[0], :size[1]]
    im = F.conv2d(F.pad(x, pad), kernels.imag, stride=4)[..., :size[0], :size[1]]
    assert torch.allclose(cmod2d(x, kernels, 4, pad, size), torch.sqrt(re**2 + im**2), atol=1e-5)
    with pytest.raises(ShapeError, match="complex"):
        cmod2d(x, kernels.real, 4)
    with pytest.raises(ShapeError, match="fewer than output_size"):
        cmod2d(x, kernels, 4, 0, (40, 40))


@pytest.mark.parametrize("name", sorted(STEMS))
def test_gabor_channels_are_aligned_with_the_baseline(name):
    """Impulse responses of the twin's CMod channels and the baseline's RMax centre on the same output px."""
    n = STEMS[name][-1]
    model, _ = _gabor_baseline(name, list(range(8)), channels=8, noise=0.0)
    tw = twin(model, gabor_channels=8)
    x = torch.zeros(6, 3, n, n)
    points = ((n // 2, n // 2), (n // 3, n // 2 + 1), (n // 2 + 2, n // 3), (n // 2 + 1, n // 2 + 3),
              (n // 3 + 1, n // 3 + 2), (n // 2 - 1, n // 2 + 2))
    for i, (py, px) in enumerate(points):
        x[i, :, py, px] = 1.0

    def centroid(maps):  # (N, G, h, w) non-negative -> (N, G, 2) in output px
        w = maps / maps.sum((2, 3), keepdim=True).clamp_min(1e-12)
        ys, xs = torch.arange(maps.shape[2]).float(), torch.arange(maps.shape[3]).float()
        return torch.stack([(w.sum(3) * ys).sum(2), (w.sum(2) * xs).sum(2)], -1)

    with torch.no_grad():
        rmax = F.relu(model[0](x) - (model[0].bias.view(1, -1, 1, 1) if model[0].bias is not None else 0))
        rmax = F.max_pool2d(rmax, *STEMS[name][2:5])
        cmod = tw[0].gabor_modulus(x)
    def error(dy, dx):  # mean centroid distance (output px) with the CMod maps moved by (dy, dx)
        return float((centroid(rmax) - centroid(cmod.roll((dy, dx), dims=(2, 3)))).norm(dim=-1).mean())

    aligned = error(0, 0)
    assert aligned < 0.5
    assert all(aligned < error(dy, dx) - 0.3 for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)))


def test_gradients_reach_every_parameter_and_bn_tracks_power():
    stem = CModStem(3, 6, 5, 7, 2, 3, 2, 1, 3, batch_norm=True, blur_filter_size=3).train()
    x = torch.rand(4, 3, 32, 32)
    out = stem(x)
    (out * torch.linspace(0.5, 1.5, out.shape[1]).view(1, -1, 1, 1)).pow(2).mean().backward()
    for name, p in stem.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert not torch.equal(stem.gabor_norm.running_var, torch.ones(5))
    alex = CModStem(3, 4, 4, 11, 4, 3, 2, 0, 2, batch_norm=False, blur_filter_size=2, blur_conv=True)
    alex(torch.rand(2, 3, 99, 99)).sum().backward()
    assert all(p.grad is not None for p in alex.parameters())


def test_modulus_batch_norm_scales_without_centring():
    bn = ModulusBatchNorm2d(3, affine=False)
    x = torch.rand(8, 3, 5, 5) * torch.tensor([1.0, 5.0, 0.1]).view(1, 3, 1, 1) + 0.5
    y = bn.train()(x)
    assert torch.allclose(y.pow(2).mean((0, 2, 3)), torch.full((3,), 2.0), rtol=1e-3)
    assert (y > 0).all()
    bn.running_var.fill_(4.0)
    assert torch.allclose(bn.eval()(x), x / math.sqrt(4.0 + bn.eps))


def test_stem_rejects_bad_specs():
    with pytest.raises(SpecError, match="gabor_index"):
        CModStem(3, 4, 2, 7, 2, 3, 2, 1, 3, True, gabor_index=[0, 0])
    with pytest.raises(SpecError, match="blur_conv"):
        CModStem(3, 4, 2, 7, 1, 3, 2, 1, 3, True, blur_conv=True)
    with pytest.raises(SpecError, match="pool padding"):
        StemGeometry(7, 2, 3, 2, 2, 2)
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        CModStem(3, 4, 2, 7, 2, 3, 2, 1, 3, True)(torch.rand(1, 1, 32, 32))


# ---------------------------------------------------------------- twins and builders


@pytest.mark.parametrize("name", sorted(STEMS))
def test_twin_finds_the_gabor_channels_and_keeps_the_rest(name):
    pos = [1, 4, 5, 9, 12, 14]
    model, clean = _gabor_baseline(name, pos)
    tw = twin(model, gabor_channels=len(pos))
    assert tw.cmod_fit.gabor_index == pos and tw.cmod_fit.residual.max() < 0.08
    stem = tw[0]
    real = stem.gabor().real.float()
    assert ((real - clean).flatten(1).norm(dim=1) / clean.flatten(1).norm(dim=1)).max() < 0.06
    x = torch.rand(2, 3, STEMS[name][-1], STEMS[name][-1])
    with torch.no_grad():
        a, b = model(x), tw(x)
    free = [i for i in range(16) if i not in pos]
    assert torch.allclose(a[:, free], b[:, free], atol=1e-6)
    rel = (a[:, pos] - b[:, pos]).norm() / a[:, pos].norm()
    # RMax ~ CMod when the pool window spans a carrier period; a 2x2 pool after a stride-1 conv does not.
    assert rel < (0.6 if name != "cifar" else 2.0)
    assert not tw.training and isinstance(model[0], nn.Conv2d)  # baseline untouched


def test_twin_and_builders_import_from_the_models_package():
    import shiftattack.models as models
    from shiftattack.models import TwinFit, cmod_alexnet, cmod_resnet
    from shiftattack.models import twin as exported

    assert exported is twin and {"twin", "TwinFit", "cmod_resnet", "cmod_alexnet"} <= set(models.__all__)
    assert callable(cmod_resnet) and callable(cmod_alexnet) and isinstance(TwinFit, type)


def test_twin_of_a_torchvision_resnet_keeps_every_other_weight():
    base = torchvision.models.resnet18(num_classes=10).eval()
    pos = list(range(0, 64, 3))[:20]
    _, noisy = _random_gabors(len(pos), 7, seed=5, noise=0.05)
    with torch.no_grad():
        base.conv1.weight[pos] = noisy
    tw = twin(base, steps=100)
    assert set(pos) <= set(tw.cmod_fit.gabor_index) and len(tw.cmod_fit.gabor_index) == 24
    sd_base, sd_twin = base.state_dict(), tw.state_dict()
    for key, value in sd_base.items():
        if not key.startswith(("conv1.", "bn1.")):
            assert torch.equal(value, sd_twin[key]), key
    assert isinstance(tw.conv1, CModStem) and isinstance(tw.maxpool, nn.Identity)
    with torch.no_grad():
        assert tw(torch.rand(2, 3, 64, 64)).shape == (2, 10)


def test_twin_of_blurpool_models_and_errors():
    for arch, blur_conv in (("resnet18", False), ("alexnet", True)):
        base = imagenet_model(arch, num_classes=5, filter_size=3).eval()
        stem = locate_stem(base)
        assert stem.blur_filter_size == 3 and stem.blur_conv == blur_conv
        tw = twin(base, steps=20)
        side = 64 if arch == "resnet18" else 128
        with torch.no_grad():
            assert tw(torch.rand(1, 3, side, side)).shape == (1, 5)
    with pytest.raises(ModelError, match="no first layer"):
        twin(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(ModelError, match="already has a CModStem"):
        twin(tw)
    with pytest.raises(ModelError, match="ReLU -> MaxPool2d"):
        twin(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten()))


@pytest.mark.parametrize("name,side", [("resnet18_cmod", 64), ("alexnet_cmod", 96),
                                       ("resnet18_blur3_cmod", 64), ("alexnet_blur3_cmod", 160)])
def test_registered_cmod_models(name, side):
    model = create_model(name, num_classes=7).eval()
    first = model.conv1 if "resnet" in name else model.features[0]
    assert isinstance(first, CModStem)
    assert first.gabor_channels == (24 if "resnet" in name else 32) and first.out_channels == 64
    assert (first.blur_filter_size == 3) == ("blur" in name)
    with torch.no_grad():
        assert model(torch.rand(2, 3, side, side)).shape == (2, 7)


# ---------------------------------------------------------------- cost


def test_first_layer_cost_reproduces_the_papers_table():
    for arch in ("alexnet", "resnet"):
        cost = first_layer_cost(arch)
        for kind in ("blurpool", "cmod"):
            for ours, paper in zip(cost.ratios[kind], PAPER_TABLE_III[arch][kind], strict=True):
                assert abs(ours - paper) < 0.1 * paper + 0.05, (arch, kind, ours, paper)
    cost = first_layer_cost(torchvision.models.resnet18(), input_size=64, measure_time=True, batch=1,
                            repeats=1, out_channels=8)
    assert cost.stem == "custom" and set(cost.seconds) == {"rmax", "blurpool", "cmod"}
    assert '"cmod"' in cost.to_json()
    with pytest.raises(SpecError, match="unknown stem"):
        first_layer_cost("vgg")


# ---------------------------------------------------------------- stability on real images


def _pooled_change(f, images: torch.Tensor, crop: int = 2) -> float:
    """Mean over images and 1 px shifts (0, 1), (1, 0), (1, 1) of ||P f(T x) - P f(x)|| / ||P f(x)||.

    ``P`` averages each channel over the output's interior (``crop`` px from each border
    dropped): a shift-invariant summary, so its change measures the aliasing of ``f``.
    """
    side = images.shape[-1] - 2
    x0 = images[..., 1:1 + side, 1:1 + side]
    base = f(x0)[..., crop:-crop, crop:-crop].mean((2, 3))
    changes = []
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        shifted = images[..., 1 + dy:1 + dy + side, 1 + dx:1 + dx + side]
        out = f(shifted)[..., crop:-crop, crop:-crop].mean((2, 3))
        changes.append(((out - base).norm(dim=1) / base.norm(dim=1).clamp_min(1e-12)).mean())
    return float(torch.stack(changes).mean())


@pytest.mark.data
@pytest.mark.parametrize("name,upsample", [("resnet", 2), ("alexnet", 4), ("cifar", 1)])
def test_cmod_is_more_shift_stable_than_rmax_on_real_images(cifar_zip, name, upsample):
    from shiftattack.data import load_dataset

    images = load_dataset(f"{cifar_zip}:test", limit=256, progress=False).float_images()
    if upsample > 1:
        images = F.interpolate(images[:128], scale_factor=upsample, mode="bilinear", align_corners=False)
    pos = list(range(8))
    model, _ = _gabor_baseline(name, pos, channels=8, noise=0.0)
    tw = twin(model, gabor_channels=8)
    _, _, q, s, r, *_ = STEMS[name]
    with torch.no_grad():
        rmax = _pooled_change(lambda z: F.max_pool2d(model[0](z), q, s, r), images)
        cmod = _pooled_change(tw[0].gabor_modulus, images)
    assert cmod < 0.6 * rmax, (rmax, cmod)
