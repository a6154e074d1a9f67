"""The ``report`` and ``demo`` subcommands (registered by :mod:`shiftattack.cli`)."""

from __future__ import annotations

import argparse

__all__ = ["add_report", "add_demo"]


def add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="figures and tables from results folders; writes report.html and report.md",
        description="Read the results documents under RESULTS (attack and benchmark results.json, "
        "certificate.json, train_log.json; folders are searched recursively) and write a self-contained "
        "OUT/report.html (figures embedded), OUT/report.md and OUT/figures/*.png. Nothing is recomputed.",
    )
    p.add_argument("results", nargs="+", metavar="RESULTS", help="results folders or files")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--title", default="shiftattack report", help="page title")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from shiftattack.report import collect, write_report

    entries = collect(args.results)
    path = write_report(entries, args.out, title=args.title)
    kinds = sorted({e.kind for e in entries})
    print(f"wrote {path} and {path.with_suffix('.md')} from {len(entries)} results ({', '.join(kinds)})")
    return 0


def add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="train, attack, certify and benchmark four small models offline; writes an HTML report",
        description="The three jobs end to end on a built-in synthetic dataset where aliasing matters "
        "(no download, no GPU): trains a baseline CNN and its BlurPool, CMod and APS variants, attacks "
        "them with worst-case shifts, certifies grid:1 exactly, scores a subset of CIFAR-10-C style "
        "corruptions and writes OUT/report.html. --dataset cifar10 --data PATH runs the same on CIFAR-10.",
    )
    p.add_argument("--out", default="shiftattack-demo", help="output folder (default ./shiftattack-demo)")
    p.add_argument("--dataset", default="synthetic", choices=["synthetic", "cifar10"])
    p.add_argument("--data", help="CIFAR-10 JPEG zip or python-batches folder (with --dataset cifar10)")
    p.add_argument("--epochs", type=int, help="training epochs (default: 5 synthetic, 8 cifar10)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: an end-to-end check in seconds")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing demo folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from shiftattack.jobs.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        out=args.out,
        dataset=args.dataset,
        data=args.data,
        quick=args.quick,
        epochs=args.epochs,
        device=args.device,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    run_demo(cfg, progress=not args.quiet, log=(lambda *a: None) if args.quiet else print)
    return 0
