"""Sound certificates for every real translation in a box: linear bounds with branch and bound.

Threat ``box:R``: every real shift (dx, dy) with |dx|, |dy| <= R (R whole, px), a
sub-pixel shift being bilinear interpolation between exact integer shifts S in the
chosen mode (zero or circular). For (dx, dy) = (i + a, j + b), i, j whole and
a, b in [0, 1], the input is

    (1-a)(1-b) S(i,j) + a(1-b) S(i+1,j) + (1-a)b S(i,j+1) + ab S(i+1,j+1),

which equals :func:`~shiftattack.shifts.shift_bilinear`. On a piece of one pixel
cell, a = am + ha ta, b = bm + hb tb with (ta, tb) in [-1, 1]^2, the input is affine
in (ta, tb, ta tb), the product being bounded as a third parameter in [-1, 1]
(its coefficient shrinks as ha hb). :class:`~.propagate.BoundModel` turns that
into lower bounds on every logit margin; a piece is verified when all are
positive. Otherwise the model is evaluated at the piece's centre (a concrete
shift: a counterexample there ends the image's search, after a separate forward
pass confirms it) and the piece is split in two along its longer side, until every
piece is verified, a counterexample is found, or the image's piece budget or the
smallest piece width is reached ("unknown": not certified).

Before any bound, a dense grid attack (step ``attack_step`` px, bilinear) removes
the images it fools; its worst-case accuracy is the empirical ceiling that the
certified accuracy is compared with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..attacks import GridAttack
from ..engine import ModelRunner, margins
from ..errors import SpecError
from ..threats import ThreatModel, parse_shifts
from .linear_bounds import Bounds, exact
from .propagate import BoundModel

__all__ = ["BoundConfig", "parse_box", "certify_bound", "cell_bounds", "BOUND_MODES"]

BOUND_MODES = ("zero", "circular")


@dataclass
class BoundConfig:
    """Branch-and-bound settings.

    Attributes:
        radius: R of ``box:R`` (px, whole).
        mode: ``zero`` or ``circular``.
        fill: vacated value in zero mode.
        attack_step: step of the dense bilinear grid attack run first (px; must divide 1).
        max_pieces: bound evaluations allowed per image before it is declared unknown.
        min_width: smallest piece side (px) that is still split.
        batch_size: pieces per bound pass.
    """

    radius: int
    mode: str = "zero"
    fill: float = 0.0
    attack_step: float = 0.25
    max_pieces: int = 400
    min_width: float = 1 / 64
    batch_size: int = 32


def parse_box(spec: str) -> int:
    """``box:R`` -> R (a whole number of pixels >= 1)."""
    head, _, rest = spec.strip().partition(":")
    try:
        r = float(rest)
    except ValueError:
        r = float("nan")
    if head != "box" or not (r >= 1 and r.is_integer()):
        raise SpecError(
            f"the bound method certifies box:R (every real shift with |dx|, |dy| <= R, R a whole "
            f"number >= 1), got {spec!r}"
        )
    return int(r)


def cell_bounds(
    corners: tuple[Tensor, Tensor, Tensor, Tensor], am: Tensor, bm: Tensor, ha: Tensor, hb: Tensor
) -> Bounds:
    """Bounds of the bilinear input over a piece of a pixel cell.

    Args:
        corners: S(i,j), S(i+1,j), S(i,j+1), S(i+1,j+1), each (B, C, H, W) float64.
        am, bm: the piece's centre inside the cell, (B,) in [0, 1].
        ha, hb: its half-widths, (B,).

    Returns:
        :class:`Bounds` with exact forms over (ta, tb, ta tb) (``product``: the third parameter is
        the product of the first two, so concretising takes the four corners) and the exact
        per-pixel interval (a bilinear function is extreme at the piece's corners).
    """
    s00, s10, s01, s11 = corners
    v = (-1,) + (1,) * (s00.dim() - 1)
    am, bm, ha, hb = (t.to(s00).reshape(v) for t in (am, bm, ha, hb))
    d3 = s11 - s10 - s01 + s00
    da, db = s10 - s00, s01 - s00
    centre = s00 + am * da + bm * db + am * bm * d3
    form = torch.stack([centre, ha * (da + bm * d3), hb * (db + am * d3), ha * hb * d3], dim=1)
    pts = [
        centre + sa * form[:, 1] + sb * form[:, 2] + sa * sb * form[:, 3]
        for sa in (-1.0, 1.0)
        for sb in (-1.0, 1.0)
    ]
    stacked = torch.stack(pts)
    b = s00.shape[0]
    box_hi = torch.ones(b, 3, dtype=s00.dtype, device=s00.device)
    return exact(form, stacked.amin(0), stacked.amax(0), -box_hi, box_hi, product=True)


class _Pieces:
    """The open pieces: image, cell (i, j), centre (am, bm) in the cell and half-widths (ha, hb)."""

    def __init__(self, img: Tensor, ci: Tensor, cj: Tensor, cell: Tensor) -> None:
        n = img.numel()
        half = torch.full((n,), 0.5, dtype=torch.float64)
        self.cols = {
            "img": img,
            "ci": ci,
            "cj": cj,
            "cell": cell,
            "am": half.clone(),
            "bm": half.clone(),
            "ha": half.clone(),
            "hb": half.clone(),
        }

    def __len__(self) -> int:
        return self.cols["img"].numel()

    def take(self, k: int, keep: Tensor) -> dict[str, Tensor]:
        """Remove and return up to k pieces, dropping those whose image is no longer pending."""
        alive = keep[self.cols["img"]]
        self.cols = {name: col[alive] for name, col in self.cols.items()}
        head = {name: col[:k] for name, col in self.cols.items()}
        self.cols = {name: col[k:] for name, col in self.cols.items()}
        return head

    def push(self, batch: dict[str, Tensor]) -> None:
        self.cols = {name: torch.cat([self.cols[name], batch[name]]) for name in self.cols}


def _split(p: dict[str, Tensor]) -> dict[str, Tensor]:
    """Halve each piece along its longer side: returns the 2n children."""
    along_a = p["ha"] >= p["hb"]
    out = {name: torch.cat([col, col]) for name, col in p.items()}
    sign = torch.cat([-torch.ones_like(p["ha"]), torch.ones_like(p["ha"])])
    a2 = torch.cat([along_a, along_a])
    out["ha"] = torch.where(a2, out["ha"] / 2, out["ha"])
    out["hb"] = torch.where(a2, out["hb"], out["hb"] / 2)
    out["am"] = torch.where(a2, out["am"] + sign * out["ha"], out["am"])
    out["bm"] = torch.where(a2, out["bm"], out["bm"] + sign * out["hb"])
    return out


def _cells(radius: int) -> tuple[Tensor, Tensor, Tensor]:
    """Cell corners (i, j) for i, j in [-R, R-1] and each cell's ring max(|i|, |i+1|, |j|, |j+1|)."""
    r = torch.arange(-radius, radius)
    cj, ci = torch.meshgrid(r, r, indexing="ij")
    ci, cj = ci.flatten(), cj.flatten()
    ring = torch.stack([ci.abs(), (ci + 1).abs(), cj.abs(), (cj + 1).abs()]).amax(0)
    return ci, cj, ring


def certify_bound(
    model,
    images: Tensor,
    labels: Tensor,
    cfg: BoundConfig,
    *,
    device="cpu",
    batch_size: int = 256,
    progress: bool = False,
) -> dict:
    """Certify ``box:R`` for each image.

    Args:
        model: maps (N, 3, H, W) in [0, 1] to logits.
        images: (N, 3, H, W) floats in [0, 1].
        labels: (N,) int64.
        cfg: :class:`BoundConfig`.
        device: where the model and the bounds run.
        batch_size: (image, shift) pairs per forward pass of the attack.

    Returns:
        dict of per-image tensors (length N): ``clean_pred``, ``robust`` (no counterexample found),
        ``certified``, ``status`` (0 certified, 1 fooled by the dense attack, 2 unknown, 3 wrong
        unshifted, 4 counterexample found by branch and bound),
        ``worst_params`` (N, 3), ``worst_margin``, ``n_evaluated``, ``n_pieces``,
        ``margin_lower_bound`` (NaN unless certified), ``certified_radius`` (-1 = none),
        and ``attack_accuracy_vs_radius``.
    """
    if cfg.mode not in BOUND_MODES:
        raise SpecError(
            f"the bound method defines sub-pixel shifts in zero or circular mode, got {cfg.mode!r}"
        )
    steps = 1 / cfg.attack_step
    if not (cfg.attack_step > 0 and abs(steps - round(steps)) < 1e-9):
        raise SpecError(f"the attack step must divide 1 px, got {cfg.attack_step}")
    n = images.shape[0]
    runner = ModelRunner(model, device, images.dtype)
    dense = ThreatModel(
        parse_shifts(f"grid:{cfg.radius}:{cfg.attack_step:g}"),
        mode=cfg.mode,
        interpolation="bilinear",
        fill=cfg.fill,
    )
    dense.check_fits(*images.shape[-2:])
    found = GridAttack(dense, batch_size=batch_size, early_exit=True, order="radius")(
        runner, images, labels, progress=progress
    )
    correct = found.clean_pred == found.labels
    status = torch.where(correct, torch.where(found.robust, -1, 1), 3)
    worst = found.worst_params.clone()
    worst_margin = found.worst_margin.clone()
    n_eval = found.n_evaluated.clone()
    n_pieces = torch.zeros(n, dtype=torch.long)
    lower_bound = torch.full((n,), math.inf, dtype=torch.float64)
    ci, cj, ring = _cells(cfg.radius)
    n_cells = ci.numel()
    # cells not yet verified, per image (images the attack fooled never enter: all stay open)
    open_count = torch.ones(n, n_cells, dtype=torch.long)
    todo = (status == -1).nonzero().squeeze(1)
    if todo.numel():
        img = todo.repeat_interleave(n_cells)
        cell = torch.arange(n_cells).repeat(todo.numel())
        queue = _Pieces(img, ci[cell], cj[cell], cell)
        bounder = BoundModel(runner.model, tuple(images.shape[-2:])).to(runner.device)
        exact = ThreatModel(parse_shifts(f"grid:{cfg.radius + 1}"), mode=cfg.mode, fill=cfg.fill)
        bar = tqdm(total=todo.numel(), disable=not progress, unit="img", desc="bound", leave=False)
        images64 = images.to(runner.device, torch.float64)
        while len(queue):
            batch = queue.take(cfg.batch_size, status == -1)
            if not batch["img"].numel():
                break
            _bound_step(
                batch,
                queue,
                images64,
                labels,
                bounder,
                exact,
                runner,
                cfg,
                status,
                worst,
                worst_margin,
                n_eval,
                n_pieces,
                lower_bound,
                open_count,
            )
            done = (open_count[todo] == 0).all(dim=1) & (status[todo] == -1)
            status[todo[done]] = 0
            bar.n = int((status[todo] != -1).sum())
            bar.set_postfix(
                pieces=int(n_pieces.sum()), open=len(queue), certified=int((status[todo] == 0).sum())
            )
        bar.close()
        status[status == -1] = 0  # every piece verified
    certified = status == 0
    verified_cell = (open_count == 0) & (status != 3)[:, None]
    radius = torch.full((n,), -1, dtype=torch.long)
    for r in range(cfg.radius + 1):
        inside = ring <= r
        ok = verified_cell[:, inside].all(dim=1) & correct if r else correct.clone()
        radius = torch.where(ok, r, radius)
    lower_bound[~certified] = math.nan
    return {
        "clean_pred": found.clean_pred,
        "robust": (status == 0) | (status == 2),
        "certified": certified,
        "status": status,
        "worst_params": worst,
        "worst_margin": worst_margin,
        "n_evaluated": n_eval,
        "n_pieces": n_pieces,
        "margin_lower_bound": lower_bound,
        "certified_radius": radius,
        "attack_accuracy_vs_radius": found.accuracy_vs_radius(),
    }


def _bound_step(
    batch,
    queue,
    images64,
    labels,
    bounder,
    exact,
    runner,
    cfg,
    status,
    worst,
    worst_margin,
    n_eval,
    n_pieces,
    lower_bound,
    open_count,
) -> None:
    """Bound one batch of pieces; verified pieces close, others are tried at their centre or split."""
    dev = images64.device
    img = batch["img"]
    i, j = batch["ci"], batch["cj"]
    corners = tuple(
        exact.apply_to(
            images64, img.to(dev), torch.stack([i + di, j + dj, torch.zeros_like(i)], 1).double().to(dev)
        )
        for di, dj in ((0, 0), (1, 0), (0, 1), (1, 1))
    )
    x = cell_bounds(corners, batch["am"], batch["bm"], batch["ha"], batch["hb"])
    with torch.no_grad():
        lower = bounder.margin_lower(x, labels[img.to(labels.device)].to(dev)).amin(dim=1).cpu()
    n_pieces.index_add_(0, img, torch.ones_like(img))
    ok = lower > 0
    open_count.index_put_((img[ok], batch["cell"][ok]), torch.full_like(img[ok], -1), accumulate=True)
    lower_bound.scatter_reduce_(0, img[ok], lower[ok], reduce="amin")
    rest = {name: col[~ok] for name, col in batch.items()}
    if not rest["img"].numel():
        return
    # try each unverified piece's centre as a counterexample (a concrete, bilinear shift)
    params = torch.stack([rest["ci"] + rest["am"], rest["cj"] + rest["bm"], torch.zeros_like(rest["am"])], 1)
    threat = ThreatModel(
        parse_shifts(f"random:{cfg.radius}:1"), mode=cfg.mode, interpolation="bilinear", fill=cfg.fill
    )
    x = threat.apply(images64[rest["img"].to(dev)].to(runner.dtype), params.to(dev))
    logits = runner(x)
    lab = labels[rest["img"].to(labels.device)].to(runner.device)
    m = margins(logits, lab).double().cpu()
    n_eval.index_add_(0, rest["img"], torch.ones_like(rest["img"]))
    bad = m < 0
    if bool(bad.any()):
        # confirm by a separate forward pass, then record one counterexample per image
        idx = bad.nonzero().squeeze(1)
        confirm = (
            margins(
                runner(
                    threat.apply(images64[rest["img"][idx].to(dev)].to(runner.dtype), params[idx].to(dev))
                ),
                lab[idx.to(lab.device)],
            )
            .double()
            .cpu()
        )
        for k, mk in zip(idx.tolist(), confirm.tolist(), strict=True):
            im = int(rest["img"][k])
            if mk < 0 and status[im] == -1:
                status[im] = 4
                worst[im] = params[k]
                worst_margin[im] = mk
    # split what is left, within the budgets
    keep = status[rest["img"]] == -1
    rest = {name: col[keep] for name, col in rest.items()}
    if not rest["img"].numel():
        return
    too_small = 2 * torch.maximum(rest["ha"], rest["hb"]) <= cfg.min_width
    over = n_pieces[rest["img"]] + 2 > cfg.max_pieces
    stop = too_small | over
    status[rest["img"][stop]] = 2
    rest = {name: col[~stop] for name, col in rest.items()}
    if rest["img"].numel():
        open_count.index_put_((rest["img"], rest["cell"]), torch.ones_like(rest["img"]), accumulate=True)
        queue.push(_split(rest))
