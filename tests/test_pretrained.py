"""--pretrained: the libraries' published weights from files placed in temporary caches (TORCH_HOME,
HF_HOME), with no network; and, without them, a fast exit 2 naming the file and the cache folder.

The download path itself needs the network and is not exercised here. Every test forbids sockets,
so a lookup that tried the network would fail instead of passing by luck.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from shiftattack.errors import ModelError
from shiftattack.models import load_model, weights_sha256
from shiftattack.models.weights import file_sha256

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("SHIFTATTACK_OFFLINE", "1")


def _hf_cache_file(root: Path, repo: str, filename: str) -> Path:
    """Where the Hugging Face hub keeps ``filename`` of ``repo`` (its documented cache layout)."""
    base = root / "hub" / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(REVISION)
    path = base / "snapshots" / REVISION / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _random_state(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    def draw(key: str, value: torch.Tensor) -> torch.Tensor:
        if not value.is_floating_point():
            return value.clone()
        if key.endswith("running_var"):
            return 0.5 + torch.rand(value.shape, generator=gen)
        return value + 0.05 * torch.randn(value.shape, generator=gen)

    return {k: draw(k, v) for k, v in model.state_dict().items()}


def test_torchvision_pretrained_loads_the_cached_file_and_its_normalisation(tmp_path):
    import torchvision

    weights = torchvision.models.ResNet18_Weights.DEFAULT
    path = tmp_path / "torch" / "hub" / "checkpoints" / Path(weights.url).name
    path.parent.mkdir(parents=True)
    state = _random_state(torchvision.models.resnet18(), seed=0)
    torch.save(state, path)
    model = load_model("torchvision:resnet18", pretrained=True)
    for key, value in state.items():
        torch.testing.assert_close(model.state_dict()[key], value)
    ref = torchvision.models.resnet18().eval()
    ref.load_state_dict(state)
    x = torch.rand(2, 3, 40, 40)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref((x - mean) / std))
    assert weights_sha256("torchvision:resnet18", pretrained=True) == file_sha256(path)
    zoo = load_model("resnet18", pretrained=True)  # the zoo's baseline takes torchvision's weights too
    with torch.no_grad():
        torch.testing.assert_close(zoo(x), ref((x - mean) / std))


def test_timm_pretrained_loads_from_the_hf_cache(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    state = _random_state(timm.create_model("resnet18"), seed=1)
    path = _hf_cache_file(tmp_path / "hf", "timm/resnet18.a1_in1k", "model.safetensors")
    save_file(state, str(path))
    model = load_model("timm:resnet18", pretrained=True)
    for key, value in state.items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert weights_sha256("timm:resnet18", pretrained=True) == file_sha256(path)


def test_hf_pretrained_repo_loads_from_the_hf_cache(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    torch.manual_seed(0)
    ref = transformers.ResNetForImageClassification(cfg).eval()
    saved = tmp_path / "saved"
    ref.save_pretrained(saved)
    transformers.ViTImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(saved)
    for file in saved.iterdir():
        _hf_cache_file(tmp_path / "hf", "someorg/tiny-resnet", file.name).write_bytes(file.read_bytes())
    model = load_model("hf:someorg/tiny-resnet", pretrained=True)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(pixel_values=(x - 0.5) / 0.5).logits)


@pytest.mark.parametrize(("spec", "names"), [
    ("torchvision:resnet18", ["resnet18-f37072fd.pth", "hub/checkpoints"]),
    ("timm:resnet18", ["timm/resnet18.a1_in1k", "model.safetensors", "hf/hub"]),
    ("hf:someorg/absent-model", ["someorg/absent-model", "hf/hub"]),
])
def test_uncached_pretrained_offline_names_what_to_place_and_where(spec, names):
    if spec.startswith("timm:"):
        pytest.importorskip("timm")
    if spec.startswith("hf:"):
        pytest.importorskip("transformers")
    with pytest.raises(ModelError) as info:
        load_model(spec, pretrained=True)
    message = str(info.value)
    assert "not in the cache" in message
    for name in names:
        assert name in message


def test_pretrained_cli_without_a_cache_exits_2_within_seconds(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "TORCH_HOME": str(tmp_path / "torch"), "HF_HOME": str(tmp_path / "hf"),
           "SHIFTATTACK_OFFLINE": "1", "HOME": str(tmp_path)}
    import numpy as np

    np.savez(tmp_path / "tiny.npz", x=np.zeros((2, 32, 32, 3), np.uint8), y=np.zeros(2, np.int64))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "shiftattack", "attack", "--model", "torchvision:resnet18",
                           "--pretrained", "--data", str(tmp_path / "tiny.npz"), "--shifts", "grid:1",
                           "--mode", "zero", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120)
    seconds = time.perf_counter() - start
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error:") and "Traceback" not in done.stderr
    assert "resnet18-f37072fd.pth" in done.stderr and "not in the cache" in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert seconds < 30  # interpreter start-up and imports included; no network wait


def test_pretrained_and_weights_together_are_refused(tmp_path):
    from shiftattack.errors import SpecError

    with pytest.raises(SpecError, match="not both"):
        load_model("torchvision:resnet18", weights=tmp_path / "w.pt", pretrained=True)
    with pytest.raises(SpecError, match="has no published weights"):
        load_model("small_cnn", pretrained=True)
