"""Baseline vs BlurPool vs CMod vs APS on CIFAR-10, reviewer-grade: converged models, several seeds,
paired intervals, pre-registered three-valued verdicts.

The experiment is a list of *units* (one trained model and every measurement of it), grouped
into *arms* (``reproduce/design.py``: the models, seeds, sizes and every claim's rule, fixed
before the run). Each finished unit's small files land in ``OUT/units/ID/`` and, with
``--commit``, are committed at once; a restarted run skips finished units, so a new machine
loses at most the running one. ``reproduce/summarise.py`` and ``render_results.py`` turn the
units into ``docs/results.md``.

    python experiments/cifar10_antialias.py --tier cpu --commit      # the CPU tier (hours; resumable)
    python experiments/cifar10_antialias.py --tier quick --out /tmp/q  # a smoke test (minutes)
    python experiments/cifar10_antialias.py --tier gpu --device cuda  # the CMod paper's ResNet-18 table

Run long tiers from a frozen install (``experiments/freeze.sh``), so edits to the working tree
do not change a running experiment.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "reproduce"))

import design  # noqa: E402


def _default_data() -> str:
    folder = os.environ.get("SHIFTATTACK_DATA_DIR")
    if folder:
        return str(Path(folder) / "cifar10-jpeg.zip")
    return str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.zip")


def _versions() -> dict:
    from unit import versions

    return versions()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tier", choices=sorted(design.ARMS), default="cpu")
    parser.add_argument("--data", default=None, help="CIFAR-10 JPEG zip or python-batches folder (default: "
                        "$SHIFTATTACK_DATA_DIR/cifar10-jpeg.zip, else ../shared/data/cifar10-jpeg.zip)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default experiments/results/cifar10_TIER)")
    parser.add_argument("--commit", action="store_true", help="git-commit each unit's folder as it finishes")
    parser.add_argument("--max-units", type=int, default=None, help="stop after this many units")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    data = args.data or _default_data()
    if not Path(data).exists():
        parser.error(f"CIFAR-10 not found at {data}; pass --data PATH (cifar10-jpeg.zip or the batches folder)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from driver import run

    out = args.out or Path(__file__).resolve().parent / "results" / f"cifar10_{args.tier}"
    run(args.tier, data, out, commit_results=args.commit, max_units=args.max_units, device=args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
