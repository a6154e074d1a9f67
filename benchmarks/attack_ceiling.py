"""The whole ``shiftattack attack`` process against the machine's ceiling, as one ratio per setting.

    python benchmarks/attack_ceiling.py [--data-dir DIR] [--n-images 2000]
        [--modes zero,circular,reflect,crop] [--batch-sizes 256] [--quick]

The ceiling is plain batched inference of the same model at its best (the fastest of batch
sizes 32 .. 1024, ``inference_mode``, freed memory kept in the process as the command line
does: :mod:`shiftattack.runtime.allocator`), in inputs per second. The attack is the real
command (``grid:3``, default options) run as a fresh process; its rate is its (image, shift)
pairs (``n_evaluated`` of ``results.json``) over its wall time less the start-up, where the
start-up is the wall time of the same command on one image (importing torch, loading the
model and the data index, writing the files). ``ratio_ceiling`` = attack rate / ceiling;
issue 22's target is 0.95 for the default attack (zero fill, grid:3, 2,000 images). The
ceiling is measured just before and just after the attacks, and the ratio uses their mean.

Writes ``benchmarks/results/attack_ceiling_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from allocator import EXPERIMENT_WEIGHTS, PLAIN  # noqa: E402

BATCHES = "32,64,128,256,512,1024"


def _ceiling(model: str, weights: str, seconds: str, precision: str = "fp32") -> dict:
    """Plain inference of ``model`` (a fresh process, freed memory kept) at batch sizes 32..1024
    under ``precision``'s autocast: inputs/s per size, the best size and its rate."""
    out = subprocess.run(
        [sys.executable, "-c", PLAIN, "1", model, weights, BATCHES, seconds, precision],
        capture_output=True,
        text=True,
        env={**os.environ, "SHIFTATTACK_KEEP_FREED_MEMORY": "1"},
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    rates = {int(b): r for b, r in json.loads(out.stdout.strip().splitlines()[-1]).items()}
    best = max(rates, key=rates.get)
    return {"inputs_per_second": rates, "best_batch": best, "best": rates[best]}


def _attack(args: list[str], out: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "shiftattack", "attack", *args, "--out", str(out), "--overwrite", "--quiet"],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return wall, json.loads((out / "results.json").read_text())["n_evaluated"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    C.add_data_dir_argument(parser)
    parser.add_argument("--model", default="cifar_convnet(width=32)")
    parser.add_argument("--weights", default=str(EXPERIMENT_WEIGHTS) if EXPERIMENT_WEIGHTS.is_file() else "")
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--modes", default="zero")
    parser.add_argument("--batch-sizes", default="256")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--json", type=Path, default=C.BENCH_DIR / "results" / "attack_ceiling_cpu.json")
    args = parser.parse_args(argv)
    n = 50 if args.quick else args.n_images
    seconds = "0.3" if args.quick else "2"
    test = C.cifar_spec(args.data_dir, "test")
    weights = ["--weights", args.weights] if args.weights else ["--random-weights"]
    before = _ceiling(args.model, args.weights, seconds)
    print(f"ceiling before: {before['best']:.0f} inputs/s at batch {before['best_batch']}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            extra = ["--mode", "crop", "--canvas-pad", "3"] if mode == "crop" else ["--mode", mode]
            for b in args.batch_sizes.split(","):
                common = [
                    "--model",
                    args.model,
                    *weights,
                    "--data",
                    test,
                    "--shifts",
                    "grid:3",
                    *extra,
                    "--batch-size",
                    b,
                ]
                startup, _ = _attack([*common, "--limit", "1"], Path(tmp) / "one")
                wall, passes = _attack([*common, "--limit", str(n)], Path(tmp) / "run")
                rows.append(
                    {
                        "mode": mode,
                        "batch_size": int(b),
                        "images": n,
                        "wall_s": wall,
                        "startup_s": startup,
                        "n_evaluated": passes,
                        "pairs_per_s": passes / max(wall - startup, 1e-9),
                    }
                )
                print(
                    f"  {mode:<9} batch {b:>5}: {passes} pairs in {wall:.1f} s (start-up {startup:.1f} s): "
                    f"{rows[-1]['pairs_per_s']:.0f} pairs/s",
                    flush=True,
                )
    after = _ceiling(args.model, args.weights, seconds)
    ceiling = (before["best"] + after["best"]) / 2
    print(f"ceiling after: {after['best']:.0f} inputs/s at batch {after['best_batch']}; mean {ceiling:.0f}")
    for r in rows:
        r["ratio_ceiling"] = r["pairs_per_s"] / ceiling
        print(f"ratio_ceiling {r['mode']:<9} batch {r['batch_size']:>5}: {r['ratio_ceiling']:.3f}")
    doc = {
        "model": args.model,
        "weights": args.weights or None,
        "ceiling_before": before,
        "ceiling_after": after,
        "ceiling": ceiling,
        "attacks": rows,
        "target": 0.95,
        "environment": {
            **C.environment(torch.device("cpu")),
            "quick": args.quick,
            "date": time.strftime("%Y-%m-%d"),
        },
    }
    C.save_figures(args.json, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
