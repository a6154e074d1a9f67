"""The ``certify`` and ``verify`` subcommands (registered by :mod:`shiftattack.cli`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from shiftattack.cli.options import add_trust_pickle, model_options
from shiftattack.defaults import BOUND_ATTACK_STEP, BOUND_BATCH, BOUND_MAX_PIECES, BOUND_MIN_WIDTH, CHUNK_SIZE

__all__ = ["add_certify", "add_verify", "VERIFY_FAILED"]

#: Exit status of ``verify`` when the certificate does not hold (bad input is 2, as everywhere).
VERIFY_FAILED = 1


def add_certify(sub, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    c = sub.add_parser(
        "certify",
        help="certify images under every shift of a set; writes certificate.json",
        description="Certify each image: exact (every member of a finite set, e.g. grid:3), bound "
        "(sound linear bounds over every real shift in box:R), or smooth (randomized "
        "smoothing over translations). Writes DIR/certificate.json (DESIGN.md contract "
        "plus fingerprints; check it with `shiftattack verify`) and DIR/certificate.csv.",
    )
    add_common(c)
    m = c.add_argument_group("certificate")
    m.add_argument(
        "--method",
        default="exact",
        choices=["exact", "bound", "smooth"],
        help="exact: enumeration of a finite set (default); bound: sound bounds over every real shift in "
        "box:R (--mode zero or circular); smooth: randomized smoothing over translations "
        "(--shifts l2:R or box:R, --mode circular)",
    )
    m.add_argument(
        "--order",
        default="radius",
        choices=["radius", "adaptive", "far_first"],
        help="exact: search order; radius (default) also gives each image's certified radius",
    )
    m.add_argument(
        "--chunk-size",
        type=int,
        default=CHUNK_SIZE,
        help=f"images per stored unit; --resume redoes at most one unit (default {CHUNK_SIZE})",
    )
    m.add_argument("--resume", action="store_true", help="keep the finished chunks of an interrupted run")
    bd = c.add_argument_group("bound")
    bd.add_argument(
        "--attack-step",
        type=float,
        default=BOUND_ATTACK_STEP,
        help="step (px) of the dense bilinear grid attack run before the bounds "
        f"(default {BOUND_ATTACK_STEP:g})",
    )
    bd.add_argument(
        "--max-pieces",
        type=int,
        default=BOUND_MAX_PIECES,
        help=f"bound evaluations per image before it is declared unknown (default {BOUND_MAX_PIECES})",
    )
    bd.add_argument(
        "--min-width",
        type=float,
        default=BOUND_MIN_WIDTH,
        help=f"smallest piece side (px) that is still split (default {BOUND_MIN_WIDTH:g})",
    )
    bd.add_argument(
        "--bound-batch",
        type=int,
        default=BOUND_BATCH,
        help=f"pieces per bound pass (default {BOUND_BATCH}; small batches stay in cache)",
    )
    sm = c.add_argument_group("smooth")
    sm.add_argument("--sigma", type=float, default=1.0, help="std of the Gaussian shift, px (default 1)")
    sm.add_argument("--n0", type=int, default=100, help="selection samples per image (default 100)")
    sm.add_argument(
        "--n",
        type=int,
        default=1000,
        help="estimation samples per image (default 1000; Cohen et al. use 100000)",
    )
    sm.add_argument("--alpha", type=float, default=0.001, help="failure probability (default 0.001)")
    sm.add_argument("--seed", type=int, default=0, help="seed of the draws (each image: seed and index)")
    c.set_defaults(func=_cmd_certify)


def add_verify(sub) -> None:
    v = sub.add_parser(
        "verify",
        help="recompute a certificate and check it against its model and data",
        description="Re-check CERT (a certificate.json or the folder holding it): structure and "
        "integrity digest, the model's and data's sha256 fingerprints, and every claim "
        "recomputed independently (or a seeded random sample with --sample). Exit 0 when "
        "it holds; 1 when the file is malformed or edited or any check fails; 2 on other "
        "bad input (for example data that can no longer be read).",
    )
    v.add_argument("certificate", metavar="CERT", help="certificate.json or its folder")
    moved = v.add_argument_group(
        "moved files", "by default the model, weights and data are found at the absolute paths the "
        "certificate records (else as written); these point to them where they are now, and each is "
        "accepted only when its sha256 equals the certificate's (else exit 1)")
    moved.add_argument("--model", help="the certified model spec where it is now (FILE.py:callable)")
    moved.add_argument("--weights", help="the certified weights file where it is now")
    moved.add_argument("--data", help="the certified data where they are now (a spec, e.g. DIR/data.zip:test)")
    v.add_argument("--sample", type=int, help="check a random sample of N images (default: all)")
    v.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    v.add_argument("--batch-size", type=int, help="forward-pass batch (default: the certificate's)")
    v.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    v.add_argument("--dense-step", type=float, default=1 / 16, metavar="PX",
                   help="bound certificates: sample every certified box on a grid of this step, on the real "
                   "model, besides re-running the bounds (default 1/16 px)")
    v.add_argument("--dense-random", type=int, default=64, metavar="N",
                   help="bound certificates: seeded uniform samples per certified box besides the grid "
                   "(default 64)")
    add_trust_pickle(v)
    v.add_argument("--quiet", action="store_true", help="no progress bars")
    v.set_defaults(func=_cmd_verify)


def _cmd_certify(args: argparse.Namespace) -> int:
    from shiftattack.cli.summary import certificate_summary, timing_lines
    from shiftattack.errors import SpecError
    from shiftattack.jobs.certify import CertifyConfig, run_certify

    if args.batch_size == "auto":
        raise SpecError("--batch-size auto applies to attack; give certify a number (default 256)")

    cfg = CertifyConfig(
        method=args.method,
        precision=args.precision,
        **model_options(args),
        data=args.data,
        shifts=args.shifts,
        mode=args.mode,
        out=args.out,
        strict=args.strict,
        limit=args.limit,
        resize=args.resize,
        fill=args.fill,
        crop_size=args.crop_size,
        canvas_pad=args.canvas_pad,
        canvas_pad_mode=args.canvas_pad_mode,
        batch_size=args.batch_size,
        device=args.device,
        order=args.order,
        chunk_size=args.chunk_size,
        sigma=args.sigma,
        n0=args.n0,
        n=args.n,
        alpha=args.alpha,
        seed=args.seed,
        attack_step=args.attack_step,
        max_pieces=args.max_pieces,
        min_width=args.min_width,
        bound_batch=args.bound_batch,
        overwrite=args.overwrite,
        resume=args.resume,
    )
    doc = run_certify(cfg, progress=not args.quiet)
    if doc is not None and not args.quiet:
        print(certificate_summary(doc))
        resumed = timing_lines(doc["_timing"])
        if resumed:
            print("\n".join(resumed))
        print(f"wrote {args.out}/certificate.json, certificate.csv and timing.json"
              + ("" if resumed else f" in {doc['_seconds']:.1f} s"))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    import sys

    from shiftattack.certify.document import CertificateError
    from shiftattack.errors import SpecError
    from shiftattack.jobs.verify import verify_certificate

    if args.sample is not None and args.sample < 1:
        raise SpecError(f"--sample must be a positive number of images, got {args.sample}")
    from pathlib import Path

    target = Path(args.certificate)
    if not target.exists() or (target.is_dir() and not (target / "certificate.json").is_file()):
        raise SpecError(f"no certificate at {target}: give a certificate.json or the folder holding it "
                        "(exit 2: bad input; exit 1 is kept for a certificate that does not verify)")
    try:
        report = verify_certificate(
            args.certificate,
            model=args.model,
            weights=args.weights,
            data=args.data,
            sample=args.sample,
            seed=args.seed,
            device=args.device,
            batch_size=args.batch_size,
            progress=not args.quiet,
            trust_pickle=args.trust_pickle,
            dense_step=args.dense_step,
            dense_random=args.dense_random,
        )
    except CertificateError as exc:
        print(f"verification FAILED: {exc}", file=sys.stderr)
        return VERIFY_FAILED
    dense = report.get("n_dense_samples")
    print(
        f"verified: {report['n_checked']} of {report['n_images']} images recomputed, all agree "
        f"({report['method']} certificate, certified accuracy {100 * report['certified_accuracy']:.2f}%)"
        + ("" if dense is None else f"; {dense} sampled shifts in the certified boxes, none below its bound")
    )
    return 0
