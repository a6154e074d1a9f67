"""kill -9 part-way, then --resume: the same results.json as an uninterrupted run, and no finished unit redone.

Each case starts the real command in a subprocess, waits until some units are on
disk, kills it with SIGKILL (no clean-up runs), and resumes. Finished units must
keep their exact bytes and modification time (they were not recomputed); the
resumed run's ``results.json`` must equal, byte for byte, that of a run never
interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def weights(small_cnn_weights) -> Path:
    return small_cnn_weights


def _cmd(args: list[str], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "shiftattack", *args, "--out", str(out), "--quiet", *extra]


def _units(out: Path, pattern: str) -> dict[str, tuple[bytes, int]]:
    return {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in (out / "units").glob(pattern)}


def _kill_part_way(cmd: list[str], out: Path, pattern: str, at_least: int, total: int) -> dict:
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    try:
        while len(list((out / "units").glob(pattern))) < at_least:
            assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no units appeared"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _units(out, pattern)
    assert at_least <= len(done) < total, f"killed too late ({len(done)} of {total} units done)"
    assert not (out / "results.json").exists() and not (out / "certificate.json").exists()
    return done


CASES = {
    "attack": (["attack", "--data", "synthetic:test", "--limit", "600", "--shifts", "grid:3", "--mode", "zero",
                "--chunk-size", "10", "--no-early-exit"], "chunk-*.json", 60, "results.json"),
    "certify": (["certify", "--data", "synthetic:test", "--limit", "600", "--shifts", "grid:2",
                 "--mode", "circular", "--chunk-size", "10"], "chunk-*.json", 60, "certificate.json"),
    "benchmark": (["benchmark", "--suite", "cifar10-c", "--data", "synthetic:test", "--limit", "100",
                   "--severities", "3"], "*__s3.json", 19, "results.json"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, weights, case):
    args, pattern, total, result = CASES[case]
    args = [*args, "--model", "small_cnn", "--weights", str(weights)]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    p = subprocess.run(_cmd(args, whole), env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert len(_units(whole, pattern)) == total

    done = _kill_part_way(_cmd(args, cut), cut, pattern, at_least=3, total=total)
    p = subprocess.run(_cmd(args, cut, "--resume"), env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr

    assert (cut / result).read_bytes() == (whole / result).read_bytes()
    after = _units(cut, pattern)
    assert len(after) == total
    for name, (data, mtime) in done.items():  # finished before the kill: kept, not recomputed
        assert after[name] == (data, mtime), f"{name} was recomputed"
    assert not list((cut / "units").glob(".*.tmp")), "a half-written unit was left behind"
    if case == "attack":
        timing = json.loads((cut / "timing.json").read_text())
        assert timing["units_computed_per_process"] == [total - len(done)]


def test_resume_with_other_options_is_refused(tmp_path, weights):
    """Finished units of one run are never mixed into another."""
    base = ["attack", "--model", "small_cnn", "--weights", str(weights), "--data", "synthetic:test",
            "--limit", "20", "--mode", "zero", "--chunk-size", "10"]
    out = tmp_path / "r"
    assert subprocess.run(_cmd([*base, "--shifts", "grid:1"], out), env=ENV).returncode == 0
    p = subprocess.run(_cmd([*base, "--shifts", "grid:2"], out, "--resume"), env=ENV, capture_output=True,
                       text=True)
    assert p.returncode == 2 and "cannot resume" in p.stderr and "shifts" in p.stderr
