"""Soak run: every mode and threat, repeated; memory must stay flat and no result may be lost or doubled.

    python benchmarks/soak.py [--n-images 2000] [--repeats 5] [--device cpu] [--json FILE]

One pass runs the ``attack`` command (in this process, through :func:`shiftattack.cli.main`,
chunked and resumable as users run it) for every mode (circular, zero, reflect,
replicate, crop) and every kind of threat set (exact grid, sub-pixel grid with bilinear
interpolation, random draws, an explicit list, rotation + translation), plus an exact
certificate and a generated CIFAR-10-C benchmark unit, on the built-in synthetic set.
The pass is repeated ``--repeats`` times. After every pass it records the process's
resident memory (``VmRSS``) and, on CUDA, the allocated memory; it checks that each
results file holds every image exactly once (indices 0..N-1 of the subset, no
duplicates) and that every pass wrote the same bytes as the first.

The verdict: memory growth from the second pass to the last (the first pass warms
caches and allocators) below ``--max-growth-mb`` (default 50 MB), no lost or
duplicated image, identical files. Exit status 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from shiftattack import __version__
from shiftattack.cli import main

JOBS: list[tuple[str, list[str], str]] = [
    *[(f"attack grid:2 {m}", ["attack", "--shifts", "grid:2", "--mode", m], "results.json")
      for m in ("circular", "zero", "reflect", "replicate")],
    ("attack grid:2 crop", ["attack", "--shifts", "grid:2", "--mode", "crop", "--canvas-pad", "2",
                            "--canvas-pad-mode", "reflect"], "results.json"),
    ("attack grid:1:0.5 bilinear", ["attack", "--shifts", "grid:1:0.5", "--interp", "bilinear", "--mode", "zero"],
     "results.json"),
    ("attack random:3:6", ["attack", "--shifts", "random:3:6", "--mode", "zero"], "results.json"),
    ("attack list", ["attack", "--shifts", "list:1,0;0,1;-2,2", "--mode", "circular"], "results.json"),
    ("attack rt:1:10", ["attack", "--shifts", "rt:1:10:3:3", "--interp", "bilinear", "--mode", "zero"], "results.json"),
    ("certify exact grid:1", ["certify", "--shifts", "grid:1", "--mode", "circular"], "certificate.json"),
]


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux ``/proc``; ``ru_maxrss`` elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_records(doc: dict, n: int) -> list[str]:
    """Problems with the per-image records: lost, duplicated or out-of-order images."""
    idx = [r["index"] for r in doc["images"]]
    problems = []
    if len(idx) != n:
        problems.append(f"{len(idx)} records for {n} images")
    if len(set(idx)) != len(idx):
        problems.append(f"{len(idx) - len(set(idx))} duplicated images")
    if idx != sorted(idx):
        problems.append("records out of order")
    return problems


def one_pass(work: Path, common: list[str], n: int, benchmark_args: list[str]) -> tuple[dict, list[str]]:
    """Run every job once; return {job: file bytes} and the problems found."""
    files, problems = {}, []
    for name, args, result in JOBS:
        out = work / name.replace(" ", "_").replace(":", "-")
        if main([*args, *common, "--out", str(out), "--overwrite", "--quiet"]) != 0:
            problems.append(f"{name}: exit status not 0")
            continue
        data = (out / result).read_bytes()
        problems += [f"{name}: {p}" for p in check_records(json.loads(data), n)]
        files[name] = data
        shutil.rmtree(out)
    out = work / "benchmark"
    if main([*benchmark_args, "--out", str(out), "--overwrite", "--quiet"]) != 0:
        problems.append("benchmark: exit status not 0")
    else:
        files["benchmark cifar10-c"] = (out / "results.json").read_bytes()
        shutil.rmtree(out)
    return files, problems


def main_soak(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--max-growth-mb", type=float, default=50.0)
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    weights = work / "weights.pt"
    from shiftattack.models import load_model

    torch.save(load_model(args.model).state_dict(), weights)
    common = ["--model", args.model, "--weights", str(weights), "--data", "synthetic:test",
              "--limit", str(args.n_images), "--device", args.device, "--chunk-size", "250"]
    bench = ["benchmark", "--suite", "cifar10-c", "--model", args.model, "--weights", str(weights),
             "--data", "synthetic:test", "--limit", str(min(args.n_images, 500)), "--corruptions",
             "gaussian_noise,fog", "--severities", "3", "--device", args.device]
    first: dict | None = None
    rows, problems = [], []
    try:
        for rep in range(args.repeats):
            start = time.perf_counter()
            files, found = one_pass(work, common, args.n_images, bench)
            problems += [f"pass {rep + 1}: {f}" for f in found]
            if first is None:
                first = files
            else:
                problems += [f"pass {rep + 1}: {k} differs from pass 1" for k in first if files.get(k) != first[k]]
            row = {"pass": rep + 1, "seconds": time.perf_counter() - start, "rss_mb": rss_mb()}
            if torch.cuda.is_available() and args.device.startswith("cuda"):
                row["cuda_allocated_mb"] = torch.cuda.memory_allocated() / 2**20
            rows.append(row)
            print(f"pass {rep + 1}/{args.repeats}: {row['seconds']:6.1f} s, RSS {row['rss_mb']:7.1f} MB"
                  + (f", CUDA {row['cuda_allocated_mb']:.1f} MB" if "cuda_allocated_mb" in row else ""),
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    growth = rows[-1]["rss_mb"] - rows[min(1, len(rows) - 1)]["rss_mb"]
    ok = not problems and growth <= args.max_growth_mb
    doc = {
        "n_images": args.n_images, "repeats": args.repeats, "jobs": [j[0] for j in JOBS] + ["benchmark cifar10-c"],
        "device": args.device, "torch": torch.__version__, "shiftattack": __version__,
        "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "passes": rows, "rss_growth_mb_after_first_pass": growth, "max_growth_mb": args.max_growth_mb,
        "problems": problems, "ok": ok,
    }
    print(f"jobs per pass: {len(doc['jobs'])} ({args.n_images} images each; benchmark on "
          f"{min(args.n_images, 500)})")
    print(f"RSS growth from pass 2 to pass {len(rows)}: {growth:+.1f} MB (limit {args.max_growth_mb:g} MB)")
    print("lost, duplicated or changed results: " + ("none" if not problems else "; ".join(problems)))
    print("soak: " + ("PASS" if ok else "FAIL"))
    if args.json:
        from shiftattack.runtime.results import write_json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, doc)
        print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main_soak())
