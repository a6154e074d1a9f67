"""Whole-network inference time of a tier's models, timed interleaved: ``OUT/cost.json``.

Claim 3's primary cost measure is the paper's first-layer count (exact, in the renderer);
this is the secondary column. Per round every model runs one float32 forward pass of a
batch of random 32x32 images under ``inference_mode`` (channels-last, after a warm-up), in
a fresh random order; a model's time is the median over rounds, and its ratio to the
baseline has a 95 % bootstrap interval over rounds (paired: the same round's times).
Untrained weights: the cost does not depend on them.

    python experiments/reproduce/cost.py --tier cpu --out experiments/results/cifar10_cpu
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import design  # noqa: E402


def measure(tier: str, rounds: int, batch: int, seed: int = 0) -> dict:
    import torch

    from shiftattack.models import create_model

    arm = design.ARMS[tier][0]
    x = torch.rand(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    models = {n: create_model(s, num_classes=10).eval().to(memory_format=torch.channels_last)
              for n, s in arm.models.items()}
    times: dict[str, list[float]] = {n: [] for n in models}
    order = list(models)
    rng = random.Random(seed)
    with torch.inference_mode():
        for m in models.values():
            m(x)
        for _ in range(rounds):
            rng.shuffle(order)
            for n in order:
                t = time.perf_counter()
                models[n](x)
                times[n].append(time.perf_counter() - t)
    base = np.array(times["baseline"])
    boot = np.random.default_rng(seed)
    out = {}
    for n, v in times.items():
        ratio = np.array(v) / base
        reps = [float(np.median(ratio[boot.integers(0, rounds, rounds)])) for _ in range(2000)]
        out[n] = {"seconds_per_batch": statistics.median(v), "images_per_s": batch / statistics.median(v),
                  "time_vs_baseline": float(np.median(ratio)),
                  "time_vs_baseline_interval": [float(np.quantile(reps, 0.025)), float(np.quantile(reps, 0.975))]}
    return {"protocol": f"median of {rounds} interleaved rounds (random order per round), one forward pass of "
                        f"{batch} random 32x32 images, float32, channels-last, inference_mode, "
                        f"{torch.get_num_threads()} threads; ratio interval: bootstrap over rounds",
            "models": out}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tier", default="cpu", choices=sorted(design.ARMS))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--note", default="", help="a line on the machine's state while timing, kept in the file")
    args = p.parse_args(argv)
    from unit import versions

    doc = {**measure(args.tier, args.rounds, args.batch), "note": args.note, "versions": versions()}
    path = args.out / "cost.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
