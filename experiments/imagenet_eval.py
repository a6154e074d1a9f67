"""ImageNet evaluation of baseline and anti-aliased models from local weight files (needs a GPU in practice).

For each ``--model SPEC WEIGHTS`` pair (a registry name such as ``resnet50`` or
``resnet50_blur4``, or ``torchvision:resnet50``; weights: a local state_dict, e.g. torchvision's
or antialiased-cnns' files, which the loader maps), on the ImageNet validation folder:

- one-crop top-1 accuracy and the worst case over crop shifts: 224 windows of the 256-px
  resized image, every integer offset with |dx|, |dy| <= ``--radius`` (``shiftattack attack
  --mode crop``);
- Zhang's consistency (two random 224 windows of the 256 canvas, 5 pairs per image), the
  diagonal curve (windows at (d, d), d = 0..32) and flip rates at 1..8 px
  (:func:`shiftattack.stability.canvas_stability_document`);
- ImageNet-C mCE and ImageNet-P mFR / mT5D, normalised by the published AlexNet figures, from
  the published files (``--imagenet-c DIR``, ``--imagenet-p DIR``) or generated from the
  validation images when those are not given;
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


def _name(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.split(":")[-1]).strip("_")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--val", required=True, help="ImageNet validation ImageFolder (class folders) or .zip")
    parser.add_argument("--model", nargs=2, action="append", metavar=("SPEC", "WEIGHTS"), required=True,
                        help="a model spec and its local weights file; repeat for each model")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/imagenet_eval"))
    parser.add_argument("--limit", type=int, default=10000, help="class-balanced validation images (10000)")
    parser.add_argument("--radius", type=int, default=8, help="crop-shift attack radius in px (8)")
    parser.add_argument("--imagenet-c", type=Path, default=None, help="published ImageNet-C folder")
    parser.add_argument("--imagenet-p", type=Path, default=None, help="published ImageNet-P folder")
    parser.add_argument("--c-limit", type=int, default=2000, help="images per corruption when generating (2000)")
    parser.add_argument("--p-limit", type=int, default=500, help="sequences per perturbation when generating (500)")
    parser.add_argument("--corruptions", default=None, help="subset of corruption names (default: all)")
    parser.add_argument("--perturbations", default=None, help="subset of perturbation names (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated steps to skip: attack,stability,c,p")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from shiftattack.cli import main as cli
    from shiftattack.data import load_dataset
    from shiftattack.models import load_model
    from shiftattack.report import collect, write_report
    from shiftattack.results import open_output_dir, write_json
    from shiftattack.stability import canvas_stability_document

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
    canvases = None
    for spec, weights in args.model:
        name = _name(spec)
        model_args = ["--model", spec, "--weights", weights]
        if "attack" not in skip:
            print(f"[run ] {name}: accuracy and crop shifts grid:{args.radius}", flush=True)
            if cli(["attack", *model_args, "--data", args.val, "--limit", str(args.limit), "--resize", "256",
                    "--mode", "crop", "--crop-size", "224", "--shifts", f"grid:{args.radius}", "--order", "radius",
                    *common, "--out", str(args.out / "attack" / name)]) != 0:
                sys.exit(f"the attack on {spec} failed")
        if "stability" not in skip:
            print(f"[run ] {name}: consistency, diagonal curve, flip rates", flush=True)
            if canvases is None:
                val = load_dataset(args.val, limit=args.limit, resize=256, progress=True)
                canvases, labels = val.float_images(), val.labels
            import torch

            device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                                  else ("cpu" if args.device == "auto" else args.device))
            model = load_model(spec, weights).to(device)
            doc = canvas_stability_document(model, canvases.to(device), labels.to(device), size=224,
                                            seed=args.seed, batch_size=args.batch_size)
            doc["model"] = {"spec": spec, "weights": weights}
            doc["data"] = {"spec": args.val, "limit": args.limit, "resize": 256}
            write_json(open_output_dir(args.out / "stability" / name, overwrite=True) / "stability.json", doc)
        for step, suite, source, limit, names in (
                ("c", "imagenet-c", args.imagenet_c, args.c_limit, args.corruptions),
                ("p", "imagenet-p", args.imagenet_p, args.p_limit, args.perturbations)):
            if step in skip:
                continue
            print(f"[run ] {name}: {suite}", flush=True)
            argv_b = ["benchmark", "--suite", suite, *model_args, "--data", args.val, "--limit", str(limit),
                      "--seed", str(args.seed), *common, "--out", str(args.out / suite / name)]
            if source is not None:
                argv_b += ["--source", str(source)]
            if names:
                argv_b += ["--corruptions", names]
            if cli(argv_b) != 0:
                sys.exit(f"{suite} on {spec} failed")
    folders = [args.out / sub for sub in ("attack", "stability", "imagenet-c", "imagenet-p")]
    write_json(args.out / "experiment.json", {
        "command": " ".join(["python", "experiments/imagenet_eval.py", *(argv if argv is not None else sys.argv[1:])]),
        "models": [{"spec": s, "weights": w} for s, w in args.model], "limit": args.limit, "radius": args.radius,
        "versions": _versions(), "seconds": round(time.perf_counter() - started, 1)})
    path = write_report(collect([f for f in folders if f.exists()]), args.out, "ImageNet evaluation")
    print(f"finished in {time.perf_counter() - started:.0f} s; open {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
