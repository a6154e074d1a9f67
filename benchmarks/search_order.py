"""Forward passes and wall time of the grid attack's search orders, on real CIFAR-10.

Every order finds the same worst-case accuracy (the grid attack is exact); they
differ in how soon a fooled image meets its first failure. Prints, per shift
set and order, the worst-case accuracy, the forward passes (clean pass
included) and the wall time, in one run, with ratios to the ``radius`` order.

    python benchmarks/search_order.py [--n-images 1000] [--batch-size 64] [--json PATH]
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

ORDERS = ("radius", "adaptive", "far_first")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_dir_argument(parser)
    parser.add_argument("--n-images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sets", default="grid:3,grid:10")
    parser.add_argument("--json", type=Path, default=DEFAULT_CACHE_DIR / "search_order.json")
    args = parser.parse_args(argv)

    model = trained_cifar_cnn(args.data_dir)
    data = load_dataset(cifar_spec(args.data_dir, "test"), limit=args.n_images, progress=False)
    x, y = data.float_images(), data.labels
    print(f"{len(data)} CIFAR-10 test images, SmallCNN(width=32), zero fill, batch {args.batch_size}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'set':8s} {'order':10s} {'worst-case acc':>14s} {'passes':>8s} {'seconds':>8s} "
          f"{'passes/radius':>13s} {'time/radius':>11s}")
    rows = []
    for spec in args.sets.split(","):
        base = None
        for order in ORDERS:
            start = time.perf_counter()
            res = attack(model, x, y, shifts=spec, mode="zero", order=order, batch_size=args.batch_size,
                         device="cpu")
            row = {"shifts": spec, "order": order, "worst_case_accuracy": res.worst_case_accuracy,
                   "forward_passes": int(res.n_evaluated.sum()), "seconds": time.perf_counter() - start}
            base = base or row
            rows.append(row)
            print(f"{spec:8s} {order:10s} {100 * row['worst_case_accuracy']:13.2f}% "
                  f"{row['forward_passes']:8d} {row['seconds']:8.2f} "
                  f"{row['forward_passes'] / base['forward_passes']:13.3f} "
                  f"{row['seconds'] / base['seconds']:11.3f}")
    doc = {"environment": environment(torch.device("cpu")), "n_images": len(data),
           "batch_size": args.batch_size, "rows": rows}
    save_figures(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
