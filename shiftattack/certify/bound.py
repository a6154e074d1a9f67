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
pass confirms it) and the piece is cut into k x k children (k from the gap between the
bound and the centre's margin), until every piece is verified, a counterexample is
found, or the image's piece budget or the smallest piece width is reached ("unknown":
not certified).

Before any bound, a dense grid attack (step ``attack_step`` px, bilinear) removes
the images it fools; its worst-case accuracy is the empirical ceiling that the
certified accuracy is compared with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from shiftattack._progress import tqdm
from shiftattack.attacks import GridAttack
from shiftattack.certify.linear_bounds import Bounds, concretize, exact
from shiftattack.certify.lowering_check import check_lowering
from shiftattack.certify.pieces import _cells, _children_per_side, _Pieces, _split
from shiftattack.certify.propagate import BoundModel
from shiftattack.defaults import BOUND_ATTACK_STEP, BOUND_BATCH, BOUND_MAX_PIECES, BOUND_MIN_WIDTH
from shiftattack.errors import SpecError
from shiftattack.runtime.engine import ModelRunner, margins
from shiftattack.shifts.threats import ThreatModel, parse_shifts

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
    attack_step: float = BOUND_ATTACK_STEP
    max_pieces: int = BOUND_MAX_PIECES
    min_width: float = BOUND_MIN_WIDTH
    batch_size: int = BOUND_BATCH

    def check(self) -> None:
        """Raise SpecError on a setting that cannot work (each names the command-line flag)."""
        _positive(self.radius, "the box radius R")
        _positive(self.max_pieces, "--max-pieces")
        _positive(self.batch_size, "--bound-batch")
        _positive(float(self.min_width), "--min-width", float)
        _positive(float(self.attack_step), "--attack-step", float)


def _positive(value, what: str, kind=int) -> None:
    if not (isinstance(value, kind) and value > 0 and math.isfinite(value)):
        raise SpecError(
            f"{what} must be a positive {'whole number' if kind is int else 'number'}, got {value!r}"
        )


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
    box_hi = torch.ones(s00.shape[0], 3, dtype=s00.dtype, device=s00.device)
    low = concretize(form, -box_hi, box_hi, lower=True, product=True)
    high = concretize(form, -box_hi, box_hi, lower=False, product=True)
    return exact(form, low, high, -box_hi, box_hi, product=True)


def certify_bound(
    model,
    images: Tensor,
    labels: Tensor,
    cfg: BoundConfig,
    *,
    device="cpu",
    batch_size: int = 256,
    progress: bool = False,
    indices: Tensor | None = None,
) -> dict:
    """Certify ``box:R`` for each image.

    Args:
        model: maps (N, 3, H, W) in [0, 1] to logits.
        images: (N, 3, H, W) floats in [0, 1].
        labels: (N,) int64.
        cfg: :class:`BoundConfig`.
        device: where the model and the bounds run.
        batch_size: (image, shift) pairs per forward pass of the attack.
        indices: (N,) the images' indices in the data, for messages.

    Raises:
        UnsupportedLayer: the model has a layer without a sound rule, or its lowered operations
            differ from its forward on an image that survived the attack
            (:func:`~.lowering_check.check_lowering`: at the identity and 3 sub-pixel shifts).

    Returns:
        dict of per-image tensors (length N): ``clean_pred``, ``robust`` (no counterexample found),
        ``certified``, ``status`` (0 certified, 1 fooled by the dense attack, 2 unknown, 3 wrong
        unshifted, 4 counterexample found by branch and bound),
        ``worst_params`` (N, 3), ``worst_margin``, ``n_evaluated``, ``n_pieces``,
        ``margin_lower_bound`` (NaN unless certified), ``certified_radius`` (-1 = none),
        and ``attack_accuracy_vs_radius``.
    """
    cfg.check()
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
    ci, cj, ring = _cells(cfg.radius)
    state = _State(found, correct, ci.numel())
    status = state.status
    todo = (status == -1).nonzero().squeeze(1)
    if todo.numel():
        n_cells = ci.numel()
        img = todo.repeat_interleave(n_cells)
        cell = torch.arange(n_cells).repeat(todo.numel())
        queue = _Pieces(img, ci[cell], cj[cell], cell)
        search = _BranchAndBound(runner, images, labels, cfg, state)
        check_lowering(search.bounder, runner, images[todo.to(images.device)], cfg.radius, cfg.mode, cfg.fill,
                       indices=None if indices is None else indices[todo])
        bar = tqdm(total=todo.numel(), disable=not progress, unit="img", desc="bound", leave=False)
        while len(queue):
            batch = queue.take(cfg.batch_size, status == -1)
            if not batch["img"].numel():
                break
            search.step(batch, queue)
            done = (state.open_count[todo] == 0).all(dim=1) & (status[todo] == -1)
            status[todo[done]] = 0
            bar.n = int((status[todo] != -1).sum())
            bar.set_postfix(
                pieces=int(state.n_pieces.sum()), open=len(queue), certified=int((status[todo] == 0).sum())
            )
        bar.close()
        # certified only where every cell was verified; anything else still pending is unknown
        pending = status == -1
        status[pending & (state.open_count == 0).all(dim=1)] = 0
        status[status == -1] = 2
    certified = status == 0
    verified_cell = (state.open_count == 0) & (status != 3)[:, None]
    radius = torch.full((n,), -1, dtype=torch.long)
    for r in range(cfg.radius + 1):
        inside = ring <= r
        ok = verified_cell[:, inside].all(dim=1) & correct if r else correct.clone()
        radius = torch.where(ok, r, radius)
    lower_bound = state.lower_bound
    lower_bound[~certified] = math.nan
    return {
        "clean_pred": found.clean_pred,
        "robust": (status == 0) | (status == 2),
        "certified": certified,
        "status": status,
        "worst_params": state.worst,
        "worst_margin": state.worst_margin,
        "n_evaluated": state.n_eval,
        "n_pieces": state.n_pieces,
        "margin_lower_bound": lower_bound,
        "certified_radius": radius,
        "attack_accuracy_vs_radius": found.accuracy_vs_radius(),
    }


class _State:
    """Per-image state of the search (CPU tensors of length n).

    ``status``: -1 pending, then as :func:`certify_bound` returns it; ``worst`` and
    ``worst_margin`` the reported shift and its margin (the attack's, or a counterexample's);
    ``open_count`` (n, cells) the pieces of each cell not yet verified (images that never
    enter the search keep every cell open).
    """

    def __init__(self, found, correct: Tensor, n_cells: int) -> None:
        n = correct.numel()
        self.status = torch.where(correct, torch.where(found.robust, -1, 1), 3)
        self.worst = found.worst_params.clone()
        self.worst_margin = found.worst_margin.clone()
        self.n_eval = found.n_evaluated.clone()
        self.n_pieces = torch.zeros(n, dtype=torch.long)
        self.lower_bound = torch.full((n,), math.inf, dtype=torch.float64)
        self.open_count = torch.ones(n, n_cells, dtype=torch.long)


class _BranchAndBound:
    """Bounds batches of pieces; verified pieces close, the others are tried at their centre or split."""

    def __init__(self, runner: ModelRunner, images: Tensor, labels: Tensor, cfg: BoundConfig, state: _State):
        self.runner, self.labels, self.cfg, self.state = runner, labels, cfg, state
        self.images64 = images.to(runner.device, torch.float64)
        self.bounder = BoundModel(runner.model, tuple(images.shape[-2:])).to(runner.device)
        self.corner_threat = ThreatModel(parse_shifts(f"grid:{cfg.radius + 1}"), mode=cfg.mode, fill=cfg.fill)
        self.point_threat = ThreatModel(
            parse_shifts(f"random:{cfg.radius}:1"), mode=cfg.mode, interpolation="bilinear", fill=cfg.fill
        )

    def step(self, batch: dict[str, Tensor], queue: _Pieces) -> None:
        rest = self._bound(batch)
        if rest["img"].numel():
            self._try_centres(rest)
            self._split(rest, queue)

    def _bound(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Bound the pieces; close the verified ones; return the others."""
        st, dev = self.state, self.images64.device
        img, i, j = batch["img"], batch["ci"], batch["cj"]
        corners = tuple(
            self.corner_threat.apply_to(
                self.images64,
                img.to(dev),
                torch.stack([i + di, j + dj, torch.zeros_like(i)], 1).double().to(dev),
            )
            for di, dj in ((0, 0), (1, 0), (0, 1), (1, 1))
        )
        x = cell_bounds(corners, batch["am"], batch["bm"], batch["ha"], batch["hb"])
        with torch.no_grad():
            lower = (
                self.bounder.margin_lower(x, self.labels[img.to(self.labels.device)].to(dev))
                .amin(dim=1)
                .cpu()
            )
        st.n_pieces.index_add_(0, img, torch.ones_like(img))
        ok = lower > 0
        st.open_count.index_put_((img[ok], batch["cell"][ok]), torch.full_like(img[ok], -1), accumulate=True)
        st.lower_bound.scatter_reduce_(0, img[ok], lower[ok], reduce="amin")
        return {**{name: col[~ok] for name, col in batch.items()}, "lower": lower[~ok]}

    def _try_centres(self, rest: dict[str, Tensor]) -> None:
        """Evaluate each piece's centre (a concrete bilinear shift); a confirmed failure ends its image."""
        st, runner, dev = self.state, self.runner, self.images64.device
        params = torch.stack(
            [rest["ci"] + rest["am"], rest["cj"] + rest["bm"], torch.zeros_like(rest["am"])], 1
        )

        def margin_at(rows: Tensor) -> Tensor:
            x = self.point_threat.apply(
                self.images64[rest["img"][rows].to(dev)].to(runner.dtype), params[rows].to(dev)
            )
            lab = self.labels[rest["img"][rows].to(self.labels.device)].to(runner.device)
            return margins(runner(x), lab).double().cpu()

        everything = torch.arange(rest["img"].numel())
        m = margin_at(everything)
        rest["centre"] = m
        st.n_eval.index_add_(0, rest["img"], torch.ones_like(rest["img"]))
        bad = (m < 0).nonzero().squeeze(1)
        if not bad.numel():
            return
        confirm = margin_at(bad)  # a separate forward pass confirms each failure
        for k, mk in zip(bad.tolist(), confirm.tolist(), strict=True):
            im = int(rest["img"][k])
            if mk < 0 and st.status[im] == -1:
                st.status[im] = 4
                st.worst[im] = params[k]
                st.worst_margin[im] = mk

    def _split(self, rest: dict[str, Tensor], queue: _Pieces) -> None:
        """Cut the pieces of pending images, within the piece budget and the smallest width.

        The finer the bound needs the pieces, the more children at once (see
        :func:`_children_per_side`): the coarse pieces between would only be bounded to fail.
        """
        st, cfg = self.state, self.cfg
        keep = st.status[rest["img"]] == -1
        rest = {name: col[keep] for name, col in rest.items()}
        if not rest["img"].numel():
            return
        half = torch.maximum(rest["ha"], rest["hb"])
        k = _children_per_side(rest.pop("lower"), rest.pop("centre"), half, cfg.min_width)
        too_small = 2 * half <= cfg.min_width
        over = st.n_pieces[rest["img"]] + k * k > cfg.max_pieces
        stop = too_small | over
        st.status[rest["img"][stop]] = 2
        rest = {name: col[~stop] for name, col in rest.items()}
        k = k[~stop]
        if rest["img"].numel():
            st.open_count.index_put_((rest["img"], rest["cell"]), k * k - 1, accumulate=True)
            queue.push(_split(rest, k))
