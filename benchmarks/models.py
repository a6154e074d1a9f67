"""Model family costs: inference throughput, first-layer cost of CMod vs BlurPool, training time.

    python benchmarks/models.py [--sizes 32,224] [--names PATTERN] [--batch 64] [--quick]

a. Inference throughput (images/s, ``torch.inference_mode``, float32) of every
   registered model at batch ``--batch`` on 32x32 and 224x224 inputs (sizes a
   model cannot take are skipped), and each model's ratio to the baseline of
   its architecture (``resnet18_blur4`` / ``resnet18``) timed interleaved in the
   same run.
b. First-layer cost per Gabor channel of CMod and BlurPool relative to the
   baseline RMax (multiply-adds and activation memory, counted as
   :func:`shiftattack.models.cmod_cost.first_layer_cost` documents), beside the
   CMod paper's Table III ratios, and the measured wall time of the first layer.
c. Training time per CIFAR-10 epoch of ``cifar_convnet`` and its variants
   (timed steps at batch 256, the ``shiftattack train`` defaults, scaled to
   50,000 images), as ratios to the baseline.

Every figure is measured in this run and written to ``--json``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from shiftattack.models import create_model, list_models  # noqa: E402
from shiftattack.models.train import augment, bf16_is_fast  # noqa: E402

VARIANT = re.compile(r"^(?P<arch>.+?)(?P<variant>_blur\d(_cmod)?|_cmod|_aps)?$")


def arch_of(name: str) -> str:
    """``resnet18_blur4_cmod`` -> ``resnet18`` (the baseline a variant is compared with)."""
    m = VARIANT.match(name)
    return m.group("arch") if m else name


def throughput(names: list[str], sizes: list[int], batch: int, repeats: int) -> list[dict]:
    """Images per second of each model, interleaved with its architecture's baseline."""
    rows = []
    for size in sizes:
        groups: dict[str, list[str]] = {}
        for name in names:
            groups.setdefault(arch_of(name), []).append(name)
        for arch, members in groups.items():
            built = {n: create_model(n).eval() for n in sorted(set(members) | ({arch} & set(list_models())))}
            # registered models carry the smallest side they accept (models/normalize.py)
            models = {n: m for n, m in built.items() if getattr(m, "min_input_size", 1) <= size}
            if not set(models) & set(members):
                continue
            x = torch.rand(batch, 3, size, size)
            small = x[:2]

            def run(model, inp):
                with torch.inference_mode():
                    model(inp)

            fns = {n: (lambda m=m, x=x: run(m, x)) for n, m in models.items()}
            warm = {n: (lambda m=m, s=small: run(m, s)) for n, m in models.items()}
            t = C.time_interleaved(fns, repeats=repeats, warmup=1, warmup_fns=warm)
            for n in models:
                row = {"model": n, "size": size, "batch": batch, "images_per_s": batch / t[n]["median"]}
                if arch in models and n != arch:
                    row["vs_baseline"] = C.round_ratio(t[arch]["times"], t[n]["times"])
                rows.append(row)
                ratio = f"   x{row['vs_baseline']:.3f} of {arch}" if "vs_baseline" in row else ""
                print(f"{size:4d} px  {n:28s} {row['images_per_s']:9.1f} img/s{ratio}", flush=True)
            del models
    return rows


def first_layer(repeats: int) -> dict:
    """Analytic first-layer cost ratios (CMod, BlurPool vs baseline) and measured first-layer time."""
    try:
        from shiftattack.models import cmod_cost
    except ImportError:
        print("first-layer cost: shiftattack.models.cmod_cost not available; skipped")
        return {}
    out = {}
    cases = {"alexnet": ("alexnet", 224), "resnet18": ("resnet18", 224),
             "cifar_convnet": (create_model("cifar_convnet"), 32)}
    for label, (arch, size) in cases.items():
        cost = cmod_cost.first_layer_cost(arch, input_size=size, measure_time=True, repeats=repeats,
                                          out_channels=64 if label != "cifar_convnet" else 32)
        out[label] = json.loads(cost.to_json())
        (bc, bm), (cc, cm) = cost.ratios["blurpool"], cost.ratios["cmod"]
        paper = cost.paper or {}
        print(f"first layer {label} ({size} px, per Gabor channel / RMax): BlurPool compute {bc:.2f} "
              f"memory {bm:.2f}; CMod compute {cc:.2f} memory {cm:.2f}; paper {paper}; "
              f"seconds {cost.seconds}", flush=True)
    return out


def training_epoch(names: list[str], steps: int, batch: int = 256) -> list[dict]:
    """Seconds per 50,000-image epoch, from ``steps`` timed steps (after 2 warm-up steps)."""
    device = torch.device("cpu")
    bf16 = bf16_is_fast(device)
    data = torch.rand(batch, 3, 32, 32)
    labels = torch.randint(0, 10, (batch,))
    gen = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {n: [] for n in names}
    setups = {}
    for n in names:
        model = create_model(n).to(memory_format=torch.channels_last).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        setups[n] = (model, opt)

    def step(n):
        model, opt = setups[n]
        x = augment(data, 4, gen).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), labels, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for n in names:
        for _ in range(2):
            step(n)
    for _ in range(steps):
        for n in names:
            t0 = time.perf_counter()
            step(n)
            times[n].append(time.perf_counter() - t0)
    rows = []
    base = names[0]
    for n in names:
        per_epoch = sorted(times[n])[len(times[n]) // 2] * 50_000 / batch
        row = {"model": n, "seconds_per_epoch": per_epoch, "precision": "bf16" if bf16 else "fp32",
               "vs_baseline": C.round_ratio(times[n], times[base])}
        rows.append(row)
        print(f"train {n:28s} {per_epoch:7.1f} s/epoch   x{row['vs_baseline']:.2f} of {base}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="32,224", help="input sides to time (default 32,224)")
    p.add_argument("--names", default="*", help="shell pattern of registered names (default: all)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=10)
    p.add_argument("--skip", default="", help="comma list of parts to skip: throughput,first_layer,training")
    p.add_argument("--quick", action="store_true", help="32 px only, one repeat, 3 training steps")
    p.add_argument("--json", default="benchmarks/results/models.json")
    args = p.parse_args()
    if args.quick:
        args.sizes, args.repeats, args.train_steps = "32", 1, 3
    skip = set(filter(None, args.skip.split(",")))
    names = [n for n in list_models() if fnmatch.fnmatch(n, args.names)]
    doc = {"environment": C.environment(torch.device("cpu")), "batch": args.batch}
    if "throughput" not in skip:
        sizes = [int(s) for s in args.sizes.split(",")]
        doc["throughput"] = throughput(names, sizes, args.batch, args.repeats)
    if "first_layer" not in skip:
        doc["first_layer"] = first_layer(args.repeats)
    if "training" not in skip:
        cifar = [n for n in list_models("cifar_convnet*")]
        cifar.sort(key=lambda n: (n != "cifar_convnet", n))
        doc["training"] = training_epoch(cifar, args.train_steps)
    C.save_figures(args.json, doc)


if __name__ == "__main__":
    main()
