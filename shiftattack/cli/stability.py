"""The ``stability`` subcommand (registered by :mod:`shiftattack.cli`): writes ``stability.json``."""

from __future__ import annotations

import argparse

from shiftattack.cli.options import add_model_options, add_strict_data

__all__ = ["add_stability"]


def add_stability(sub, positive_int, floats) -> None:
    p = sub.add_parser(
        "stability",
        help="consistency, Zhang's diagonal curve and flip rates; writes stability.json",
        description="Shift stability of one model (no adversary): consistency (Zhang 2019), the diagonal "
        "curve (accuracy and true-class probability along (d, d)) and flip rates against shift distance "
        "(Leterme et al.'s mean flip rate). Two protocols: shifts of the image itself in --modes (default; "
        "the diagonal and flip rates use a --pad px canvas), or, with --crop-size, Zhang's crop protocol on "
        "canvases (ImageNet: --resize 256 --crop-size 224). Writes OUT/stability.json, which "
        "`shiftattack report` draws.",
    )
    g = p.add_argument_group("model and data")
    add_model_options(g)
    g.add_argument(
        "--data",
        required=True,
        help="ImageFolder dir or .zip[:split], CIFAR-10 batches, .npz, synthetic:test",
    )
    g.add_argument("--limit", type=positive_int, help="deterministic class-balanced subset of N images")
    add_strict_data(g)
    g.add_argument("--resize", type=positive_int, help="resize the shorter side and centre-crop (canvases)")
    t = p.add_argument_group("protocol")
    t.add_argument(
        "--modes", default="zero,circular", help="shift modes for consistency (default zero,circular)"
    )
    t.add_argument("--max-shift", type=int, default=4, help="consistency: shifts uniform in [-K, K]^2 (4)")
    t.add_argument("--repeats", type=positive_int, default=5, help="pairs per image (5, as Zhang)")
    t.add_argument("--pad", type=int, default=4, help="canvas padding for the diagonal and flip rates (4)")
    t.add_argument("--pad-mode", default="reflect", choices=["zero", "reflect", "replicate"])
    t.add_argument(
        "--flip-distance",
        type=positive_int,
        default=None,
        help="flip rates for d = 1..D px (default: min(pad, 4), none with --pad 0; crop protocol 8)",
    )
    t.add_argument(
        "--crop-size",
        type=positive_int,
        help="Zhang's crop protocol: window side in px "
        "(--modes, --max-shift, --pad and --pad-mode do not apply)",
    )
    r = p.add_argument_group("run")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--batch-size", type=positive_int, default=256)
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--overwrite", action="store_true", help="replace stability.json in an existing folder")
    r.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=_cmd_stability)


def _cmd_stability(args: argparse.Namespace) -> int:
    from shiftattack.data import load_dataset
    from shiftattack.errors import SpecError
    from shiftattack.jobs.stability import canvas_stability_document, stability_document
    from shiftattack.models import load_model
    from shiftattack.runtime.engine import resolve_device
    from shiftattack.runtime.results import check_output_dir, open_output_dir, write_json
    from shiftattack.shifts.exact import INTEGER_MODES

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    bad = [m for m in modes if m not in INTEGER_MODES]
    if not modes or bad:
        raise SpecError(
            f"--modes must be a comma-separated subset of {', '.join(INTEGER_MODES)}, got {args.modes!r}"
        )
    from shiftattack.models.loading import check_weights_given

    check_weights_given(args.model, args.weights, args.pretrained, args.random_weights)
    check_output_dir(args.out, args.overwrite)
    device = resolve_device(args.device)
    data = load_dataset(args.data, limit=args.limit, resize=args.resize, progress=not args.quiet,
                        strict=args.strict)
    model = load_model(args.model, args.weights, args.mean, args.std, trust_pickle=args.trust_pickle,
                       pretrained=args.pretrained, antialias=args.antialias,
                       init_seed=0 if args.random_weights else None).to(device)
    x, y = data.float_images().to(device), data.labels.to(device)
    if args.crop_size:  # the metrics evaluate under inference_mode themselves
        flip_distance = 8 if args.flip_distance is None else args.flip_distance
        doc = canvas_stability_document(
            model,
            x,
            y,
            size=args.crop_size,
            n_repeats=args.repeats,
            flip_distance=flip_distance,
            seed=args.seed,
            batch_size=args.batch_size,
        )
    else:
        doc = stability_document(
            model,
            x,
            y,
            modes=modes,
            max_shift=args.max_shift,
            n_repeats=args.repeats,
            pad=args.pad,
            pad_mode=args.pad_mode,
            flip_distance=args.flip_distance,
            seed=args.seed,
            batch_size=args.batch_size,
        )
    doc["model"] = {"spec": args.model, "weights": args.weights}
    doc["data"] = {"spec": args.data, "limit": args.limit, "resize": args.resize, "warnings": data.warnings}
    path = write_json(open_output_dir(args.out, args.overwrite) / "stability.json", doc)
    cons = ", ".join(f"{m} {v:.2f} %" for m, v in doc["consistency"].items())
    fr = doc["flip_rate"]
    flips = (
        "no flip rate (--pad 0)"
        if fr is None
        else f"mean flip rate {fr['mean_flip_rate']:.2f} % (d <= {fr['max_distance']} px)"
    )
    if not args.quiet:
        print(f"consistency: {cons}; {flips}; wrote {path}")
    return 0
