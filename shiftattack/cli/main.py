"""The ``shiftattack`` command: parses arguments and calls the one-call API.

Every error on bad input is printed as one ``error: ...`` line with exit status
2; no output folder is left behind half-written.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from shiftattack._version import __version__
from shiftattack.cli.benchmark import add_benchmark, add_corrupt
from shiftattack.cli.certify import add_certify, add_verify
from shiftattack.cli.compare import add_compare
from shiftattack.cli.options import (
    add_model_options,
    add_precision,
    add_strict_data,
    batch_size,
    floats,
    model_options,
    positive_int,
)
from shiftattack.cli.report import add_demo, add_report
from shiftattack.cli.stability import add_stability
from shiftattack.defaults import CHUNK_SIZE
from shiftattack.errors import PeerFailed, ShiftAttackError, ShiftAttackWarning

__all__ = ["main", "build_parser"]


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 224 or 224x224, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected a size like 224 or 224x224, got {text!r}")
    return (values[0], values[-1])


def _add_common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and data")
    add_model_options(g)
    g.add_argument("--data", required=True,
                   help="ImageFolder dir, ImageFolder .zip[:split], CIFAR-10 batches dir[:split], or .npz")
    g.add_argument("--limit", type=positive_int, help="deterministic class-balanced subset of N images")
    add_strict_data(g)
    g.add_argument("--resize", type=positive_int,
                   help="resize the shorter side to N px and centre-crop N x N (ImageNet canvases: 256)")
    t = p.add_argument_group("threat")
    t.add_argument("--shifts", required=True,
                   help="grid:K, grid:K:STEP, random:K:N[:DEG], list:dx,dy;..., rt:K:DEG[:NT:NR], engstrom; "
                   "sets with sub-pixel or rotated members (grid:K:STEP with a fractional step, DEG > 0, rt:, "
                   "engstrom) need --interp bilinear or fourier")
    t.add_argument("--mode", required=True, choices=["circular", "zero", "reflect", "replicate", "crop"])
    t.add_argument("--interp", default="exact", choices=["exact", "bilinear", "fourier"],
                   help="how sub-pixel members are applied (default: exact, whole pixels only)")
    t.add_argument("--fill", type=float, default=0.0, help="vacated value in zero mode (default 0)")
    t.add_argument("--crop-size", type=_size,
                   help="crop mode: model input size (default with --canvas-pad: the image size; "
                   "without a pad it must be given, e.g. 224 of --resize 256)")
    t.add_argument("--canvas-pad", type=int, default=0,
                   help="crop mode: pad each image by this many px to make the canvas (CIFAR: 4)")
    t.add_argument("--canvas-pad-mode", default="zero", choices=["zero", "reflect", "replicate"])
    r = p.add_argument_group("run")
    r.add_argument("--batch-size", type=batch_size, default=256,
                   help="(image, shift) pairs per pass (default 256); attack: auto times a few sizes on the model "
                   "and keeps the fastest")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    add_precision(r, "; certify: exact and smooth only")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--overwrite", action="store_true", help="replace results in an existing folder")
    r.add_argument("--quiet", action="store_true", help="no progress bars and no summary")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shiftattack",
        description="Adversarial shift robustness of image classifiers: exact worst-case "
                    "translation and crop attacks, certificates, corruption benchmarks.")
    parser.add_argument("--version", action="version", version=f"shiftattack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    a = sub.add_parser("attack", help="worst-case shift attack; writes results.json and results.csv",
                       description="Search the shift set for each image; write DIR/results.json "
                                   "(the DESIGN.md contract) and DIR/results.csv.")
    _add_common(a)
    s = a.add_argument_group("search")
    s.add_argument("--attack", default="auto", choices=["auto", "grid", "random", "gradient", "foolbox"],
                   help="auto: exhaustive grid for finite sets, worst-of-N for random:K:N")
    s.add_argument("--no-early-exit", action="store_true",
                   help="grid: evaluate every shift even after a failure (minimum margins for all)")
    s.add_argument("--order", default="adaptive", choices=["adaptive", "radius", "far_first"],
                   help="grid search order: adaptive (farthest first; by fail count, which today never "
                        "reorders the remaining shifts, so it equals far_first), radius (rings outwards; "
                        "also gives the exact worst-case accuracy for every radius K from this one pass), "
                        "far_first")
    s.add_argument("--seed", type=int, default=0, help="seed of random draws and restarts")
    s.add_argument("--steps", type=positive_int, default=10, help="gradient: steps per restart")
    s.add_argument("--restarts", type=positive_int, default=3, help="gradient: restarts")
    s.add_argument("--chunk-size", type=positive_int, default=CHUNK_SIZE,
                   help="images per stored unit; --resume redoes at most the units that were running, "
                        f"and torchrun processes share the units (default {CHUNK_SIZE})")
    s.add_argument("--resume", action="store_true", help="keep the finished chunks of an interrupted run")
    f = a.add_argument_group("speed")
    f.add_argument("--channels-last", action="store_true",
                   help="model and inputs in channels-last memory format (faster for most CNNs)")
    f.add_argument("--compile", action="store_true",
                   help="torch.compile the model (compiling takes tens of seconds; pays on long runs)")
    a.set_defaults(func=_cmd_attack)
    add_certify(sub, _add_common)
    add_verify(sub)
    add_report(sub)
    add_demo(sub)
    add_stability(sub, positive_int, floats)
    _add_train(sub)
    add_benchmark(sub)
    add_corrupt(sub)
    add_compare(sub)
    return parser


def _add_train(sub) -> None:
    from shiftattack.defaults import PRECISIONS, SCHEDULES
    from shiftattack.jobs.train_config import TrainConfig

    d = TrainConfig(model="", data="", out="")
    t = sub.add_parser(
        "train", help="train a registered model (e.g. cifar_convnet) on an image dataset",
        description="Train with SGD (Nesterov), flip + padded random-crop augmentation and a one-cycle "
                    "or cosine schedule; write DIR/model.pt (a state_dict), DIR/checkpoint.pt and "
                    "DIR/train_log.json. The test split (PATH:test for PATH:train) is scored at the end.")
    add_model_options(t.add_argument_group("model"), normalization=False)
    t.add_argument("--data", required=True, help="training data spec, e.g. cifar10-jpeg.zip:train")
    t.add_argument("--test-data", help="held-out data spec (default: the :test split of a :train spec)")
    t.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"epochs ({d.epochs})")
    t.add_argument("--limit", type=positive_int, help="class-balanced subset of the training data")
    t.add_argument("--test-limit", type=positive_int, help="class-balanced subset of the test data")
    t.add_argument("--batch-size", type=positive_int, default=d.batch_size, help=f"({d.batch_size})")
    t.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate ({d.lr})")
    t.add_argument("--momentum", type=float, default=d.momentum, help=f"({d.momentum})")
    t.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"({d.weight_decay})")
    t.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help=f"({d.label_smoothing})")
    t.add_argument("--schedule", choices=SCHEDULES, default=d.schedule, help=f"({d.schedule})")
    t.add_argument("--augment-pad", type=int, default=d.augment_pad,
                   help=f"random-crop padding in px, 0 = flips only ({d.augment_pad})")
    t.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="auto: bf16 autocast on GPUs and CPUs with AVX-512 BF16, else fp32")
    t.add_argument("--no-channels-last", action="store_true", help="keep NCHW memory format")
    t.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    t.add_argument("--seed", type=int, default=d.seed, help="seeds weights, shuffling and augmentation")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--overwrite", action="store_true", help="replace an existing output folder's files")
    t.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from shiftattack.jobs.train import TrainConfig, run_training

    cfg = TrainConfig(
        **model_options(args), data=args.data, out=args.out, epochs=args.epochs, test_data=args.test_data,
        limit=args.limit, test_limit=args.test_limit, batch_size=args.batch_size, lr=args.lr,
        momentum=args.momentum, weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
        schedule=args.schedule, augment_pad=args.augment_pad, precision=args.precision,
        channels_last=not args.no_channels_last, device=args.device, seed=args.seed, resume=args.resume,
        overwrite=args.overwrite)
    run_training(cfg, progress=not args.quiet)
    return 0


def _cmd_attack(args: argparse.Namespace) -> int:
    from shiftattack.cli.summary import attack_summary
    from shiftattack.jobs.attack import AttackConfig, run_attack

    cfg = AttackConfig(
        **model_options(args), data=args.data, shifts=args.shifts, mode=args.mode, out=args.out,
        limit=args.limit, resize=args.resize, strict=args.strict, interp=args.interp, fill=args.fill,
        crop_size=args.crop_size,
        canvas_pad=args.canvas_pad, canvas_pad_mode=args.canvas_pad_mode, method=args.attack,
        early_exit=not args.no_early_exit, order=args.order, seed=args.seed, steps=args.steps,
        restarts=args.restarts, batch_size=args.batch_size, chunk_size=args.chunk_size, device=args.device,
        channels_last=args.channels_last, compile=args.compile, overwrite=args.overwrite, resume=args.resume,
        precision=args.precision)
    doc = run_attack(cfg, progress=not args.quiet)
    if doc is not None and not args.quiet:
        print(attack_summary(doc, doc["_seconds"], doc["_timing"]))
        print(f"wrote {args.out}/results.json and {args.out}/results.csv")
    return 0


#: commands that ``torchrun`` can run on several processes
DISTRIBUTED = ("attack", "benchmark", "certify", "compare")

#: commands that keep their finished work (units, chunks, epoch checkpoints) for ``--resume``
RESUMABLE = ("attack", "benchmark", "certify", "compare", "corrupt", "train")


def _interrupted_message(command: str) -> str:
    if command in RESUMABLE:
        return (f"interrupted; the finished parts are kept: rerun the same {command} command with --resume "
                "to do the rest")
    return "interrupted; no results were written"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input, 130 interrupted).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process runs this; rank 0 alone
    prints progress and summaries, and the others' messages name their rank.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    from shiftattack.runtime.allocator import keep_freed_memory_for_cli

    keep_freed_memory_for_cli()  # before the first large allocation (shiftattack.runtime.allocator)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and args.command not in DISTRIBUTED:
        print(f"error: {args.command} runs in one process; torchrun shares only "
              f"{', '.join(DISTRIBUTED)}", file=sys.stderr)
        return 2
    if rank > 0 and hasattr(args, "quiet"):
        args.quiet = True
    who = f"[rank {rank} of {world}] " if world > 1 else ""
    default_show = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ShiftAttackWarning):
            if rank == 0:
                print(f"warning: {message}", file=sys.stderr)
        else:
            default_show(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        return int(args.func(args))
    except PeerFailed:
        return 2
    except ShiftAttackError as exc:
        print(f"error: {who}{exc}", file=sys.stderr)
        kept = getattr(exc, "kept_units", None)
        if kept:
            print(f"{who}{kept[0]} finished unit{'s' if kept[0] != 1 else ''} kept in {kept[1]}: fix the cause "
                  f"and rerun the same {args.command} command with --resume to continue", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(who + _interrupted_message(args.command), file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = default_show
        if world > 1:
            from shiftattack.runtime.distributed import shutdown

            shutdown()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
