"""timm: and hf: model specs: same logits as the library's own model on the same normalised input,
end to end through the command line, and clear errors for missing extras and bad specs."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from _models import perturbed

from shiftattack.cli import main
from shiftattack.errors import SpecError
from shiftattack.models import load_model, weights_sha256
from shiftattack.models.weights import file_sha256

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def timm_file(tmp_path_factory):
    """A timm resnet18 state_dict with 10 classes, and the timm model that holds it."""
    ref = perturbed(timm.create_model("resnet18", num_classes=10))
    path = tmp_path_factory.mktemp("timm") / "resnet18.pt"
    torch.save(ref.state_dict(), path)
    return path, ref


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A tiny transformers ResNet classifier and its image processor saved with save_pretrained."""
    cfg = transformers.ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                    num_labels=10, layer_type="basic")
    torch.manual_seed(0)
    model = perturbed(transformers.ResNetForImageClassification(cfg))
    processor = transformers.ViTImageProcessor(image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3],
                                               size={"height": 32, "width": 32})
    folder = tmp_path_factory.mktemp("hf") / "tiny"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, model, processor


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), y=np.array([0, 9, 1, 8, 2, 7]))
    return path


def _images(n: int = 3, size: int = 32) -> tuple[np.ndarray, torch.Tensor]:
    pixels = np.random.default_rng(1).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return pixels, torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255


def test_timm_spec_gives_timm_logits_on_imagenet_normalised_input(timm_file):
    path, ref = timm_file
    ours = load_model("timm:resnet18", weights=path)
    _, x = _images(size=64)
    with torch.no_grad():
        expected = ref((x - IMAGENET_MEAN) / IMAGENET_STD)
        torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)
    assert list(ours.state_dict()) == list(ref.state_dict())  # timm's keys: its files load as they are
    assert ours.default_input_size == (224, 224)


def test_timm_mean_std_replace_the_pretrained_cfg_normalisation(timm_file):
    path, ref = timm_file
    ours = load_model("timm:resnet18", weights=path, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    _, x = _images(size=64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref((x - 0.5) / 0.25), rtol=1e-5, atol=1e-5)


def test_hf_spec_gives_the_processor_and_model_logits(hf_folder):
    folder, model, processor = hf_folder
    ours = load_model(f"hf:{folder}")
    pixels, x = _images()
    # the library's own pipeline: its processor on uint8 pixels (no resize), then the model
    values = processor(images=list(pixels), do_resize=False, return_tensors="pt").pixel_values
    with torch.no_grad():
        torch.testing.assert_close(ours(x), model(pixel_values=values).logits, rtol=1e-5, atol=1e-5)


def test_hf_weights_file_loads_into_the_transformers_model(hf_folder, tmp_path):
    folder, model, processor = hf_folder
    other = perturbed(transformers.ResNetForImageClassification(model.config), seed=5)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    ours = load_model(f"hf:{folder}", weights=tmp_path / "other.pt")
    pixels, x = _images()
    values = processor(images=list(pixels), do_resize=False, return_tensors="pt").pixel_values
    with torch.no_grad():
        torch.testing.assert_close(ours(x), other(pixel_values=values).logits, rtol=1e-5, atol=1e-5)
    assert weights_sha256(f"hf:{folder}", tmp_path / "other.pt") == file_sha256(tmp_path / "other.pt")
    assert weights_sha256(f"hf:{folder}") == file_sha256(folder / "model.safetensors")


def test_attack_cli_runs_a_timm_model_end_to_end(timm_file, npz, tmp_path):
    path, ref = timm_file
    out = tmp_path / "run"
    code = main(["attack", "--model", "timm:resnet18", "--weights", str(path), "--data", str(npz),
                 "--shifts", "grid:1", "--mode", "circular", "--out", str(out), "--quiet"])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["model"]["weights_sha256"] == file_sha256(path)
    x = torch.from_numpy(np.load(npz)["x"]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        clean = ref((x - IMAGENET_MEAN) / IMAGENET_STD).argmax(1)
    labels = torch.from_numpy(np.load(npz)["y"])
    assert doc["clean_accuracy"] == pytest.approx(float((clean == labels).float().mean()))


def test_attack_cli_runs_an_hf_folder_end_to_end_with_antialias(hf_folder, npz, tmp_path):
    folder, _, _ = hf_folder
    out = tmp_path / "run"
    code = main(["attack", "--model", f"hf:{folder}", "--antialias", "3", "--data", str(npz),
                 "--shifts", "grid:1", "--mode", "zero", "--out", str(out), "--quiet"])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["model"]["antialias"] == 3
    assert doc["model"]["weights_sha256"] == file_sha256(folder / "model.safetensors")


def test_missing_extra_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(SpecError, match=r"pip install 'shiftattack\[timm\]'"):
        load_model("timm:resnet18")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(SpecError, match=r"pip install 'shiftattack\[hf\]'"):
        load_model("hf:some/where")


def test_bad_library_specs_get_clear_errors(tmp_path, capsys):
    with pytest.raises(SpecError, match="timm knows no model 'resnet_nonexistent'"):
        load_model("timm:resnet_nonexistent")
    with pytest.raises(SpecError, match="not a local folder.*--pretrained"):
        load_model("hf:org/not-here")
    with pytest.raises(SpecError, match="give a name after timm:"):
        load_model("timm:")
    with pytest.raises(SpecError, match="preprocessor_config.json"):
        (tmp_path / "bare").mkdir()
        transformers.ResNetForImageClassification(transformers.ResNetConfig(
            embedding_size=8, hidden_sizes=[8], depths=[1], num_labels=2)).save_pretrained(tmp_path / "bare")
        load_model(f"hf:{tmp_path / 'bare'}")
    code = main(["attack", "--model", "timm:resnet18", "--weights", str(tmp_path / "missing.pt"), "--data",
                 "x.npz", "--shifts", "grid:1", "--mode", "zero", "--out", str(tmp_path / "o")])
    assert code == 2 and "error:" in capsys.readouterr().err


def test_antialias_flag_rejects_filter_sizes_outside_1_to_7(capsys):
    with pytest.raises(SystemExit) as info:
        main(["attack", "--model", "small_cnn", "--antialias", "9", "--data", "x", "--shifts", "grid:1",
              "--mode", "zero", "--out", "o"])
    assert info.value.code == 2 and "filter size 1 to 7" in capsys.readouterr().err


def test_antialias_loads_weights_saved_from_the_converted_layout(timm_file, tmp_path):
    path, ref = timm_file
    converted = load_model("timm:resnet18", weights=path, antialias=3)
    saved = tmp_path / "aa.pt"
    torch.save(perturbed(converted, seed=3).state_dict(), saved)  # e.g. after fine-tuning
    again = load_model("timm:resnet18", weights=saved, antialias=3)
    _, x = _images(size=64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), converted(x))


def test_train_fine_tunes_a_timm_model_with_a_new_classifier(npz, tmp_path):
    out = tmp_path / "train"
    code = main(["train", "--model", "timm:resnet18", "--antialias", "3", "--data", str(npz), "--epochs", "1",
                 "--batch-size", "6", "--out", str(out), "--quiet"])
    assert code == 0
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["fc.weight"].shape[0] == 10
    assert any(k.startswith("layer2.0.aa") for k in state) is False  # BlurPool saves no buffers
    model = load_model("timm:resnet18", weights=out / "model.pt", antialias=3)
    assert sum(type(m).__name__ == "BlurPool2d" for m in model.modules()) == 4
