"""Mouton et al. (2020): pooling kernel size against stride, and the local homogeneity of the data.

Their claims: stride helps translation invariance only when neighbouring pixels are similar
enough ("local homogeneity", a property of the dataset); a larger pooling kernel gives more
invariance but worse generalisation. This experiment trains ``cifar_convnet(width=16,
pool_kernel=k)`` (every down-sampling a stride-2 max-pool of kernel k; k = 1 is bare
subsampling) on datasets of increasing local homogeneity:

- ``synthetic``: the built-in gratings and textures (periods of 2.2-6 px: low homogeneity);
- ``cifar10``;
- ``cifar10_blur1`` and ``cifar10_blur2``: CIFAR-10 with a Gaussian blur of sigma 1 and 2 px
  applied to train and test images alike (written once as ``.npz`` under ``--out/data``).

Local homogeneity (our measure; the paper's is qualitative): on the test images,
``H = 1 - E|x(p) - x(p + e)| / E|x(p) - x(q)|`` with e a 1-px horizontal or vertical step and
q a uniformly random pixel of the same image and channel. H = 1: neighbours are identical;
H = 0: neighbours differ as much as random pixels.

Per (dataset, k): test accuracy, consistency under integer shifts (zero mode, |dx|, |dy| <= 4)
and the mean flip rate (windows 1-4 px from the centre of a 4-px reflect-padded canvas;
:mod:`shiftattack.jobs.stability`). No random-crop augmentation
(flips only), so invariance comes from the architecture and the data, not from training.

    python experiments/stride_homogeneity.py --out experiments/results/stride_homogeneity_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cifar10_antialias import _default_data, _versions  # noqa: E402

KERNELS = (1, 2, 3, 5)
DATASETS = ("synthetic", "cifar10", "cifar10_blur1", "cifar10_blur2")


def local_homogeneity(images: torch.Tensor, seed: int = 0) -> float:
    """``1 - E|x(p) - x(p+e)| / E|x(p) - x(q)|`` over (N, C, H, W) images (see the module docstring)."""
    x = images.double()
    neighbour = torch.cat(
        [
            (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1),
            (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1),
        ],
        1,
    ).mean()
    g = torch.Generator().manual_seed(seed)
    flat = x.flatten(2)
    perm = torch.randint(flat.shape[-1], flat.shape, generator=g)
    random_pair = (flat - flat.gather(2, perm)).abs().mean()
    return 1.0 if random_pair == 0 else float(1 - neighbour / random_pair)  # constant images: homogeneous


def _blurred_npz(data: str, sigma: float, folder: Path, limits: dict) -> str:
    """Write CIFAR-10 blurred by ``sigma`` px as train.npz / test.npz; returns the folder's spec stem."""
    from torchvision.transforms.functional import gaussian_blur

    from shiftattack.data import load_dataset

    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        path = folder / f"{split}.npz"
        if path.is_file():
            continue
        d = load_dataset(f"{data}:{split}", limit=limits[split], progress=False)
        k = 2 * int(np.ceil(3 * sigma)) + 1
        x = gaussian_blur(d.images.float(), [k, k], [sigma, sigma]).round().clamp(0, 255).to(torch.uint8)
        tmp = folder / f"{split}.tmp.npz"
        np.savez(tmp, x=x.permute(0, 2, 3, 1).numpy(), y=d.labels.numpy())
        os.replace(tmp, path)
    return str(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="CIFAR-10 (default as in cifar10_antialias.py)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/stride_homogeneity_cpu"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--train-images", type=int, default=10000, help="class-balanced training subset (10000)"
    )
    parser.add_argument("--test-images", type=int, default=1000, help="class-balanced test subset (1000)")
    parser.add_argument("--kernels", default=",".join(map(str, KERNELS)))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = parser.parse_args(argv)

    from shiftattack.cli import main as cli
    from shiftattack.data import load_dataset
    from shiftattack.jobs.stability import stability_document
    from shiftattack.models import load_model
    from shiftattack.runtime.results import write_json

    kernels = [int(k) for k in args.kernels.split(",")]
    datasets = [d.strip() for d in args.datasets.split(",")]
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        parser.error(f"unknown --datasets {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    if args.quick:
        args.epochs, args.train_images, args.test_images = 1, 256, 32
    data = args.data or _default_data()
    if any(d.startswith("cifar10") for d in datasets) and not Path(data).exists():
        parser.error(f"CIFAR-10 not found at {data}; pass --data PATH")
    limits = {"train": args.train_images, "test": args.test_images}
    started = time.perf_counter()
    rows = []
    for ds in datasets:
        if ds == "synthetic":
            train, test = "synthetic:train", "synthetic:test"
        elif ds == "cifar10":
            train, test = f"{data}:train", f"{data}:test"
        else:
            root = _blurred_npz(data, float(ds.rsplit("blur", 1)[1]), args.out / "data" / ds, limits)
            train, test = f"{root}/train.npz", f"{root}/test.npz"
        test_set = load_dataset(test, limit=args.test_images, progress=False)
        homogeneity = local_homogeneity(test_set.float_images(), args.seed)
        print(f"[data] {ds}: local homogeneity {homogeneity:.3f}", flush=True)
        for k in kernels:
            spec = f"cifar_convnet(width=16, pool_kernel={k})"
            folder = args.out / "models" / f"{ds}_k{k}"
            if not (folder / "train_log.json").is_file():
                argv_t = [
                    "train",
                    "--model",
                    spec,
                    "--data",
                    train,
                    "--test-data",
                    test,
                    "--epochs",
                    str(args.epochs),
                    "--limit",
                    str(args.train_images),
                    "--test-limit",
                    str(args.test_images),
                    "--augment-pad",
                    "0",
                    "--seed",
                    str(args.seed),
                    "--out",
                    str(folder),
                    "--overwrite",
                    "--quiet",
                ]
                if cli(argv_t) != 0:
                    sys.exit(f"training {spec} on {ds} failed")
            log = json.loads((folder / "train_log.json").read_text())
            model = load_model(spec, folder / "model.pt")
            stab = stability_document(
                model,
                test_set.float_images(),
                test_set.labels,
                modes=("zero",),
                max_shift=4,
                n_repeats=5,
                pad=4,
                flip_distance=4,
                seed=args.seed,
            )
            rows.append(
                {
                    "dataset": ds,
                    "homogeneity": homogeneity,
                    "pool_kernel": k,
                    "model": spec,
                    "test_accuracy": 100 * log["test_accuracy"],
                    "consistency": stab["consistency"]["zero"],
                    "mean_flip_rate": stab["flip_rate"]["mean_flip_rate"],
                }
            )
            print(
                f"[done] {ds} k={k}: accuracy {rows[-1]['test_accuracy']:.2f} %, consistency "
                f"{rows[-1]['consistency']:.2f} %, mean flip rate {rows[-1]['mean_flip_rate']:.2f} %",
                flush=True,
            )
    doc = {
        "protocol": {
            "epochs": args.epochs,
            "train_images": args.train_images,
            "test_images": args.test_images,
            "augmentation": "flips only",
            "shifts": "zero mode, |dx|, |dy| <= 4",
            "quick": args.quick,
        },
        "rows": rows,
        "versions": _versions(),
        "seconds": round(time.perf_counter() - started, 1),
        "command": " ".join(
            ["python", "experiments/stride_homogeneity.py", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    write_json(args.out / "summary.json", doc)
    _figure(rows, args.out / "stride_homogeneity.png")
    print(f"wrote {args.out / 'summary.json'} and stride_homogeneity.png in {doc['seconds']:.0f} s")
    return 0


def _figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == ds]
        label = f"{ds} (H = {sub[0]['homogeneity']:.2f})"
        axes[0].plot(
            [r["pool_kernel"] for r in sub], [r["consistency"] for r in sub], marker="o", label=label
        )
        axes[1].plot(
            [r["pool_kernel"] for r in sub], [r["test_accuracy"] for r in sub], marker="o", label=label
        )
    for ax, name in zip(axes, ("consistency, zero mode, |shift| <= 4 px (%)", "test accuracy (%)")):
        ax.set_xlabel("max-pool kernel size k (stride 2)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    from shiftattack.runtime.results import _atomic_write

    _atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"))


if __name__ == "__main__":
    raise SystemExit(main())
