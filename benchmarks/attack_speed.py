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
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from shiftattack.attacks import FoolboxSpatialAttack, GridAttack  # noqa: E402
from shiftattack.data import load_dataset  # noqa: E402
from shiftattack.models import SmallCNN  # noqa: E402
from shiftattack.runtime.engine import resolve_device  # noqa: E402
from shiftattack.shifts.threats import ThreatModel, parse_shifts  # noqa: E402

PLAIN_BATCHES = (64, 128, 256, 512, 1024, 2048)
QUICK_BATCHES = (64, 256)
WARMUP = [1]  # untimed warm-up runs before each timed figure (0 with --quick)
TARGETS = {"grid_vs_plain": 0.9, "foolbox_over_ours": 3.0, "memory_ratio_within": 0.10}


# ----------------------------------------------------------------------------- measurements


class CallLog(nn.Module):
    """Wraps the model and records the batch size of every call (about 1 us per call).

    Used for every timed run, plain and attacks alike, so the cost is the same on
    both sides of a ratio; it tells how full the attack's forward passes are.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.sizes: list[int] = []

    def forward(self, x):
        self.sizes.append(int(x.shape[0]))
        return self.model(x)

    def take(self) -> dict:
        sizes, self.sizes = self.sizes, []
        return {"model_calls": len(sizes), "model_images": sum(sizes),
                "distinct_batch_sizes": len(set(sizes)),
                "max_batch": max(sizes, default=0)}


def plain_job(model, x, batch_size):
    """One pass of ``model`` over ``x`` in batches of ``batch_size`` (inference mode)."""

    def run():
        with torch.inference_mode():
            for s in range(0, x.shape[0], batch_size):
                model(x[s : s + batch_size])
        return model.take()

    return run, run


def grid_attack(spec, batch_size, early_exit=True):
    return GridAttack(ThreatModel(parse_shifts(spec), mode="zero"), batch_size=batch_size,
                      early_exit=early_exit)


def grid_job(model, x, y, spec, batch_size, early_exit, device):
    atk = grid_attack(spec, batch_size, early_exit)
    k = max(2, batch_size // 8)

    def run():
        res = atk(model, x, y, device=device)
        return res, model.take()

    def warm():
        atk(model, x[:k], y[:k], device=device)
        model.take()

    return run, warm


def foolbox_job(model, x, y, batch_size, device):
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
        return torch.cat(success), model.take()

    def warm():
        attack(fmodel, x[:64].to(device), fb.criteria.Misclassification(y[:64].to(device)))
        model.take()

    return run, warm


def adapter_job(model, x, y, batch_size, device):
    atk = FoolboxSpatialAttack(max_translation=3, num_translations=7, max_rotation=0, num_rotations=1,
                               batch_size=batch_size)

    def run():
        return atk(model, x, y, device=device), model.take()

    def warm():
        atk(model, x[:64], y[:64], device=device)
        model.take()

    return run, warm


def interleaved(jobs, repeats, device):
    """Time ``{name: (run, warm)}`` round-robin; see ``_common.time_interleaved``."""
    return C.time_interleaved({k: v[0] for k, v in jobs.items()}, repeats, warmup=WARMUP[0],
                              warmup_fns={k: v[1] for k, v in jobs.items()}, device=device)


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
        fn()  # warm-up, as for the attack below
        return fn
    atk = grid_attack(spec, batch_size)
    # a tiny call first, so that one-time lazy initialisation is not counted as the attack's peak
    atk(model, x[:2], y[:2], device=device)
    return lambda: atk(model, x, y, device=device)


#: memory columns: name -> (exact malloc, extra child environment); CPU only
MEMORY_MODES = {
    "live": (True, {}),
    "rss": (False, {}),
    "live_nocache": (True, {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"}),
}


def peak_memory(payload_path, kind, spec, batch_size, device, mode):
    exact, env = MEMORY_MODES[mode] if device.type == "cpu" else (False, {})
    return C.peak_memory(_memory_setup, str(payload_path), kind, spec, batch_size, str(device),
                         device=device, exact_malloc=exact, env=env)


# ----------------------------------------------------------------------------- main


def fb_version():
    try:
        import foolbox

        return foolbox.__version__
    except ImportError:
        return "(not installed)"


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

    # a. plain inference (round-robin over the batch sizes)
    net = CallLog(model).eval()
    tile = max(2 * max(batches), x.shape[0])
    xp = x.repeat((tile + x.shape[0] - 1) // x.shape[0], 1, 1, 1)[:tile]
    t = interleaved({b: plain_job(net, xp, b) for b in batches}, repeats, device)
    plain = {b: {"batch_size": b, "images": tile, "seconds": t[b]["median"], "times": t[b]["times"],
                 "images_per_s": tile / t[b]["median"]} for b in batches}
    best_b = max(plain, key=lambda b: plain[b]["images_per_s"])
    base = plain[best_b]["images_per_s"]
    out()
    out(f"a. plain inference (inference_mode, {tile} images tiled from the subset, full batches; "
        "batch sizes timed round-robin)")
    out(f"   {'batch':>6} {'images/s':>10} {'s':>8}")
    for b, r in plain.items():
        mark = "   <- best B" if b == best_b else ""
        out(f"   {b:>6} {r['images_per_s']:>10.0f} {r['seconds']:>8.3f}{mark}")

    # b. grid attack throughput: per batch size, plain@B, early exit, every pair, round-robin
    others = [] if args.quick else sorted({b for b in (256, 1024) if b in plain} - {best_b})[:2]
    grid = []
    for b in [best_b] + others:
        t = interleaved({"plain": plain_job(net, xp, b),
                         True: grid_job(net, x, y, "grid:3", b, True, device),
                         False: grid_job(net, x, y, "grid:3", b, False, device)}, repeats, device)
        plain_rates = [tile / v for v in t["plain"]["times"]]
        for ee in (True, False):
            res, calls = t[ee]["result"]
            pairs = int(res.n_evaluated.sum())
            rates = [pairs / v for v in t[ee]["times"]]
            grid.append({
                "spec": "grid:3", "batch_size": b, "early_exit": ee, "seconds": t[ee]["median"],
                "times": t[ee]["times"], "pairs": pairs, "pairs_per_s": pairs / t[ee]["median"],
                "plain_same_rounds_images_per_s": tile / t["plain"]["median"],
                "ratio_vs_plain_same_rounds": C.round_ratio(rates, plain_rates),
                "ratio_vs_plain_best_a": pairs / t[ee]["median"] / base,
                "mean_batch_fill": calls["model_images"] / calls["model_calls"] / b, **calls,
                "clean_accuracy": res.clean_accuracy, "worst_case_accuracy": res.worst_case_accuracy,
                "robust": res.robust, "clean_pred": res.clean_pred})
    out()
    out("b. GridAttack grid:3 zero (49 shifts): pairs/s = n_evaluated.sum() / wall time "
        "(clean pass included)")
    out("   /plain = median over rounds of (pairs/s) / (plain images/s at the same B, timed in the same "
        "rounds); /a = vs table a's best")
    out(f"   {'batch':>6} {'early_exit':>10} {'pairs':>7} {'s':>7} {'pairs/s':>8} {'/plain':>7} {'/a':>6} "
        f"{'calls':>6} {'images':>7} {'fill':>5} {'sizes':>5}")
    for r in grid:
        out(f"   {r['batch_size']:>6} {str(r['early_exit']):>10} {r['pairs']:>7} {r['seconds']:>7.3f} "
            f"{r['pairs_per_s']:>8.0f} {r['ratio_vs_plain_same_rounds']:>7.3f} "
            f"{r['ratio_vs_plain_best_a']:>6.3f} "
            f"{r['model_calls']:>6} {r['model_images']:>7} {r['mean_batch_fill']:>5.2f} "
            f"{r['distinct_batch_sizes']:>5}")
    out("   calls/images = model calls and images through the model (confirmations and re-verification "
        "included); fill = images per call / B; sizes = distinct batch sizes the model saw")
    g_ee = next(r for r in grid if r["batch_size"] == best_b and r["early_exit"])
    g_full = next(r for r in grid if r["batch_size"] == best_b and not r["early_exit"])
    out(f"   RATIO grid/plain at B={best_b}: early exit {g_ee['ratio_vs_plain_same_rounds']:.3f}, "
        f"every pair {g_full['ratio_vs_plain_same_rounds']:.3f} (target >= {TARGETS['grid_vs_plain']})")
    clean_correct = (g_ee["clean_pred"] == y.cpu())
    if bool((g_full["robust"] != g_ee["robust"]).any()):
        out("   WARNING: early_exit=True and False disagree on which images are robust")

    # c. foolbox, round-robin with ours
    fb_doc = None
    if not args.skip_foolbox:
        t = interleaved({"raw": foolbox_job(net, x, y, best_b, device),
                         "adapter": adapter_job(net, x, y, best_b, device),
                         "ee": grid_job(net, x, y, "grid:3", best_b, True, device),
                         "full": grid_job(net, x, y, "grid:3", best_b, False, device)}, repeats, device)
        success = t["raw"]["result"][0]
        ad = t["adapter"]["result"][0]
        fools = {"raw": fooling(~success, clean_correct),
                 "adapter": fooling(ad.robust, ad.clean_pred == y.cpu()),
                 "ee": fooling(t["ee"]["result"][0].robust, clean_correct),
                 "full": fooling(t["full"]["result"][0].robust, clean_correct)}
        adapter_same = bool((ad.robust == (~success & clean_correct)).all())
        ratio_ee = C.round_ratio(t["raw"]["times"], t["ee"]["times"])
        ratio_full = C.round_ratio(t["raw"]["times"], t["full"]["times"])
        names = {"raw": "foolbox SpatialAttack (raw)", "adapter": "shiftattack FoolboxSpatialAttack",
                 "ee": "GridAttack grid:3 (early exit)", "full": "GridAttack grid:3 (every pair)"}
        out()
        out(f"c. foolbox {fb_version()} SpatialAttack (7x7 translations, max 3 px, no rotation, grid search) "
            f"vs GridAttack grid:3 zero, B={best_b}, same {x.shape[0]} images, timed round-robin")
        out("   fooling rate = images fooled / images correct unshifted; "
            "worst acc = correct under every shift of the set")
        out(f"   {'attack':<34} {'s':>8} {'fooled':>12} {'fool rate':>10} {'worst acc':>10} {'calls':>6} "
            f"{'images':>7}")
        for k, name in names.items():
            f, calls = fools[k], t[k]["result"][1]
            out(f"   {name:<34} {t[k]['median']:>8.3f} "
                f"{f['fooled_of_clean_correct']:>5}/{f['clean_correct']:<6} "
                f"{f['fooling_rate']:>10.4f} {f['worst_case_accuracy']:>10.4f} {calls['model_calls']:>6} "
                f"{calls['model_images']:>7}")
        out(f"   RATIO foolbox/ours wall time: {ratio_ee:.2f} (early exit), {ratio_full:.2f} (every pair) "
            f"(target >= {TARGETS['foolbox_over_ours']}; median of per-round ratios)")
        gain = fools["ee"]["fooling_rate"] - fools["raw"]["fooling_rate"]
        out(f"   fooling rate ours - foolbox: {gain:+.4f} "
            f"(target >= 0); adapter == raw foolbox, image by image: {adapter_same}")
        out("   note: foolbox's 'integer' shifts are sub-pixel (align_corners=True: 3 px -> 2.906 px, "
            "bilinear), so the two sets differ")
        fb_doc = {"fooling_rate_definition": "fooled / correct unshifted", "adapter_equals_raw": adapter_same,
                  "ratio_foolbox_over_ours_early_exit": ratio_ee,
                  "ratio_foolbox_over_ours_every_pair": ratio_full,
                  **{k: {"name": names[k], "seconds": t[k]["median"], "times": t[k]["times"], **fools[k],
                         **t[k]["result"][1]} for k in names}}

    # d. memory
    mem = {}
    if not args.skip_memory:
        specs = ("grid:3",) if args.quick else ("grid:3", "grid:10")
        # CPU: two allocator settings (see _common.peak_memory); CUDA: the caching allocator's peak
        modes = (["live"] if args.quick else list(MEMORY_MODES)) if device.type == "cpu" else ["cuda"]
        runs = [("plain", "plain", None)] + [(spec, "grid", spec) for spec in specs]
        with tempfile.TemporaryDirectory(dir=args.cache_dir if args.cache_dir.exists() else None) as tmp:
            payload = Path(tmp) / "payload.pt"
            torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                        "width": 32, "images": x.cpu(), "labels": y.cpu()}, payload)
            for name, kind, spec in runs:
                mem[name] = {m: peak_memory(payload, kind, spec, best_b, device, m) for m in modes}
        out()
        out(f"d. peak memory above the process's resident baseline (model and images loaded), "
            f"B={best_b}, {x.shape[0]} images, fresh spawn child per figure")
        if device.type == "cpu":
            out("   live = VmHWM growth with MALLOC_MMAP_THRESHOLD_=65536 (follows live allocations); "
                "rss = glibc's default malloc (what a process holds, fragmentation included); "
                "live_nocache = live with ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 (oneDNN's per-shape cache off)")
        out(f"   {'run':<30}" + "".join(f" {m + ' MiB':>17}" for m in modes))
        for name, kind, spec in runs:
            label = f"plain inference, batch {best_b}" if kind == "plain" else \
                f"GridAttack {spec} ({parse_shifts(spec).size} shifts)"
            out(f"   {label:<30}" + "".join(f" {C.mib(mem[name][m]['peak_bytes']):>17.1f}" for m in modes))
        if "grid:10" in mem:
            mem["ratio_grid10_over_grid3"] = {
                m: mem["grid:10"][m]["peak_bytes"] / mem["grid:3"][m]["peak_bytes"] for m in modes}
            out(f"   {'RATIO grid:10 / grid:3':<30}"
                + "".join(f" {mem['ratio_grid10_over_grid3'][m]:>17.3f}" for m in modes)
                + f"   (target within 1 +- {TARGETS['memory_ratio_within']})")

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
            "grid_vs_plain_early_exit": g_ee["ratio_vs_plain_same_rounds"],
            "grid_vs_plain_every_pair": g_full["ratio_vs_plain_same_rounds"],
        },
        "memory": mem, "table": lines,
    }
    if fb_doc is not None:
        doc["foolbox"] = fb_doc
        doc["ratios"]["foolbox_over_ours_early_exit"] = fb_doc["ratio_foolbox_over_ours_early_exit"]
        doc["ratios"]["foolbox_over_ours_every_pair"] = fb_doc["ratio_foolbox_over_ours_every_pair"]
    if "ratio_grid10_over_grid3" in mem:
        for m, r in mem["ratio_grid10_over_grid3"].items():
            doc["ratios"][f"memory_grid10_over_grid3_{m}"] = r
    if args.json is None:
        args.json = args.cache_dir / ("attack_speed_quick.json" if args.quick else "attack_speed.json")
    C.save_figures(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
