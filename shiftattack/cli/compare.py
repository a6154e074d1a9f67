"""``shiftattack compare``: the leaderboard command."""

from __future__ import annotations

import argparse

from shiftattack.cli.options import (
    MODEL_HELP,
    add_precision,
    add_strict_data,
    add_trust_pickle,
    filter_size,
    positive_int,
)

__all__ = ["add_compare"]


def _severities(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected severities like 1,2,3,4,5, got {text!r}") from None
    if not values or any(v not in (1, 2, 3, 4, 5) for v in values):
        raise argparse.ArgumentTypeError(f"severities must be among 1..5, got {text!r}")
    return values


def add_compare(sub) -> None:
    from shiftattack.jobs.compare.protocol import METRICS

    p = sub.add_parser(
        "compare",
        help="rank models on shift robustness; writes a leaderboard (CSV, JSON, HTML)",
        description="Score every model on the same images under one protocol: clean accuracy, exact "
        "worst-case accuracy over grid:K (circular shifts, and crops from a canvas padded by K) with its "
        "accuracy-vs-radius curve, consistency, flip rate, optionally the exact certificate and a "
        "corruption suite. Every metric has its 95 %% interval; each model's paired difference to the "
        "leader says whether it is distinguishable. Writes OUT/leaderboard.{csv,json,html}; resumable "
        "per (model, metric) unit; torchrun shares the units.",
    )
    m = p.add_argument_group("models and data")
    m.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="SPEC[@WEIGHTS]",
        help=f"a model to rank (repeat for several): {MODEL_HELP}, with its state_dict file after '@'",
    )
    m.add_argument(
        "--models",
        metavar="FILE",
        help="CSV (columns spec, and optional name, weights, pretrained, antialias, mean, std) or "
        "JSON list of such objects",
    )
    m.add_argument(
        "--pretrained",
        action="store_true",
        help="--model entries without @WEIGHTS load the library's published weights",
    )
    m.add_argument("--antialias", type=filter_size, metavar="FILTER", help="anti-alias every --model entry")
    add_trust_pickle(m)
    m.add_argument("--data", required=True, help="the images every model is scored on (attack's specs)")
    m.add_argument("--limit", type=positive_int, help="deterministic class-balanced subset of N images")
    m.add_argument("--resize", type=positive_int, help="resize the shorter side to N px and centre-crop")
    add_strict_data(m)
    q = p.add_argument_group("protocol (written into the leaderboard)")
    q.add_argument("--radius", type=positive_int, default=2, help="K of the shift grid grid:K (default 2)")
    q.add_argument("--consistency-repeats", type=positive_int, default=5, help="pairs per image (default 5)")
    q.add_argument(
        "--flip-distance", type=positive_int, help="largest flip-rate pair distance, px (default min(K, 4))"
    )
    q.add_argument("--certify", action="store_true", help="add the exact certificate (circular, grid:K)")
    q.add_argument(
        "--corruptions",
        choices=["cifar10-c", "imagenet-c"],
        help="add the mean corruption error over the suite's 15 corruptions",
    )
    q.add_argument("--severities", type=_severities, default=(1, 2, 3, 4, 5), help="(default 1,2,3,4,5)")
    q.add_argument(
        "--corruption-limit",
        type=positive_int,
        default=500,
        help="images per corruption x severity (default 500)",
    )
    q.add_argument("--seed", type=int, default=0, help="seed of the consistency pairs and corruptions")
    r = p.add_argument_group("run")
    r.add_argument(
        "--sort-by",
        default="worst_case_circular",
        choices=list(METRICS),
        help="ranking metric (default worst_case_circular)",
    )
    r.add_argument("--batch-size", type=positive_int, default=256, help="(image, shift) pairs per pass")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_precision(r)
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--overwrite", action="store_true", help="replace an existing leaderboard folder")
    r.add_argument(
        "--resume",
        action="store_true",
        help="keep the finished units (same protocol and data; more models may be added)",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bars and no summary")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from shiftattack.errors import SpecError
    from shiftattack.jobs.compare import CompareConfig, Protocol, parse_entries, read_entries, run_compare

    entries = parse_entries(args.model, pretrained=args.pretrained, antialias=args.antialias)
    if args.models:
        entries += read_entries(args.models)
    if not entries:
        raise SpecError("give at least one --model SPEC[@WEIGHTS] or a --models FILE")
    protocol = Protocol(
        radius=args.radius,
        consistency_repeats=args.consistency_repeats,
        flip_distance=args.flip_distance or min(args.radius, 4),
        certify=args.certify,
        corruptions=args.corruptions,
        corruption_severities=args.severities,
        corruption_limit=args.corruption_limit,
        seed=args.seed,
    )
    cfg = CompareConfig(
        entries=entries,
        data=args.data,
        out=args.out,
        protocol=protocol,
        sort_by=args.sort_by,
        limit=args.limit,
        resize=args.resize,
        strict=args.strict,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        trust_pickle=args.trust_pickle,
        overwrite=args.overwrite,
        resume=args.resume,
    )
    doc = run_compare(cfg, progress=not args.quiet)
    if doc is not None and not args.quiet:
        key = doc["sort_by"]
        print(
            f"ranked {len(doc['models'])} models by {key} ({doc['data']['n_images']} images, "
            f"grid:{args.radius}" + ("" if args.precision == "fp32" else f", every model at {args.precision}")
            + "):"
        )
        for row in doc["models"]:
            s, v = row["metrics"][key], row["versus_leader"]
            print(
                f"  {row['rank']}. {row['name']}: {s['estimate']:.2f} % [{s['low']:.2f}, {s['high']:.2f}]"
                + ("" if row["rank"] == 1 else f"  ({v['verdict']})")
            )
        print(f"wrote {args.out}/leaderboard.csv, leaderboard.json and leaderboard.html")
    return 0
