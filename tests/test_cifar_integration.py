"""Integration on 200 real CIFAR-10 test images (needs SHIFTATTACK_DATA_DIR, set by .ci/run).

A SmallCNN is trained briefly on real training images, saved as a state_dict and
attacked through the command line with ``file.py:factory`` and ``--weights``; the
worst-case accuracy must equal an independent brute force exactly.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from _brute import np_shift

from shiftattack.cli import main
from shiftattack.data import load_dataset
from shiftattack.models import SmallCNN, evaluate_accuracy, train_classifier

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def trained(cifar_zip, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cifar")
    train = load_dataset(f"{cifar_zip}:train", limit=10000, progress=False)
    torch.manual_seed(0)
    model = SmallCNN(width=16)
    train_classifier(model, train.float_images(), train.labels, epochs=2, lr=0.1, seed=0)
    weights = tmp / "small.pt"
    torch.save(model.state_dict(), weights)
    (tmp / "net.py").write_text(textwrap.dedent(
        """
        from shiftattack.models import SmallCNN

        def factory():
            return SmallCNN(width=16)
        """))
    test = load_dataset(f"{cifar_zip}:test", limit=200, progress=False)
    npz = tmp / "x.npz"  # the acceptance command's input: x uint8 (N, H, W, 3), y (N,)
    np.savez(npz, x=test.images.permute(0, 2, 3, 1).numpy(), y=test.labels.numpy())
    return {"model": model, "weights": weights, "file": tmp / "net.py", "test": test, "tmp": tmp,
            "zip": cifar_zip, "npz": npz}


def _brute_robust(model, images: torch.Tensor, labels: torch.Tensor, k: int, mode: str) -> list[bool]:
    """Per image, all (2k+1)^2 NumPy-shifted views in one batch; robust = all correct."""
    out = []
    with torch.no_grad():
        for img, label in zip(images.numpy(), labels.tolist(), strict=True):
            views = np.stack([np_shift(img, dx, dy, mode) for dy in range(-k, k + 1)
                              for dx in range(-k, k + 1)])
            out.append(bool((model(torch.from_numpy(views)).argmax(1) == label).all()))
    return out


@pytest.mark.parametrize("mode", ["zero", "circular", "reflect"])
def test_cli_worst_case_accuracy_equals_brute_force_on_cifar(trained, mode):
    test = trained["test"]
    assert len(test) == 200 and test.images.shape[1:] == (3, 32, 32)
    assert evaluate_accuracy(trained["model"], test.float_images(), test.labels) > 0.3  # really trained
    out = trained["tmp"] / f"attack-{mode}"
    assert main(["attack", "--model", f"{trained['file']}:factory", "--weights", str(trained["weights"]),
                 "--data", str(trained["npz"]), "--shifts", "grid:3", "--mode", mode,
                 "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "results.json").read_text())
    robust = _brute_robust(trained["model"], test.float_images(), test.labels, 3, mode)
    assert [r["robust"] for r in doc["images"]] == robust
    assert doc["worst_case_accuracy"] == sum(robust) / 200
    assert doc["worst_case_accuracy"] < doc["clean_accuracy"]


def test_zip_spec_gives_the_same_results_as_the_npz(trained):
    runs = {}
    for name, data in (("zip", [f"{trained['zip']}:test", "--limit", "200"]), ("npz", [str(trained["npz"])])):
        out = trained["tmp"] / f"same-{name}"
        assert main(["attack", "--model", f"{trained['file']}:factory", "--weights", str(trained["weights"]),
                     "--data", *data, "--shifts", "grid:2", "--mode", "zero", "--device", "cpu",
                     "--out", str(out), "--quiet"]) == 0
        runs[name] = json.loads((out / "results.json").read_text())
    for a, b in zip(runs["zip"]["images"], runs["npz"]["images"], strict=True):
        a, b = dict(a), dict(b)
        a.pop("index"), b.pop("index")  # the zip records dataset indices, the npz its own rows
        assert a == b
    assert [r["index"] for r in runs["zip"]["images"]] == trained["test"].indices.tolist()
