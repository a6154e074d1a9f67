"""Certificate figures on real CIFAR-10 test images, printed as ratios and fractions from one run.

    python benchmarks/certify_speed.py --model small_cnn --weights runs/small_cnn/model.pt \
        [--data-dir DIR] [--n-exact 1000] [--n-bound 20] [--n-smooth 50] [--json FILE]

a. ``exact``: throughput of ``certify_exact`` (grid:3, zero, radius order, early exit) in
   evaluated (image, shift) pairs per second, against plain batched inference of the same
   model at the same batch size, rounds interleaved (target >= 0.9); the certified accuracy
   equals the grid attack's worst-case accuracy (asserted).
b. ``bound`` for ``box:1`` and ``box:2`` (zero mode): seconds per image, the fraction
   certified, the fraction that survives the dense bilinear grid attack (step 1/4 px; the
   empirical ceiling), counterexamples found by branch and bound, and unknowns.
c. ``smooth`` (sigma 1 px, n0 100, n 1000, alpha 0.001): seconds per image, certified
   accuracy at L2 radius 0.5 and 1 px, abstentions.

All figures are measured in this run and written to ``--json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from shiftattack.attacks import GridAttack  # noqa: E402
from shiftattack.certify import certify_exact  # noqa: E402
from shiftattack.certify.bound import BoundConfig, certify_bound  # noqa: E402
from shiftattack.certify.smooth import SmoothConfig, certified_at, smooth_certify  # noqa: E402
from shiftattack.data import load_dataset  # noqa: E402
from shiftattack.models import load_model  # noqa: E402
from shiftattack.shifts.threats import ThreatModel, parse_shifts  # noqa: E402

TARGET = 0.9


def exact_figures(model, x, y, batch: int, repeats: int) -> dict:
    threat = ThreatModel(parse_shifts("grid:3"), mode="zero")
    state = {}

    def cert():
        res = certify_exact(model, x, y, threat, batch_size=batch, order="radius", device="cpu")
        state["cert"] = res
        return int(res.n_evaluated.sum())

    def plain():
        with torch.inference_mode():
            for s in range(0, x.shape[0], batch):
                model(x[s : s + batch])
        return x.shape[0]

    runs = C.time_interleaved({"certify": cert, "plain": plain}, repeats=repeats, warmup=1)
    pairs = runs["certify"]["result"]
    cert_rates = [pairs / t for t in runs["certify"]["times"]]
    plain_rates = [x.shape[0] / t for t in runs["plain"]["times"]]
    attack = GridAttack(threat, batch_size=batch)(model, x, y, device="cpu")
    res = state["cert"]
    assert res.worst_case_accuracy == attack.worst_case_accuracy, "exact certificate != attack"
    return {
        "n_images": int(x.shape[0]),
        "batch_size": batch,
        "pairs_evaluated": pairs,
        "certify_pairs_per_s": statistics.median(cert_rates),
        "plain_images_per_s": statistics.median(plain_rates),
        "ratio": C.round_ratio(cert_rates, plain_rates),
        "target": TARGET,
        "certified_accuracy": res.worst_case_accuracy,
        "attack_worst_case_accuracy": attack.worst_case_accuracy,
        "clean_accuracy": res.clean_accuracy,
    }


def bound_figures(model, x, y, radius: int, max_pieces: int) -> dict:
    t0 = time.perf_counter()
    out = certify_bound(
        model,
        x,
        y,
        BoundConfig(radius=radius, mode="zero", max_pieces=max_pieces),
        progress=True,
    )
    seconds = time.perf_counter() - t0
    status = out["status"]
    n = x.shape[0]
    survivors = (status == 0) | (status == 2) | (status == 4)
    return {
        "radius": radius,
        "n_images": n,
        "max_pieces": max_pieces,
        "seconds": seconds,
        "seconds_per_image": seconds / n,
        "clean_accuracy": float((out["clean_pred"] == y).double().mean()),
        "certified": float(out["certified"].double().mean()),
        "survives_dense_attack": float(survivors.double().mean()),
        "counterexamples_bnb": int((status == 4).sum()),
        "unknown": int((status == 2).sum()),
        "mean_pieces_per_survivor": float(out["n_pieces"][survivors].double().mean())
        if bool(survivors.any())
        else 0.0,
    }


def smooth_figures(model, x, y, idx) -> dict:
    cfg = SmoothConfig(sigma=1.0, n0=100, n=1000, alpha=0.001, seed=0)
    t0 = time.perf_counter()
    rows = smooth_certify(model, x, y, idx, cfg, batch_size=500, progress=True)
    seconds = time.perf_counter() - t0
    n = len(rows)
    return {
        "sigma": cfg.sigma,
        "n0": cfg.n0,
        "n": cfg.n,
        "alpha": cfg.alpha,
        "n_images": n,
        "seconds_per_image": seconds / n,
        "abstentions": sum(r["prediction"] == -1 for r in rows),
        "smoothed_clean_accuracy": sum(r["prediction"] == r["label"] for r in rows) / n,
        "certified_at": {
            str(r): sum(certified_at(w["prediction"], w["label"], w["radius"], r) for w in rows) / n
            for r in (0.5, 1.0, 2.0)
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_data_dir_argument(p)
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--weights", required=True)
    p.add_argument("--n-exact", type=int, default=1000)
    p.add_argument("--n-bound", type=int, default=20)
    p.add_argument("--n-smooth", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-pieces", type=int, default=BoundConfig.max_pieces)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip", default="", help="comma-separated parts to skip: exact,bound,smooth")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    model = load_model(args.model, args.weights).eval()
    n = max(args.n_exact, args.n_bound, args.n_smooth)
    data = load_dataset(C.cifar_spec(args.data_dir, "test"), limit=n, progress=False)
    x, y = data.float_images(), data.labels
    doc = {"environment": C.environment(torch.device("cpu")), "model": args.model, "weights": args.weights}
    if "exact" not in skip:
        e = exact_figures(model, x[: args.n_exact], y[: args.n_exact], args.batch_size, args.repeats)
        doc["exact"] = e
        print(
            f"exact grid:3 zero, {e['n_images']} images, batch {e['batch_size']}: certify "
            f"{e['certify_pairs_per_s']:,.0f} pairs/s, plain {e['plain_images_per_s']:,.0f} images/s, "
            f"ratio {e['ratio']:.3f} (target >= {TARGET}); certified {100 * e['certified_accuracy']:.2f}% "
            f"= attack {100 * e['attack_worst_case_accuracy']:.2f}%",
            flush=True,
        )
    if "bound" not in skip:
        doc["bound"] = []
        for r in (1, 2):
            b = bound_figures(model, x[: args.n_bound], y[: args.n_bound], r, args.max_pieces)
            doc["bound"].append(b)
            print(
                f"bound box:{r} zero, {b['n_images']} images: {b['seconds_per_image']:.1f} s/image, "
                f"certified {100 * b['certified']:.1f}%, "
                f"survives the dense attack {100 * b['survives_dense_attack']:.1f}%, "
                f"B&B counterexamples {b['counterexamples_bnb']}, unknown {b['unknown']}",
                flush=True,
            )
    if "smooth" not in skip:
        s = smooth_figures(model, x[: args.n_smooth], y[: args.n_smooth], data.indices[: args.n_smooth])
        doc["smooth"] = s
        print(
            f"smooth sigma {s['sigma']} n {s['n']}: {s['seconds_per_image']:.2f} s/image, abstentions "
            f"{s['abstentions']}/{s['n_images']}, certified at L2 0.5/1/2 px: "
            + " / ".join(f"{100 * v:.1f}%" for v in s["certified_at"].values()),
            flush=True,
        )
    if args.json:
        C.save_figures(args.json, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
