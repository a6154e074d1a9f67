"""Shared helpers for the benchmarks: the trained CIFAR-10 model, timing, peak memory.

* :func:`trained_cifar_cnn` trains ``SmallCNN(width=32)`` on the full CIFAR-10
  train split once and caches its ``state_dict`` (with a JSON of how it was
  made) under ``benchmarks/_cache/``; later calls load the cache.
* :func:`time_it` is the median wall time of ``repeats`` calls after a warm-up.
* :func:`peak_memory` measures the peak memory a call adds: on CUDA
  ``torch.cuda.max_memory_allocated``; on the CPU the growth of the process's
  peak resident set (``VmHWM``) over its resident set just before the call,
  in a fresh ``spawn`` child so that nothing earlier (data decoding, other
  measurements, allocator caches) hides or inflates it. ``tracemalloc`` is not
  used: it does not see torch's C++ allocations.

The data folder is ``--data-dir DIR``, else ``$SHIFTATTACK_DATA_DIR``, else
``../shared/data`` relative to the repository root. Run this file to train
(or load) the model and print its accuracy:

    python benchmarks/_common.py [--data-dir DIR] [--retrain]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO_ROOT / "benchmarks"
DEFAULT_CACHE_DIR = BENCH_DIR / "_cache"
DATA_ENV = "SHIFTATTACK_DATA_DIR"
CIFAR_ZIP = "cifar10-jpeg.zip"

#: Training recipe of the cached benchmark model (about 1 min per epoch on 2 CPU cores).
TRAIN = {"width": 32, "epochs": 6, "batch_size": 128, "lr": 0.1, "seed": 0}
WEIGHTS_NAME = "small_cnn_w32.pt"


# ----------------------------------------------------------------------------- paths


def default_data_dir() -> Path:
    """``$SHIFTATTACK_DATA_DIR`` if set, else ``<repo>/../shared/data``."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else (REPO_ROOT / ".." / "shared" / "data").resolve()


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help=f"folder holding {CIFAR_ZIP} (default: ${DATA_ENV}, else ../shared/data from the repo root)")


def cifar_spec(data_dir: str | os.PathLike[str] | None, split: str) -> str:
    """The ``load_dataset`` spec of a CIFAR-10 split (``train`` or ``test``)."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    path = root / CIFAR_ZIP
    if not path.exists():
        raise SystemExit(f"CIFAR-10 not found at {path}; pass --data-dir or set ${DATA_ENV}")
    return f"{path}:{split}"


# ----------------------------------------------------------------------------- model


def trained_cifar_cnn(data_dir: str | os.PathLike[str] | None = None,
                      cache_dir: str | os.PathLike[str] | None = None, *,
                      retrain: bool = False, verbose: bool = True) -> nn.Module:
    """``SmallCNN(width=32)`` trained on the full CIFAR-10 train split, in eval mode.

    Loads ``cache_dir/small_cnn_w32.pt`` when present (``weights_only=True``);
    otherwise trains with :data:`TRAIN` (``train_classifier``), measures the test
    accuracy, and writes the weights and ``small_cnn_w32.json`` (epochs, seed,
    test accuracy, training seconds, torch version, threads).
    """
    from shiftattack.data import load_dataset
    from shiftattack.models import SmallCNN, evaluate_accuracy, train_classifier

    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    weights = cache / WEIGHTS_NAME
    meta_path = weights.with_suffix(".json")
    model = SmallCNN(num_classes=10, width=TRAIN["width"])
    if weights.exists() and not retrain:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return model.eval()

    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train = load_dataset(cifar_spec(data_dir, "train"), progress=verbose)
    x, y = train.float_images(), train.labels
    load_s = time.perf_counter() - t0
    if verbose:
        print(f"loaded {len(train)} training images in {load_s:.1f} s; training {TRAIN}", flush=True)
    torch.manual_seed(TRAIN["seed"])
    model = SmallCNN(num_classes=10, width=TRAIN["width"])  # weights drawn from the seed
    t0 = time.perf_counter()
    train_classifier(model, x, y, epochs=TRAIN["epochs"], batch_size=TRAIN["batch_size"],
                     lr=TRAIN["lr"], seed=TRAIN["seed"], progress=verbose)
    train_s = time.perf_counter() - t0
    del x, y, train
    test = load_dataset(cifar_spec(data_dir, "test"), progress=verbose)
    acc = evaluate_accuracy(model, test.float_images(), test.labels)
    tmp = weights.with_suffix(".pt.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, weights)
    meta = {**TRAIN, "model": "SmallCNN", "test_accuracy": acc, "n_test": len(test),
            "train_seconds": round(train_s, 1), "data_load_seconds": round(load_s, 1),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    if verbose:
        print(f"trained in {train_s:.0f} s, test accuracy {acc:.4f}; saved {weights}", flush=True)
    return model.eval()


def save_figures(path: str | os.PathLike[str], doc: dict) -> None:
    """Write a benchmark's figures as JSON (atomically, creating the folder) and say where."""
    from shiftattack.runtime.results import write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json(path, doc)
    print(f"wrote {path}")


def model_info(cache_dir: str | os.PathLike[str] | None = None) -> dict | None:
    """The JSON written beside the cached weights, or None."""
    path = (Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR) / WEIGHTS_NAME
    meta = path.with_suffix(".json")
    return json.loads(meta.read_text()) if meta.exists() else None


# ----------------------------------------------------------------------------- environment


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "threads": torch.get_num_threads(), "cpu": cpu_model(), "cpu_count": os.cpu_count()}
    try:
        env["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


# ----------------------------------------------------------------------------- timing


def sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], Any], repeats: int = 3, *, warmup: int = 1,
            warmup_fn: Callable[[], Any] | None = None,
            device: torch.device | str | None = None) -> dict:
    """Median wall time of ``repeats`` calls of ``fn()`` after ``warmup`` untimed calls.

    ``warmup_fn`` (default ``fn``) is what the warm-up calls run: a smaller
    version of the same work is enough to build kernels and caches.
    Returns ``{"median": s, "min": s, "times": [...], "result": last return value}``.
    """
    for _ in range(warmup):
        (warmup_fn or fn)()
    sync(device)
    times, result = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "times": times, "result": result}


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int = 3, *, warmup: int = 1,
                     warmup_fns: dict[str, Callable[[], Any]] | None = None,
                     device: torch.device | str | None = None) -> dict[str, dict]:
    """:func:`time_it` for several callables, run round-robin (A B C, A B C, ...).

    On a shared machine the load drifts; interleaving puts every figure of a
    ratio under the same conditions, and :func:`round_ratio` takes the median
    of the per-round ratios. Returns ``{name: {"median", "min", "times", "result"}}``.
    """
    warmup_fns = warmup_fns or {}
    for _ in range(warmup):
        for name, fn in fns.items():
            warmup_fns.get(name, fn)()
    sync(device)
    out = {name: {"times": [], "result": None} for name in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            out[name]["result"] = fn()
            sync(device)
            out[name]["times"].append(time.perf_counter() - t0)
    for r in out.values():
        r["median"], r["min"] = statistics.median(r["times"]), min(r["times"])
    return out


def round_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of ``num[i] / den[i]`` (two interleaved series of times or rates)."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


# ----------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _memory_child(setup: Callable[..., Callable[[], Any]], args: tuple, threads: int, queue) -> None:
    try:
        torch.set_num_threads(threads)
        fn = setup(*args)
        _trim_heap()
        before_kib = _status_kib("VmRSS")
        if _reset_peak_rss():
            method = "VmHWM after clear_refs - VmRSS before"
            fn()
            peak_kib = _status_kib("VmHWM")
        else:  # ru_maxrss is a high-water mark: only growth beyond earlier peaks shows
            method = "ru_maxrss after - VmRSS before (lower bound)"
            fn()
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        queue.put({"peak_bytes": (peak_kib - before_kib) * 1024, "rss_before_bytes": before_kib * 1024,
                   "method": method})
    except BaseException as exc:  # report, do not hang the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def peak_memory(setup: Callable[..., Callable[[], Any]], *args: Any,
                device: torch.device | str = "cpu", exact_malloc: bool = False,
                env: dict[str, str] | None = None) -> dict:
    """Peak memory added by one call of ``fn = setup(*args)``.

    ``setup`` must be a picklable (module-level) function returning the
    zero-argument callable to measure; everything it allocates (model, images)
    counts as the baseline, not the peak.

    * CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``,
      minus the allocation before the call (torch tensors only).
    * CPU: runs in a fresh ``spawn`` child: set up, ``malloc_trim``, read VmRSS,
      reset VmHWM through ``/proc/self/clear_refs``, call, read VmHWM. The
      difference is the resident memory the call really touched at its peak
      (tensors, allocator and library workspaces included).
      With ``exact_malloc`` the child runs with ``MALLOC_MMAP_THRESHOLD_=65536``:
      every block of 64 KiB or more (every sizeable tensor) gets its own
      mapping, returned to the system when freed, so the figure follows the
      live torch allocations; without it, glibc's default (dynamic threshold,
      freed blocks kept in its heaps) adds fragmentation that depends on the
      order of allocations: what a user's process really holds. ``env`` adds
      environment variables for the child (e.g. ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``).

    Returns ``{"peak_bytes": int, "method": str, ...}``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        fn = setup(*args)
        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_bytes": peak - base, "base_bytes": base, "method": "torch.cuda.max_memory_allocated"}
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(setup, args, torch.get_num_threads(), queue))
    child_env = dict(env or {})
    if exact_malloc:
        child_env["MALLOC_MMAP_THRESHOLD_"] = "65536"  # read by the child's glibc at start-up
    saved = {k: os.environ.get(k) for k in child_env}
    os.environ.update(child_env)  # a spawn child inherits the parent's environment at start
    try:
        proc.start()
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v
    try:
        out = queue.get(timeout=3600)
    finally:
        proc.join()
    if "error" in out:
        raise RuntimeError(f"memory measurement failed in the child process: {out['error']}")
    out["malloc"] = "MALLOC_MMAP_THRESHOLD_=65536" if exact_malloc else "glibc default"
    out["env"] = child_env
    return out


def mib(n_bytes: float) -> float:
    return n_bytes / 2**20


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train (or load) the cached benchmark CNN.")
    add_data_dir_argument(parser)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--retrain", action="store_true", help="train even if the cache exists")
    args = parser.parse_args(argv)
    trained_cifar_cnn(args.data_dir, args.cache_dir, retrain=args.retrain)
    print(json.dumps(model_info(args.cache_dir), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
