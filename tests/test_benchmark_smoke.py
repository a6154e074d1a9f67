"""CPU smoke runs of the benchmark scripts that produce figures on other machines (``--quick``).

``benchmarks/gpu.py`` is meant for a CUDA device; here it runs its whole path on the CPU with
tiny sizes, so a GPU session only has to run it. ``benchmarks/precision.py`` runs the real
``shiftattack attack`` processes at each precision.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _run(script: str, *args: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                          text=True, env=ENV, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def test_gpu_benchmark_smoke_run_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    _run("gpu.py", "--quick", "--device", "cpu", "--json", str(out))
    doc = json.loads(out.read_text())
    assert doc["device"] == "cpu" and doc["device_name"] and doc["environment"]["quick"]
    for key in ("circular_fp32", "crop_fp32", "circular_bf16", "crop_bf16"):
        row = doc["attack"][key]
        precision = key.split("_")[1]
        assert row["pairs"] > 0 and row["ratio_ceiling"] == pytest.approx(
            row["pairs_per_second"] / doc["plain"][precision]["best"])
    assert doc["certify_exact"]["images_per_second"] > 0
    corr = doc["corruptions"]
    assert set(corr["per_corruption"]) == {"gaussian_noise", "brightness"}
    assert corr["ours_images_per_second"] > 0


@pytest.mark.data
def test_precision_benchmark_smoke_run(cifar_zip, tmp_path):
    out = tmp_path / "precision.json"
    _run("precision.py", "--quick", "--data-dir", str(cifar_zip.parent), "--precisions", "fp32,bf16",
         "--json", str(out))
    doc = json.loads(out.read_text())
    rows = doc["precisions"]
    assert set(rows) == {"fp32", "bf16"} and rows["bf16"]["recorded"]["name"] == "bf16"
    d = rows["bf16"]["worst_case_minus_fp32_points"]
    assert d["low"] <= d["estimate"] <= d["high"]
    assert d["estimate"] == pytest.approx(
        100 * (rows["bf16"]["worst_case_accuracy"] - rows["fp32"]["worst_case_accuracy"]))
    assert rows["fp32"]["attack_speedup"] == 1.0
