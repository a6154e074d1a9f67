"""Which inference options pay on this machine: each measured against plain fp32 inference, same run.

    python benchmarks/perf_options.py [--device cpu|cuda] [--models small_cnn,cifar_convnet,resnet18]
                                      [--rounds 5] [--json FILE]

For every model, forward-pass throughput (images/s) of a fixed batch of random
images, timed in interleaved rounds (every variant once per round, median over
rounds), for:

* ``baseline``: fp32, NCHW, ``torch.inference_mode`` (what ``ModelRunner`` does);
* ``no_grad``: ``torch.no_grad`` instead of ``inference_mode``;
* ``channels_last``: model and input in channels-last memory format;
* ``compile``: ``torch.compile(model)`` (default mode; compile time excluded, reported apart);
* ``bf16``: ``torch.autocast(bfloat16)`` (on the CPU only where the CPU has native BF16).

and then the real thing: the exact grid attack (``grid:2``, zero mode, no early exit,
``--attack-images`` random images) through :class:`~shiftattack.runtime.engine.ModelRunner`
as the ``attack`` command runs it, plainly, with ``channels_last=True`` (its
``--channels-last``) and with ``compile=True`` (its ``--compile``), in evaluated
(image, shift) pairs per second.

Prints images/s and the ratio to ``baseline`` for each, so a change goes into the
toolkit only where the ratio says it pays.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from shiftattack.models import load_model

SIZES = {"small_cnn": 32, "cifar_convnet": 32, "resnet18": 224, "torchvision:resnet18": 224}


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def variants(model: torch.nn.Module, x: torch.Tensor, device: str) -> dict[str, Callable[[], torch.Tensor]]:
    import copy

    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    out: dict[str, Callable[[], torch.Tensor]] = {}

    def run_inference(m, inp):
        with torch.inference_mode():
            return m(inp)

    def run_no_grad(m, inp):
        with torch.no_grad():
            return m(inp)

    out["baseline"] = lambda: run_inference(model, x)
    out["no_grad"] = lambda: run_no_grad(model, x)
    out["channels_last"] = lambda: run_inference(cl_model, x_cl)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if kind == "cuda" or cpu_has_bf16():
        def run_bf16():
            with torch.inference_mode(), torch.autocast(kind, dtype=torch.bfloat16):
                return model(x)

        out["bf16"] = run_bf16
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(name: str, batch: int, rounds: int, device: str, compile_too: bool) -> dict:
    torch.manual_seed(0)
    model = load_model(name).eval().to(device)
    size = SIZES.get(name, 32)
    x = torch.rand(batch, 3, size, size, device=device)
    runs = variants(model, x, device)
    notes = {}
    if compile_too:
        try:
            t0 = time.perf_counter()
            compiled = torch.compile(model)
            with torch.inference_mode():
                compiled(x)
            sync(device)
            notes["compile_seconds"] = time.perf_counter() - t0

            def run_compiled():
                with torch.inference_mode():
                    return compiled(x)

            runs["compile"] = run_compiled
        except Exception as exc:  # no compiler on the machine, unsupported op, ...
            notes["compile_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    for fn in runs.values():  # warm-up
        fn()
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, fn in runs.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = {k: {"images_per_s": batch / med[k], "ratio": med["baseline"] / med[k]} for k in runs}
    return {"model": name, "size": size, "batch": batch, "rows": rows, **notes}


def attack_rates(name: str, n: int, rounds: int, device: str, compile_too: bool) -> dict:
    """Grid-attack pairs/s through ModelRunner: plain, channels-last, compiled (interleaved rounds)."""
    from shiftattack.api import make_attack
    from shiftattack.runtime.engine import ModelRunner
    from shiftattack.shifts.threats import ThreatModel, parse_shifts

    torch.manual_seed(0)
    model = load_model(name).eval()
    size = SIZES.get(name, 32)
    images = torch.rand(n, 3, size, size)
    with torch.inference_mode():
        labels = model(images).argmax(1)  # every image correct unshifted: the whole grid is searched
    threat = ThreatModel(parse_shifts("grid:2"), mode="zero")
    options = {"baseline": {}, "channels_last": {"channels_last": True}}
    if compile_too:
        options["compile"] = {"compile": True}
    runners = {k: ModelRunner(model, device, **o) for k, o in options.items()}
    attack = make_attack(threat, "grid", batch_size=256, early_exit=False)
    first = {}
    for k, runner in runners.items():  # warm-up (and compilation)
        t0 = time.perf_counter()
        first[k] = attack(runner, images, labels)
        first[k + "_first_call_seconds"] = time.perf_counter() - t0
    times: dict[str, list[float]] = {k: [] for k in runners}
    pairs = int(first["baseline"].n_evaluated.sum())
    for _ in range(rounds):
        for k, runner in runners.items():
            sync(device)
            t0 = time.perf_counter()
            attack(runner, images, labels)
            sync(device)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    same = {k: bool((first[k].robust == first["baseline"].robust).all()) for k in runners}
    return {"model": name, "images": n, "pairs": pairs,
            "rows": {k: {"pairs_per_s": pairs / med[k], "ratio": med["baseline"] / med[k],
                         "same_verdicts": same[k], "first_call_seconds": first[k + "_first_call_seconds"]}
                     for k in runners}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", default="small_cnn,cifar_convnet,torchvision:resnet18")
    p.add_argument("--batch", type=int, default=None, help="images per pass (default 256 at 32 px, 16 at 224 px)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--attack-images", type=int, default=100, help="images of the grid-attack measurement (0: skip)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results = []
    print(f"device {args.device} | torch {torch.__version__} | threads {torch.get_num_threads()} | "
          f"CPU BF16 {cpu_has_bf16()}")
    print(f"{'model':24} {'variant':14} {'images/s':>10} {'ratio':>7}")
    for name in args.models.split(","):
        batch = args.batch or (256 if SIZES.get(name, 32) <= 64 else 16)
        r = measure(name, batch, args.rounds, args.device, not args.no_compile)
        results.append(r)
        for k, row in r["rows"].items():
            print(f"{name:24} {k:14} {row['images_per_s']:10.0f} {row['ratio']:7.2f}")
        if "compile_seconds" in r:
            print(f"{'':24} (compile took {r['compile_seconds']:.1f} s)")
        if "compile_error" in r:
            print(f"{'':24} compile failed: {r['compile_error']}")
    attacks = []
    if args.attack_images:
        print(f"\ngrid:2 attack, zero mode, no early exit, {args.attack_images} images, batch 256")
        print(f"{'model':24} {'variant':14} {'pairs/s':>10} {'ratio':>7} {'same verdicts':>14}")
        for name in args.models.split(","):
            if SIZES.get(name, 32) > 64:
                continue  # 224 px models: the inference table above is enough on a CPU
            r = attack_rates(name, args.attack_images, args.rounds, args.device, not args.no_compile)
            attacks.append(r)
            for k, row in r["rows"].items():
                print(f"{name:24} {k:14} {row['pairs_per_s']:10.0f} {row['ratio']:7.2f} "
                      f"{str(row['same_verdicts']):>14}")
    if args.json:
        from shiftattack.runtime.results import write_json

        write_json(args.json, {"device": args.device, "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "machine": platform.processor(),
                               "cpu_bf16": cpu_has_bf16(), "results": results, "attack": attacks})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
