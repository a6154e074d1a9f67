"""Corruption generation speed: ours (batched torch) against ``imagecorruptions`` (per image, NumPy).

    python benchmarks/corruption_speed.py [--data-dir DIR] [--n-images 16] [--sizes 224,32]
                                          [--names ...] [--device cpu] [--json FILE]

Images: a class-balanced subset of the CIFAR-10 test split (the real images we
have offline), upscaled to each size with Pillow's bicubic resize (32 px is
native). Both tools get the same uint8 (H, W, 3) images and the ImageNet-C
strengths (``imagecorruptions`` has no others), every corruption at severities
1-5. Ours corrupts the whole batch in one call per severity, conversions from and
to uint8 included; ``imagecorruptions.corrupt`` runs image by image (its only
interface). Each timing is one run after a one-image warm-up (``imagecorruptions``
is too slow to repeat; ours is timed ``--repeats`` times, median).

The overall ratio is (sum of imagecorruptions' times) / (sum of ours) over the
corruptions both tools run; corruptions it crashes on (numpy 2 / scikit-image 0.26:
glass_blur, gaussian_blur, fog) are reported as such and timed for ours alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from shiftattack.corruptions import corrupt, list_corruptions  # noqa: E402
from shiftattack.data import load_dataset  # noqa: E402
from shiftattack.runtime.engine import resolve_device  # noqa: E402

TARGET = 20.0  # issue 4: >= 20x overall on CPU


def real_images(data_dir, n: int, size: int) -> np.ndarray:
    """uint8 (n, size, size, 3): CIFAR-10 test images, bicubic-upscaled when size > 32."""
    data = load_dataset(C.cifar_spec(data_dir, "test"), limit=n, progress=False)
    arrays = data.images.permute(0, 2, 3, 1).numpy()
    if size == arrays.shape[1]:
        return np.ascontiguousarray(arrays)
    return np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC)) for a in arrays])


def reference():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import imagecorruptions
        except Exception as exc:
            raise SystemExit(
                f"imagecorruptions is needed as the reference ({exc}); "
                "pip install imagecorruptions 'setuptools<81'"
            ) from None
    return imagecorruptions


def time_ours(images: np.ndarray, name: str, severity: int, device: torch.device, repeats: int) -> float:
    """Median seconds for uint8 (n, H, W, 3) -> corrupted uint8, the whole batch in one call."""

    def run():
        x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(255)
        y = corrupt(x, name, severity, generator=torch.Generator(device).manual_seed(severity))
        out = y.mul_(255).floor_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        C.sync(device)
        return out

    run_small = images[:1]
    corrupt(torch.from_numpy(run_small).to(device).permute(0, 3, 1, 2).float() / 255, name, severity)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_theirs(ic, images: np.ndarray, name: str, severity: int) -> float | str:
    """Seconds for imagecorruptions on every image, or the error it raises."""
    np.random.seed(severity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ic.corrupt(images[0], severity=severity, corruption_name=name)
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        t0 = time.perf_counter()
        for img in images:
            ic.corrupt(img, severity=severity, corruption_name=name)
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_data_dir_argument(p)
    p.add_argument("--n-images", type=int, default=16)
    p.add_argument("--sizes", default="224,32")
    p.add_argument(
        "--names",
        default=",".join(list_corruptions(held_out=False)),
        help="corruptions (default: the 15 benchmark ones)",
    )
    p.add_argument("--severities", default="1,2,3,4,5")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="write every figure here")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    ic = reference()
    names = args.names.split(",")
    severities = [int(s) for s in args.severities.split(",")]
    doc = {
        "environment": C.environment(device),
        "n_images": args.n_images,
        "severities": severities,
        "threads": torch.get_num_threads(),
        "sizes": {},
    }
    for size in (int(s) for s in args.sizes.split(",")):
        images = real_images(args.data_dir, args.n_images, size)
        rows = {}
        print(
            f"\n{size}x{size}, {len(images)} images, severities {severities}, device {device}, "
            f"{torch.get_num_threads()} threads; ms per image (sum over severities)"
        )
        print(f"{'corruption':<18} {'ours':>9} {'imagecorruptions':>17} {'ratio':>7}")
        for name in names:
            ours = sum(time_ours(images, name, s, device, args.repeats) for s in severities)
            theirs_all = [time_theirs(ic, images, name, s) for s in severities]
            crashed = next((t for t in theirs_all if isinstance(t, str)), None)
            theirs = None if crashed else sum(theirs_all)
            rows[name] = {
                "ours_s": ours,
                "theirs_s": theirs,
                "theirs_error": crashed,
                "ratio": theirs / ours if theirs else None,
            }
            per = 1000 / len(images)
            shown = f"{theirs * per:17.2f}" if theirs else f"{'crashes':>17}"
            ratio = f"{theirs / ours:6.1f}x" if theirs else f"{'-':>7}"
            print(f"{name:<18} {ours * per:9.2f} {shown} {ratio}", flush=True)
        both = [r for r in rows.values() if r["theirs_s"]]
        total_ours, total_theirs = sum(r["ours_s"] for r in both), sum(r["theirs_s"] for r in both)
        overall = total_theirs / total_ours
        all_ours = sum(r["ours_s"] for r in rows.values())
        print(
            f"{'total (both run)':<18} {total_ours * 1000 / len(images):9.2f} "
            f"{total_theirs * 1000 / len(images):17.2f} {overall:6.1f}x   (target >= {TARGET:g}x)"
        )
        print(
            f"{'ours, all':<18} {all_ours * 1000 / len(images):9.2f} ms per image for "
            f"{len(names)} corruptions x {len(severities)} severities"
        )
        doc["sizes"][str(size)] = {
            "corruptions": rows,
            "overall_ratio": overall,
            "ours_total_s": total_ours,
            "theirs_total_s": total_theirs,
            "ours_all_s": all_ours,
            "n_both": len(both),
        }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
