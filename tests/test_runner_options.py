"""ModelRunner's speed options (channels-last, torch.compile) change speed, not verdicts."""

from __future__ import annotations

import json

import torch

from shiftattack.cli import main
from shiftattack.models import load_model
from shiftattack.runtime.engine import ModelRunner


def test_channels_last_attack_gives_the_same_verdicts(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "w.pt"
    torch.save(load_model("small_cnn").state_dict(), weights)
    docs = []
    for name, extra in (("plain", []), ("cl", ["--channels-last"])):
        out = tmp_path / name
        assert main(["attack", "--model", "small_cnn", "--weights", str(weights), "--data", "synthetic:test",
                     "--limit", "60", "--shifts", "grid:2", "--mode", "zero", "--no-early-exit", "--device", "cpu",
                     "--out", str(out), "--quiet", *extra]) == 0
        docs.append(json.loads((out / "results.json").read_text()))
    plain, cl = docs
    assert [r["robust"] for r in plain["images"]] == [r["robust"] for r in cl["images"]]
    for a, b in zip(plain["images"], cl["images"], strict=True):
        assert abs(a["worst_margin"] - b["worst_margin"]) < 1e-4
    assert (tmp_path / "cl" / "units" / "run.json").read_text().count('"channels_last": true') == 1


def test_runner_feeds_channels_last_inputs_and_compiles():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 3)).eval()
    seen = []
    net[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous(
        memory_format=torch.channels_last)))
    x = torch.rand(5, 3, 8, 8)
    plain = ModelRunner(net, "cpu")(x)
    cl = ModelRunner(net, "cpu", channels_last=True)(x)
    assert seen == [False, True]
    torch.testing.assert_close(plain, cl, rtol=1e-5, atol=1e-5)
    compiled = ModelRunner(torch.nn.Sequential(*net), "cpu", compile=True)(x)
    torch.testing.assert_close(plain, compiled, rtol=1e-4, atol=1e-4)
