"""cifar_convnet and its variants; filter smoothness."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shiftattack.errors import ModelError, ShapeError
from shiftattack.models import CifarConvNet, MaxBlurPool2d, create_model, list_models
from shiftattack.models.smoothness import filter_smoothness, first_conv, normalized_total_variation

pytestmark = pytest.mark.usefixtures("one_thread")


def test_baseline_shapes_and_state_dict_holds_only_learnt_tensors():
    model = create_model("cifar_convnet").eval()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert not any(k.endswith(("mean", "std")) and "running" not in k for k in model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == 577_706


@pytest.mark.parametrize("f", [2, 3, 4, 5, 7])
def test_blur_variants_replace_every_max_pool_and_keep_parameters(f):
    base, blur = create_model("cifar_convnet"), create_model(f"cifar_convnet_blur{f}")
    pools = [m for m in blur.modules() if isinstance(m, MaxBlurPool2d)]
    assert len(pools) == 3 and all(p[1].filter_size == f for p in pools)
    assert not any(isinstance(m, nn.MaxPool2d) and m.stride != 1 for m in blur.modules())
    assert set(base.state_dict()) == set(blur.state_dict())
    blur.load_state_dict(base.state_dict())
    assert blur.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_variants_are_registered():
    names = set(list_models("cifar_convnet*"))
    assert {"cifar_convnet", "cifar_convnet_blur3", "cifar_convnet_blur5"} <= names


def test_bad_input_is_named():
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        CifarConvNet()(torch.rand(1, 1, 32, 32))


def test_normalized_total_variation_independent_brute_force():
    w = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    got = normalized_total_variation(w)
    for o in range(4):
        k = w[o].double()
        cells = [(c, i, j) for c in range(3) for i in range(5) for j in range(5)]
        tv = sum(abs(float(k[c, i + 1, j] - k[c, i, j])) for c, i, j in cells if i < 4)
        tv += sum(abs(float(k[c, i, j + 1] - k[c, i, j])) for c, i, j in cells if j < 4)
        assert got[o].item() == pytest.approx(tv / float(k.abs().sum()))
    # scale-free, and a blurred kernel is smoother than a random one
    assert torch.allclose(normalized_total_variation(3 * w), got)
    box = torch.ones(1, 1, 3, 3) / 9
    blurred = nn.functional.conv2d(w.view(12, 1, 5, 5), box, padding=1).view(4, 3, 5, 5)
    assert (normalized_total_variation(blurred) < got).all()


def test_filter_smoothness_reads_the_first_convolution():
    model = create_model("cifar_convnet")
    report = filter_smoothness(model)
    assert first_conv(model) is model.stem[0]
    assert len(report["per_filter"]) == 32 and report["kernel_size"] == [5, 5]
    with pytest.raises(ModelError, match="no Conv2d"):
        first_conv(nn.Linear(2, 2))


def test_aps_variant_is_exactly_invariant_to_every_circular_shift():
    torch.manual_seed(0)
    model = create_model("cifar_convnet_aps").eval()
    x = torch.rand(1, 3, 32, 32)
    shifted = torch.cat([torch.roll(x, (dy, dx), dims=(-2, -1)) for dy in range(32) for dx in range(32)])
    with torch.no_grad():
        ref = model(x)
        out = torch.cat([model(chunk) for chunk in shifted.split(256)])
        plain = create_model("cifar_convnet").eval()
        plain_out = plain(shifted[:64])
    assert (out - ref).abs().max().item() < 1e-4
    assert (plain_out - plain(x)).abs().max().item() > 1e-3  # the baseline is not invariant
