"""Exhaustive grid attack: every member of a finite set, streamed, with early exit."""

from __future__ import annotations

import heapq
import math

import numpy as np
import torch
from torch import Tensor

from shiftattack._progress import tqdm
from shiftattack.attacks.base import Attack, Search
from shiftattack.errors import NonFiniteLogits, SpecError
from shiftattack.runtime.engine import ModelRunner, margins
from shiftattack.shifts.threats import ThreatModel

__all__ = ["GridAttack"]


class _Schedule:
    """The order in which members are searched; one global order shared by all images.

    Every surviving image evaluates the same members in the same order. The rule:
    ``adaptive`` takes next the remaining member with the highest fail count (ties:
    the lowest index; members are pre-sorted farthest first); ``radius`` does the
    same within the smallest remaining Chebyshev ring, so rings are searched
    outwards; ``far_first`` takes the lowest remaining index. Fail counts grow only
    through :meth:`record_failures`. The grid attack records the failures of members
    it has evaluated, which are already scheduled, so with it the remaining counts
    stay 0 and every order is the pre-sorted table order.

    A heap keyed by ``(ring, -fail count, index)`` (ring 0 except in ``radius``
    order), with one new entry per remaining member whose count changes and stale
    entries skipped when popped, makes :meth:`next` O(log M) amortised instead of a
    scan of all M members.

    Attributes (CPU tensors of length M, sharing memory with NumPy arrays):
        radius: float64 Chebyshev radius of each member (pixels).
        remaining: bool, not yet scheduled.
        fail_counts: int64 failures recorded per member.
        rank: int64 position of each member in the order (M while unscheduled).
        sequence: int64 member at each position (valid below ``scheduled``).
    """

    def __init__(self, members: Tensor, order: str) -> None:
        m = members.shape[0]
        self.order = order
        self.radius = members[:, :2].abs().amax(dim=1)
        self._remaining = np.ones(m, dtype=bool)
        self._counts = np.zeros(m, dtype=np.int64)
        self._rank = np.full(m, m, dtype=np.int64)
        self._sequence = np.zeros(m, dtype=np.int64)
        self.remaining, self.fail_counts = torch.from_numpy(self._remaining), torch.from_numpy(self._counts)
        self.rank, self.sequence = torch.from_numpy(self._rank), torch.from_numpy(self._sequence)
        self._ring = self.radius.tolist() if order == "radius" else [0.0] * m
        self._heap = [(r, 0, k) for k, r in enumerate(self._ring)]
        heapq.heapify(self._heap)
        self.scheduled = 0

    def __bool__(self) -> bool:
        return self.scheduled < self._remaining.size

    def next(self) -> int:
        """Index of the next member, and mark it scheduled."""
        heap, remaining, counts, fixed = self._heap, self._remaining, self._counts, self.order == "far_first"
        while True:
            _, neg_count, k = heapq.heappop(heap)  # IndexError only when nothing remains
            if remaining[k] and (fixed or -neg_count == counts[k]):  # else a stale entry
                break
        remaining[k] = False
        self._rank[k] = self.scheduled
        self._sequence[self.scheduled] = k
        self.scheduled += 1
        return k

    def record_failures(self, members: Tensor) -> None:
        """Add one failure per entry of ``members`` (int64 (F,) member indices, repeats allowed)."""
        if not members.numel():
            return
        idx = members.cpu().numpy()
        np.add.at(self._counts, idx, 1)
        if self.order == "far_first":
            return
        counts, ring, heap = self._counts, self._ring, self._heap
        for k in np.unique(idx[self._remaining[idx]]).tolist():  # re-key; old entries go stale
            heapq.heappush(heap, (ring[k], -int(counts[k]), k))


class GridAttack(Attack):
    """Evaluate (image, shift) pairs in full batches until each image is fooled or exhausted.

    All surviving images advance through one shared order of the members (see
    ``order``). Pairs are queued member-major and taken ``batch_size`` at a
    time, pairs of images already fooled being dropped first, so every forward
    pass is full until the very last. An image leaves the search as soon as a
    failure is found (``early_exit``). The base class then re-runs every failure
    in a separate forward pass (a chunk's failures and survivors together, in
    full batches, not one small pass per search batch); a failure that pass does
    not confirm raises :class:`VerificationError` (the model depends on the
    batch), so no image survives on an unconfirmed failure.
    Memory is bounded by about ``batch_size`` + one member's worth of pairs,
    whatever the size of the set.

    For an image that survives, the result is the exact minimum-margin member
    over the whole set; for a fooled image, the first failure in search order
    (with ``early_exit=False``: the minimum-margin member, always negative).

    Args:
        threat: a finite threat model (not ``random:``).
        batch_size: (image, shift) pairs per forward pass.
        early_exit: drop an image at its first confirmed failure.
        order: ``adaptive`` (default): by fail count, farthest first — as the
            counts of unscheduled members stay 0 (see :class:`_Schedule`), the
            same order as ``far_first`` (no accuracy-versus-radius curve with
            early exit). ``radius``: Chebyshev rings outwards; the first failure
            of an image is then at its smallest failing radius, which gives the
            exact accuracy-versus-radius curve from one pass, at the cost of
            more passes. ``far_first``: a fixed largest-first order.
    """

    name = "grid"
    exact = True
    ORDERS = ("radius", "adaptive", "far_first")

    def __init__(self, threat: ThreatModel, *, batch_size: int = 256, early_exit: bool = True,
                 order: str = "adaptive") -> None:
        super().__init__(threat, batch_size=batch_size)
        if threat.shifts.kind == "random":
            raise SpecError("the grid attack needs a finite set (grid:, list:, rt:), not random:")
        if order not in self.ORDERS:
            raise SpecError(f"unknown order {order!r}; expected one of {', '.join(self.ORDERS)}")
        self.early_exit = early_exit
        self.order = order
        ordered = threat.shifts.ordered("radius" if order == "radius" else "far_first")
        # The clean pass of the base class already evaluated the identity: search the rest,
        # and keep the identity as row M of the table so it can be a minimiser.
        self.members = ordered[(ordered != 0).any(dim=1)]
        self.table = torch.cat([self.members, torch.zeros(1, 3, dtype=torch.float64)])

    def describe(self) -> dict:
        return {"batch_size": self.batch_size, "early_exit": self.early_exit, "order": self.order}

    def search(self, runner: ModelRunner, images: Tensor, labels: Tensor, clean_margin: Tensor,
               progress: bool) -> Search:
        n, m = images.shape[0], self.members.shape[0]
        state = _State(n, m, clean_margin)
        schedule = _Schedule(self.members, self.order)
        queue_m = queue_i = torch.zeros(0, dtype=torch.long)
        bar = tqdm(total=m, disable=not progress, unit="shift", leave=False, desc="grid attack")
        while True:
            if self.early_exit:
                keep = state.alive[queue_i]
                queue_m, queue_i = queue_m[keep], queue_i[keep]
            while queue_i.numel() < self.batch_size and schedule and bool(state.alive.any()):
                k = schedule.next()
                active = state.alive.nonzero().squeeze(1)
                queue_m = torch.cat([queue_m, torch.full_like(active, k)])
                queue_i = torch.cat([queue_i, active])
                bar.update(1)
                bar.set_postfix(alive=int(active.numel()))
            if not queue_i.numel():
                break
            mi, ii = queue_m[: self.batch_size], queue_i[: self.batch_size]
            queue_m, queue_i = queue_m[self.batch_size :], queue_i[self.batch_size :]
            self._evaluate(runner, images, labels, mi, ii, state, schedule)
        bar.close()
        fooled = state.first_rank < m
        first_fail = schedule.sequence[state.first_rank.clamp(max=m - 1)] if m else state.first_rank
        chosen, margin = state.best_member.clone(), state.best_margin.clone()
        # early exit: the first failure in search order; else the minimum-margin member, or the
        # first failure if a tie fooled it. The base class re-runs every failure in its own pass.
        use_first = fooled if self.early_exit else fooled & (state.best_margin >= 0)
        chosen[use_first] = first_fail[use_first]
        margin[use_first] = state.first_margin[use_first]
        curve = self.order == "radius" or not self.early_exit
        return Search(fooled=fooled, params=self.table[chosen], margin=margin,
                      n_evaluated=state.n_eval, fooled_radius=state.fail_radius if curve else None)

    def _evaluate(self, runner: ModelRunner, images: Tensor, labels: Tensor, mi: Tensor, ii: Tensor,
                  state: _State, schedule: _Schedule) -> None:
        """One forward pass over pairs (mi, ii); updates the per-image state in place."""
        dev = images.device
        try:
            logits = runner(self.threat.apply_to(images, ii.to(dev), self.members[mi].to(dev)))
        except NonFiniteLogits as exc:  # name the image and the shift, not a row of a batch
            raise exc.at(int(ii[exc.row]), self.members[mi[exc.row]]) from None
        lab = labels[ii.to(dev)]
        marg = margins(logits, lab).double().cpu()
        wrong = (logits.argmax(1) != lab).cpu()
        state.n_eval.index_add_(0, ii, torch.ones_like(ii))
        # minimum margin per image over this batch (any minimiser is exact)
        new_min = state.best_margin.scatter_reduce(0, ii, marg, reduce="amin")
        improved = (marg == new_min[ii]) & (marg < state.best_margin[ii])
        state.best_member[ii[improved]] = mi[improved]
        state.best_margin.copy_(new_min)
        if not bool(wrong.any()):
            return
        fi, fm = ii[wrong], mi[wrong]
        schedule.record_failures(fm)
        # smallest failing radius seen (exact once every smaller member has been evaluated)
        state.fail_radius.scatter_reduce_(0, fi, schedule.radius[fm], reduce="amin")
        # the first failure in search order per image, if earlier than one already found
        rank = schedule.rank[fm]
        first = torch.full_like(state.first_rank, len(self.members)).scatter_reduce(0, fi, rank, "amin")
        new = (rank == first[fi]) & (rank < state.first_rank[fi])  # one pair per newly fooled image
        state.first_margin[fi[new]] = marg[wrong][new]
        state.first_rank[fi[new]] = rank[new]
        if self.early_exit:
            state.alive[fi[new]] = False


class _State:
    """Per-image search state (CPU tensors of length n)."""

    def __init__(self, n: int, m: int, clean_margin: Tensor) -> None:
        self.best_margin = clean_margin.double().clone()
        self.best_member = torch.full((n,), m, dtype=torch.long)  # row m of the table: the identity
        self.first_rank = torch.full((n,), m, dtype=torch.long)  # search rank of the first failure
        self.first_margin = torch.zeros(n, dtype=torch.float64)  # margin there, in the search pass
        self.fail_radius = torch.full((n,), math.inf, dtype=torch.float64)
        self.n_eval = torch.zeros(n, dtype=torch.long)
        self.alive = torch.ones(n, dtype=torch.bool)
