"""GPU figures in one command: attack, corruptions and exact certification against their baselines.

    python benchmarks/gpu.py [--device cuda] [--data-dir DIR] [--json FILE] [--quick]

Measured on one device (default: CUDA when available, else the CPU), all in this process:

* **plain inference** of torchvision ResNet-50 at 224 px (random weights: speed does not
  depend on them), the fastest of a few batch sizes, at fp32 and bf16 (``torch.autocast``),
  in images/s: the ceiling the attack is compared with;
* **the attack** (``shiftattack.attack``, exact ``grid:3``, circular and crop modes, fp32 and bf16,
  the batch size that plain inference found fastest): (image, shift) pairs per second and
  ``ratio_ceiling`` = pairs/s over plain inference's images/s at the same precision;
* **the corruption suite** (every ImageNet-C corruption, severity 3, batches of 8 at 224 px on
  the device) in images/s, against ``imagecorruptions`` on the CPU (per image, its only
  interface) on the same images, when that package is installed;
* **exact certification** (``certify_exact``, ``grid:3``, circular) in images/s and pairs/s.

Images: CIFAR-10 test images upscaled to 224 px when ``--data-dir`` (or ``SHIFTATTACK_DATA_DIR``)
holds them, else smooth random images (speed does not depend on their content, except through
the attack's early exit, which the reported pairs/s accounts for). Labels are the model's own
clean predictions, so every image enters the search. ``--quick`` (the CI smoke run on the CPU):
ResNet-18 at 64 px, 4 images, two corruptions. Writes one JSON with the device name
(default ``benchmarks/results/gpu_<device>.json``).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from shiftattack import attack  # noqa: E402
from shiftattack.api import make_canvas  # noqa: E402
from shiftattack.certify.exact import certify_exact  # noqa: E402
from shiftattack.corruptions import corrupt, list_corruptions  # noqa: E402
from shiftattack.data import load_dataset  # noqa: E402
from shiftattack.models import load_model  # noqa: E402
from shiftattack.runtime.engine import ModelRunner, resolve_device  # noqa: E402
from shiftattack.shifts.threats import ThreatModel, parse_shifts  # noqa: E402

FULL = {"model": "torchvision:resnet50", "size": 224, "n_images": 64, "batches": (64, 128, 256, 512),
        "corruptions": None, "corrupt_images": 16, "certify_images": 16, "seconds": 2.0}
QUICK = {"model": "torchvision:resnet18", "size": 64, "n_images": 4, "batches": (4, 8),
         "corruptions": ["gaussian_noise", "brightness"], "corrupt_images": 2, "certify_images": 2,
         "seconds": 0.2}


def _images(data_dir, n: int, size: int) -> tuple[torch.Tensor, str]:
    """float (n, 3, size, size) in [0, 1] and where they came from."""
    try:
        data = load_dataset(C.cifar_spec(data_dir, "test"), limit=n, progress=False)
        x = F.interpolate(data.float_images(), size=size, mode="bicubic", align_corners=False)
        return x.clamp(0, 1), f"CIFAR-10 test, bicubic to {size} px"
    except (SystemExit, Exception):  # no data on this machine: smooth random images
        g = torch.Generator().manual_seed(0)
        coarse = torch.rand(n, 3, 8, 8, generator=g)
        return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False), "smooth random"


def _plain(runner: ModelRunner, x: torch.Tensor, batches, seconds: float) -> dict:
    """Images/s of plain batched inference at each batch size (x repeated to the size)."""
    rates = {}
    for b in batches:
        xb = x[torch.arange(b) % x.shape[0]].to(runner.device)
        runner(xb)
        C.sync(runner.device)
        n, t0 = 0, time.perf_counter()
        while n < 2 * b or time.perf_counter() - t0 < seconds:
            runner(xb)
            n += b
        C.sync(runner.device)
        rates[b] = n / (time.perf_counter() - t0)
    best = max(rates, key=rates.get)
    return {"images_per_second": {str(b): r for b, r in rates.items()}, "best_batch": best,
            "best": rates[best]}


def _attack_rate(model, x, labels, mode: str, precision: str, batch: int, device) -> dict:
    images = make_canvas(x, 3) if mode == "crop" else x
    kwargs = {"crop_size": tuple(x.shape[-2:])} if mode == "crop" else {}
    attack(model, images[:1], labels[:1], shifts="grid:1", mode=mode, device=device, precision=precision,
           batch_size=batch, **kwargs)  # warm-up
    C.sync(device)
    t0 = time.perf_counter()
    result = attack(model, images, labels, shifts="grid:3", mode=mode, device=device, precision=precision,
                    batch_size=batch, **kwargs)
    C.sync(device)
    seconds = time.perf_counter() - t0
    pairs = int(result.n_evaluated.sum())
    return {"seconds": seconds, "pairs": pairs, "pairs_per_second": pairs / seconds,
            "worst_case_accuracy": result.worst_case_accuracy}


def _corruptions(x: torch.Tensor, names, device) -> dict:
    """Our suite on the device (batches of 8) against imagecorruptions on the CPU, images/s each."""
    names = names or list_corruptions()
    ours_s, rows = 0.0, {}
    xd = x.to(device)
    for name in names:
        g = torch.Generator(device=device).manual_seed(0)
        corrupt(xd[:1], name, 3, generator=g)  # warm-up (kernels, cached constants)
        C.sync(device)
        t0 = time.perf_counter()
        for s in range(0, xd.shape[0], 8):
            corrupt(xd[s : s + 8], name, 3, generator=g).mul(255).round().to(torch.uint8).cpu()
        C.sync(device)
        rows[name] = {"ours_s": time.perf_counter() - t0}
        ours_s += rows[name]["ours_s"]
    doc = {"severity": 3, "n_images": int(x.shape[0]), "per_corruption": rows,
           "ours_images_per_second": len(names) * x.shape[0] / ours_s}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from imagecorruptions import corrupt as reference
    except Exception as exc:  # noqa: BLE001 - not installed, or broken on this numpy
        doc["imagecorruptions"] = f"not available: {exc}"
        return doc
    arrays = (x.permute(0, 2, 3, 1).mul(255).round().to(torch.uint8).numpy())
    ref_s, both_ours = 0.0, 0.0
    for name in names:
        try:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for a in arrays:
                    np.asarray(reference(a, corruption_name=name, severity=3))
            rows[name]["imagecorruptions_cpu_s"] = time.perf_counter() - t0
            rows[name]["ratio"] = rows[name]["imagecorruptions_cpu_s"] / rows[name]["ours_s"]
            ref_s += rows[name]["imagecorruptions_cpu_s"]
            both_ours += rows[name]["ours_s"]
        except Exception as exc:  # noqa: BLE001 - it crashes on some corruptions with numpy 2
            rows[name]["imagecorruptions_cpu_s"] = f"crashes: {type(exc).__name__}"
    doc["ratio_where_both_run"] = ref_s / both_ours if both_ours else None
    return doc


def _certify(model, x, labels, batch: int, device) -> dict:
    threat = ThreatModel(parse_shifts("grid:3"), mode="circular")
    certify_exact(model, x[:1], labels[:1], threat, batch_size=batch, device=device)  # warm-up
    C.sync(device)
    t0 = time.perf_counter()
    result = certify_exact(model, x, labels, threat, batch_size=batch, device=device)
    C.sync(device)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "images_per_second": x.shape[0] / seconds,
            "pairs_per_second": int(result.n_evaluated.sum()) / seconds,
            "certified_accuracy": result.worst_case_accuracy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    C.add_data_dir_argument(parser)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (ResNet-18 at 64 px): the CI smoke run")
    parser.add_argument("--json", type=Path, help="output (default benchmarks/results/gpu_<device>.json)")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else C.cpu_model()
    print(f"device: {device} ({name}); model {cfg['model']} at {cfg['size']} px", flush=True)
    model = load_model(cfg["model"], init_seed=0).eval()
    x, source = _images(args.data_dir, cfg["n_images"], cfg["size"])
    with torch.inference_mode():
        labels = ModelRunner(model, device)(x).argmax(1).cpu()
    doc: dict = {"device": str(device), "device_name": name, "model": cfg["model"],
                 "weights": "random (seed 0)", "image_size": cfg["size"], "images": source,
                 "n_images": cfg["n_images"], "plain": {}, "attack": {}}
    for precision in ("fp32", "bf16"):
        runner = ModelRunner(model, device, precision=precision)
        plain = _plain(runner, x, cfg["batches"], cfg["seconds"])
        doc["plain"][precision] = plain
        print(f"plain {precision}: {plain['best']:.0f} img/s at batch {plain['best_batch']}", flush=True)
        for mode in ("circular", "crop"):
            row = _attack_rate(model, x, labels, mode, precision, plain["best_batch"], device)
            row["ratio_ceiling"] = row["pairs_per_second"] / plain["best"]
            doc["attack"][f"{mode}_{precision}"] = row
            print(f"attack grid:3 {mode} {precision}: {row['pairs_per_second']:.0f} pairs/s, "
                  f"ratio_ceiling {row['ratio_ceiling']:.3f}", flush=True)
    doc["certify_exact"] = _certify(model, x[: cfg["certify_images"]], labels[: cfg["certify_images"]],
                                    doc["plain"]["fp32"]["best_batch"], device)
    print(f"certify exact grid:3: {doc['certify_exact']['images_per_second']:.2f} img/s", flush=True)
    doc["corruptions"] = _corruptions(x[: cfg["corrupt_images"]], cfg["corruptions"], device)
    print(f"corruptions: {doc['corruptions']['ours_images_per_second']:.1f} img/s on {device}; "
          f"imagecorruptions ratio {doc['corruptions'].get('ratio_where_both_run')}", flush=True)
    doc["environment"] = {**C.environment(device), "quick": args.quick, "date": time.strftime("%Y-%m-%d")}
    slug = re.sub(r"[^a-z0-9]+", "_", (name if device.type == "cuda" else "cpu").lower()).strip("_")
    C.save_figures(args.json or C.BENCH_DIR / "results" / f"gpu_{slug}.json", doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
