"""How tight the bound method is against piece width: proven margin bound versus the sampled true minimum.

    python benchmarks/bound_tightness.py --model small_cnn --weights runs/small_cnn/model.pt \
        [--data-dir DIR] [--n-images 12] [--json FILE]

For the first ``--n-images`` correctly classified CIFAR-10 test images, on cell (0, 0) in
zero mode, pieces centred at (1/2, 1/2) with half-widths 0.25 ... 0.005 px: the forward
bound, the final bound (forward, then CROWN backward), the true minimum margin over a 9 x 9
grid of the piece (an upper bound on the true minimum, so the bound must be below it), the
fraction of unstable ReLUs per layer, and ms per piece. Prints a table; writes ``--json``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from shiftattack.certify import linear_bounds as lb  # noqa: E402
from shiftattack.certify.bound import cell_bounds  # noqa: E402
from shiftattack.certify.propagate import BoundModel  # noqa: E402
from shiftattack.data import load_dataset  # noqa: E402
from shiftattack.models import load_model  # noqa: E402
from shiftattack.runtime.engine import margins  # noqa: E402
from shiftattack.shifts import shift, shift_bilinear  # noqa: E402

HALF_WIDTHS = (0.25, 0.1, 0.05, 0.02, 0.01, 0.005)


def forward_margin(bm: BoundModel, vals, labels: torch.Tensor) -> torch.Tensor:
    """The forward forms' lower bound on the smallest margin, (B,)."""
    out = vals[bm.output]
    k = out.low.shape[1]
    spec = F.one_hot(labels, k).to(out.low)[:, None, :] - torch.eye(k, dtype=out.low.dtype)
    form = torch.einsum("bkd,bqd->bqk", spec, out.form)
    ec, er = (out.e_lo + out.e_hi) / 2, (out.e_hi - out.e_lo) / 2
    err = torch.einsum("bkd,bd->bk", spec, ec) - torch.einsum("bkd,bd->bk", spec.abs(), er)
    fwd = lb.concretize(form, out.box_lo, out.box_hi, lower=True, product=out.product) + err
    return fwd.scatter(1, labels[:, None], math.inf).amin(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_data_dir_argument(p)
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--weights", required=True)
    p.add_argument("--n-images", type=int, default=12)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    model = load_model(args.model, args.weights).eval()
    data = load_dataset(C.cifar_spec(args.data_dir, "test"), limit=4 * args.n_images, progress=False)
    x, y = data.float_images(), data.labels
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y = x[ok][: args.n_images].double(), y[ok][: args.n_images]
    n = x.shape[0]
    bm = BoundModel(model, tuple(x.shape[-2:]))
    corners = tuple(shift(x, di, dj, "zero") for di, dj in ((0, 0), (1, 0), (0, 1), (1, 1)))
    relus = [k for k, op in enumerate(bm.ops) if op.kind == "relu"]
    rows = []
    flushed = torch.set_flush_denormal(True)
    for h in HALF_WIDTHS:
        full = lambda v: torch.full((n,), v, dtype=torch.float64)  # noqa: E731
        piece = cell_bounds(corners, full(0.5), full(0.5), full(h), full(h))
        with torch.no_grad():
            vals = bm.forward_bounds(piece)
            t0 = time.perf_counter()
            final = bm.margin_lower(piece, y).amin(1)
            ms = 1000 * (time.perf_counter() - t0) / n
            fwd = forward_margin(bm, vals, y)
            grid = torch.linspace(-h, h, 9, dtype=torch.float64)
            true = torch.stack(
                [
                    margins(model(shift_bilinear(x, 0.5 + a, 0.5 + b, "zero").float()), y)
                    for a in grid
                    for b in grid
                ]
            ).amin(0)
        unstable = [
            float(((vals[bm.ops[k].args[0]].low < 0) & (vals[bm.ops[k].args[0]].high > 0)).double().mean())
            for k in relus
        ]
        assert bool((final <= true.double() + 1e-4).all()), "a bound above a sampled margin: unsound"
        gap = (true.double() - final).tolist()
        rows.append(
            {
                "half_width": h,
                "ms_per_piece": ms,
                "unstable_relu_fraction": unstable,
                "true_min": true.tolist(),
                "forward_bound": fwd.tolist(),
                "final_bound": final.tolist(),
                "median_gap": statistics.median(gap),
                "positive_where_true_positive": int(((final > 0) & (true > 0)).sum()),
                "true_positive": int((true > 0).sum()),
            }
        )
        r = rows[-1]
        print(
            f"piece width {2 * h:.3f} px: median gap (true - bound) {r['median_gap']:10.3f}; bound > 0 on "
            f"{r['positive_where_true_positive']}/{r['true_positive']} images with a positive true minimum; "
            f"unstable ReLUs {' / '.join(f'{100 * u:.1f}%' for u in unstable)}; {ms:.0f} ms/piece",
            flush=True,
        )
    if flushed:
        torch.set_flush_denormal(False)
    if args.json:
        C.save_figures(
            args.json,
            {
                "environment": C.environment(torch.device("cpu")),
                "model": args.model,
                "n_images": n,
                "rows": rows,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
