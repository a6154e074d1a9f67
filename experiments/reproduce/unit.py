"""One unit of the reproduction: train one model, then every measurement of it, into one folder.

Files of a finished unit (``units/ARM-NAME-sSEED/``; small, committed; the weights stay in
``weights/``, which git ignores):

    unit.json        what ran (spec, seed, recipe, commit, versions, seconds per step), the
                     training log's summary, the weights' sha256, the normalised total
                     variation of every conv layer's filters
    per_image.csv    every test image (all 10,000 in the cpu tier): index, label, top-1
                     prediction; consistency agreements (of ``repeats`` pairs) under zero,
                     circular and crop shifts; flips of the 12 flip-rate pairs
    one_pixel.csv    the attack images: top-1 changes (of ``one_pixel_steps`` pairs) and MAC
                     under the sliding-crop and black-canvas protocols
    attack_MODE.csv  the exact grid:R attack per image (``shiftattack attack``'s results.csv),
    attack_MODE.json and its summary
    cifar10_c.json, cifar10_p.json   ``shiftattack benchmark`` summaries

The shift draws (consistency) use one fixed generator per mode, the same for every unit, so
all models see the same shifted views: the comparisons are paired per image and per view.
A unit's folder appears complete or not at all (written beside, then renamed).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from design import ATTACK_MODES, Arm, Sizes, unit_id

#: generator seeds of the consistency draws per mode (fixed: every unit sees the same views)
DRAW_SEEDS = {"zero": 1001, "circular": 1002, "crop": 1003}


def _cli(argv: list[str]) -> None:
    from shiftattack.cli import main

    code = main(argv)
    if code != 0:
        raise RuntimeError(f"shiftattack {' '.join(argv)} exited {code}")


class Timer:
    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    def __call__(self, name: str, fn):
        t = time.perf_counter()
        out = fn()
        self.steps[name] = round(time.perf_counter() - t, 1)
        print(f"    {name}: {self.steps[name]:.0f} s", flush=True)
        return out


def conv_tv(model: torch.nn.Module) -> list[dict]:
    """Normalised total variation of every spatial conv layer's filters, in registration order."""
    from shiftattack.models.smoothness import normalized_total_variation

    layers = []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d) and min(m.kernel_size) > 1 and m.groups == 1:
            tv = normalized_total_variation(m.weight)
            layers.append({"module": name, "kernel_size": list(m.kernel_size),
                           "per_filter": [round(float(v), 5) for v in tv]})
    return layers


def black_canvas(images: torch.Tensor, small: int) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3, H, W): each image downscaled to ``small`` px, centred on black."""
    h, w = images.shape[-2:]
    down = F.interpolate(images, size=(small, small), mode="bilinear", antialias=True, align_corners=False)
    canvas = torch.zeros_like(images)
    top, left = (h - small) // 2, (w - small) // 2
    canvas[..., top : top + small, left : left + small] = down.clamp(0, 1)
    return canvas


def _write_csv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def measure_shifts(model, test, attack_set, sizes: Sizes, folder: Path, timer: Timer,
                   device: torch.device | None = None, one_pixel: bool = True) -> None:
    """Clean predictions, consistency, flip rate (all test images); one-pixel protocols (attack set)."""
    from shiftattack.api import make_canvas
    from shiftattack.metrics import consistency, consistency_shifted, flip_rate, top1_change
    from shiftattack.runtime.engine import ModelRunner

    bs, r = sizes.batch_size, sizes.radius
    x = test.float_images()
    runner = ModelRunner(model, device or torch.device("cpu"), torch.float32, channels_last=True)

    def predict():
        with torch.inference_mode():
            return torch.cat([runner(x[i : i + bs]).argmax(1) for i in range(0, len(x), bs)])

    pred = timer("clean predictions", predict)
    cons = {}
    for mode in ("zero", "circular"):
        cons[mode] = timer(f"consistency {mode}", lambda m=mode: consistency_shifted(
            runner, x, mode=m, max_shift=r, n_repeats=sizes.repeats, generator=_generator(DRAW_SEEDS[m]),
            batch_size=bs))
    canvas = make_canvas(x, r, "reflect")
    cons["crop"] = timer("consistency crop", lambda: consistency(
        runner, canvas, size=tuple(x.shape[-2:]), n_repeats=sizes.repeats, max_offset=r,
        generator=_generator(DRAW_SEEDS["crop"]), batch_size=bs))
    flips = timer("flip rate", lambda: flip_rate(runner, canvas, mode="crop", size=tuple(x.shape[-2:]),
                                                 max_distance=r, batch_size=bs))
    n_pairs = 3 * r
    rows = zip(test.indices.tolist(), test.labels.tolist(), pred.tolist(),
               *[(cons[m].per_image * sizes.repeats).round().long().tolist() for m in ("zero", "circular", "crop")],
               (flips.per_image * n_pairs).round().long().tolist(), strict=True)
    _write_csv(folder / "per_image.csv",
               ["index", "label", "pred", "agree_zero", "agree_circular", "agree_crop", "flips"], rows)

    if not one_pixel:
        return
    xa = attack_set.float_images()
    steps, half = sizes.one_pixel_steps, sizes.one_pixel_steps // 2
    crop = timer("one-pixel sliding crop", lambda: top1_change(
        runner, make_canvas(xa, half, "reflect"), mode="crop", size=tuple(xa.shape[-2:]), n_shifts=steps,
        direction=(1, 0), start=(-half, 0), batch_size=bs))
    black = timer("one-pixel black canvas", lambda: top1_change(
        runner, black_canvas(xa, sizes.black_canvas_small), mode="zero", n_shifts=steps, direction=(1, 0),
        start=(-half, 0), batch_size=bs))
    rows = zip(attack_set.indices.tolist(), (crop.per_image_change * steps).round().long().tolist(),
               [f"{v:.5f}" for v in crop.per_image_mac.tolist()],
               (black.per_image_change * steps).round().long().tolist(),
               [f"{v:.5f}" for v in black.per_image_mac.tolist()], strict=True)
    _write_csv(folder / "one_pixel.csv", ["index", "changes_crop", "mac_crop", "changes_black", "mac_black"], rows)


def run_unit(arm: Arm, name: str, spec: str, seed: int, *, tier: str, sizes: Sizes, out: Path,
             commit: str, datasets: dict, device: str = "auto") -> Path:
    """Train and measure one unit; returns its finished folder ``out/units/ID``."""
    from shiftattack.models import file_sha256, load_model
    from shiftattack.runtime.engine import resolve_device

    uid = unit_id(arm.name, name, seed)
    data_sets = datasets[arm.dataset]
    final = out / "units" / uid
    tmp = out / "units" / f".{uid}.partial"
    weights_dir = out / "weights" / uid
    tmp.mkdir(parents=True, exist_ok=True)
    timer = Timer()
    train, test_spec = data_sets["train_spec"], data_sets["test_spec"]
    epochs = arm.epochs or sizes.epochs
    argv = ["train", "--model", spec, "--data", train, "--test-data", test_spec, "--epochs", str(epochs),
            "--seed", str(seed), "--augment-pad", str(arm.augment_pad), "--device", device, "--out", str(weights_dir),
            "--quiet"]
    if sizes.train_limit:
        argv += ["--limit", str(sizes.train_limit)]
    if sizes.test_limit:
        argv += ["--test-limit", str(sizes.test_limit)]
    log_path = weights_dir / "train_log.json"
    done = log_path.is_file() and json.loads(log_path.read_text()).get("finished")
    if not done:
        resume = (weights_dir / "checkpoint.pt").is_file()
        timer("train", lambda: _cli(argv + (["--resume"] if resume else ["--overwrite"])))
    log = json.loads(log_path.read_text())
    weights = weights_dir / "model.pt"
    model = load_model(spec, str(weights)).eval()

    measure_shifts(model, data_sets["test"], data_sets["attack"], sizes, tmp, timer, resolve_device(device),
                   one_pixel=arm.measure == "full")
    if arm.measure == "full":
        attacks_and_benchmarks(name, spec, weights, weights_dir, tmp, tier=tier, sizes=sizes, test_spec=test_spec,
                               out=out, device=device, timer=timer)
    doc = {
        "unit": uid, "arm": arm.name, "name": name, "model": spec, "seed": seed, "tier": tier,
        "recipe": {"augment_pad": arm.augment_pad, "description": arm.description, "dataset": arm.dataset,
                   "measure": arm.measure, **asdict(sizes), "epochs": epochs},
        "commit": commit,
        "weights_sha256": file_sha256(weights),
        "local_homogeneity": local_homogeneity(data_sets["test"].float_images()[:1000]),
        "train": {k: log.get(k) for k in ("test_accuracy", "train_seconds", "total_seconds")}
        | {"precision": log["config"].get("precision_used"),
           "final_train_accuracy": log["epochs"][-1].get("train_accuracy"),
           "final_train_loss": log["epochs"][-1].get("loss"),
           "epochs": [{k: e.get(k) for k in ("epoch", "loss", "train_accuracy", "seconds")} for e in log["epochs"]]},
        "conv_tv": conv_tv(model),
        "steps_seconds": timer.steps,
        "versions": versions(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (tmp / "unit.json").write_text(json.dumps(doc, indent=1) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def attacks_and_benchmarks(name: str, spec: str, weights: Path, weights_dir: Path, tmp: Path, *, tier: str,
                           sizes: Sizes, test_spec: str, out: Path, device: str, timer: Timer) -> None:
    """The exact grid attacks and the CIFAR-10-C/-P benchmarks (``shiftattack`` commands), summaries copied."""
    model_args = ["--model", spec, "--weights", str(weights)]
    common = ["--device", device, "--batch-size", str(sizes.batch_size), "--overwrite", "--quiet"]
    for mode in ATTACK_MODES.get(name, ATTACK_MODES["default"]):
        dest = weights_dir / f"attack_{mode}"
        a = ["attack", *model_args, "--data", test_spec, "--limit", str(sizes.attack_images),
             "--shifts", f"grid:{sizes.radius}", "--mode", mode, "--order", "radius", "--channels-last",
             *common, "--out", str(dest)]
        if mode == "crop":  # CIFAR-10 has nothing outside its 32 px: windows move over a reflect-padded canvas
            a += ["--canvas-pad", str(sizes.radius), "--canvas-pad-mode", "reflect"]
        timer(f"attack {mode}", lambda a=a: _cli(a))
        shutil.copyfile(dest / "results.csv", tmp / f"attack_{mode}.csv")
        summary = json.loads((dest / "results.json").read_text())
        summary.pop("images", None)  # the per-image rows are the CSV beside it
        (tmp / f"attack_{mode}.json").write_text(json.dumps(summary, indent=1) + "\n")
    for suite, n in (("cifar10-c", sizes.c_images), ("cifar10-p", sizes.p_images)):
        dest = weights_dir / suite
        b = ["benchmark", "--suite", suite, *model_args, "--data", test_spec, "--limit", str(n),
             "--source", str(out / "generated" / suite), *common, "--out", str(dest)]
        if tier in ("quick", "gpu_smoke"):
            b += ["--corruptions", "gaussian_noise,contrast" if suite == "cifar10-c" else "translate,brightness"]
        timer(suite, lambda b=b: _cli(b))
        shutil.copyfile(dest / "results.json", tmp / f"{suite.replace('-', '_')}.json")


def local_homogeneity(images: torch.Tensor) -> float:
    """``1 - E|x(p) - x(p+e)| / E|x(p) - x(q)|`` (e a 1-px step, q a random pixel of the same image and
    channel): 1 when neighbours are identical, 0 when they differ as much as random pixels."""
    x = images.double()
    step = torch.cat([(x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1),
                      (x[..., 1:] - x[..., :-1]).abs().flatten(1)], 1)
    flat = x.flatten(2)
    perm = torch.randperm(flat.shape[-1], generator=torch.Generator().manual_seed(0))
    random = (flat - flat[..., perm]).abs()
    return round(1.0 - float(step.mean()) / float(random.mean()), 4)


def versions() -> dict:
    import shiftattack

    return {"shiftattack": shiftattack.__version__, "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
