"""What keeping freed memory in the process (``shiftattack.runtime.allocator``) buys, per command.

    python benchmarks/allocator.py [--data-dir DIR] [--model SPEC --weights FILE] [--quick]

Runs, each as a fresh process, once with ``SHIFTATTACK_KEEP_FREED_MEMORY=0`` (glibc's
defaults) and once as the command line starts by default (mmap and trim thresholds 1 GiB):

a. plain batched inference of the model (images/s at batch 64, 256, 1024, ``inference_mode``,
   about 3 s each after a warm-up; the kept-memory run calls ``keep_freed_memory()`` first);
b. ``shiftattack attack`` (grid:3, zero mode), ``certify`` (exact grid:1), ``benchmark``
   (cifar10-c, three corruptions at all five severities) and ``train`` (one epoch) on real
   CIFAR-10 images: wall, user and system seconds of the whole process (``wait4``).

Prints each figure with the ratio default / kept (> 1: keeping memory is faster) and writes
``benchmarks/results/allocator_cpu.json``. The default model is the issue-18 experiment's
trained ``cifar_convnet(width=32)`` baseline when its weights are on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

EXPERIMENT_WEIGHTS = (
    C.REPO_ROOT / "experiments" / "results" / "cifar10_cpu" / "weights" / "main-baseline-s0" / "model.pt"
)

PLAIN = """
import json, sys, time
from shiftattack.runtime.allocator import keep_freed_memory
if sys.argv[1] == "1":
    keep_freed_memory()
import torch
from shiftattack.models import load_model
from shiftattack.runtime.precision import autocast
model = load_model(sys.argv[2], sys.argv[3] or None, init_seed=0)
precision = sys.argv[6] if len(sys.argv) > 6 else "fp32"
out = {}
for b in map(int, sys.argv[4].split(",")):
    x = torch.rand(b, 3, 32, 32)
    with torch.inference_mode(), autocast(precision, torch.device("cpu")):
        for _ in range(3):
            model(x)
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < float(sys.argv[5]):
            model(x)
            n += b
        out[b] = n / (time.perf_counter() - t0)
print(json.dumps(out))
"""


def _run(argv: list[str], keep: bool) -> dict:
    """Run a process with the allocator setting; wall, user and system seconds (and stdout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["SHIFTATTACK_KEEP_FREED_MEMORY"] = "1" if keep else "0"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} ... failed:\n{done.stderr[-3000:]}")
    return {
        "wall_s": wall,
        "user_s": after.ru_utime - before.ru_utime,
        "sys_s": after.ru_stime - before.ru_stime,
        "stdout": done.stdout,
    }


def _commands(
    model: str, weights: str, test: str, train: str, out: Path, quick: bool
) -> dict[str, list[str]]:
    n = "100" if quick else "500"
    cli = [sys.executable, "-m", "shiftattack"]
    w = ["--model", model, "--weights", weights] if weights else ["--model", model, "--random-weights"]
    return {
        "attack grid:3 zero": [
            *cli,
            "attack",
            *w,
            "--data",
            test,
            "--limit",
            n,
            "--shifts",
            "grid:3",
            "--mode",
            "zero",
            "--quiet",
            "--overwrite",
            "--out",
            str(out / "a"),
        ],
        "certify exact grid:1": [
            *cli,
            "certify",
            *w,
            "--data",
            test,
            "--limit",
            n,
            "--shifts",
            "grid:1",
            "--mode",
            "zero",
            "--quiet",
            "--overwrite",
            "--out",
            str(out / "c"),
        ],
        "benchmark cifar10-c (3 corruptions)": [
            *cli,
            "benchmark",
            "--suite",
            "cifar10-c",
            *w,
            "--data",
            test,
            "--limit",
            "40" if quick else "200",
            "--corruptions",
            "gaussian_noise,contrast,jpeg_compression",
            "--quiet",
            "--overwrite",
            "--out",
            str(out / "b"),
        ],
        "train 1 epoch": [
            *cli,
            "train",
            "--model",
            model,
            "--data",
            train,
            "--limit",
            "500" if quick else "5000",
            "--epochs",
            "1",
            "--quiet",
            "--overwrite",
            "--out",
            str(out / "t"),
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    C.add_data_dir_argument(parser)
    parser.add_argument("--model", default="cifar_convnet(width=32)")
    parser.add_argument(
        "--weights",
        default=str(EXPERIMENT_WEIGHTS) if EXPERIMENT_WEIGHTS.is_file() else "",
        help="state_dict of --model (default: the issue-18 baseline; none: random weights)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--json", type=Path, default=C.BENCH_DIR / "results" / "allocator_cpu.json")
    args = parser.parse_args(argv)
    test, train = C.cifar_spec(args.data_dir, "test"), C.cifar_spec(args.data_dir, "train")
    doc: dict = {
        "model": args.model,
        "weights": args.weights or None,
        "plain_images_per_s": {},
        "commands": {},
    }
    batches, seconds = ("64,256", "0.5") if args.quick else ("64,256,1024", "3")
    for keep in (False, True):
        got = _run(
            [sys.executable, "-c", PLAIN, "1" if keep else "0", args.model, args.weights, batches, seconds],
            keep,
        )
        doc["plain_images_per_s"]["kept" if keep else "default"] = json.loads(
            got["stdout"].strip().splitlines()[-1]
        )
    print("plain inference, images/s")
    for b in doc["plain_images_per_s"]["default"]:
        d, k = doc["plain_images_per_s"]["default"][b], doc["plain_images_per_s"]["kept"][b]
        print(f"  batch {b:>5}: default {d:8.0f}   kept {k:8.0f}   kept / default {k / d:.2f}x")
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd in _commands(args.model, args.weights, test, train, Path(tmp), args.quick).items():
            runs = {("kept" if keep else "default"): _run(cmd, keep) for keep in (False, True)}
            for r in runs.values():
                r.pop("stdout")
            doc["commands"][name] = {
                **runs,
                "wall_default_over_kept": runs["default"]["wall_s"] / runs["kept"]["wall_s"],
            }
            d, k = runs["default"], runs["kept"]
            print(
                f"{name:<38} default {d['wall_s']:6.1f} s wall ({d['sys_s']:5.1f} s sys)   "
                f"kept {k['wall_s']:6.1f} s ({k['sys_s']:5.1f} s sys)   "
                f"default / kept {d['wall_s'] / k['wall_s']:.2f}x",
                flush=True,
            )
    doc["environment"] = {
        **C.environment(torch.device("cpu")),
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d"),
    }
    C.save_figures(args.json, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
