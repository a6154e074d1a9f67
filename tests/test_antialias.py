"""antialias(): the Zhang (ICML 2019) recipe per torchvision architecture, and the generic rule."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from shiftattack.errors import ConversionError, ConversionWarning, ModelError, SpecError
from shiftattack.models.antialias import antialias, detect_arch
from shiftattack.models.blurpool import BlurPool2d, binomial_filter
from shiftattack.models.compat import adapt_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")

ALL_ARCHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg11", "vgg11_bn", "vgg13",
             "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "alexnet", "densenet121", "mobilenet_v2"]
# One real (non-meta) model per family, small VGG; every test below reuses it.
REAL = ["resnet18", "resnet50", "vgg11_bn", "alexnet", "densenet121", "mobilenet_v2"]
# Input side that every filter size (1 to 7) accepts with reflect padding.
SIDE = {"alexnet": 112, "vgg": 80}


def _side(arch: str) -> int:
    return next((v for k, v in SIDE.items() if arch.startswith(k)), 64)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomise_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics, so that every layer matters in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or name.endswith("filt"):
                continue
            noise = torch.randn(tensor.shape, generator=gen)
            if name.endswith("running_var"):
                tensor.copy_(noise.abs() + 0.5)
            elif tensor.dim() > 1:
                fan_in = tensor[0].numel()
                tensor.copy_(noise * (2.0 / fan_in) ** 0.5)
            else:
                tensor.copy_(noise * 0.1)
    return model.eval()


_BASELINES: dict[str, nn.Module] = {}


def _baseline(arch: str) -> nn.Module:
    if arch not in _BASELINES:
        model = torchvision.models.get_model(arch, weights=None, num_classes=10)
        _BASELINES[arch] = _randomise_(model)
    return _BASELINES[arch]


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_every_architecture_converts_and_keeps_its_parameters(arch):
    with torch.device("meta"):
        base = torchvision.models.get_model(arch, weights=None, num_classes=10)
        shapes = [p.shape for p in base.parameters()]
        for filter_size in (1, 3, 4, 7):
            model = antialias(base, filter_size=filter_size).eval()
            assert _n_params(model) == _n_params(base)
            assert [p.shape for p in model.parameters()] == shapes
            blurs = [m for m in model.modules() if isinstance(m, BlurPool2d)]
            assert blurs and all(b.filter_size == filter_size for b in blurs)
            assert model(torch.empty(1, 3, _side(arch), _side(arch))).shape == (1, 10)
        assert not any(isinstance(m, BlurPool2d) for m in base.modules())  # a copy, base untouched


@pytest.mark.parametrize("arch", REAL)
def test_converted_models_run_on_small_inputs(arch):
    side = 64 if arch == "alexnet" else 32
    x = torch.rand(2, 3, side, side)
    with torch.no_grad():
        out = antialias(_baseline(arch), filter_size=4, pad_mode="zero")(x)
        assert out.shape == (2, 10) and torch.isfinite(out).all()
        out = antialias(_baseline(arch), filter_size=4)(torch.rand(1, 3, _side(arch), _side(arch)))
        assert out.shape == (1, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("arch", REAL)
def test_weights_and_statistics_are_copied_not_shared(arch):
    base = _baseline(arch)
    model = antialias(base, filter_size=3)
    assert len(list(model.parameters())) == len(list(base.parameters()))
    for p, q in zip(base.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr()
    buffers = [b for n, b in model.named_buffers() if not n.endswith("filt")]
    for p, q in zip(base.buffers(), buffers, strict=True):
        assert torch.equal(p, q)
    assert not model.training


class _Subsample(nn.Module):
    def forward(self, x):
        return x[..., ::2, ::2]


def _recipe_reference(arch: str, base: nn.Module) -> nn.Module:
    """The baseline with only the layer changes the recipe makes beyond subsampling."""
    ref = copy.deepcopy(base)
    if arch.startswith("resnet"):  # MaxPool(3, 2, pad 1) -> MaxPool(2, 1) then subsample
        ref.maxpool = nn.Sequential(nn.MaxPool2d(2, stride=1), _Subsample())
    if arch.startswith("densenet"):  # transitions' AvgPool(2, 2) -> subsample
        for module in ref.features:
            if hasattr(module, "pool"):
                module.pool = _Subsample()
    return ref  # VGG, AlexNet and MobileNetV2 (dropout is off in eval) compute exactly the baseline


@pytest.mark.parametrize("arch", REAL)
def test_filter_size_1_equals_plain_subsampling(arch):
    base = _baseline(arch)
    x = torch.rand(2, 3, _side(arch), _side(arch))
    with torch.no_grad():
        expected = _recipe_reference(arch, base)(x)
        got = antialias(base, filter_size=1)(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_resnet_layout_follows_the_package():
    model = antialias(_baseline("resnet18"), filter_size=4)
    assert detect_arch(_baseline("resnet18")) == "resnet"
    assert model.conv1.stride == (2, 2)  # pool_only: the stem conv keeps its stride
    pool = model.maxpool[0]
    assert (pool.kernel_size, pool.stride, pool.padding) == (2, 1, 0)
    assert (model.maxpool[1].channels, model.maxpool[1].stride) == (64, 2)
    block = model.layer2[0]
    assert block.conv1.stride == (1, 1) and isinstance(block.conv2[0], BlurPool2d)
    assert (block.conv2[0].channels, block.conv2[0].stride) == (128, 2)
    assert isinstance(block.downsample[0], BlurPool2d) and block.downsample[0].channels == 64
    assert block.downsample[1].stride == (1, 1)
    bottleneck = antialias(_baseline("resnet50"), filter_size=4).layer3[0]
    assert bottleneck.conv2.stride == (1, 1) and bottleneck.conv3[0].channels == 256


def test_generic_rule_places_blur_after_the_activation():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8),
        nn.MaxPool2d(3, stride=2, padding=1), nn.AvgPool2d(2), nn.Flatten(), nn.LazyLinear(4),
    )
    out = antialias(model, filter_size=3)
    kinds = [type(m).__name__ for m in out]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "BlurPool2d", "Conv2d", "BlurPool2d", "BatchNorm2d",
                     "MaxPool2d", "BlurPool2d", "BlurPool2d", "Flatten", "LazyLinear"]
    assert out[0].stride == (1, 1) and out[3].stride == 2 and out[8].channels == 8
    assert out[7].stride == 1 and out[7].kernel_size == 3 and out[7].padding == 1


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg = nn.AvgPool2d(2)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        return self.head(self.avg(self.pool(torch.relu(self.conv(x)))).mean((2, 3)))


def test_generic_rule_with_filter_1_is_subsampling_outside_sequentials():
    torch.manual_seed(0)
    base = _Custom().eval()
    model = antialias(base, filter_size=1)
    assert detect_arch(base) == "generic" and isinstance(model.conv, nn.Sequential)
    ref = copy.deepcopy(base)
    ref.avg = _Subsample()  # the recipe turns AvgPool into BlurPool; conv and max-pool stay exact
    x = torch.rand(2, 3, 20, 20)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-6)
    assert _n_params(model) == _n_params(base)


def test_bad_arguments_are_refused():
    base = _baseline("resnet18")
    with pytest.raises(SpecError, match="filter_size"):
        antialias(base, filter_size=9)
    with pytest.raises(SpecError, match="pad_mode"):
        antialias(base, pad_mode="mirror")
    with pytest.raises(SpecError, match="arch must be one of"):
        antialias(base, arch="inception")
    with pytest.raises(SpecError, match="already contains BlurPool2d"):
        antialias(antialias(base))
    with pytest.raises(SpecError, match="(?i)unexpected densenet layout"):
        antialias(base, arch="densenet")


def test_adapt_state_dict_checks_and_drops_filters():
    model = antialias(_baseline("resnet18"), filter_size=3)
    state = dict(model.state_dict())
    state["maxpool.1.filt"] = binomial_filter(3).expand(64, 1, 3, 3).clone()
    assert adapt_state_dict(model, state).keys() == model.state_dict().keys()
    state["maxpool.1.filt"] = binomial_filter(3).expand(64, 1, 3, 3) * 2
    with pytest.raises(ModelError, match="maxpool.1.filt: the file's blur filter differs"):
        adapt_state_dict(model, state)
    state["maxpool.1.filt"] = binomial_filter(4).expand(64, 1, 4, 4)
    with pytest.raises(ModelError, match=r"shape \(64, 1, 4, 4\).*filter_size 3 \(Tri-3\)"):
        adapt_state_dict(model, state)


def test_matches_the_antialiased_cnns_package_when_installed():
    aa = pytest.importorskip("antialiased_cnns")
    for arch, filter_size, side in (("resnet18", 4, 64), ("resnet50", 3, 64), ("vgg11_bn", 5, 80),
                                    ("alexnet", 4, 96), ("densenet121", 2, 64), ("mobilenet_v2", 7, 64)):
        theirs = _randomise_(getattr(aa, arch)(filter_size=filter_size, num_classes=10), seed=1)
        ours = antialias(_baseline(arch), filter_size=filter_size)
        ours.load_state_dict(adapt_state_dict(ours, theirs.state_dict()))
        x = torch.rand(2, 3, side, side)
        with torch.no_grad():
            assert torch.equal(ours(x), theirs(x)), arch


@pytest.mark.parametrize("arch, filter_size", [("resnet18", 4), ("resnet50", 3), ("alexnet", 5),
                                               ("densenet121", 2), ("mobilenet_v2", 7)])
def test_a_named_model_loads_an_antialiased_cnns_file_and_gives_the_same_outputs(arch, filter_size, tmp_path):
    """The acceptance path: a state_dict saved from the package, loaded by name from a local file."""
    aa = pytest.importorskip("antialiased_cnns")
    from shiftattack.models import create_model
    from shiftattack.models.zoo import IMAGENET_MEAN, IMAGENET_STD, MIN_INPUT_SIZE

    theirs = _randomise_(getattr(aa, arch)(filter_size=filter_size, num_classes=10), seed=2).eval()
    torch.save(theirs.state_dict(), tmp_path / "theirs.pt")  # persistent .filt buffers included
    ours = create_model(f"{arch}_blur{filter_size}", num_classes=10, weights=tmp_path / "theirs.pt")
    side = max(64, MIN_INPUT_SIZE[f"{arch}_blur{filter_size}"])
    x = torch.rand(2, 3, side, side)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():  # ours takes [0, 1] images and normalises inside; theirs takes normalised input
        assert torch.allclose(ours(x), theirs((x - mean) / std), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- branching models and silent no-ops


def _strided_layers(model: nn.Module) -> list[str]:
    kinds = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
    return [name for name, m in model.named_modules()
            if isinstance(m, kinds) and (m.stride if isinstance(m.stride, int) else m.stride[0]) > 1]


@pytest.mark.parametrize("arch", ["squeezenet1_0", "squeezenet1_1", "googlenet"])
def test_squeezenet_and_googlenet_convert_and_run(arch):
    """Their pools follow branch-concatenating blocks (Fire, Inception) and use ceil mode."""
    extra = {"init_weights": False, "aux_logits": True, "transform_input": True}
    extra = extra if arch == "googlenet" else {}
    base = torchvision.models.get_model(arch, weights=None, num_classes=10, **extra).eval()
    model = antialias(base, filter_size=4)
    blurs = [m for m in model.modules() if isinstance(m, BlurPool2d)]
    assert len(blurs) >= 4 and not _strided_layers(model)  # every subsampling layer is blurred
    assert _strided_layers(base) and _n_params(model) == _n_params(base)
    with torch.no_grad():
        for side in (224, 96):
            out = model(torch.rand(2, 3, side, side))
            assert out.shape == (2, 10) and torch.isfinite(out).all(), side
    if arch == "googlenet":  # the auxiliary heads run in train mode too
        outputs = model.train()(torch.rand(2, 3, 96, 96))
        assert outputs.logits.shape == outputs.aux_logits1.shape == (2, 10)


class _Functional(nn.Module):
    """Subsamples only with functional calls: nothing a module tree shows."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.head(x[..., ::2, ::2].mean((2, 3)))


def test_nothing_to_convert_warns_and_strict_raises():
    base = _Functional().eval()
    with pytest.warns(ConversionWarning, match=r"converted nothing.*no strided.*functional"):
        model = antialias(base)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), base(x))
    with pytest.raises(ConversionError, match=r"converted nothing.*F\.max_pool2d") as caught:
        antialias(base, strict=True)
    assert isinstance(caught.value, ModelError)
    with pytest.raises(ConversionError):
        antialias(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), strict=True)  # no subsampling at all
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a model with layers to convert does not warn
        antialias(_Custom(), strict=True)
