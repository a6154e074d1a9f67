"""Corruption generation speed: ours (torch) against ``imagecorruptions`` (per image, NumPy), on the CPU.

    python benchmarks/corruption_speed.py [--data-dir DIR] [--n-images 16] [--batch-size 8]
                                          [--sizes 224,32] [--names ...] [--repeats 3]
                                          [--threads T] [--allocator keep|default]
                                          [--device cpu] [--json FILE]

Images: a class-balanced subset of the CIFAR-10 test split (the real images we
have offline), upscaled to each size with Pillow's bicubic resize (32 px is
native). Both tools get the same uint8 (H, W, 3) images and the ImageNet-C
strengths (``imagecorruptions`` has no others), every corruption at severities
1-5. Ours is timed two ways, conversions from and to uint8 included:

* *batch*: ``--batch-size`` images per ``corrupt`` call (the last call takes the rest);
* *single*: one image per call, as a data loader corrupting on the fly would.

``imagecorruptions.corrupt`` runs image by image (its only interface). For every
corruption and severity the three timings are taken back to back. Each is one pass
over the ``--n-images`` images after a one-image warm-up (``imagecorruptions`` is
too slow to repeat); ours is timed ``--repeats`` times, median.

Both run in one process, on ``--threads`` threads each (torch's for ours, OpenCV's
for imagecorruptions; NumPy's own code is single-threaded). One thread measures the
work per core and is robust to other processes on a busy machine. By default glibc
keeps freed memory there (``--allocator keep``: what the ``shiftattack`` command
does at start-up, ``runtime.allocator``), so that neither tool's large buffers are
page-faulted back on every call; ``--allocator default`` measures the C library's
defaults. Ours converts float -> uint8 through int32 (the same truncation, three
times faster in torch than a direct cast).

Ratios are imagecorruptions' time over ours, per corruption summed over the
severities; the overall ratio is (sum of imagecorruptions' times) / (sum of ours)
over the corruptions both tools run. Corruptions it crashes on (numpy 2 /
scikit-image 0.26: glass_blur, gaussian_blur, fog) are reported as such and timed
for ours alone. Figures are per image: ms per image, summed over the severities.
"""

from __future__ import annotations

import argparse
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
from shiftattack.runtime.allocator import allocator_state, keep_freed_memory  # noqa: E402
from shiftattack.runtime.engine import resolve_device  # noqa: E402

TARGET = 20.0  # issue 4: >= 20x overall on CPU
PER_KIND_TARGET = 1.0  # issue 22, item 2: every corruption at least as fast as imagecorruptions


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


def ours_once(images: np.ndarray, name: str, severity: int, device: torch.device, batch: int) -> None:
    """uint8 (n, H, W, 3) -> corrupted uint8 (n, H, W, 3), ``batch`` images per call, one generator."""
    gen = torch.Generator(device).manual_seed(severity)
    for start in range(0, len(images), batch):
        x = torch.from_numpy(images[start : start + batch]).to(device).permute(0, 3, 1, 2).float().div_(255)
        y = corrupt(x, name, severity, generator=gen)
        y.mul_(255).floor_().to(torch.int32).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    C.sync(device)


def time_ours(images: np.ndarray, name: str, severity: int, device: torch.device, batch: int,
              repeats: int) -> float:
    """Median seconds of :func:`ours_once` over ``repeats`` passes, after a one-image warm-up."""
    ours_once(images[:1], name, severity, device, 1)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours_once(images, name, severity, device, batch)
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


def measure(ic, images: np.ndarray, name: str, severities: list[int], device: torch.device, batch: int,
            repeats: int) -> dict:
    """One corruption's row: seconds summed over ``severities`` (batch, single, theirs) and the ratios."""
    batch_s = single_s = 0.0
    theirs_all: list[float | str] = []
    for s in severities:
        batch_s += time_ours(images, name, s, device, batch, repeats)
        single_s += time_ours(images, name, s, device, 1, repeats)
        theirs_all.append(time_theirs(ic, images, name, s))
    crashed = next((t for t in theirs_all if isinstance(t, str)), None)
    theirs = None if crashed else float(sum(theirs_all))
    return {
        "ours_s": batch_s,
        "ours_single_s": single_s,
        "theirs_s": theirs,
        "theirs_error": crashed,
        "ratio": theirs / batch_s if theirs else None,
        "ratio_single": theirs / single_s if theirs else None,
    }


def summary(rows: dict) -> dict:
    """Totals over the corruptions both tools run, and the overall ratios."""
    both = [r for r in rows.values() if r["theirs_s"]]
    ours, single = sum(r["ours_s"] for r in both), sum(r["ours_single_s"] for r in both)
    theirs = sum(r["theirs_s"] for r in both)
    below = sorted(
        {k for k, r in rows.items() if r["theirs_s"] and min(r["ratio"], r["ratio_single"]) < PER_KIND_TARGET}
    )
    return {
        "overall_ratio": theirs / ours if ours else None,
        "overall_ratio_single": theirs / single if single else None,
        "ours_total_s": ours,
        "ours_single_total_s": single,
        "theirs_total_s": theirs,
        "ours_all_s": sum(r["ours_s"] for r in rows.values()),
        "n_both": len(both),
        "below_per_kind_target": below,
    }


def print_row(name: str, row: dict, n: int) -> None:
    per = 1000 / n
    theirs = f"{row['theirs_s'] * per:10.2f}" if row["theirs_s"] else f"{'crashes':>10}"
    ratios = (
        f"{row['ratio']:7.2f}x {row['ratio_single']:7.2f}x" if row["theirs_s"] else f"{'-':>8} {'-':>8}"
    )
    print(f"{name:<18} {row['ours_s'] * per:9.2f} {row['ours_single_s'] * per:9.2f} {theirs} {ratios}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_data_dir_argument(p)
    p.add_argument("--n-images", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8, help="images per call in the batch timing")
    p.add_argument("--sizes", default="224,32")
    p.add_argument(
        "--names",
        default=",".join(list_corruptions(held_out=False)),
        help="corruptions (default: the 15 benchmark ones)",
    )
    p.add_argument("--severities", default="1,2,3,4,5")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch's and OpenCV's thread count (default: torch's own, OpenCV's own)",
    )
    p.add_argument(
        "--allocator",
        choices=("keep", "default"),
        default="keep",
        help="keep: glibc keeps freed memory, as the shiftattack command runs (runtime.allocator); "
        "default: the C library's defaults",
    )
    p.add_argument("--json", type=Path, help="write every figure here")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if args.allocator == "keep":
        keep_freed_memory()
    ic = reference()
    if args.threads is not None:
        import cv2  # imagecorruptions' OpenCV

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    names = args.names.split(",")
    severities = [int(s) for s in args.severities.split(",")]
    doc = {
        "environment": C.environment(device),
        "n_images": args.n_images,
        "batch_size": args.batch_size,
        "severities": severities,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "allocator": allocator_state(),
        "sizes": {},
    }
    for size in (int(s) for s in args.sizes.split(",")):
        images = real_images(args.data_dir, args.n_images, size)
        n = len(images)
        print(
            f"\n{size}x{size}, {n} images, severities {severities}, device {device}, "
            f"{torch.get_num_threads()} threads; ms per image (sum over severities)"
        )
        print(f"{'corruption':<18} {f'ours b{args.batch_size}':>9} {'ours b1':>9} {'imagecorr.':>10} "
              f"{'ratio b' + str(args.batch_size):>8} {'ratio b1':>8}")
        rows = {}
        for name in names:
            rows[name] = measure(ic, images, name, severities, device, args.batch_size, args.repeats)
            print_row(name, rows[name], n)
        block = summary(rows)
        print(
            f"{'total (both run)':<18} {block['ours_total_s'] * 1000 / n:9.2f} "
            f"{block['ours_single_total_s'] * 1000 / n:9.2f} {block['theirs_total_s'] * 1000 / n:10.2f} "
            f"{block['overall_ratio']:7.2f}x {block['overall_ratio_single']:7.2f}x   (target >= {TARGET:g}x)"
        )
        below = ", ".join(block["below_per_kind_target"]) or "none"
        print(f"below {PER_KIND_TARGET:g}x (batch or single): {below}")
        doc["sizes"][str(size)] = {"corruptions": rows, **block}
    if args.json:
        C.save_figures(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
