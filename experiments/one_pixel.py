"""Azulay & Weiss (JMLR 2019): how often does a one-pixel shift change a CNN's top-1 prediction?

Two protocols, on CIFAR-10 test images, for every model trained by ``cifar10_antialias.py``
(read from its ``models/`` folder) plus, to separate architecture from augmentation, the
baseline trained again **without** translation augmentation (no random crops; flips kept):

- **sliding crop**: the image is reflect-padded by ``shift`` px into a canvas and the
  32 x 32 window moves 1 px at a time horizontally, from ``-shift/2`` to ``+shift/2``
  (real-looking content enters at the border);
- **black canvas**: the image is downscaled to ``small`` px (bilinear, antialiased) and
  moved 1 px at a time across a black 32 x 32 canvas (no content is lost or invented).

Per model and protocol: P(top-1 change) over consecutive frame pairs, and MAC, the mean
absolute change of the probability of the first frame's top class
(:func:`shiftattack.metrics.top1_change`).

    python experiments/one_pixel.py --from experiments/results/cifar10_antialias_cpu \\
        --out experiments/results/one_pixel_cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cifar10_antialias import DISPLAY, MODELS, _default_data, _versions  # noqa: E402

NO_AUG = "baseline_noaug"


def black_canvas(images: torch.Tensor, small: int) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3, H, W): each image downscaled to ``small`` px, centred on black."""
    h, w = images.shape[-2:]
    if not 8 <= small < min(h, w):
        raise SystemExit(f"--small must be in 8..{min(h, w) - 1}, got {small}")
    down = F.interpolate(images, size=(small, small), mode="bilinear", antialias=True, align_corners=False)
    canvas = torch.zeros_like(images)
    top, left = (h - small) // 2, (w - small) // 2
    canvas[..., top : top + small, left : left + small] = down.clamp(0, 1)
    return canvas


def measure(model, images: torch.Tensor, shift: int, small: int) -> dict:
    """P(top-1 change) and MAC under both protocols for one model."""
    from shiftattack.api import make_canvas
    from shiftattack.metrics import top1_change

    half = shift // 2
    crop = top1_change(
        model,
        make_canvas(images, half, "reflect"),
        mode="crop",
        size=tuple(images.shape[-2:]),
        n_shifts=shift,
        direction=(1, 0),
        start=(-half, 0),
    )
    black = top1_change(
        model, black_canvas(images, small), mode="zero", n_shifts=shift, direction=(1, 0), start=(-half, 0)
    )
    return {"sliding_crop": crop.to_json(), "black_canvas": black.to_json()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=Path("experiments/results/cifar10_antialias_cpu"),
        help="a cifar10_antialias results folder whose models/*/model.pt are measured",
    )
    parser.add_argument("--data", default=None, help="CIFAR-10 (default as in cifar10_antialias.py)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/one_pixel_cpu"))
    parser.add_argument("--images", type=int, default=1000, help="class-balanced test images (1000)")
    parser.add_argument("--shift", type=int, default=8, help="1-px steps per image (the paper: 8)")
    parser.add_argument("--small", type=int, default=24, help="black canvas: downscaled side in px (24)")
    parser.add_argument(
        "--no-aug-epochs",
        type=int,
        default=None,
        help="epochs of the baseline trained without augmentation (default: as the source run)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.shift < 2 or args.shift % 2:
        parser.error(f"--shift must be an even number of 1-px steps (>= 2), got {args.shift}")
    if not 8 <= args.small <= 32 - args.shift:
        parser.error(
            f"--small must be in 8..{32 - args.shift} so the image stays on the 32-px canvas while it "
            f"moves {args.shift} px, got {args.small}"
        )

    from shiftattack.cli import main as cli
    from shiftattack.data import load_dataset
    from shiftattack.models import load_model
    from shiftattack.runtime.results import write_json

    exp_file = args.source / "experiment.json"
    if not exp_file.is_file():
        parser.error(f"{args.source} has no experiment.json; run experiments/cifar10_antialias.py first")
    exp = json.loads(exp_file.read_text())
    data = args.data or exp.get("data") or _default_data()
    if not Path(data).exists():
        parser.error(f"CIFAR-10 not found at {data}; pass --data PATH")
    models = dict(MODELS[exp["tier"]])
    models = {name: spec for name, spec in exp["models"].items() if name in models}
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    # the baseline again, without random crops: translation augmentation's share of the invariance
    noaug = args.out / "models" / NO_AUG
    if not (noaug / "model.pt").is_file():
        epochs = args.no_aug_epochs or exp["sizes"]["epochs"]
        argv_t = [
            "train",
            "--model",
            models["baseline"],
            "--data",
            f"{data}:train",
            "--test-data",
            f"{data}:test",
            "--epochs",
            str(epochs),
            "--augment-pad",
            "0",
            "--seed",
            str(args.seed),
            "--out",
            str(noaug),
            "--overwrite",
            "--quiet",
        ]
        if exp["sizes"].get("train_limit"):
            argv_t += ["--limit", str(exp["sizes"]["train_limit"])]
        print(f"[run ] {NO_AUG}: train without random-crop augmentation", flush=True)
        if cli(argv_t) != 0:
            sys.exit("training the no-augmentation baseline failed")

    test = load_dataset(f"{data}:test", limit=args.images, progress=False)
    images = test.float_images()
    rows = []
    entries = [(n, s, args.source / "models" / n) for n, s in models.items()]
    entries.insert(1, (NO_AUG, models["baseline"], noaug))
    for name, spec, folder in entries:
        weights = folder / "model.pt"
        if not weights.is_file():
            print(f"[skip] {name}: no {weights}", flush=True)
            continue
        log = json.loads((folder / "train_log.json").read_text())
        model = load_model(spec, weights)
        with torch.inference_mode():
            res = measure(model, images, args.shift, args.small)
        rows.append(
            {
                "name": name,
                "display": DISPLAY.get(name, "Baseline, no crop augmentation"),
                "model": spec,
                "augmentation": name != NO_AUG,
                "clean_accuracy": 100 * log["test_accuracy"],
                **res,
            }
        )
        print(
            f"[done] {name}: P(change) crop {100 * res['sliding_crop']['p_top1_change']:.2f} %, "
            f"black canvas {100 * res['black_canvas']['p_top1_change']:.2f} %",
            flush=True,
        )
    doc = {
        "protocol": {
            "images": len(images),
            "shift_steps": args.shift,
            "direction": "horizontal",
            "crop_canvas": f"reflect pad {args.shift // 2} px",
            "black_canvas_small": args.small,
        },
        "source": str(args.source),
        "models": rows,
        "versions": _versions(),
        "command": " ".join(
            ["python", "experiments/one_pixel.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(args.out / "summary.json", doc)
    _figure(rows, args.out / "one_pixel.png")
    print(f"wrote {args.out / 'summary.json'} and one_pixel.png in {doc['seconds']:.0f} s")
    return 0


def _figure(rows: list[dict], path: Path) -> None:
    """P(top-1 change) per model, both protocols, as grouped bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows)), 3.8))
    x = np.arange(len(rows))
    for i, (key, label) in enumerate((("sliding_crop", "sliding crop"), ("black_canvas", "black canvas"))):
        ax.bar(x + 0.4 * i, [100 * r[key]["p_top1_change"] for r in rows], 0.4, label=label)
    ax.set_xticks(x + 0.2, [r["display"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("P(top-1 change) per 1-px shift (%)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    from shiftattack.runtime.results import _atomic_write

    _atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"))


if __name__ == "__main__":
    raise SystemExit(main())
