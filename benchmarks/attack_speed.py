"""Attack speed and memory on real CIFAR-10 images, printed as ratios from one run.

    python benchmarks/attack_speed.py [--data-dir DIR] [--n-images N] [--device D] [--quick]

What it measures (the trained ``SmallCNN(width=32)`` of ``_common.py``, a
class-balanced subset of the CIFAR-10 test split):

a. plain batched inference (images/s) at each batch size, under
   ``torch.inference_mode``: the baseline, and the best batch size B;
b. ``GridAttack(grid:3, zero)`` throughput in evaluated (image, shift) pairs
   per second, ``result.n_evaluated.sum() / wall time`` (the clean pass is in
   both), with early exit (the default) and with ``early_exit=False`` (every
   pair evaluated), at B and a few other batch sizes; the ratio to plain
   inference at B (target >= 0.9);
c. foolbox 3 ``SpatialAttack`` (7 x 7 translations up to 3 px, no rotation,
   grid search) against ours on the same images and batch size: wall times,
   ratio foolbox / ours (target >= 3), and fooling rates; the library's
   ``FoolboxSpatialAttack`` adapter too;
d. peak memory of the grid attack for grid:3 (49 shifts) and grid:10 (441
   shifts) at batch B (target: equal within 10 %).

Every figure and ratio is measured in this run and written to ``--json``.
Times are medians of ``--repeats`` runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from shiftattack.attacks import FoolboxSpatialAttack, GridAttack  # noqa: E402
from shiftattack.data import load_dataset  # noqa: E402
from shiftattack.engine import resolve_device  # noqa: E402
from shiftattack.models import SmallCNN  # noqa: E402
from shiftattack.threats import ThreatModel, parse_shifts  # noqa: E402

PLAIN_BATCHES = (64, 128, 256, 512, 1024, 2048)
QUICK_BATCHES = (64, 256)
WARMUP = [1]  # untimed warm-up runs before each timed figure (0 with --quick)
TARGETS = {"grid_vs_plain": 0.9, "foolbox_over_ours": 3.0, "memory_ratio_within": 0.10}


# ----------------------------------------------------------------------------- measurements


def plain_throughput(model, x, batch_size, repeats, device):
    """Images/s of ``model`` over ``x`` in batches of ``batch_size`` (inference mode)."""

    def run():
        with torch.inference_mode():
            for s in range(0, x.shape[0], batch_size):
                model(x[s : s + batch_size])

    t = C.time_it(run, repeats, warmup=WARMUP[0], device=device)
    return {"batch_size": batch_size, "images": x.shape[0], "seconds": t["median"],
            "times": t["times"], "images_per_s": x.shape[0] / t["median"]}


def grid_attack(spec, batch_size, early_exit=True):
    return GridAttack(ThreatModel(parse_shifts(spec), mode="zero"), batch_size=batch_size,
                      early_exit=early_exit)


def grid_throughput(model, x, y, spec, batch_size, early_exit, repeats, device):
    atk = grid_attack(spec, batch_size, early_exit)
    t = C.time_it(lambda: atk(model, x, y, device=device), repeats, warmup=WARMUP[0], device=device,
                  warmup_fn=lambda: atk(model, x[:batch_size // 8], y[:batch_size // 8], device=device))
    res = t["result"]
    pairs = int(res.n_evaluated.sum())
    return {"spec": spec, "batch_size": batch_size, "early_exit": early_exit, "seconds": t["median"],
            "times": t["times"], "pairs": pairs, "pairs_per_s": pairs / t["median"],
            "clean_accuracy": res.clean_accuracy, "worst_case_accuracy": res.worst_case_accuracy,
            "robust": res.robust, "clean_pred": res.clean_pred}


def foolbox_raw(model, x, y, batch_size, repeats, device):
    """foolbox 3 SpatialAttack, grid search, 7 x 7 translations in [-3, 3] px, no rotation."""
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=device)
    attack = fb.attacks.SpatialAttack(max_translation=3, num_translations=7, max_rotation=0,
                                      num_rotations=1, grid_search=True)

    def run():
        success = []
        for s in range(0, x.shape[0], batch_size):
            xb, yb = x[s : s + batch_size].to(device), y[s : s + batch_size].to(device)
            _, _, ok = attack(fmodel, xb, fb.criteria.Misclassification(yb))
            success.append(ok.cpu())
        return torch.cat(success)

    def warm():
        attack(fmodel, x[:64].to(device), fb.criteria.Misclassification(y[:64].to(device)))

    t = C.time_it(run, repeats, warmup=WARMUP[0], warmup_fn=warm, device=device)
    return {"seconds": t["median"], "times": t["times"], "success": t["result"]}


def foolbox_adapter(model, x, y, batch_size, repeats, device):
    atk = FoolboxSpatialAttack(max_translation=3, num_translations=7, max_rotation=0, num_rotations=1,
                               batch_size=batch_size)
    t = C.time_it(lambda: atk(model, x, y, device=device), repeats, warmup=WARMUP[0], device=device,
                  warmup_fn=lambda: atk(model, x[:64], y[:64], device=device))
    return {"seconds": t["median"], "times": t["times"], "result": t["result"]}


def fooling(robust, clean_correct):
    """(fooling rate among clean-correct images, worst-case accuracy over all images)."""
    robust = robust & clean_correct
    n_ok = int(clean_correct.sum())
    fooled = int((clean_correct & ~robust).sum())
    return {"fooled_of_clean_correct": fooled, "clean_correct": n_ok,
            "fooling_rate": fooled / n_ok if n_ok else float("nan"),
            "worst_case_accuracy": float(robust.double().mean())}


# --- peak memory: module-level so a spawn child can import it


def _memory_setup(payload_path, kind, spec, batch_size, device):
    torch.set_grad_enabled(False)
    data = torch.load(payload_path, weights_only=True)
    model = SmallCNN(num_classes=10, width=data["width"])
    model.load_state_dict(data["state_dict"])
    model = model.eval().to(device)
    x, y = data["images"].to(device), data["labels"].to(device)
    del data
    if kind == "plain":  # one pass over at least one full batch
        x = x.repeat((batch_size + x.shape[0] - 1) // x.shape[0], 1, 1, 1)[: max(batch_size, x.shape[0])]

        def fn():
            with torch.inference_mode():
                for s in range(0, x.shape[0], batch_size):
                    model(x[s : s + batch_size])
        return fn
    atk = grid_attack(spec, batch_size)
    # a tiny call first, so that one-time lazy initialisation is not counted as the attack's peak
    atk(model, x[:2], y[:2], device=device)
    return lambda: atk(model, x, y, device=device)


def peak_memory(payload_path, kind, spec, batch_size, device):
    return C.peak_memory(_memory_setup, str(payload_path), kind, spec, batch_size, str(device),
                         device=device)


# ----------------------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_data_dir_argument(p)
    p.add_argument("--n-images", type=int, default=None, help="test images (default 1000; 100 with --quick)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto (default cpu)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 100 images, 1 repeat, small batch sizes, no grid:10 memory run")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per figure (default 3; 1 with --quick)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None,
                   help="output (default benchmarks/_cache/attack_speed.json; "
                        "attack_speed_quick.json with --quick)")
    p.add_argument("--cache-dir", type=Path, default=C.DEFAULT_CACHE_DIR)
    p.add_argument("--untrained", action="store_true",
                   help="use a randomly initialised model (default with --quick when no cached weights)")
    p.add_argument("--skip-foolbox", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    n_images = args.n_images or (100 if args.quick else 1000)
    repeats = args.repeats or (1 if args.quick else 3)
    batches = QUICK_BATCHES if args.quick else PLAIN_BATCHES
    WARMUP[0] = 0 if args.quick else 1
    t_start = time.perf_counter()

    weights = args.cache_dir / C.WEIGHTS_NAME
    untrained = args.untrained or (args.quick and not weights.exists())
    if untrained:
        torch.manual_seed(0)
        model, minfo = SmallCNN(num_classes=10, width=32).eval(), {"untrained": True}
    else:
        model, minfo = C.trained_cifar_cnn(args.data_dir, args.cache_dir), C.model_info(args.cache_dir)
    model = model.to(device).eval()

    ds = load_dataset(C.cifar_spec(args.data_dir, "test"), limit=n_images, progress=False)
    x, y = ds.float_images().to(device), ds.labels.to(device)
    env = C.environment(device)
    lines = []

    def out(s=""):
        print(s, flush=True)
        lines.append(s)

    out("== shiftattack attack_speed benchmark ==")
    out(f"torch {env['torch']} | device {env['device']} | threads {env['threads']} | "
        f"cpu {env['cpu']} ({env['cpu_count']} logical) | load avg at start "
        f"{' '.join(f'{v:.2f}' for v in env.get('load_average', []))}")
    out(f"model SmallCNN(width=32) {'UNTRAINED (smoke test)' if untrained else 'trained'}"
        + ("" if untrained else f" | test acc {minfo['test_accuracy']:.4f} | {minfo['epochs']} epochs")
        + f" | images {x.shape[0]} (CIFAR-10 test, class-balanced) | repeats {repeats} (median)")

    # a. plain inference
    tile = max(2 * max(batches), x.shape[0])
    xp = x.repeat((tile + x.shape[0] - 1) // x.shape[0], 1, 1, 1)[:tile]
    plain = {b: plain_throughput(model, xp, b, repeats, device) for b in batches}
    best_b = max(plain, key=lambda b: plain[b]["images_per_s"])
    base = plain[best_b]["images_per_s"]
    out()
    out(f"a. plain inference (inference_mode, {tile} images tiled from the subset, full batches)")
    out(f"   {'batch':>6} {'images/s':>10} {'s':>8}")
    for b, r in plain.items():
        mark = "   <- best B" if b == best_b else ""
        out(f"   {b:>6} {r['images_per_s']:>10.0f} {r['seconds']:>8.3f}{mark}")

    # b. grid attack throughput
    others = [] if args.quick else sorted({b for b in (256, 1024) if b in plain} - {best_b})[:2]
    grid_batches = [best_b] + others
    grid = []
    for b in grid_batches:
        for ee in (True, False):
            grid.append(grid_throughput(model, x, y, "grid:3", b, ee, repeats, device))
    out()
    out("b. GridAttack grid:3 zero (49 shifts) throughput: pairs/s = n_evaluated.sum() / wall time")
    out(f"   {'batch':>6} {'early_exit':>10} {'pairs':>8} {'s':>8} {'pairs/s':>10} "
        f"{'/plain@B':>9} {'/plain@same':>11}")
    for r in grid:
        r["ratio_vs_plain_best"] = r["pairs_per_s"] / base
        r["ratio_vs_plain_same_batch"] = r["pairs_per_s"] / plain[r["batch_size"]]["images_per_s"]
        out(f"   {r['batch_size']:>6} {str(r['early_exit']):>10} {r['pairs']:>8} {r['seconds']:>8.3f} "
            f"{r['pairs_per_s']:>10.0f} {r['ratio_vs_plain_best']:>9.3f} "
            f"{r['ratio_vs_plain_same_batch']:>11.3f}")
    g_ee = next(r for r in grid if r["batch_size"] == best_b and r["early_exit"])
    g_full = next(r for r in grid if r["batch_size"] == best_b and not r["early_exit"])
    out(f"   RATIO grid/plain at B={best_b}: early exit {g_ee['ratio_vs_plain_best']:.3f}, "
        f"every pair {g_full['ratio_vs_plain_best']:.3f} (target >= {TARGETS['grid_vs_plain']})")
    clean_correct = (g_ee["clean_pred"] == y.cpu())
    ours_fool = fooling(g_ee["robust"], clean_correct)
    if bool((g_full["robust"] != g_ee["robust"]).any()):
        out("   WARNING: early_exit=True and False disagree on which images are robust")

    # c. foolbox
    fb_res = ad_res = None
    if not args.skip_foolbox:
        fb_res = foolbox_raw(model, x, y, best_b, repeats, device)
        fb_fool = fooling(~fb_res["success"], clean_correct)
        ad_res = foolbox_adapter(model, x, y, best_b, repeats, device)
        ad = ad_res["result"]
        ad_fool = fooling(ad.robust, ad.clean_pred == y.cpu())
        adapter_same = bool((ad.robust == (~fb_res["success"] & clean_correct)).all())
        out()
        out(f"c. foolbox 3.3.4 SpatialAttack (7x7 translations, max 3 px, no rotation, grid search) vs "
            f"GridAttack grid:3 zero, B={best_b}")
        out("   fooling rate = images fooled / images correct unshifted; "
            "worst-case acc = correct under every shift of the set")
        out(f"   {'attack':<34} {'s':>8} {'fooled':>12} {'fool rate':>10} {'worst acc':>10}")
        rows = [("foolbox SpatialAttack (raw)", fb_res["seconds"], fb_fool),
                ("shiftattack FoolboxSpatialAttack", ad_res["seconds"], ad_fool),
                ("GridAttack grid:3 (early exit)", g_ee["seconds"], ours_fool),
                ("GridAttack grid:3 (every pair)", g_full["seconds"],
                 fooling(g_full["robust"], clean_correct))]
        for name, s, f in rows:
            out(f"   {name:<34} {s:>8.3f} {f['fooled_of_clean_correct']:>5}/{f['clean_correct']:<6} "
                f"{f['fooling_rate']:>10.4f} {f['worst_case_accuracy']:>10.4f}")
        out(f"   RATIO foolbox/ours wall time: {fb_res['seconds'] / g_ee['seconds']:.2f} (early exit), "
            f"{fb_res['seconds'] / g_full['seconds']:.2f} (every pair) "
            f"(target >= {TARGETS['foolbox_over_ours']})")
        out(f"   fooling rate ours - foolbox: {ours_fool['fooling_rate'] - fb_fool['fooling_rate']:+.4f} "
            f"(target >= 0); adapter == raw foolbox: "
            f"{adapter_same} "
            f"(per image; rates {ad_fool['fooling_rate']:.4f} vs {fb_fool['fooling_rate']:.4f})")
        out("   note: foolbox's 'integer' shifts are sub-pixel (align_corners=True: 3 px -> 2.906 px, "
            "bilinear), so the two sets differ")

    # d. memory
    mem = {}
    if not args.skip_memory:
        specs = ("grid:3",) if args.quick else ("grid:3", "grid:10")
        with tempfile.TemporaryDirectory(dir=args.cache_dir if args.cache_dir.exists() else None) as tmp:
            payload = Path(tmp) / "payload.pt"
            torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                        "width": 32, "images": x.cpu(), "labels": y.cpu()}, payload)
            mem["plain"] = peak_memory(payload, "plain", None, best_b, device)
            for spec in specs:
                mem[spec] = peak_memory(payload, "grid", spec, best_b, device)
        out()
        out(f"d. peak memory, B={best_b}, {x.shape[0]} images ({mem['plain']['method']})")
        out(f"   {'run':<28} {'peak MiB':>9}")
        out(f"   {'plain inference':<28} {C.mib(mem['plain']['peak_bytes']):>9.1f}")
        for spec in specs:
            size = parse_shifts(spec).size
            out(f"   {'GridAttack ' + spec + f' ({size} shifts)':<28} {C.mib(mem[spec]['peak_bytes']):>9.1f}")
        if "grid:10" in mem:
            mem["ratio_grid10_over_grid3"] = mem["grid:10"]["peak_bytes"] / mem["grid:3"]["peak_bytes"]
            out(f"   RATIO grid:10/grid:3 peak memory: {mem['ratio_grid10_over_grid3']:.3f} "
                f"(target within 1 +- {TARGETS['memory_ratio_within']})")

    elapsed = time.perf_counter() - t_start
    env["load_average_end"] = list(os.getloadavg())
    out()
    out(f"total {elapsed:.0f} s | load avg at end {' '.join(f'{v:.2f}' for v in env['load_average_end'])} "
        f"(2 cores shared: a load above ~2 means contended, noisy figures)")

    def strip(r):
        return {k: v for k, v in r.items() if not isinstance(v, torch.Tensor) and k != "result"}

    doc = {
        "benchmark": "attack_speed", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "environment": env, "model": minfo, "n_images": x.shape[0], "repeats": repeats,
        "quick": args.quick, "best_batch_size": best_b, "targets": TARGETS,
        "plain": [plain[b] for b in plain],
        "grid": [strip(r) for r in grid],
        "ratios": {
            "grid_vs_plain_early_exit": g_ee["ratio_vs_plain_best"],
            "grid_vs_plain_every_pair": g_full["ratio_vs_plain_best"],
        },
        "memory": mem, "table": lines,
    }
    if fb_res is not None:
        doc["foolbox"] = {
            "raw": {"seconds": fb_res["seconds"], "times": fb_res["times"], **fb_fool},
            "adapter": {"seconds": ad_res["seconds"], "times": ad_res["times"], **ad_fool,
                        "equals_raw_per_image": adapter_same},
            "ours_early_exit": {"seconds": g_ee["seconds"], **ours_fool},
            "ours_every_pair": {"seconds": g_full["seconds"],
                                **fooling(g_full["robust"], clean_correct)},
            "fooling_rate_definition": "fooled / correct unshifted",
        }
        doc["ratios"]["foolbox_over_ours_early_exit"] = fb_res["seconds"] / g_ee["seconds"]
        doc["ratios"]["foolbox_over_ours_every_pair"] = fb_res["seconds"] / g_full["seconds"]
    if "ratio_grid10_over_grid3" in mem:
        doc["ratios"]["memory_grid10_over_grid3"] = mem["ratio_grid10_over_grid3"]
    if args.json is None:
        args.json = args.cache_dir / ("attack_speed_quick.json" if args.quick else "attack_speed.json")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
