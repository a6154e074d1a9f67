"""The ``benchmark`` and ``corrupt`` subcommands (corruption suites), apart from cli.py's attack and train."""

from __future__ import annotations

import argparse

from shiftattack.cli.options import (
    add_model_options,
    add_precision,
    add_strict_data,
    batch_size,
    model_options,
    positive_int,
)

__all__ = ["add_benchmark", "add_corrupt"]

_SUITES = ["imagenet-c", "imagenet-p", "cifar10-c", "cifar10-p"]


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated names or patterns such as '*_noise'")
    return names


def _add_selection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to generate")
    g.add_argument("--suite", required=True, choices=_SUITES)
    g.add_argument(
        "--corruptions",
        type=_names,
        default=["*"],
        metavar="NAMES",
        help="comma-separated corruption / perturbation names or patterns (default: all; "
        "see `python -c 'import shiftattack.corruptions as c; print(c.list_corruptions())'`)",
    )
    g.add_argument(
        "--severities", type=_ints, default=[1, 2, 3, 4, 5], help="C suites: severities (default 1..5)"
    )
    g.add_argument(
        "--difficulty",
        type=int,
        default=1,
        choices=[1, 2, 3],
        help="P suites: noise level of the noise sequences / frame gap of the others (default 1)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    r = p.add_argument_group("run")
    r.add_argument("--limit", type=positive_int, help="deterministic class-balanced subset of N images")
    add_strict_data(r, " of --data")
    r.add_argument(
        "--resize",
        type=positive_int,
        help="clean canvas: resize the shorter side and centre-crop (ImageNet suites: 256 by default)",
    )
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--overwrite", action="store_true", help="write into an existing, non-empty folder")
    r.add_argument("--resume", action="store_true", help="keep what an interrupted run finished; do the rest")
    r.add_argument("--quiet", action="store_true", help="no progress bars and no summary")


def add_benchmark(sub) -> None:
    p = sub.add_parser(
        "benchmark",
        help="score a model on ImageNet-C/-P or CIFAR-10-C/-P; writes results.json and results.csv",
        description="Corruption benchmark: top-1 error per corruption and severity, CE, mCE and relative mCE "
        "(C suites); flip probability, FR/mFR, top-5 distance uT5D/T5D/mT5D (P suites). "
        "Images are generated in torch from --data (seeded) or read from the published files "
        "(--source FOLDER).",
    )
    m = p.add_argument_group("model and data")
    add_model_options(m)
    m.add_argument(
        "--data",
        help="clean images (same specs as attack); needed to generate, and for the clean "
        "error behind relative mCE",
    )
    m.add_argument(
        "--source",
        default="generated",
        help="'generated' (default: corrupt --data in torch) or the folder of the published files "
        "(CIFAR-10-C .npy, ImageNet-C folders, CIFAR-10-P .npy, ImageNet-P videos)",
    )
    m.add_argument(
        "--normalizer",
        metavar="alexnet|none|RESULTS",
        help="CE/FR/T5D normaliser: the published AlexNet figures (ImageNet suites' default), none "
        "(CIFAR suites' default), or a results.json of the same suite for a reference model",
    )
    m.add_argument("--batch-size", type=batch_size, default=256,
                   help="images per forward pass (default 256), or auto: a short probe of 32..1024 on the "
                   "model keeps the fastest (the scores do not depend on it)")
    add_precision(m)
    _add_selection(p)
    p.set_defaults(func=_cmd_benchmark)


def add_corrupt(sub) -> None:
    p = sub.add_parser(
        "corrupt",
        help="write a corruption suite in its published file format",
        description="Generate a suite from clean images and write it as the published datasets are laid out: "
        "CIFAR-10-C / CIFAR-10-P .npy arrays, ImageNet-C JPEG folders (quality 85), ImageNet-P "
        "MP4 videos (libx264; needs pip install 'shiftattack[video]').",
    )
    p.add_argument(
        "--data", required=True, help="clean images: ImageFolder dir or .zip[:split], CIFAR batches, .npz"
    )
    _add_selection(p)
    p.set_defaults(func=_cmd_corrupt)


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from shiftattack.cli.summary import benchmark_summary
    from shiftattack.jobs.benchmark import BenchmarkConfig, run_benchmark

    cfg = BenchmarkConfig(
        suite=args.suite,
        **model_options(args),
        out=args.out,
        data=args.data,
        source=args.source,
        names=args.corruptions,
        severities=args.severities,
        difficulty=args.difficulty,
        limit=args.limit,
        resize=args.resize,
        strict=args.strict,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        precision=args.precision,
        normalizer=args.normalizer,
        overwrite=args.overwrite,
        resume=args.resume,
    )
    doc = run_benchmark(cfg, progress=not args.quiet)
    if doc is not None and not args.quiet:
        print(benchmark_summary(doc))
        print(f"wrote {args.out}/results.json and {args.out}/results.csv")
    return 0


def _cmd_corrupt(args: argparse.Namespace) -> int:
    from shiftattack.jobs.benchmark import corrupt_suite

    written = corrupt_suite(
        suite=args.suite,
        data=args.data,
        out=args.out,
        names=args.corruptions,
        severities=args.severities,
        difficulty=args.difficulty,
        limit=args.limit,
        resize=args.resize,
        strict=args.strict,
        seed=args.seed,
        device=args.device,
        overwrite=args.overwrite,
        resume=args.resume,
        progress=not args.quiet,
    )
    if not args.quiet:
        print(
            f"wrote {len(written)} of the suite's files to {args.out}"
            + (f": {', '.join(written)}" if written else "")
        )
    return 0
