"""The command line keeps freed memory in the process (glibc), so activations are not mapped afresh
on every forward pass; checked by what the kernel reports, not by what the code says it did."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shiftattack.runtime.allocator import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="glibc only (Linux); elsewhere the allocator is left alone")

FREE_THEN_MEASURE = """
import os, sys
from shiftattack.runtime.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
import torch
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
before = rss()
x = torch.ones(64 * 2**20)  # 256 MiB, touched
del x
print((rss() - before) / 2**20)
"""


def _kept_mib(mode: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", FREE_THEN_MEASURE, mode], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip().splitlines()[-1])


def test_freed_memory_stays_in_the_process_only_when_asked():
    assert _kept_mib("default") < 16  # glibc unmapped the 256 MiB block on free
    assert _kept_mib("keep") > 200  # kept for the next allocation: no page faults next time


def test_the_command_line_keeps_freed_memory_unless_told_not_to(tmp_path):
    base = [sys.executable, "-m", "shiftattack", "attack", "--model", "small_cnn", "--random-weights", "--data",
            "synthetic:test", "--limit", "4", "--shifts", "grid:1", "--mode", "zero", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for value, kept in (("1", True), ("0", False)):
        out = tmp_path / value
        done = subprocess.run([*base, "--out", str(out)], env={**env, "SHIFTATTACK_KEEP_FREED_MEMORY": value},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        state = json.loads((out / "timing.json").read_text())["allocator"]
        assert state["kept_freed_memory"] is kept, state
