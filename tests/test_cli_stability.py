"""``shiftattack stability``: writes stability.json (both protocols) that the report reads; bad input refused."""

from __future__ import annotations

import json

import pytest
import torch

from shiftattack.cli import main
from shiftattack.data import load_dataset
from shiftattack.jobs.stability import stability_document
from shiftattack.models import create_model, load_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "w.pt"
    torch.save(create_model("small_cnn", num_classes=8, width=8).state_dict(), path)
    return path


def test_shift_protocol_document_equals_the_library_and_feeds_the_report(weights, tmp_path, capsys):
    out = tmp_path / "stab"
    assert (
        main(
            [
                "stability",
                "--model",
                "small_cnn(width=8)",
                "--weights",
                str(weights),
                "--data",
                "synthetic:test",
                "--limit",
                "16",
                "--repeats",
                "2",
                "--pad",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    doc = json.loads((out / "stability.json").read_text())
    d = load_dataset("synthetic:test", limit=16, progress=False)
    expected = stability_document(
        load_model("small_cnn(width=8)", weights), d.float_images(), d.labels, max_shift=4, n_repeats=2, pad=3
    )
    assert (
        doc["consistency"] == expected["consistency"]
        and doc["flip_rate"]["rates"] == expected["flip_rate"]["rates"]
    )
    assert "consistency: zero" in capsys.readouterr().out
    assert main(["report", str(out), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "figures" / "flip_rate_vs_distance.png").is_file()


def test_crop_protocol_and_bad_input(weights, tmp_path, capsys):
    out = tmp_path / "crop"
    assert (
        main(
            [
                "stability",
                "--model",
                "small_cnn(width=8)",
                "--weights",
                str(weights),
                "--data",
                "synthetic:test",
                "--limit",
                "8",
                "--crop-size",
                "24",
                "--flip-distance",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    doc = json.loads((out / "stability.json").read_text())
    assert list(doc["consistency"]) == ["crop"] and doc["diagonal"]["offsets"][0] == 4
    assert (
        main(
            [
                "stability",
                "--model",
                "small_cnn",
                "--data",
                "synthetic:test",
                "--modes",
                "zero,sideways",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )
    assert "--modes must be" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert (
        main(
            [
                "stability",
                "--model",
                "small_cnn(width=8)",
                "--weights",
                str(weights),
                "--data",
                "synthetic:test",
                "--limit",
                "8",
                "--crop-size",
                "24",
                "--out",
                str(tmp_path / "bad2"),
            ]
        )
        == 2
    )
    assert "flip_distance must be in 1..4" in capsys.readouterr().err
    assert not (tmp_path / "bad2" / "stability.json").exists()


def test_mean_std_reach_the_model_and_pad_zero_gives_no_flip_rate(weights, tmp_path):
    plain, normed = tmp_path / "plain", tmp_path / "normed"
    common = [
        "--model",
        "small_cnn(width=8)",
        "--weights",
        str(weights),
        "--data",
        "synthetic:test",
        "--limit",
        "8",
        "--repeats",
        "1",
    ]
    assert main(["stability", *common, "--pad", "0", "--out", str(plain)]) == 0
    assert json.loads((plain / "stability.json").read_text())["flip_rate"] is None
    assert (
        main(["stability", *common, "--mean", "0.9,0.9,0.9", "--std", "0.01,0.01,0.01", "--out", str(normed)])
        == 0
    )
    d = load_dataset("synthetic:test", limit=8, progress=False)
    expected = stability_document(
        load_model("small_cnn(width=8)", weights, [0.9] * 3, [0.01] * 3),
        d.float_images(),
        d.labels,
        max_shift=4,
        n_repeats=1,
        pad=4,
    )
    assert json.loads((normed / "stability.json").read_text())["diagonal"] == expected["diagonal"]
    unnormalised = stability_document(
        load_model("small_cnn(width=8)", weights), d.float_images(), d.labels, max_shift=4, n_repeats=1, pad=4
    )
    assert (
        unnormalised["diagonal"]["correct_prob"] != expected["diagonal"]["correct_prob"]
    )  # the test can fail


def test_a_model_that_raises_exits_2_with_a_clear_message(tmp_path, capsys):
    (tmp_path / "net.py").write_text(
        "import torch\n"
        "class Broken(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        raise RuntimeError('boom')\n"
        "def make():\n"
        "    return Broken()\n")
    assert main(["stability", "--model", f"{tmp_path / 'net.py'}:make", "--data", "synthetic:test", "--limit", "4",
                 "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "the model raised RuntimeError" in capsys.readouterr().err
    assert not (tmp_path / "o" / "stability.json").exists()
