"""antialias() on timm CNNs, checked against timm's own anti-aliased models (``aa_layer=BlurPool2d``:
same layout, same state_dict keys, same outputs for the same weights) and, with filter size 1,
against the baseline itself (blur-free subsampling after a stride-1 layer is the strided layer)."""

from __future__ import annotations

import warnings

import pytest
import torch
from _models import perturbed

from shiftattack.models.antialias import antialias, detect_arch

timm = pytest.importorskip("timm")
from timm.layers import BlurPool2d as TimmBlurPool  # noqa: E402

FAMILIES = ["resnet18", "resnet50d", "efficientnet_b0", "mobilenetv3_small_100", "regnetx_002",
            "convnext_atto"]


def _timm_blur(filter_size: int) -> type:
    """timm's BlurPool2d with another filter size, as a class (timm's ResNet takes classes only)."""

    class Blur(TimmBlurPool):
        def __init__(self, channels=None, stride=2, **kwargs):
            super().__init__(channels, filt_size=filter_size, stride=stride, **kwargs)

    return Blur


def _blurs(model: torch.nn.Module) -> int:
    return sum(type(m).__name__ == "BlurPool2d" for m in model.modules())


@pytest.mark.parametrize(("base", "reference", "filter_size"), [
    ("resnet18", "resnetblur18", 3),
    ("resnet50d", "resnetblur50d", 3),
    ("resnet18", "resnet18", 5),
    ("efficientnet_b0", "efficientnet_b0", 3),
    ("mobilenetv3_small_100", "mobilenetv3_small_100", 5),
])
def test_matches_timms_own_anti_aliased_model(base, reference, filter_size):
    ours = antialias(perturbed(timm.create_model(base, num_classes=7)), filter_size=filter_size)
    kwargs = {} if reference.startswith("resnetblur") and filter_size == 3 else {
        "aa_layer": _timm_blur(filter_size)}
    ref = timm.create_model(reference, num_classes=7, **kwargs).eval()
    assert set(ours.state_dict()) == set(ref.state_dict())
    ref.load_state_dict(ours.state_dict())
    assert _blurs(ours) == sum(isinstance(m, TimmBlurPool) for m in ref.modules()) > 0
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_filter_size_1_computes_the_baseline(name):
    base = perturbed(timm.create_model(name, num_classes=5))
    ours = antialias(base, filter_size=1)
    assert detect_arch(base) == "timm" and _blurs(ours) >= 3
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), base(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_converts_keeps_parameters_and_runs(name):
    base = perturbed(timm.create_model(name, num_classes=5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing-converted would warn
        ours = antialias(base, filter_size=3)
    assert _blurs(ours) >= 3
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in base.parameters())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = ours(x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    stem = base.pretrained_cfg["first_conv"]
    assert ours.get_submodule(stem).stride == base.get_submodule(stem).stride  # the stem keeps its stride


def test_timm_shortcuts_keep_their_stride_as_in_timm():
    ours = antialias(timm.create_model("resnet18"), filter_size=3)
    assert ours.layer2[0].downsample[0].stride == (2, 2)
    assert ours.layer2[0].conv1.stride == (1, 1) and type(ours.layer2[0].aa).__name__ == "BlurPool2d"
