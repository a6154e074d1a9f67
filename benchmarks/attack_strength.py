"""How strong is each attack? Exhaustive grid vs first-order vs random, on real CIFAR-10.

Engstrom et al. (ICML 2019) found first-order methods much weaker than grid
search for spatial attacks. This measures it with our attacks, on the cached
benchmark CNN (``benchmarks/_common.py``), in the same run:

* integer translations ``grid:K`` (zero fill): the exact grid attack versus the
  first-order attack (its iterates evaluated at integer shifts of the same box)
  and worst-of-10 random draws from the same box;
* Engstrom's threat model (``engstrom``: +-3 px, +-30 deg, 5 x 5 x 31 grid):
  grid versus worst-of-10 (``random:3:10:30``) versus first-order.

Prints worst-case accuracy, forward passes and wall time per attack, and the
gap to the grid, and writes them to JSON.

    python benchmarks/attack_strength.py [--n-images 500] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_CACHE_DIR,
    add_data_dir_argument,
    cifar_spec,
    environment,
    save_figures,
    trained_cifar_cnn,
)

from shiftattack import attack
from shiftattack.data import load_dataset

CASES = [
    # (label, shifts, interpolation, method)
    ("grid:3 exact", "grid:3", "exact", "grid"),
    ("grid:3 first-order (integer evaluation)", "grid:3", "exact", "gradient"),
    ("grid:3 random worst-of-10", "random:3:10", "exact", "random"),
    ("engstrom grid 5x5x31", "engstrom", "bilinear", "grid"),
    ("engstrom random worst-of-10", "random:3:10:30", "bilinear", "random"),
    ("engstrom first-order", "engstrom", "bilinear", "gradient"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_dir_argument(parser)
    parser.add_argument("--n-images", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--json", type=Path, default=DEFAULT_CACHE_DIR / "attack_strength.json")
    args = parser.parse_args(argv)

    model = trained_cifar_cnn(args.data_dir)
    data = load_dataset(cifar_spec(args.data_dir, "test"), limit=args.n_images, progress=False)
    x, y = data.float_images(), data.labels
    rows = []
    print(f"{len(data)} CIFAR-10 test images, SmallCNN(width=32), zero fill, torch {torch.__version__}")
    print(f"{'attack':44s} {'worst-case acc':>14s} {'passes/img':>10s} {'seconds':>8s}")
    for label, shifts, interp, method in CASES:
        start = time.perf_counter()
        res = attack(model, x, y, shifts=shifts, mode="zero", interpolation=interp, method=method,
                     batch_size=args.batch_size, device="cpu")
        seconds = time.perf_counter() - start
        row = {"attack": label, "shifts": shifts, "method": method, "clean_accuracy": res.clean_accuracy,
               "worst_case_accuracy": res.worst_case_accuracy,
               "passes_per_image": float(res.n_evaluated.double().mean()), "seconds": seconds}
        rows.append(row)
        print(f"{label:44s} {100 * row['worst_case_accuracy']:13.2f}% {row['passes_per_image']:10.1f} "
              f"{seconds:8.1f}")
    clean = rows[0]["clean_accuracy"]
    print(f"clean accuracy {100 * clean:.2f}%")
    for family in ("grid:3", "engstrom"):
        base = next(r for r in rows if r["attack"].startswith(family) and r["method"] == "grid")
        for r in rows:
            if r["attack"].startswith(family) and r is not base:
                gap = r["worst_case_accuracy"] - base["worst_case_accuracy"]
                print(f"  {r['attack']}: {100 * gap:+.2f} points of worst-case accuracy above the grid")
    doc = {"environment": environment(torch.device("cpu")), "n_images": len(data), "rows": rows}
    save_figures(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
