"""ImageNet evaluation of baseline and anti-aliased models from local weight files (needs a GPU in practice).

For each ``--model SPEC WEIGHTS`` pair (a registry name such as ``resnet50`` or
``resnet50_blur4``, or ``torchvision:resnet50``, which is given ImageNet's mean and std; weights: a local state_dict, e.g. torchvision's
or antialiased-cnns' files, which the loader maps), on the ImageNet validation folder:

- one-crop top-1 accuracy and the worst case over crop shifts: 224 windows of the 256-px
  resized image, every integer offset with |dx|, |dy| <= ``--radius`` (``shiftattack attack
  --mode crop``);
- Zhang's consistency (two random 224 windows of the 256 canvas, 5 pairs per image), the
  diagonal curve (windows at (d, d), d = 0..32) and flip rates at 1..8 px
  (:func:`shiftattack.jobs.stability.canvas_stability_document`);
- ImageNet-C mCE and ImageNet-P mFR / mT5D, normalised by the published AlexNet figures, from
  the published files (``--imagenet-c DIR``, ``--imagenet-p DIR``) or, when those are not given,
  generated once from the validation images (``shiftattack corrupt``) and shared by every model;
- the report (``shiftattack report``) over all of it.

    python experiments/imagenet_eval.py --val /data/imagenet/val \\
        --model resnet50 weights/resnet50-0676ba61.pth --model resnet50_blur4 weights/resnet50_lpf4.pth \\
        --device cuda --limit 10000 --out experiments/results/imagenet_eval
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cifar10_antialias import _versions  # noqa: E402

#: torchvision's models take ImageNet-normalised inputs; registry names normalise inside the model
IMAGENET_MEAN, IMAGENET_STD = "0.485,0.456,0.406", "0.229,0.224,0.225"


def _name(spec: str) -> str:
    """A folder name for a spec: ``torchvision:resnet50`` and ``resnet50`` stay apart."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", spec).strip("_")


def _model_args(spec: str, weights: str) -> list[str]:
    extra = ["--mean", IMAGENET_MEAN, "--std", IMAGENET_STD] if spec.startswith("torchvision:") else []
    return ["--model", spec, "--weights", weights, *extra]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--val", required=True, help="ImageNet validation ImageFolder (class folders) or .zip"
    )
    parser.add_argument(
        "--model",
        nargs=2,
        action="append",
        metavar=("SPEC", "WEIGHTS"),
        required=True,
        help="a model spec and its local weights file; repeat for each model",
    )
    parser.add_argument("--out", type=Path, default=Path("experiments/results/imagenet_eval"))
    parser.add_argument("--limit", type=int, default=10000, help="class-balanced validation images (10000)")
    parser.add_argument("--radius", type=int, default=8, help="crop-shift attack radius in px (8)")
    parser.add_argument("--imagenet-c", type=Path, default=None, help="published ImageNet-C folder")
    parser.add_argument("--imagenet-p", type=Path, default=None, help="published ImageNet-P folder")
    parser.add_argument(
        "--c-limit", type=int, default=2000, help="images per corruption when generating (2000)"
    )
    parser.add_argument(
        "--p-limit", type=int, default=500, help="sequences per perturbation when generating (500)"
    )
    parser.add_argument("--corruptions", default=None, help="subset of corruption names (default: all)")
    parser.add_argument("--perturbations", default=None, help="subset of perturbation names (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated steps to skip: attack,stability,c,p")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from shiftattack.cli import main as cli
    from shiftattack.report import collect, write_report
    from shiftattack.runtime.results import write_json

    if not Path(args.val).exists():
        parser.error(f"ImageNet validation images not found at {args.val}")
    for spec, weights in args.model:
        if not Path(weights).is_file():
            parser.error(f"weights file not found for {spec}: {weights}")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    bad = skip - {"attack", "stability", "c", "p"}
    if bad:
        parser.error(f"unknown --skip {', '.join(sorted(bad))}; choose from attack, stability, c, p")
    started = time.perf_counter()
    common = ["--device", args.device, "--batch-size", str(args.batch_size), "--overwrite", "--quiet"]
    sources = {"imagenet-c": args.imagenet_c, "imagenet-p": args.imagenet_p}
    suites = [  # (--skip name, suite, images, names)
        ("c", "imagenet-c", args.c_limit, args.corruptions),
        ("p", "imagenet-p", args.p_limit, args.perturbations),
    ]
    for step, suite, limit, names in suites:
        if step in skip or sources[suite] is not None:
            continue
        # no published files: generate the suite once from the validation images, for every model
        sources[suite] = args.out / "generated" / suite
        print(f"[run ] generate {suite} from {limit} validation images", flush=True)
        argv_g = [
            "corrupt",
            "--suite",
            suite,
            "--data",
            args.val,
            "--limit",
            str(limit),
            "--seed",
            str(args.seed),
            "--device",
            args.device,
            "--out",
            str(sources[suite]),
            "--overwrite",
            "--quiet",
        ]
        if names:
            argv_g += ["--corruptions", names]
        if cli(argv_g) != 0:
            sys.exit(f"generating {suite} failed")
    for spec, weights in args.model:
        name, model_args = _name(spec), _model_args(spec, weights)
        if "attack" not in skip:
            print(f"[run ] {name}: accuracy and crop shifts grid:{args.radius}", flush=True)
            if (
                cli(
                    [
                        "attack",
                        *model_args,
                        "--data",
                        args.val,
                        "--limit",
                        str(args.limit),
                        "--resize",
                        "256",
                        "--mode",
                        "crop",
                        "--crop-size",
                        "224",
                        "--shifts",
                        f"grid:{args.radius}",
                        "--order",
                        "radius",
                        *common,
                        "--out",
                        str(args.out / "attack" / name),
                    ]
                )
                != 0
            ):
                sys.exit(f"the attack on {spec} failed")
        if "stability" not in skip:
            print(f"[run ] {name}: consistency, diagonal curve, flip rates", flush=True)
            if (
                cli(
                    [
                        "stability",
                        *model_args,
                        "--data",
                        args.val,
                        "--limit",
                        str(args.limit),
                        "--resize",
                        "256",
                        "--crop-size",
                        "224",
                        "--flip-distance",
                        "8",
                        "--seed",
                        str(args.seed),
                        *common,
                        "--out",
                        str(args.out / "stability" / name),
                    ]
                )
                != 0
            ):
                sys.exit(f"the stability measurement of {spec} failed")
        for step, suite, limit, names in suites:
            if step in skip:
                continue
            print(f"[run ] {name}: {suite}", flush=True)
            argv_b = [
                "benchmark",
                "--suite",
                suite,
                *model_args,
                "--data",
                args.val,
                "--limit",
                str(limit),
                "--source",
                str(sources[suite]),
                *common,
                "--out",
                str(args.out / suite / name),
            ]
            if names:
                argv_b += ["--corruptions", names]
            if cli(argv_b) != 0:
                sys.exit(f"{suite} on {spec} failed")
    folders = [args.out / sub for sub in ("attack", "stability", "imagenet-c", "imagenet-p")]
    write_json(
        args.out / "experiment.json",
        {
            "command": " ".join(
                ["python", "experiments/imagenet_eval.py", *(argv if argv is not None else sys.argv[1:])]
            ),
            "models": [{"spec": s, "weights": w} for s, w in args.model],
            "limit": args.limit,
            "radius": args.radius,
            "versions": _versions(),
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    path = write_report(collect([f for f in folders if f.exists()]), args.out, "ImageNet evaluation")
    print(f"finished in {time.perf_counter() - started:.0f} s; open {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
