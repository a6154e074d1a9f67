"""Training loop, resume and the ``shiftattack train`` command on small synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from shiftattack.cli import main
from shiftattack.models import create_model
from shiftattack.models.train import augment, evaluate_accuracy, train_classifier

pytestmark = pytest.mark.usefixtures("one_thread")


def stripes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: horizontal stripes, class 1: vertical stripes, random phase and colour (uint8, 16x16)."""
    g = np.random.default_rng(seed)
    y = g.integers(0, 2, n)
    phase = g.integers(0, 4, n)
    grid = np.arange(16)
    x = np.zeros((n, 3, 16, 16), np.uint8)
    for i in range(n):
        line = ((grid + phase[i]) // 2) % 2
        img = np.broadcast_to(line[:, None] if y[i] == 0 else line[None, :], (16, 16))
        x[i] = (img[None] * g.integers(120, 255, 3)[:, None, None]).astype(np.uint8)
    return torch.from_numpy(x), torch.from_numpy(y)


def test_augment_is_a_flip_and_a_window_of_the_padded_image():
    x = torch.rand(6, 3, 8, 8)
    out = augment(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2,) * 4)
    for i in range(6):
        ok = any(torch.equal(out[i], v[:, t:t + 8, s:s + 8]) for v in (padded[i], padded[i].flip(-1))
                 for t in range(5) for s in range(5))
        assert ok


def test_training_learns_a_separable_task_from_uint8():
    x, y = stripes(256)
    model = create_model("small_cnn", num_classes=2, width=8)
    torch.manual_seed(0)
    train_classifier(model, x, y, epochs=3, batch_size=32, lr=0.05, augment_pad=0)
    xt, yt = stripes(128, seed=1)
    assert evaluate_accuracy(model, xt, yt) > 0.9


def test_resume_continues_exactly():
    x, y = stripes(96)
    kw = dict(epochs=2, batch_size=32, lr=0.05, augment_pad=2, seed=3)
    torch.manual_seed(0)
    straight = create_model("small_cnn", num_classes=2, width=4)
    initial = {k: v.clone() for k, v in straight.state_dict().items()}
    after_first: list = []

    def keep_first(info):
        if info["epoch"] == 1:
            after_first.append(({k: v.clone() for k, v in straight.state_dict().items()}, info["state"]()))

    train_classifier(straight, x, y, on_epoch=keep_first, **kw)
    weights, state = after_first[0]
    assert any(not torch.equal(weights[k], initial[k]) for k in weights)
    resumed = create_model("small_cnn", num_classes=2, width=4)
    resumed.load_state_dict(weights)
    train_classifier(resumed, x, y, resume=state, **kw)
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def _npz(path, n, seed):
    x, y = stripes(n, seed)
    np.savez(path, x=x.permute(0, 2, 3, 1).numpy(), y=y.numpy())
    return path


def test_train_command_writes_weights_log_and_checkpoint(tmp_path, capsys):
    train, test = _npz(tmp_path / "train.npz", 128, 0), _npz(tmp_path / "test.npz", 64, 1)
    out = tmp_path / "run"
    common = ["train", "--model", "small_cnn", "--data", str(train), "--test-data", str(test),
              "--epochs", "2", "--batch-size", "32", "--lr", "0.05", "--quiet", "--precision", "fp32"]
    args = [*common, "--out", str(out)]
    assert main(args) == 0
    state = torch.load(out / "model.pt", weights_only=True)
    model = create_model("small_cnn", num_classes=2, weights=out / "model.pt")
    assert set(state) == set(model.state_dict())
    log = json.loads((out / "train_log.json").read_text())
    assert log["finished"] and len(log["epochs"]) == 2 and 0 <= log["test_accuracy"] <= 1
    assert log["filter_smoothness"]["mean"] > 0
    assert log["config"]["model"] == "small_cnn" and log["data"]["train"]["n_images"] == 128
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["train_state"]["epoch"] == 2
    # the folder is not silently overwritten, and --resume needs a checkpoint
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_train_command_resume_after_an_interruption_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    import shiftattack.jobs.train as training

    train = _npz(tmp_path / "train.npz", 96, 0)
    common = ["train", "--model", "small_cnn", "--data", str(train), "--batch-size", "32", "--lr", "0.05",
              "--epochs", "3", "--quiet", "--precision", "fp32"]
    assert main([*common, "--out", str(tmp_path / "full")]) == 0
    real_save = training.write_torch
    calls = []

    def save_then_die(path, obj):  # the process dies right after the first epoch's checkpoint
        real_save(path, obj)
        calls.append(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "write_torch", save_then_die)
    assert main([*common, "--out", str(tmp_path / "part")]) == 130
    assert not (tmp_path / "part" / "model.pt").exists()
    monkeypatch.setattr(training, "write_torch", real_save)
    assert main([*common, "--out", str(tmp_path / "part"), "--resume"]) == 0
    full = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    part = torch.load(tmp_path / "part" / "model.pt", weights_only=True)
    assert all(torch.equal(full[k], part[k]) for k in full)
    log = json.loads((tmp_path / "part" / "train_log.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == [1, 2, 3]
