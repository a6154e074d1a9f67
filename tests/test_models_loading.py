"""Model specs, safe weights loading and the Normalize wrapper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shiftattack.errors import ModelError, SpecError
from shiftattack.models import Normalize, SmallCNN, create_model, list_models, load_model, load_weights


def test_registry_lists_and_builds():
    assert "small_cnn" in list_models() and list_models("small*") == ["small_cnn"]
    assert isinstance(create_model("small_cnn", num_classes=3), SmallCNN)
    with pytest.raises(SpecError, match="unknown model"):
        create_model("nope")


def test_torchvision_spec_with_weights_and_normalisation(tmp_path):
    ref = load_model("torchvision:resnet18")
    torch.save(ref.state_dict(), tmp_path / "r18.pt")
    model = load_model("torchvision:resnet18", tmp_path / "r18.pt", mean=[0.485, 0.456, 0.406],
                       std=[0.229, 0.224, 0.225])
    assert isinstance(model, Normalize) and not model.training
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = ref.eval()((x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                              / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        assert torch.allclose(model(x), expected, atol=1e-5)
    with pytest.raises(SpecError, match="unknown torchvision model"):
        load_model("torchvision:not_a_model")


def test_module_spec_and_file_spec(tmp_path):
    assert isinstance(load_model("shiftattack.models:SmallCNN"), SmallCNN)
    (tmp_path / "f.py").write_text("import torch\ndef make():\n    return torch.nn.Linear(2, 2)\n"
                                   "def not_module():\n    return 3\n")
    assert isinstance(load_model(f"{tmp_path / 'f.py'}:make"), nn.Linear)
    with pytest.raises(ModelError, match="expected a torch.nn.Module"):
        load_model(f"{tmp_path / 'f.py'}:not_module")
    with pytest.raises(SpecError, match="invalid model spec"):
        load_model("just-a-name")


def test_weights_mismatch_lists_keys_and_shapes(tmp_path):
    torch.save(SmallCNN(width=8).state_dict(), tmp_path / "w8.pt")
    with pytest.raises(ModelError) as exc:
        load_weights(SmallCNN(width=16), tmp_path / "w8.pt")
    assert "shape mismatches" in str(exc.value) and "features.0.weight" in str(exc.value)
    state = SmallCNN(width=8).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["head.bias"]
    torch.save({"state_dict": state}, tmp_path / "ckpt.pt")
    with pytest.raises(ModelError) as exc:
        load_weights(SmallCNN(width=8), tmp_path / "ckpt.pt")
    assert "missing keys: head.bias" in str(exc.value) and "unexpected keys: extra.weight" in str(exc.value)


def test_pickled_model_is_refused(tmp_path):
    torch.save(SmallCNN(width=8), tmp_path / "whole.pt")  # a pickled module, not a state_dict
    with pytest.raises(ModelError, match="weights_only") as exc:
        load_weights(SmallCNN(width=8), tmp_path / "whole.pt")
    assert "--trust-pickle" in str(exc.value) and "run code" in str(exc.value)


def test_pickled_model_loads_only_when_trusted(tmp_path):
    torch.manual_seed(4)
    whole = SmallCNN(width=8)
    torch.save(whole, tmp_path / "whole.pt")
    loaded = load_weights(SmallCNN(width=8), tmp_path / "whole.pt", trust_pickle=True)
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), loaded.state_dict().values(),
                                                  strict=True))
    (tmp_path / "text.pt").write_bytes(b"this is not a pickle")  # no pickle at all: said so, not unpickled
    with pytest.raises(ModelError, match="not a PyTorch checkpoint .* and not safetensors"):
        load_weights(SmallCNN(width=8), tmp_path / "text.pt", trust_pickle=True)
    (tmp_path / "broken.pt").write_bytes(b"\x80\x04this pickle is cut short")  # a damaged pickle
    with pytest.raises(ModelError, match="cannot unpickle"):
        load_weights(SmallCNN(width=8), tmp_path / "broken.pt", trust_pickle=True)


def test_dataparallel_prefix_is_stripped(tmp_path):
    net = SmallCNN(width=8)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "dp.pt")
    loaded = load_weights(SmallCNN(width=8), tmp_path / "dp.pt")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values(),
                                                  strict=True))


def test_registry_model_trained_on_another_class_count_loads(tmp_path):
    """A registry model saved with an 8-class head is rebuilt with 8 classes; other mismatches still fail."""
    net = create_model("small_cnn", num_classes=8, width=32).eval()
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)
    loaded = load_model("small_cnn", path)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), net(x))
    narrow = create_model("small_cnn", num_classes=10, width=16)
    torch.save(narrow.state_dict(), path)
    with pytest.raises(ModelError, match="shape mismatches"):
        load_model("small_cnn", path)
