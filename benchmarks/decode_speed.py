"""Image decoding: the thread pool of ``decode_images`` against one thread, same run.

    python benchmarks/decode_speed.py [--data-dir DIR] [--spec cifar10-jpeg.zip:test] [--rounds 3]
                                      [--limit N] [--resize 256]

Loads the same ImageFolder zip (all of it, or ``--limit``) with
``shiftattack.data._decode.DECODE_THREADS`` set to 1 and to its default (the number of
CPUs, at most 8), alternating, and prints the median seconds and the ratio. The arrays
must be equal. Small files (under ``LARGE_PIXELS``, e.g. CIFAR-10's 32 px) are decoded
in one thread whatever ``DECODE_THREADS`` says, so there the two timings are of the same code.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from shiftattack.data import _decode, load_dataset


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("SHIFTATTACK_DATA_DIR", "../shared/data"))
    p.add_argument("--spec", default="cifar10-jpeg.zip:test")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--resize", type=int, default=None, help="as --resize (ImageNet: 256)")
    args = p.parse_args()
    spec = str(Path(args.data_dir) / args.spec)
    default = _decode.DECODE_THREADS
    times: dict[int, list[float]] = {1: [], default: []}
    arrays = {}
    for _ in range(args.rounds):
        for threads in times:
            _decode.DECODE_THREADS = threads
            t0 = time.perf_counter()
            ds = load_dataset(spec, limit=args.limit, progress=False, resize=args.resize)
            times[threads].append(time.perf_counter() - t0)
            arrays[threads] = ds.images.numpy()
    _decode.DECODE_THREADS = default
    same = np.array_equal(arrays[1], arrays[default])
    one, many = statistics.median(times[1]), statistics.median(times[default])
    print(f"{spec}: {arrays[1].shape[0]} images | 1 thread {one:.2f} s | {default} threads {many:.2f} s | "
          f"speed-up {one / many:.2f}x | identical arrays {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
