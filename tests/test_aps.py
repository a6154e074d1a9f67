"""Adaptive polyphase sampling: a brute-force reference, and exact shift invariance of APS networks.

The reference (:func:`ref_aps`) loops over samples and polyphase components with NumPy: component
(i, j) takes rows (i + s*k) mod H and columns (j + s*l) mod W (the documented wrap-around for sizes
not divisible by the stride), and the first component of strictly largest norm wins.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from shiftattack.errors import ShapeError, SpecError
from shiftattack.models import aps, create_model, list_models
from shiftattack.models.blurpool import blur_pool2d
from shiftattack.models.small import SmallCNN

pytestmark = pytest.mark.usefixtures("one_thread")

# ----------------------------------------------------------------------------- reference code


def ref_aps(x: torch.Tensor, s: int, norm: str = "l2", index=None) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: (output, chosen phases i * s + j) per sample."""
    a = x.detach().double().numpy()
    n, _, H, W = a.shape
    h, w = math.ceil(H / s), math.ceil(W / s)
    outs, chosen = [], []
    for b in range(n):
        best, best_val, best_comp = -1, -np.inf, None
        for i in range(s):
            for j in range(s):
                rows = [(i + s * k) % H for k in range(h)]
                cols = [(j + s * m) % W for m in range(w)]
                comp = a[b][:, rows][:, :, cols]
                val = {"l2": np.sqrt((comp**2).sum()), "l1": np.abs(comp).sum(),
                       "linf": np.abs(comp).max()}[norm]
                if (index is None and val > best_val) or (index is not None and i * s + j == int(index[b])):
                    best, best_val, best_comp = i * s + j, val, comp
        outs.append(best_comp)
        chosen.append(best)
    return np.stack(outs), np.array(chosen)


def max_deviation(model: nn.Module, x: torch.Tensor, shifts, chunk: int = 256) -> float:
    """Largest |logit difference| between ``x`` and its circular shifts (dy, dx), in chunks."""
    with torch.no_grad():
        ref = model(x)
        dev = 0.0
        for k in range(0, len(shifts), chunk):
            part = shifts[k:k + chunk]
            xs = torch.cat([x.roll(tuple(d), (2, 3)) for d in part])
            dev = max(dev, (model(xs) - ref.repeat(len(part), 1)).abs().max().item())
    return dev


def all_shifts(h: int, w: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in range(h) for dx in range(w)]


# ----------------------------------------------------------------------------- the layer


@pytest.mark.parametrize("stride", [2, 3, 4])
@pytest.mark.parametrize("size", [(8, 8), (12, 8), (7, 10), (5, 3), (2, 9)])
@pytest.mark.parametrize("norm", aps.NORMS)
def test_matches_brute_force(stride, size, norm):
    x = torch.randn(3, 2, *size, generator=torch.Generator().manual_seed(stride), dtype=torch.float64)
    y, idx = aps.aps_pool2d(x, stride, norm=norm, return_index=True)
    ref, ref_idx = ref_aps(x, stride, norm)
    assert y.shape == (3, 2, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
    assert idx.dtype == torch.int64 and idx.tolist() == ref_idx.tolist()
    np.testing.assert_array_equal(y.numpy(), ref)


@pytest.mark.parametrize("pad_mode", ["circular", "reflect", "replicate", "zero"])
@pytest.mark.parametrize("filter_size", [2, 3, 5])
def test_blur_then_select(pad_mode, filter_size):
    x = torch.rand(2, 3, 9, 12, generator=torch.Generator().manual_seed(filter_size), dtype=torch.float64)
    y = aps.aps_pool2d(x, 3, filter_size=filter_size, pad_mode=pad_mode)
    np.testing.assert_allclose(y.numpy(), ref_aps(blur_pool2d(x, filter_size, 1, pad_mode), 3)[0], atol=1e-12)


def test_circular_blur_of_maps_smaller_than_the_filter():
    """F.pad refuses such pads; a periodic tiling of the map gives the reference."""
    x = torch.rand(1, 2, 2, 3, dtype=torch.float64)
    got = aps.aps_pool2d(x, 1, filter_size=7)
    want = blur_pool2d(x.repeat(1, 1, 4, 4), 7, 1, "circular")[..., :2, :3]
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("kw", [dict(), dict(stride=3, norm="l1"), dict(filter_size=4, pad_mode="reflect"),
                                dict(stride=4, norm="linf", filter_size=3)])
def test_module_equals_functional(kw):
    x = torch.randn(2, 5, 11, 8)
    y, idx = aps.aps_pool2d(x, return_index=True, **kw)
    for module in (aps.ApsPool2d(5, **kw), aps.ApsPool2d(None, **kw)):
        assert torch.equal(module(x), y)
        got, got_idx = module(x, return_index=True)
        assert torch.equal(got, y) and torch.equal(got_idx, idx)
    assert aps.ApsPool2d(5, **kw).state_dict() == {}


@pytest.mark.parametrize("stride", [2, 3])
def test_circular_shift_equivariance_and_index_reuse(stride):
    """Shift (dy, dx) moves the choice from phase p to (p + d) mod s and the output by (p + d) // s."""
    x = torch.randn(2, 3, 6 * stride // 2 * 2, 4 * stride)
    y, idx = aps.aps_pool2d(x, stride, return_index=True)
    i, j = idx // stride, idx % stride
    other = torch.randn_like(x)
    for dy, dx in all_shifts(stride + 1, stride + 1):
        ys, idx_s = aps.aps_pool2d(x.roll((dy, dx), (2, 3)), stride, return_index=True)
        assert torch.equal(idx_s, (i + dy) % stride * stride + (j + dx) % stride)
        for b in range(2):
            offset = (int(i[b] + dy) // stride, int(j[b] + dx) // stride)
            assert torch.equal(ys[b], y[b].roll(offset, (1, 2)))
        # reuse: the shortcut of a residual block applies the main path's phases to another tensor
        reused = aps.aps_pool2d(other.roll((dy, dx), (2, 3)), stride, index=idx_s)
        np.testing.assert_array_equal(reused.numpy(), ref_aps(other.roll((dy, dx), (2, 3)), stride,
                                                              index=idx_s)[0].astype(np.float32))
    module_reuse = aps.ApsPool2d(3, stride)(other, index=idx)
    assert torch.equal(module_reuse, aps.aps_pool2d(other, stride, index=idx))


def test_ties_choose_the_first_phase():
    assert aps.aps_pool2d(torch.ones(4, 2, 6, 6), return_index=True)[1].tolist() == [0] * 4
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 1] = x[0, 0, 1, 1] = 2.0  # phases 1 and 3 tie
    assert aps.aps_pool2d(x, return_index=True)[1].tolist() == [1]


def test_gradient_reaches_only_the_chosen_component():
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    y, idx = aps.aps_pool2d(x, return_index=True)
    y.sum().backward()
    for b in range(2):
        mask = torch.zeros(6, 6)
        mask[int(idx[b]) // 2::2, int(idx[b]) % 2::2] = 1
        assert torch.equal(x.grad[b], mask.expand(3, 6, 6))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_norms_do_not_overflow(dtype):
    x = 200 * torch.rand(2, 16, 32, 32)  # squares sum far above float16's 65504
    assert torch.equal(aps.aps_pool2d(x.to(dtype), return_index=True)[1],
                       aps.aps_pool2d(x.to(dtype).float(), return_index=True)[1])


def test_bad_arguments_and_tensors():
    x = torch.rand(1, 2, 4, 4)
    for kw in (dict(stride=0), dict(stride=2.0), dict(norm="l3"), dict(filter_size=8), dict(pad_mode="wrap")):
        with pytest.raises(SpecError):
            aps.aps_pool2d(x, **kw)
        with pytest.raises(SpecError):
            aps.ApsPool2d(2, **kw)
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\)"):
        aps.aps_pool2d(torch.rand(2, 4, 4))
    with pytest.raises(ShapeError, match="floating-point"):
        aps.aps_pool2d(torch.ones(1, 1, 4, 4, dtype=torch.int64))
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        aps.ApsPool2d(3)(x)
    with pytest.raises(ShapeError, match="index"):
        aps.aps_pool2d(x, index=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ShapeError, match="integer"):
        aps.aps_pool2d(x, index=torch.zeros(1))
    with pytest.raises(SpecError, match=r"\[0, 4\)"):
        aps.aps_pool2d(x, index=torch.tensor([4]))
    with pytest.raises(SpecError):
        aps.circular_max_pool2d(x, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = torch.randn(4, 8, 16, 12)
    for kw in (dict(), dict(stride=3, filter_size=3), dict(norm="linf", filter_size=5, pad_mode="reflect")):
        y, idx = aps.aps_pool2d(x, return_index=True, **kw)
        module = aps.ApsPool2d(8, **kw).to("cuda")
        yc, idxc = module(x.to("cuda"), return_index=True)
        assert torch.equal(idxc.cpu(), idx)
        torch.testing.assert_close(yc.cpu(), y)
    model = aps.aps_resnet(18, num_classes=10).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.to("cuda")(x.to("cuda")).cpu(), model.cpu()(x), atol=1e-4, rtol=1e-4)


def test_circular_max_pool():
    x = torch.randn(2, 3, 7, 6)
    for k, d in ((2, 1), (3, 1), (3, 2), (4, 1)):
        total = d * (k - 1)
        before = total // 2
        want = torch.stack([x.roll((before - d * a, before - d * b), (2, 3))
                            for a in range(k) for b in range(k)]).amax(0)
        assert torch.equal(aps.circular_max_pool2d(x, k, d), want)
        assert torch.equal(aps.CircularMaxPool2d(k, d)(x.roll((2, 5), (2, 3))), want.roll((2, 5), (2, 3)))


# ----------------------------------------------------------------------------- networks


@pytest.fixture(scope="module")
def resnet18_aps():
    torch.manual_seed(0)
    return aps.aps_resnet(18, num_classes=10).eval()


def test_resnet18_aps_is_exactly_invariant_to_every_circular_shift(resnet18_aps):
    """The acceptance test: all 32 x 32 circular shifts of an untrained APS ResNet-18 give the same logits."""
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert max_deviation(resnet18_aps, x, all_shifts(32, 32)) < 1e-4


def test_resnet18_aps_float64_differs_only_by_rounding():
    torch.manual_seed(3)
    model = aps.aps_resnet(18, num_classes=10).eval().double()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    assert max_deviation(model, x, [(1, 0), (0, 1), (7, 30), (31, 17)]) < 1e-10


def test_resnet18_aps_non_square_input_and_blur():
    torch.manual_seed(2)
    shifts = [(dy, dx) for dy, dx in all_shifts(32, 64) if (dy * 7 + dx * 3) % 89 == 0]
    x = torch.rand(1, 3, 32, 64)
    assert max_deviation(aps.aps_resnet(18, num_classes=10, filter_size=3).eval(), x, shifts) < 1e-4


def test_plain_circular_resnet_and_unshared_phases_are_not_invariant():
    """The test can fail: strided convs, or shortcuts choosing their own phase, break invariance."""
    torch.manual_seed(0)
    plain = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    for m in plain.modules():
        if isinstance(m, nn.Conv2d):
            m.padding_mode = "circular"
    unshared = aps.aps_resnet(18, num_classes=10, shared_phase=False).eval()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    shifts = all_shifts(4, 4)[1:]
    assert max_deviation(plain, x, shifts) > 1e-2
    assert max_deviation(unshared, x, shifts) > 1e-2


def test_bottleneck_resnet_is_invariant():
    torch.manual_seed(0)
    model = aps.ApsResNet(aps.ApsBottleneck, [1, 1, 1, 1], num_classes=5, width_per_group=16).eval()
    x = torch.rand(1, 3, 32, 32)
    assert max_deviation(model, x, [(1, 0), (0, 3), (5, 7), (31, 31)]) < 1e-4


def test_train_mode_forward_backward(resnet18_aps):
    model = aps.aps_resnet(18, num_classes=10).train()
    x = torch.rand(4, 3, 32, 32)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.conv1.weight.grad.abs().sum() > 0


def test_resnet_keeps_torchvision_keys_and_normalises_inputs(resnet18_aps):
    base = torchvision.models.resnet18(weights=None, num_classes=10)
    assert list(resnet18_aps.state_dict()) == list(base.state_dict())
    model = aps.aps_resnet(18, num_classes=10)
    model.load_state_dict(base.state_dict())  # strict
    raw = aps.aps_resnet(18, num_classes=10, normalize=False).eval()
    raw.load_state_dict(base.state_dict())
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), raw((x - mean) / std))
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(SpecError, match="depth"):
        aps.aps_resnet(20)


def test_registered_models():
    assert {"resnet18_aps", "resnet34_aps"} <= set(list_models("*_aps"))
    model = create_model("resnet18_aps", num_classes=7)
    assert isinstance(model, aps.ApsResNet) and model.fc.out_features == 7


def test_aps_convert_small_cnn():
    torch.manual_seed(0)
    base = SmallCNN(num_classes=10, width=8).eval()
    model = aps.aps_convert(base).eval()
    assert any(isinstance(m, nn.MaxPool2d) for m in base.modules())  # the original is untouched
    model.load_state_dict(base.state_dict())  # same keys
    x = torch.rand(2, 3, 16, 24)
    shifts = [(dy, dx) for dy, dx in all_shifts(16, 24) if (dy + 2 * dx) % 5 == 0]
    assert max_deviation(model, x, shifts) < 1e-5
    assert max_deviation(aps.small_cnn_aps(width=8).eval(), x, [(3, 1), (7, 22)]) < 1e-5


def test_aps_convert_strided_conv_and_refusals():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 8, 5, stride=3, padding=2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    model = aps.aps_convert(net, filter_size=3).eval()
    assert isinstance(model[0], aps.ApsConv2d) and list(model.state_dict()) == list(net.state_dict())
    assert max_deviation(model, torch.rand(1, 3, 12, 18), [(1, 0), (5, 7), (11, 17)]) < 1e-5
    with pytest.raises(SpecError, match="map size"):
        aps.aps_convert(nn.Sequential(nn.Conv2d(3, 4, 3)))
    aps.aps_convert(nn.Sequential(nn.Conv2d(3, 4, 3)), strict=False)
    with pytest.raises(SpecError, match="AvgPool2d"):
        aps.aps_convert(nn.Sequential(nn.AvgPool2d(2)))
    with pytest.raises(SpecError, match="aps_resnet"):
        aps.aps_convert(torchvision.models.resnet18(weights=None))
