"""``--precision`` / ``precision=``: the model under ``torch.autocast``, and every claim about that model.

The trap model predicts another class whenever it runs in reduced precision (its logits roll by one
class), so a run that evaluated *any* pass in float32 (the search, the separate re-verification, the
certificate's verification) would disagree with an independent brute force at bf16, or stop with a
VerificationError. The brute force (``tests/_brute.py``: NumPy shifts, one image at a time) runs
the model under its own ``torch.autocast``, not through the code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from _brute import brute_grid, np_shift
from _models import make_problem
from shiftattack import attack
from shiftattack.cli import main
from shiftattack.errors import NonFiniteLogits, SpecError
from shiftattack.runtime.engine import ModelRunner
from shiftattack.runtime.precision import autocast_dtype, check_precision

pytestmark = pytest.mark.usefixtures("one_thread")


class RollsWhenReduced(nn.Module):
    """``base``'s logits, rolled by one class when its probe layer computes in reduced precision."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.probe = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.base(x).float()
        reduced = self.probe(x[:, :1, 0, 0]).dtype != torch.float32
        return z.roll(1, dims=1) if reduced else z


class Autocast(nn.Module):
    """The reference: ``model`` under ``torch.autocast('cpu', dtype)``, float32 logits."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=self.dtype):
            return self.model(x).float()


@pytest.fixture(scope="module")
def problem():
    base, x, y = make_problem(n=24, size=12, classes=4, seed=2, dtype=torch.float32)
    return RollsWhenReduced(base).eval(), x, y


def test_the_runner_returns_float32_logits_equal_to_the_model_under_its_own_autocast(problem):
    model, x, _ = problem
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        out = ModelRunner(model, "cpu", precision=name)(x)
        assert out.dtype == torch.float32
        with torch.no_grad():
            torch.testing.assert_close(out, Autocast(model, dtype)(x), rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(ModelRunner(model, "cpu")(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_an_attack_at_reduced_precision_is_about_the_model_at_that_precision(problem, precision):
    model, x, y = problem
    dtype = autocast_dtype(precision)
    ref = brute_grid(Autocast(model, dtype).eval(), x, y, 2, "zero")
    fp32 = brute_grid(model, x, y, 2, "zero")
    assert ref["robust"] != fp32["robust"]  # the trap: the two precisions are different classifiers
    result = attack(model, x, y, shifts="grid:2", mode="zero", device="cpu", precision=precision, batch_size=7)
    assert result.precision["name"] == precision and result.precision["autocast_dtype"] == str(dtype)[6:]
    # images whose every margin is far from 0 cannot flip with the batch's rounding
    clear = [i for i, m in enumerate(ref["margins"]) if min(abs(v) for v in m.values()) > 0.02]
    assert len(clear) >= 14
    assert [bool(result.robust[i]) for i in clear] == [ref["robust"][i] for i in clear]
    for i in clear:
        if ref["robust"][i]:  # a survivor's worst margin is the minimum over the set, at this precision
            assert abs(float(result.worst_margin[i]) - ref["min_margin"][i]) < 0.02
        else:  # a failure's reported shift fools the model at this precision (checked alone)
            dx, dy = (int(v) for v in result.worst_params[i, :2])
            view = torch.from_numpy(np.ascontiguousarray(np_shift(x[i].numpy(), dx, dy, "zero")))[None]
            with torch.no_grad():
                assert int(Autocast(model, dtype)(view).argmax()) != int(y[i])
    assert result.to_json()["precision"]["name"] == precision


def test_fp32_is_the_default_and_unknown_or_impossible_precisions_are_errors(problem):
    model, x, y = problem
    assert attack(model, x, y, shifts="grid:1", device="cpu").precision["name"] == "fp32"
    with pytest.raises(SpecError, match="unknown precision 'fp8'; expected one of fp32, bf16, fp16"):
        attack(model, x, y, shifts="grid:1", device="cpu", precision="fp8")
    check_precision("bf16", torch.device("cpu"))  # autocast exists on the CPU


def test_fp16_overflow_names_the_precision():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3)).eval()
    with torch.no_grad():
        net[1].weight.fill_(1e3)
    x = torch.ones(2, 3, 8, 8)
    with pytest.raises(NonFiniteLogits, match="at --precision fp16; fp16 overflows above 65504"):
        attack(net, x, torch.zeros(2, dtype=torch.long), shifts="grid:1", device="cpu", precision="fp16")
    attack(net, x, torch.zeros(2, dtype=torch.long), shifts="grid:1", device="cpu", precision="bf16")


# ------------------------------------------------------------------ command line

MODEL_SOURCE = '''
import torch
from torch import nn


class RollsWhenReduced(nn.Module):
    """conv -> ReLU -> pool -> linear on any image size; logits roll by one class in reduced precision."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                      nn.Flatten(), nn.Linear(128, 10))
        self.probe = nn.Linear(1, 1)

    def forward(self, x):
        z = self.features(x).float()
        return z.roll(1, dims=1) if self.probe(x[:, :1, 0, 0]).dtype != torch.float32 else z


def make():
    return RollsWhenReduced().eval()
'''


@pytest.fixture
def trap_spec(tmp_path):
    path = tmp_path / "trap.py"
    path.write_text(MODEL_SOURCE)
    return f"{path}:make"


def _doc(path):
    return json.loads(path.read_text())


def test_cli_attack_records_the_precision_and_resume_refuses_another(trap_spec, tmp_path, capsys):
    out = tmp_path / "a"
    base = ["attack", "--model", trap_spec, "--random-weights", "--data", "synthetic:test", "--limit", "16",
            "--shifts", "grid:1", "--mode", "circular", "--out", str(out)]
    assert main([*base, "--precision", "bf16"]) == 0
    printed = capsys.readouterr().out
    assert "precision bf16: every figure is about the model run under torch.autocast('cpu', bfloat16)" in printed
    doc = _doc(out / "results.json")
    assert doc["precision"]["name"] == "bf16" and doc["precision"]["autocast_dtype"] == "bfloat16"
    assert main([*base, "--precision", "fp32", "--resume", "--quiet"]) == 2
    assert "precision" in capsys.readouterr().err.split("differs in:")[1]
    assert main([*base, "--precision", "fp32", "--overwrite", "--quiet"]) == 0
    fp32 = _doc(out / "results.json")
    assert fp32["precision"]["name"] == "fp32"
    assert [r["clean_pred"] for r in fp32["images"]] != [r["clean_pred"] for r in doc["images"]]


def test_cli_certify_at_bf16_verifies_at_bf16_and_bound_refuses(trap_spec, tmp_path, capsys):
    out = tmp_path / "c"
    base = ["--model", trap_spec, "--random-weights", "--data", "synthetic:test", "--limit", "12",
            "--shifts", "grid:1", "--mode", "circular", "--quiet"]
    assert main(["certify", "--method", "exact", *base, "--precision", "bf16", "--out", str(out)]) == 0
    cert = _doc(out / "certificate.json")
    assert cert["precision"]["name"] == "bf16"
    # verify recomputes with the certificate's precision: at fp32 the trap's predictions differ
    assert main(["verify", str(out / "certificate.json")]) == 0
    assert "verified: 12 of 12" in capsys.readouterr().out
    assert main(["certify", "--method", "exact", *base, "--out", str(tmp_path / "c32")]) == 0
    assert _doc(tmp_path / "c32" / "certificate.json")["precision"]["name"] == "fp32"  # the default
    code = main(["certify", "--method", "bound", *base, "--precision", "bf16", "--out", str(tmp_path / "b")])
    assert code == 2 and "not sound for the model at --precision bf16" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_cli_benchmark_takes_precision_and_batch_size_auto(trap_spec, tmp_path):
    from shiftattack.runtime.batch_probe import CANDIDATES

    out = tmp_path / "bm"
    assert main(["benchmark", "--suite", "cifar10-c", "--model", trap_spec, "--random-weights",
                 "--data", "synthetic:test", "--limit", "20", "--corruptions", "brightness",
                 "--severities", "1", "--precision", "bf16", "--batch-size", "auto", "--quiet",
                 "--out", str(out)]) == 0
    doc = _doc(out / "results.json")
    assert doc["precision"]["name"] == "bf16"
    assert doc["batch_size"]["requested"] == "auto" and doc["batch_size"]["used"] in CANDIDATES
    assert str(doc["batch_size"]["used"]) in doc["batch_size"]["probe_inputs_per_second"]


def test_cli_compare_ranks_the_models_at_the_precision_asked(trap_spec, tmp_path, capsys):
    import runpy

    out, weights = tmp_path / "cmp", tmp_path / "trap.pt"
    torch.save(runpy.run_path(trap_spec.rsplit(":", 1)[0])["make"]().state_dict(), weights)
    assert main(["compare", "--model", f"{trap_spec}@{weights}", "--data", "synthetic:test",
                 "--limit", "12", "--radius", "1", "--consistency-repeats", "1", "--precision", "bf16",
                 "--out", str(out)]) == 0
    assert "every model at bf16" in capsys.readouterr().out
    board = _doc(out / "leaderboard.json")
    assert board["precision"]["name"] == "bf16"
    assert "Every model ran at <b>bf16</b>" in (out / "leaderboard.html").read_text()


def test_cli_rejects_an_unknown_precision(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["attack", "--model", "small_cnn", "--data", "synthetic:test", "--shifts", "grid:1", "--mode",
              "zero", "--out", "x", "--precision", "fp8"])
    assert stop.value.code == 2 and "invalid choice: 'fp8'" in capsys.readouterr().err

