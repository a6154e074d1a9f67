"""The registered ImageNet models: names, input normalisation, sizes, weights files."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
import torchvision

import shiftattack.models.zoo as zoo
from shiftattack.errors import ModelError, ShapeError, SpecError
from shiftattack.models._registry import create_model, list_models

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = [name for name in list_models() if name in zoo.MIN_INPUT_SIZE]
# Real (non-meta) round trips: every family and filter size, but VGG (a 537 MB file; its layout
# is covered by test_antialiased_cnns_layout_loads on a tiny file).
ROUND_TRIP = ["resnet18", "resnet18_blur4", "resnet34_blur7", "resnet50_blur3", "alexnet_blur5",
              "densenet121_blur2", "mobilenet_v2", "mobilenet_v2_blur4"]


def test_registers_every_architecture_and_filter_size():
    expected = {a if f is None else f"{a}_blur{f}" for a in zoo.ARCHS for f in (None, 2, 3, 4, 5, 7)}
    assert set(NAMES) == expected and len(NAMES) == 60


_BASE_SHAPES: dict[str, list] = {}


def _base_shapes(arch: str) -> list:
    if arch not in _BASE_SHAPES:
        with torch.device("meta"):
            base = torchvision.models.get_model(arch, weights=None, num_classes=10)
        _BASE_SHAPES[arch] = [p.shape for p in base.parameters()]
    return _BASE_SHAPES[arch]


def _check_min_side(model, side: int) -> None:
    """``model.forward`` skips the normalising pre-hook and its size check: torch's limit is tested."""
    assert model.forward(torch.empty(1, 3, side, side, device="meta")).shape == (1, 10)
    if side > 1:
        with pytest.raises((RuntimeError, ShapeError)):
            model.forward(torch.empty(1, 3, side - 1, side - 1, device="meta"))


@pytest.mark.parametrize("name", NAMES)
def test_every_name_builds_with_the_baseline_parameters_and_size_limit(name):
    arch, _, blur = name.partition("_blur")
    with torch.device("meta"):
        model = create_model(name, num_classes=10).eval()
    assert [p.shape for p in model.parameters()] == _base_shapes(arch)
    assert not any(k.endswith("filt") or k.startswith("input_") for k in model.state_dict())
    assert model.min_input_size == zoo.MIN_INPUT_SIZE[name]
    _check_min_side(model, zoo.MIN_INPUT_SIZE[name])
    if blur in ("2", "7"):  # zero padding: the blur adds no limit of its own
        with torch.device("meta"):
            model = create_model(name, num_classes=10, pad_mode="zero").eval()
        _check_min_side(model, zoo.MIN_INPUT_SIZE_PADDED[name])


def _randomise_(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(("running_mean", "running_var")):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + 0.25)
    return model


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_round_trip_through_a_weights_file(name, tmp_path):
    torch.manual_seed(0)
    model = _randomise_(create_model(name, num_classes=10)).eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    loaded = create_model(name, num_classes=10, weights=tmp_path / "w.pt")
    side = max(zoo.MIN_INPUT_SIZE[name], 32)
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not loaded.training


def test_normalisation_is_inside_and_survives_copies():
    model = _randomise_(create_model("resnet18_blur3", num_classes=10)).eval()
    raw = zoo.build_unnormalized("resnet18", 10, 3).eval()
    raw.load_state_dict(model.state_dict())
    assert model.state_dict().keys() == raw.state_dict().keys()
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in raw.named_parameters()]
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(zoo.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(zoo.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = raw((x - mean) / std)
        assert torch.allclose(model(x), expected, atol=1e-6)
        assert torch.equal(copy.deepcopy(model)(x), model(x))
        assert torch.equal(pickle.loads(pickle.dumps(model))(x), model(x))
        assert torch.allclose(copy.deepcopy(model).double()(x.double()).float(), expected, atol=1e-5)


def test_inputs_are_checked():
    model = create_model("alexnet_blur4", num_classes=10).eval()
    with pytest.raises(ShapeError, match="at least 95x95 pixels, got 94x94"):
        model(torch.rand(1, 3, 94, 94))
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        model(torch.rand(1, 1, 96, 96))
    with pytest.raises(ShapeError, match="float images"):
        model(torch.zeros(1, 3, 96, 96, dtype=torch.uint8))
    with pytest.raises(SpecError, match="pad_mode applies to anti-aliased models only"):
        create_model("resnet18", pad_mode="zero")
    with pytest.raises(SpecError, match="num_classes"):
        zoo.imagenet_model("resnet18", num_classes=0)
    assert create_model("resnet18_blur5", num_classes=3, pad_mode="zero").min_input_size == 3
    with pytest.raises(SpecError, match="already normalises"):
        zoo.add_input_normalization(model)


# ---------------------------------------------------------------- antialiased_cnns layouts, built by hand


def _binomial(size: int, channels: int) -> torch.Tensor:
    taps = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float32)
    kernel = taps[:, None] * taps[None, :]
    return (kernel / kernel.sum()).expand(channels, 1, size, size).clone()


class _Layout(dict):
    """key -> tensor of an antialiased_cnns state_dict; big tensors are stride-0 views (tiny files)."""

    def __init__(self, filter_size: int):
        super().__init__()
        self.filter_size = filter_size

    def value(self, shape, positive=False):
        v = torch.rand(1) + (0.5 if positive else -0.5)
        return v.expand(shape)

    def conv(self, key, cout, cin, k, bias=False):
        self[key + ".weight"] = self.value((cout, cin, k, k))
        if bias:
            self[key + ".bias"] = self.value((cout,))

    def bn(self, key, c):
        for part in ("weight", "bias", "running_mean"):
            self[f"{key}.{part}"] = self.value((c,))
        self[key + ".running_var"] = self.value((c,), positive=True)
        self[key + ".num_batches_tracked"] = torch.tensor(7)

    def linear(self, key, cout, cin):
        self[key + ".weight"] = self.value((cout, cin))
        self[key + ".bias"] = self.value((cout,))

    def blur(self, key, c):
        self[key + ".filt"] = _binomial(self.filter_size, c)


def _resnet_layout(blocks, bottleneck, f, classes=10):
    s = _Layout(f)
    s.conv("conv1", 64, 3, 7)
    s.bn("bn1", 64)
    s.blur("maxpool.1", 64)
    inplanes = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
        out = planes * (4 if bottleneck else 1)
        for b in range(n):
            p, stride = f"layer{li + 1}.{b}", (2 if li > 0 and b == 0 else 1)
            last = "conv3" if bottleneck else "conv2"
            if bottleneck:
                s.conv(p + ".conv1", planes, inplanes, 1)
                s.bn(p + ".bn1", planes)
                s.conv(p + ".conv2", planes, planes, 3)
                s.bn(p + ".bn2", planes)
            else:
                s.conv(p + ".conv1", planes, inplanes, 3)
                s.bn(p + ".bn1", planes)
            k = 1 if bottleneck else 3
            if stride > 1:  # blur after the ReLU, in front of the next conv
                s.blur(f"{p}.{last}.0", planes)
                s.conv(f"{p}.{last}.1", out, planes, k)
            else:
                s.conv(f"{p}.{last}", out, planes, k)
            s.bn(p + (".bn3" if bottleneck else ".bn2"), out)
            if b == 0 and (stride > 1 or inplanes != out):
                i = 0
                if stride > 1:
                    s.blur(p + ".downsample.0", inplanes)
                    i = 1
                s.conv(f"{p}.downsample.{i}", out, inplanes, 1)
                s.bn(f"{p}.downsample.{i + 1}", out)
            inplanes = out
    s.linear("fc", classes, inplanes)
    return s


def _vgg16_bn_layout(f, classes=10):
    s, i, cin = _Layout(f), 0, 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":  # MaxPool(2, 1) then BlurPool
            s.blur(f"features.{i + 1}", cin)
            i += 2
        else:  # conv, bn, relu
            s.conv(f"features.{i}", v, cin, 3, bias=True)
            s.bn(f"features.{i + 1}", v)
            cin, i = v, i + 3
    s.linear("classifier.0", 4096, 512 * 7 * 7)
    s.linear("classifier.3", 4096, 4096)
    s.linear("classifier.6", classes, 4096)
    return s


def _alexnet_layout(f, classes=10):
    s = _Layout(f)
    s.conv("features.0", 64, 3, 11, bias=True)  # stride 2, ReLU, blur
    s.blur("features.2", 64)
    s.blur("features.4", 64)  # after MaxPool(3, 1)
    s.conv("features.5", 192, 64, 5, bias=True)
    s.blur("features.8", 192)
    s.conv("features.9", 384, 192, 3, bias=True)
    s.conv("features.11", 256, 384, 3, bias=True)
    s.conv("features.13", 256, 256, 3, bias=True)
    s.blur("features.16", 256)
    s.linear("classifier.1", 4096, 256 * 6 * 6)
    s.linear("classifier.4", 4096, 4096)
    s.linear("classifier.6", classes, 4096)
    return s


def _densenet121_layout(f, classes=10):
    s, c = _Layout(f), 64
    s.conv("features.conv0", 64, 3, 7)
    s.bn("features.norm0", 64)
    s.blur("features.pool0", 64)  # features.max0 has no state
    for i, n in enumerate((6, 12, 24, 16)):
        for j in range(n):
            p = f"features.denseblock{i + 1}.denselayer{j + 1}"
            s.bn(p + ".norm1", c)
            s.conv(p + ".conv1", 128, c, 1)
            s.bn(p + ".norm2", 128)
            s.conv(p + ".conv2", 32, 128, 3)
            c += 32
        if i < 3:
            p = f"features.transition{i + 1}"
            s.bn(p + ".norm", c)
            s.conv(p + ".conv", c // 2, c, 1)
            s.blur(p + ".pool", c // 2)
            c //= 2
    s.bn("features.norm5", c)
    s.linear("classifier", classes, c)
    return s


def _mobilenet_v2_layout(f, classes=10):
    s, cin, idx = _Layout(f), 32, 1
    s.conv("features.0.0", 32, 3, 3)
    s.bn("features.0.1", 32)
    for t, c, n, stride in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                            (6, 160, 3, 2), (6, 320, 1, 1)):
        for b in range(n):
            p, hidden, j = f"features.{idx}.conv", cin * t, 0
            if t != 1:
                s.conv(f"{p}.0.0", hidden, cin, 1)
                s.bn(f"{p}.0.1", hidden)
                j = 1
            s[f"{p}.{j}.0.weight"] = s.value((hidden, 1, 3, 3))  # depthwise
            s.bn(f"{p}.{j}.1", hidden)
            j += 1
            if stride > 1 and b == 0:
                s.blur(f"{p}.{j}", hidden)
                j += 1
            s.conv(f"{p}.{j}", c, hidden, 1)
            s.bn(f"{p}.{j + 1}", c)
            cin, idx = c, idx + 1
    s.conv(f"features.{idx}.0", 1280, 320, 1)
    s.bn(f"features.{idx}.1", 1280)
    s.linear("classifier.0", classes, 1280)
    return s


LAYOUTS = {
    "resnet18_blur4": lambda: _resnet_layout((2, 2, 2, 2), False, 4),
    "resnet50_blur3": lambda: _resnet_layout((3, 4, 6, 3), True, 3),
    "vgg16_bn_blur4": lambda: _vgg16_bn_layout(4),
    "alexnet_blur5": lambda: _alexnet_layout(5),
    "densenet121_blur2": lambda: _densenet121_layout(2),
    "mobilenet_v2_blur7": lambda: _mobilenet_v2_layout(7),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_antialiased_cnns_layout_loads(name, tmp_path):
    state = LAYOUTS[name]()
    torch.save(dict(state), tmp_path / "aa.pt")
    model = create_model(name, num_classes=10, weights=tmp_path / "aa.pt")
    loaded = model.state_dict()
    assert loaded.keys() == {k for k in state if not k.endswith(".filt")}
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if k in loaded)

    filt = sorted(k for k in state if k.endswith(".filt"))[-1]
    state[filt] = state[filt].flip(-1) * 0.5
    torch.save(dict(state), tmp_path / "bad.pt")
    with pytest.raises(ModelError, match=f"{filt}: the file's blur filter differs"):
        create_model(name, num_classes=10, weights=tmp_path / "bad.pt")


def test_filter_size_mismatch_and_legacy_densenet_keys(tmp_path):
    torch.save({"state_dict": dict(_resnet_layout((2, 2, 2, 2), False, 4))}, tmp_path / "r4.pt")
    with pytest.raises(ModelError, match="maxpool.1.filt: the file holds a blur filter of shape"):
        create_model("resnet18_blur3", num_classes=10, weights=tmp_path / "r4.pt")
    # The package's DenseNet checkpoints: old "norm.1" keys, no num_batches_tracked.
    state = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
             for k, v in _densenet121_layout(2).items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": state}, tmp_path / "d.pt")
    model = create_model("densenet121_blur2", num_classes=10, weights=tmp_path / "d.pt")
    key = "features.denseblock1.denselayer1.norm1.weight"
    assert torch.equal(model.state_dict()[key], state[key.replace(".norm1.", ".norm.1.")])
