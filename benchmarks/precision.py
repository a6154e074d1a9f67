"""Reduced precision: the same attack at fp32, bf16 and fp16, its speed and what it does to the figures.

    python benchmarks/precision.py [--data-dir DIR] [--model SPEC --weights FILE] [--n-images 500]
                                   [--precisions fp32,bf16,fp16] [--quick]

For each precision: ``shiftattack attack`` as users run it (a fresh process, ``grid:3``, zero fill,
default options, ``--precision P``) on the same class-balanced CIFAR-10 test images, and plain
batched inference of the same model under the same autocast (the best of batch sizes 32..1024,
freed memory kept: :func:`attack_ceiling._ceiling`). Reported per precision: clean and worst-case
accuracy, the paired difference of worst-case accuracy against fp32 on the same images with its
95 % interval (:func:`shiftattack.metrics.stats.difference`), the attack's (image, shift) pairs per
second of wall time (start-up included, as a user waits for it) and the speed-up of both the attack
and plain inference over fp32 measured in the same run. Issue 22's acceptance: bf16's worst-case
accuracy within 1 point of fp32 on 500 images of a trained model.

Writes ``benchmarks/results/precision_cpu.json`` (``--json``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from attack_ceiling import _attack, _ceiling  # noqa: E402

from shiftattack.metrics.stats import difference  # noqa: E402


def _robust(doc: dict) -> list[float]:
    return [1.0 if r["robust"] else 0.0 for r in doc["images"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    C.add_data_dir_argument(parser)
    parser.add_argument("--model", default="cifar_convnet(width=32)")
    parser.add_argument("--weights", default="", help="state_dict of --model (none: random weights)")
    parser.add_argument("--n-images", type=int, default=500)
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--json", type=Path, default=C.BENCH_DIR / "results" / "precision_cpu.json")
    args = parser.parse_args(argv)
    n = 20 if args.quick else args.n_images
    seconds = "0.2" if args.quick else "2"
    precisions = args.precisions.split(",")
    if precisions[0] != "fp32":
        raise SystemExit("--precisions must start with fp32 (the reference)")
    weights = ["--weights", args.weights] if args.weights else ["--random-weights"]
    common = ["--model", args.model, *weights, "--data", C.cifar_spec(args.data_dir, "test"),
              "--limit", str(n), "--shifts", "grid:3", "--mode", "zero"]
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for p in precisions:
            plain = _ceiling(args.model, args.weights, seconds, p)
            out = Path(tmp) / p
            wall, doc = _attack([*common, "--precision", p], out)
            passes = doc["n_evaluated"]
            rows[p] = {"plain_inference": plain, "attack_wall_s": wall, "n_evaluated": passes,
                       "attack_pairs_per_s": passes / wall, "clean_accuracy": doc["clean_accuracy"],
                       "worst_case_accuracy": doc["worst_case_accuracy"], "recorded": doc["precision"],
                       "_robust": _robust(doc)}
            print(f"{p}: worst-case {100 * doc['worst_case_accuracy']:.1f} %, clean "
                  f"{100 * doc['clean_accuracy']:.1f} %, attack {passes / wall:.0f} pairs/s ({wall:.1f} s), "
                  f"plain inference {plain['best']:.0f} img/s at batch {plain['best_batch']}", flush=True)
    ref = rows["fp32"]
    for r in rows.values():
        d = difference([[100 * v for v in r["_robust"]]], [[100 * v for v in ref["_robust"]]])
        r["worst_case_minus_fp32_points"] = {"estimate": d.estimate, "low": d.low, "high": d.high}
        r["images_with_another_verdict"] = sum(
            a != b for a, b in zip(r["_robust"], ref["_robust"], strict=True))
        r["attack_speedup"] = r["attack_pairs_per_s"] / ref["attack_pairs_per_s"]
        r["plain_speedup"] = r["plain_inference"]["best"] / ref["plain_inference"]["best"]
    for r in rows.values():
        del r["_robust"]
    for p, r in rows.items():
        d = r["worst_case_minus_fp32_points"]
        print(f"{p:>5}: worst-case - fp32 = {d['estimate']:+.2f} points "
              f"[95 % {d['low']:+.2f}, {d['high']:+.2f}] ({r['images_with_another_verdict']} of {n} images "
              f"change verdict); attack {r['attack_speedup']:.2f}x, plain inference "
              f"{r['plain_speedup']:.2f}x of fp32")
    doc = {"model": args.model, "weights": args.weights or None, "n_images": n, "shifts": "grid:3",
           "mode": "zero", "precisions": rows,
           "environment": {**C.environment(torch.device("cpu")), "quick": args.quick,
                           "date": time.strftime("%Y-%m-%d")}}
    C.save_figures(args.json, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
