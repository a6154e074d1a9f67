"""Same seed, same bytes (on the CPU): random attacks, smoothing certificates, generated corruptions.

Each case runs the command twice into two folders and compares the result files
byte for byte, then once with another seed and checks that the file changes (so
the comparison could fail: the seed reaches the draws).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shiftattack.cli import main


@pytest.fixture(scope="module")
def weights(small_cnn_weights) -> Path:
    return small_cnn_weights


def _three(tmp_path: Path, argv: list[str], name: str) -> tuple[bytes, bytes, bytes]:
    outs = []
    for label, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        out = tmp_path / label
        assert main([*argv, "--seed", seed, "--out", str(out), "--quiet"]) == 0
        outs.append((out / name).read_bytes())
    return outs[0], outs[1], outs[2]


COMMON = ["--model", "small_cnn", "--data", "synthetic:test", "--limit", "40"]


def test_random_attack_is_byte_identical_per_seed(tmp_path, weights):
    a, b, c = _three(tmp_path, ["attack", *COMMON, "--weights", str(weights), "--shifts", "random:3:8",
                                "--mode", "zero", "--chunk-size", "15"], "results.json")
    assert a == b
    assert a != c


def test_gradient_attack_is_byte_identical_per_seed(tmp_path, weights):
    a, b, c = _three(tmp_path, ["attack", *COMMON, "--weights", str(weights), "--shifts", "grid:2:0.5",
                                "--interp", "bilinear", "--mode", "zero", "--attack", "gradient", "--steps", "3",
                                "--restarts", "2"], "results.json")
    assert a == b
    assert a != c


def test_smoothing_certificate_is_byte_identical_per_seed(tmp_path, weights):
    a, b, c = _three(tmp_path, ["certify", *COMMON, "--weights", str(weights), "--method", "smooth",
                                "--shifts", "l2:1", "--mode", "circular", "--sigma", "1", "--n0", "10", "--n", "40"],
                     "certificate.json")
    assert a == b
    assert a != c


@pytest.mark.parametrize("suite,names", [("cifar10-c", "gaussian_noise,spatter,frost,elastic_transform"),
                                         ("cifar10-p", "gaussian_noise,translate")])
def test_generated_corruptions_are_byte_identical_per_seed(tmp_path, weights, suite, names):
    argv = ["benchmark", "--suite", suite, *COMMON, "--weights", str(weights), "--corruptions", names]
    if suite == "cifar10-c":
        argv += ["--severities", "2,5"]
    a, b, c = _three(tmp_path, argv, "results.json")
    assert a == b
    assert a != c


def test_corrupt_command_files_are_byte_identical_per_seed(tmp_path):
    argv = ["corrupt", "--suite", "cifar10-c", "--data", "synthetic:test", "--limit", "20",
            "--corruptions", "gaussian_noise"]
    a, b, c = _three(tmp_path, argv, "gaussian_noise.npy")
    assert a == b
    assert a != c
