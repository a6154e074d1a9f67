"""torchrun with 2 CPU processes (gloo) writes the same bytes as one process.

Each case runs the real command line twice, once plainly and once under
``python -m torch.distributed.run --standalone --nproc-per-node 2``, and compares
the output files byte for byte. The chunks are small so that both ranks get work
(``timing.json`` says how many units each rank computed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def weights(small_cnn_weights) -> Path:
    return small_cnn_weights


def _single(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shiftattack", *args], capture_output=True, text=True,
                          env=ENV, timeout=600)


def _torchrun(args: list[str], n: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
           "-m", "shiftattack", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)


def _both(tmp_path: Path, args: list[str]) -> tuple[Path, Path]:
    one, two = tmp_path / "one", tmp_path / "two"
    p = _single([*args, "--out", str(one), "--quiet"])
    assert p.returncode == 0, p.stderr
    p = _torchrun([*args, "--out", str(two), "--quiet"])
    assert p.returncode == 0, p.stderr[-3000:]
    return one, two


def _same(one: Path, two: Path, *names: str) -> None:
    for name in names:
        assert (one / name).read_bytes() == (two / name).read_bytes(), f"{name} differs"


@pytest.mark.parametrize("shifts,extra", [
    ("grid:2", []),                        # exact grid, adaptive order, early exit: uneven work
    ("random:2:6", ["--seed", "3"]),        # random draws: seeded per chunk, not per rank
])
def test_attack_two_processes_equal_one(tmp_path, weights, shifts, extra):
    args = ["attack", "--model", "small_cnn", "--weights", str(weights), "--data", "synthetic:test",
            "--limit", "160", "--shifts", shifts, "--mode", "zero", "--chunk-size", "20", *extra]
    one, two = _both(tmp_path, args)
    _same(one, two, "results.json", "results.csv")
    timing = json.loads((two / "timing.json").read_text())
    assert timing["processes"] == 2 and timing["units"] == 8
    assert sum(timing["units_computed_per_process"]) == 8
    assert min(timing["units_computed_per_process"]) >= 1, timing  # both ranks worked
    if shifts == "grid:2":  # resuming a finished distributed run reads every unit back (from both ranks)
        before = (two / "results.json").read_bytes()
        (two / "units" / "chunk-00000040.json").unlink()  # as if its rank had been killed
        p = _torchrun([*args, "--out", str(two), "--quiet", "--resume"])
        assert p.returncode == 0, p.stderr[-3000:]
        assert (two / "results.json").read_bytes() == before
        timing = json.loads((two / "timing.json").read_text())
        assert sum(timing["units_computed_per_process"]) == 1


def test_certify_two_processes_equal_one(tmp_path, weights):
    args = ["certify", "--model", "small_cnn", "--weights", str(weights), "--data", "synthetic:test",
            "--limit", "100", "--shifts", "grid:1", "--mode", "circular", "--chunk-size", "20"]
    one, two = _both(tmp_path, args)
    _same(one, two, "certificate.json", "certificate.csv")
    assert _single(["verify", str(two / "certificate.json"), "--quiet"]).returncode == 0


def test_benchmark_two_processes_equal_one(tmp_path, weights):
    args = ["benchmark", "--suite", "cifar10-c", "--model", "small_cnn", "--weights", str(weights),
            "--data", "synthetic:test", "--limit", "40", "--corruptions", "gaussian_noise,contrast,fog",
            "--severities", "1,5"]
    one, two = _both(tmp_path, args)
    _same(one, two, "results.json", "results.csv")
    assert len(list((two / "units").glob("*__s*.json"))) == 6


def test_compare_two_processes_equal_one(tmp_path, weights):
    models = tmp_path / "models.csv"  # the same model under two more names: 3 models x 4 units for 2 ranks
    models.write_text(f"name,spec,weights\nsecond,small_cnn,{weights}\nthird,small_cnn,{weights}\n")
    args = ["compare", "--model", f"small_cnn@{weights}", "--models", str(models), "--data", "synthetic:test",
            "--limit", "12", "--radius", "1", "--consistency-repeats", "1"]
    one, two = _both(tmp_path, args)
    _same(one, two, "leaderboard.json", "leaderboard.csv", "leaderboard.html")
    assert json.loads((two / "timing.json").read_text())["whole_run"]["units"] == 12


def test_errors_under_torchrun_are_clear_and_write_nothing(tmp_path, weights):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    p = _torchrun(["attack", "--model", "small_cnn", "--weights", str(weights), "--data", "synthetic:test",
                   "--limit", "10", "--shifts", "grid:1", "--mode", "zero", "--out", str(out), "--quiet"])
    assert p.returncode != 0
    assert "error: [rank 0 of 2] output folder" in p.stderr and "--overwrite" in p.stderr
    assert sorted(f.name for f in out.iterdir()) == ["keep.txt"]
    p = _torchrun(["stability", "--model", "small_cnn", "--data", "synthetic:test", "--out", str(tmp_path / "s")])
    assert p.returncode != 0 and "stability runs in one process" in p.stderr
    assert not (tmp_path / "s").exists()


def test_certify_refuses_ranks_with_different_models(tmp_path):
    """A factory that initialises at random builds another model in each process: refused, nothing
    written. --random-weights builds under a fixed seed, so there every rank has the same model."""
    factory = tmp_path / "net.py"
    factory.write_text("import torch\ndef make():\n    return torch.nn.Sequential(torch.nn.Flatten(), "
                       "torch.nn.Linear(3 * 32 * 32, 8))\n")
    out = tmp_path / "c"
    args = ["--data", "synthetic:test", "--limit", "10", "--shifts", "grid:1", "--mode", "circular", "--quiet"]
    p = _torchrun(["certify", "--model", f"{factory}:make", *args, "--out", str(out)])
    assert p.returncode != 0 and "loaded different models" in p.stderr
    assert not out.exists()
    p = _torchrun(["certify", "--model", "small_cnn", "--random-weights", *args, "--out", str(tmp_path / "r")])
    assert p.returncode == 0, p.stderr[-2000:]
    assert _single(["verify", str(tmp_path / "r"), "--quiet"]).returncode == 0
