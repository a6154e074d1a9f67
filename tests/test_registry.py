"""Every registered model: builds, maps images in [0, 1] to logits, and round-trips its state_dict.

Parametrised over ``list_models()``, so a model is tested by being registered.
"""

from __future__ import annotations

import pytest
import torch

from shiftattack.cli import main
from shiftattack.models import create_model, list_models, load_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", list_models())
def test_registered_model_round_trips_its_weights(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    side = max(32, getattr(model, "min_input_size", 1))  # AlexNet, larger blur filters need more
    x = torch.rand(1, 3, side, side)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    if sum(p.numel() for p in model.parameters()) > 100_000_000:
        return  # VGG16 (138 M parameters, a 0.5 GB file): its layout is tested by key in test_zoo.py
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    del model
    again = create_model(name, num_classes=10, weights=path)
    assert not again.training
    with torch.no_grad():
        assert torch.allclose(again(x), out, atol=1e-5, rtol=1e-4)


def test_names_follow_the_naming_scheme():
    names = set(list_models())
    for arch in ("resnet18", "resnet34", "resnet50", "alexnet", "vgg16_bn", "densenet121", "mobilenet_v2"):
        assert arch in names and f"{arch}_blur4" in names
    for arch in ("resnet18", "resnet34", "alexnet", "cifar_convnet"):
        assert f"{arch}_cmod" in names and f"{arch}_blur3_cmod" in names
    assert {"resnet18_aps", "cifar_convnet_aps"} <= names
    assert list_models("cifar_convnet_blur?") == [f"cifar_convnet_blur{f}" for f in (2, 3, 4, 5, 7)]


@pytest.mark.parametrize(
    "name", ["cifar_convnet", "cifar_convnet_blur3", "cifar_convnet_cmod", "resnet18_aps"])
def test_names_work_as_model_specs(name, tmp_path):
    model = load_model(name)
    assert not model.training
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    x = (torch.rand(4, 32, 32, 3) * 255).to(torch.uint8).numpy()
    import numpy as np

    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 3]))
    out = tmp_path / "out"
    assert main(["attack", "--model", name, "--weights", str(weights), "--data", str(tmp_path / "d.npz"),
                 "--shifts", "grid:1", "--mode", "zero", "--out", str(out), "--quiet"]) == 0
    assert (out / "results.json").is_file()


def test_a_registered_name_takes_factory_arguments_in_parentheses():
    from shiftattack.models import create_model, is_model
    from shiftattack.models._registry import parse_model_name

    assert parse_model_name("cifar_convnet(width=16)") == ("cifar_convnet", {"width": 16})
    assert parse_model_name("cifar_convnet") == ("cifar_convnet", {})
    narrow = create_model("cifar_convnet_blur3(width=16)", num_classes=8)
    assert narrow.fc.in_features == 8 * 16 and narrow.fc.out_features == 8
    assert is_model("cifar_convnet(width=16)") and not is_model("no_such_model(width=16)")


@pytest.mark.parametrize("spec, message", [
    ("cifar_convnet(wdth=16)", "refused these arguments"),
    ("cifar_convnet(pool_kernel=0)", "pool_kernel must be an integer in 1..7"),
    ("cifar_convnet(16)", "expected name\\(key=value"),
    ("cifar_convnet(width=sixteen)", "expected name\\(key=value"),
    ("cifar_convnet(width=8)(width=16)", "one pair of parentheses"),
])
def test_bad_factory_arguments_are_refused_with_the_expected_form(spec, message):
    from shiftattack.errors import SpecError
    from shiftattack.models import create_model

    with pytest.raises(SpecError, match=message):
        create_model(spec)


def test_weights_of_a_narrow_model_load_through_the_same_spec(tmp_path):
    import torch

    from shiftattack.models import create_model, load_model

    torch.save(create_model("cifar_convnet(width=8)", num_classes=8).state_dict(), tmp_path / "w.pt")
    model = load_model("cifar_convnet(width=8)", tmp_path / "w.pt")
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 8)
    with pytest.raises(Exception, match="w.pt"):
        load_model("cifar_convnet", tmp_path / "w.pt")  # width 32 does not fit width-8 weights


def test_malformed_arguments_of_a_registered_name_get_the_specific_error_on_the_command_line(tmp_path, capsys):
    assert main(["attack", "--model", "cifar_convnet(width=)", "--data", "synthetic:test", "--limit", "2",
                 "--shifts", "grid:1", "--mode", "zero", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "invalid model arguments in 'cifar_convnet(width=)'" in capsys.readouterr().err
