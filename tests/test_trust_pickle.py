"""--trust-pickle on the commands: a pickled whole model is refused without it and gives the same results with it."""

from __future__ import annotations

import json

import pytest
import torch

from shiftattack.cli import main
from shiftattack.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = ["--data", "synthetic:test", "--limit", "8"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("w")
    torch.manual_seed(0)
    net = create_model("small_cnn(width=8)", num_classes=8)
    torch.save(net, root / "whole.pt")  # pickled module: weights_only=True refuses it
    torch.save(net.state_dict(), root / "state.pt")
    return root


def test_attack_refuses_a_pickled_model_and_trusts_it_on_request(files, tmp_path, capsys):
    args = ["attack", "--model", "small_cnn(width=8)", *DATA, "--shifts", "grid:1", "--mode", "zero", "--quiet"]
    assert main([*args, "--weights", str(files / "whole.pt"), "--out", str(tmp_path / "refused")]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    assert main([*args, "--weights", str(files / "whole.pt"), "--trust-pickle", "--out", str(tmp_path / "t")]) == 0
    assert main([*args, "--weights", str(files / "state.pt"), "--out", str(tmp_path / "s")]) == 0
    trusted, plain = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("t", "s"))
    assert trusted["images"] == plain["images"] and trusted["worst_case_accuracy"] == plain["worst_case_accuracy"]


def test_certify_and_verify_take_the_flag(files, tmp_path, capsys):
    cert = tmp_path / "cert"
    assert main(["certify", "--model", "small_cnn(width=8)", "--weights", str(files / "whole.pt"), "--trust-pickle",
                 *DATA, "--shifts", "grid:1", "--mode", "zero", "--out", str(cert), "--quiet"]) == 0
    assert main(["verify", str(cert), "--quiet"]) == 2  # the pickled weights file needs the flag again
    assert "--trust-pickle" in capsys.readouterr().err
    assert main(["verify", str(cert), "--trust-pickle", "--quiet"]) == 0


def test_stability_and_benchmark_take_the_flag(files, tmp_path):
    model = ["--model", "small_cnn(width=8)", "--weights", str(files / "whole.pt"), "--trust-pickle"]
    assert main(["stability", *model, *DATA, "--repeats", "1", "--out", str(tmp_path / "st"), "--quiet"]) == 0
    assert main(["benchmark", "--suite", "cifar10-c", *model, *DATA, "--corruptions", "contrast",
                 "--severities", "1", "--out", str(tmp_path / "b"), "--quiet"]) == 0
