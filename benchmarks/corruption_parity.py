"""Parity with ``imagecorruptions``: mean PSNR to the clean image, ours and theirs, per corruption, severity.

    python benchmarks/corruption_parity.py [--data-dir DIR] [--n-images 16] [--size 224] [--json FILE]

Same images for both tools (CIFAR-10 test images, bicubic-upscaled to ``--size``),
ImageNet-C strengths, 8-bit outputs (both truncate). For every corruption and
severity it prints our mean PSNR, theirs, the difference (the test suite requires
|difference| <= 1.5 dB for the random corruptions), and, for the deterministic
ones, the largest 8-bit difference between the two outputs (ours computed in
float64, the reference's precision). Where ``imagecorruptions`` departs from the
published code or crashes, the row says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from corruption_speed import real_images, reference  # noqa: E402

from shiftattack.corruptions import corrupt, list_corruptions  # noqa: E402

DETERMINISTIC = {"brightness", "contrast", "saturate", "jpeg_compression", "pixelate", "defocus_blur",
                 "zoom_blur",
                 "gaussian_blur"}
DEPARTS = {"elastic_transform": "imagecorruptions has its own elastic transform (no affine step, other "
                                "constants); ours follows the published make_imagenet_c.py"}


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12))


def ours(images: np.ndarray, name: str, severity: int, dtype=torch.float32) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(dtype) / 255
    y = corrupt(x, name, severity, generator=torch.Generator().manual_seed(severity))
    return (y * 255).floor().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def theirs(ic, images: np.ndarray, name: str, severity: int) -> np.ndarray | str:
    np.random.seed(severity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return np.stack([ic.corrupt(img, severity=severity, corruption_name=name) for img in images])
        except Exception as exc:
            return f"crashes ({type(exc).__name__})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_data_dir_argument(p)
    p.add_argument("--n-images", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    ic = reference()
    images = real_images(args.data_dir, args.n_images, args.size)
    rows = []
    print(f"{len(images)} images at {args.size} px; mean PSNR to the clean image (dB)")
    print(f"{'corruption':<18} {'sev':>3} {'ours':>7} {'theirs':>7} {'diff':>6} {'max 8-bit diff':>15}")
    for name in list_corruptions():
        for s in range(1, 6):
            a = ours(images, name, s)
            b = theirs(ic, images, name, s)
            row = {"corruption": name, "severity": s, "psnr_ours": float(psnr(images, a).mean())}
            if isinstance(b, str):
                row["reference"] = b
            else:
                row["psnr_theirs"] = float(psnr(images, b).mean())
                row["psnr_diff"] = row["psnr_ours"] - row["psnr_theirs"]
                if name in DETERMINISTIC:
                    a64 = ours(images, name, s, torch.float64)
                    row["max_abs_diff_float64"] = int(np.abs(a64.astype(int) - b.astype(int)).max())
                    row["max_abs_diff_float32"] = int(np.abs(a.astype(int) - b.astype(int)).max())
            if name in DEPARTS:
                row["note"] = DEPARTS[name]
            rows.append(row)
            theirs_s = f"{row['psnr_theirs']:7.2f} {row['psnr_diff']:+6.2f}" if "psnr_theirs" in row else \
                f"{row['reference']:>14}"
            exact = f"{row['max_abs_diff_float64']:>15d}" if "max_abs_diff_float64" in row else ""
            print(f"{name:<18} {s:>3} {row['psnr_ours']:7.2f} {theirs_s} {exact}"
                  + ("  (departs)" if name in DEPARTS else ""), flush=True)
    compared = [r for r in rows if "psnr_diff" in r and r["corruption"] not in DEPARTS]
    worst = max(compared, key=lambda r: abs(r["psnr_diff"]))
    print(f"largest |PSNR difference| where both follow the published code: {abs(worst['psnr_diff']):.2f} dB "
          f"({worst['corruption']} s{worst['severity']})")
    if args.json:
        doc = {"environment": C.environment(torch.device("cpu")), "n_images": len(images), "size": args.size,
               "rows": rows, "largest_psnr_diff": abs(worst["psnr_diff"])}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
