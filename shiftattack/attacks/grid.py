"""Exhaustive grid attack: every member of a finite set, streamed, with early exit."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..engine import ModelRunner, margins
from ..errors import SpecError
from ..threats import ThreatModel
from .base import Attack, Search

__all__ = ["GridAttack"]


class GridAttack(Attack):
    """Evaluate (image, shift) pairs in full batches until each image is fooled or exhausted.

    The set is enumerated in ``order`` (``radius``: Chebyshev rings outwards, the
    default, which also yields the exact accuracy-versus-radius curve from one
    pass; ``far_first``: largest shifts first). All surviving images advance
    through the ordered members together; each step takes ``batch_size //
    n_alive`` members so every forward pass stays full as images drop out.
    Within a step the pairs run member-major, and an image is dropped as soon as
    a failure is found and confirmed by a separate forward pass (``early_exit``).
    Memory is bounded by ``batch_size`` pairs, whatever the size of the set.

    For an image that survives, the result is the exact minimum-margin member
    over the whole set; for a fooled image, the first failure in search order
    (with ``early_exit=False``: the minimum-margin member, always negative).

    Args:
        threat: a finite threat model (not ``random:``).
        batch_size: (image, shift) pairs per forward pass.
        early_exit: drop an image at its first confirmed failure.
        order: ``radius`` or ``far_first``.
    """

    name = "grid"
    exact = True

    def __init__(self, threat: ThreatModel, *, batch_size: int = 256, early_exit: bool = True,
                 order: str = "radius") -> None:
        super().__init__(threat, batch_size=batch_size)
        if threat.shifts.kind == "random":
            raise SpecError("the grid attack needs a finite set (grid:, list:, rt:), not random:")
        self.early_exit = early_exit
        self.order = order
        ordered = threat.shifts.ordered(order)  # (M, 3) float64, validates order
        # The clean pass of the base class already evaluated the identity: search the rest,
        # and keep the identity as row M of the table so it can be a minimiser.
        self.members = ordered[(ordered != 0).any(dim=1)]
        self.table = torch.cat([self.members, torch.zeros(1, 3, dtype=torch.float64)])

    def describe(self) -> dict:
        return {"batch_size": self.batch_size, "early_exit": self.early_exit, "order": self.order}

    def search(self, runner: ModelRunner, images: Tensor, labels: Tensor, clean_margin: Tensor,
               progress: bool) -> Search:
        n = images.shape[0]
        m = self.members.shape[0]
        best_margin = clean_margin.double().clone()
        best_member = torch.full((n,), m, dtype=torch.long)  # row m of the table: the identity
        first_fail = torch.full((n,), m, dtype=torch.long)  # index of first confirmed failure
        fail_radius = torch.full((n,), math.inf, dtype=torch.float64)
        n_eval = torch.zeros(n, dtype=torch.long)
        alive = torch.ones(n, dtype=torch.bool)
        bar = tqdm(total=n * m, disable=not progress, unit="pair", leave=False, desc="grid attack")
        pointer = 0
        while pointer < m and bool(alive.any()):
            active = alive.nonzero().squeeze(1)
            step = min(max(1, self.batch_size // active.numel()), m - pointer)
            member_idx = torch.arange(pointer, pointer + step).repeat_interleave(active.numel())
            image_idx = active.repeat(step)  # member-major: all images at member k, then k + 1
            for s in range(0, member_idx.numel(), self.batch_size):
                mi, ii = member_idx[s : s + self.batch_size], image_idx[s : s + self.batch_size]
                if self.early_exit:
                    keep = alive[ii]
                    mi, ii = mi[keep], ii[keep]
                if not ii.numel():
                    continue
                self._evaluate(runner, images, labels, mi, ii, best_margin, best_member, first_fail,
                               fail_radius, n_eval, alive)
            bar.update(int(active.numel()) * step)
            pointer += step
        bar.close()
        fooled = first_fail < m
        chosen = best_member.clone()
        if self.early_exit:
            chosen[fooled] = first_fail[fooled]
        else:  # report the minimum-margin member; if a tie fooled it, the first failure
            use_first = fooled & (best_margin >= 0)
            chosen[use_first] = first_fail[use_first]
        return Search(fooled=fooled, params=self.table[chosen], margin=best_margin.clone(),
                      n_evaluated=n_eval, fooled_radius=fail_radius if self.order == "radius"
                      or not self.early_exit else None)

    def _evaluate(self, runner, images, labels, mi, ii, best_margin, best_member, first_fail,
                  fail_radius, n_eval, alive) -> None:
        """One forward pass over pairs (mi, ii); updates the per-image state in place."""
        dev = images.device
        params = self.members[mi]
        logits = runner(self.threat.apply(images[ii.to(dev)], params.to(dev)))
        lab = labels[ii.to(dev)]
        marg = margins(logits, lab).double().cpu()
        wrong = (logits.argmax(1) != lab).cpu()
        n_eval.index_add_(0, ii, torch.ones_like(ii))
        # minimum margin per image over this batch (any minimiser is exact)
        new_min = best_margin.scatter_reduce(0, ii, marg, reduce="amin")
        hit = marg == new_min[ii]
        improved = hit & (marg < best_margin[ii])
        best_member[ii[improved]] = mi[improved]
        best_margin.copy_(new_min)
        if not bool(wrong.any()):
            return
        fi, fm = ii[wrong], mi[wrong]
        radius = self.members[:, :2].abs().amax(dim=1)
        if self.order != "radius":  # rings are not in order: the smallest failing radius seen
            fail_radius.scatter_reduce_(0, fi, radius[fm], reduce="amin")
        # first failure (lowest member index) per image in this batch
        cand = torch.full_like(first_fail, len(self.members)).scatter_reduce(0, fi, fm, reduce="amin")
        new = (cand < first_fail).nonzero().squeeze(1)
        if not new.numel():
            return
        confirm_logits = runner(self.threat.apply(images[new.to(dev)], self.members[cand[new]].to(dev)))
        confirmed = (confirm_logits.argmax(1) != labels[new.to(dev)]).cpu()
        ok = new[confirmed]
        first_fail[ok] = cand[ok]
        if self.order == "radius":  # members are in ring order: the first failure is the smallest ring
            fail_radius[ok] = radius[cand[ok]]
        if self.early_exit:
            alive[ok] = False
            best_margin[ok] = margins(confirm_logits, labels[new.to(dev)]).double().cpu()[confirmed]
