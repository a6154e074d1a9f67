"""A run's output folder: identity by content on --resume, and nothing left behind by a failed run.

Through the command line (``main``) on a tiny .npz dataset and a model file:

* a weights file replaced in place (same path, other bytes) is refused on ``--resume``
  by ``attack``, ``benchmark`` and ``certify``, and the stored units keep their bytes;
* a run that fails before any unit finished (a model that raises on the first real
  batch, labels outside the model's classes found after the folder was made) exits 2
  and leaves no folder, or, with ``--overwrite`` on an existing folder, the folder as
  it was; once a unit has finished it stays for ``--resume``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _models import LINEAR_SOURCE

from shiftattack.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = LINEAR_SOURCE + '''

class RaisesOnBatches(Linear):
    """Passes the one-image probe made before the output folder, raises on the first real batch."""

    def forward(self, x):
        if x.shape[0] > 1:
            raise ValueError("boom on a batch")
        return super().forward(x)


def raises_on_batches():
    return RaisesOnBatches().eval()


class FailsOnWhite(Linear):
    """Raises on any batch holding a (nearly) white image: the chunks before the white images finish."""

    def forward(self, x):
        if bool((x.flatten(1).mean(1) > 0.8).any()):
            raise ValueError("boom on a white image")
        return super().forward(x)


def fails_on_white():
    return FailsOnWhite().eval()
'''


@pytest.fixture()
def env(tmp_path):
    (tmp_path / "models.py").write_text(MODELS)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(12) % 4)
    np.savez(tmp_path / "labels.npz", x=np.zeros((4, 16, 16, 3), np.uint8), y=np.array([0, 1, 2, 7]))
    for seed in (1, 2):
        torch.manual_seed(seed)
        fc = torch.nn.Linear(3 * 16 * 16, 4)
        torch.save({f"fc.{k}": v for k, v in fc.state_dict().items()}, tmp_path / f"w{seed}.pt")
    return tmp_path


def _model(env: Path, name: str = "linear") -> list[str]:
    return ["--model", f"{env / 'models.py'}:{name}"]


def _attack(env: Path, out: Path, *extra: str, model: str = "linear", data: str = "data.npz") -> list[str]:
    return ["attack", *_model(env, model), "--data", str(env / data), "--shifts", "grid:1", "--mode", "zero",
            "--chunk-size", "4", "--out", str(out), "--device", "cpu", "--quiet", *extra]


def _certify(env: Path, out: Path, *extra: str, model: str = "linear", data: str = "data.npz") -> list[str]:
    return ["certify", *_model(env, model), "--data", str(env / data), "--shifts", "grid:1", "--mode", "zero",
            "--chunk-size", "4", "--out", str(out), "--device", "cpu", "--quiet", *extra]


def _benchmark(env: Path, out: Path, *extra: str, model: str = "linear", data: str = "data.npz") -> list[str]:
    return ["benchmark", "--suite", "cifar10-c", *_model(env, model), "--data", str(env / data),
            "--corruptions", "gaussian_noise", "--severities", "1", "--out", str(out), "--device", "cpu",
            "--quiet", *extra]


COMMANDS = {"attack": _attack, "benchmark": _benchmark, "certify": _certify}


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder`` (hidden ones too): bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- identity by content


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_resume_refuses_a_weights_file_replaced_in_place(env, capsys, command):
    make, out, weights = COMMANDS[command], env / "out", env / "w.pt"
    weights.write_bytes((env / "w1.pt").read_bytes())
    assert main(make(env, out, "--weights", str(weights))) == 0
    assert main(make(env, out, "--weights", str(weights), "--resume")) == 0  # same bytes: resumes
    capsys.readouterr()
    before = _snapshot(out)
    weights.write_bytes((env / "w2.pt").read_bytes())  # same path, other weights
    assert main(make(env, out, "--weights", str(weights), "--resume")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot resume in") and "differs in:" in err, err
    assert "weights_sha256" in err.split("differs in:")[1], err  # certify also names state_sha256
    assert _snapshot(out) == before  # stored units and results untouched


# ---------------------------------------------------------------- no debris after a failed run


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_failure_before_the_first_unit_leaves_no_folder(env, capsys, command):
    make = COMMANDS[command]
    out = env / "new" / "out"  # neither folder exists
    assert main(make(env, out, model="raises_on_batches")) == 2
    assert "boom on a batch" in capsys.readouterr().err
    assert not (env / "new").exists()
    if command != "benchmark":  # benchmark checks labels before it makes the folder; the others later
        assert main(make(env, out, data="labels.npz")) == 2
        assert "labels range over [0, 7]" in capsys.readouterr().err
        assert not (env / "new").exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_failed_overwrite_leaves_the_old_folder_as_it_was(env, capsys, command):
    make, out = COMMANDS[command], env / "out"
    assert main(make(env, out)) == 0
    before = _snapshot(out)
    assert main(make(env, out, "--overwrite", model="raises_on_batches")) == 2
    assert _snapshot(out) == before
    assert main(make(env, out, "--resume")) == 0  # the restored units still resume their own run
    assert {k: v for k, v in _snapshot(out).items() if k.startswith("units")} == {
        k: v for k, v in before.items() if k.startswith("units")}


def test_finished_units_stay_after_a_later_failure(env, capsys):
    x = np.random.default_rng(0).integers(0, 200, (12, 16, 16, 3), dtype=np.uint8)
    x[8:] = 255  # the third chunk of 4
    np.savez(env / "white.npz", x=x, y=np.arange(12) % 4)
    out = env / "out"
    assert main(_attack(env, out, model="fails_on_white", data="white.npz")) == 2
    assert "boom on a white image" in capsys.readouterr().err
    units = _snapshot(out / "units")
    assert sorted(units) == ["chunk-00000000.json", "chunk-00000004.json", "run.json"]
    assert main(_attack(env, out, "--resume", model="fails_on_white", data="white.npz")) == 2
    assert _snapshot(out / "units") == units  # not redone, not removed: still there for --resume
