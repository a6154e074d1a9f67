"""The grid attack's schedule (issue 16, C): the heap gives exactly the order of the old linear scan.

``_ReferenceSchedule`` is the rule as it was implemented before (a scan of every
member for every member scheduled), kept here as the obviously-correct
reference. Both schedules see the same fail-count updates, interleaved at random
(on scheduled and remaining members alike, repeats included), for all three
orders and for member tables that are, and are not, sorted by radius.
"""

from __future__ import annotations

import pytest
import torch
from _models import make_problem

from shiftattack.attacks import GridAttack
from shiftattack.attacks.grid import _Schedule
from shiftattack.shifts.threats import ThreatModel, parse_shifts

ORDERS = ("radius", "adaptive", "far_first")


class _ReferenceSchedule:
    """The pre-heap rule, verbatim: O(M) per member."""

    def __init__(self, members: torch.Tensor, order: str) -> None:
        self.order = order
        self.radius = members[:, :2].abs().amax(dim=1)
        self.remaining = torch.ones(members.shape[0], dtype=torch.bool)
        self.fail_counts = torch.zeros(members.shape[0], dtype=torch.long)
        self.rank = torch.full((members.shape[0],), members.shape[0], dtype=torch.long)
        self.sequence = torch.zeros(members.shape[0], dtype=torch.long)
        self.scheduled = 0

    def __bool__(self) -> bool:
        return self.scheduled < self.remaining.numel()

    def next(self) -> int:
        cand = self.remaining.clone()
        if self.order == "radius":
            cand &= self.radius == self.radius[self.remaining].min()
        if self.order != "far_first":
            counts = torch.where(cand, self.fail_counts, -1)
            cand &= counts == counts.max()
        k = int(cand.nonzero()[0])
        self.remaining[k] = False
        self.rank[k] = self.scheduled
        self.sequence[self.scheduled] = k
        self.scheduled += 1
        return k

    def record_failures(self, members: torch.Tensor) -> None:
        self.fail_counts.index_add_(0, members, torch.ones_like(members))


def _members(spec: str, order: str, shuffle: int | None) -> torch.Tensor:
    p = parse_shifts(spec).ordered("radius" if order == "radius" else "far_first")
    p = p[(p != 0).any(dim=1)]
    if shuffle is not None:  # the rule does not assume a sorted table
        p = p[torch.randperm(p.shape[0], generator=torch.Generator().manual_seed(shuffle))]
    return p


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("spec", ["grid:3", "grid:2:0.5", "rt:2:20:5:5", "list:1,0;0,1;-1,0;0,-1;2,2;-3,1"])
@pytest.mark.parametrize("shuffle", [None, 7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_heap_schedule_equals_the_linear_scan(order, spec, shuffle, seed):
    members = _members(spec, order, shuffle)
    m = members.shape[0]
    new, ref = _Schedule(members, order), _ReferenceSchedule(members, order)
    gen = torch.Generator().manual_seed(seed)
    seq = []
    while ref:
        assert bool(new)
        k = new.next()
        assert k == ref.next()
        seq.append(k)
        if int(torch.randint(0, 3, (1,), generator=gen)):  # an update after most members
            size = int(torch.randint(0, 2 * m // 3 + 2, (1,), generator=gen))
            fm = torch.randint(0, m, (size,), generator=gen)
            if int(torch.randint(0, 2, (1,), generator=gen)):  # or only members already scheduled
                fm = torch.tensor(seq)[torch.randint(0, len(seq), (fm.numel(),), generator=gen)]
            new.record_failures(fm)
            ref.record_failures(fm)
        assert torch.equal(new.fail_counts, ref.fail_counts)
    assert not bool(new)
    assert sorted(seq) == list(range(m))
    assert torch.equal(new.rank, ref.rank) and torch.equal(new.sequence, ref.sequence)
    assert torch.equal(new.remaining, ref.remaining)


@pytest.mark.parametrize("order", ORDERS)
def test_grid_attack_sequence_is_unchanged(order):
    """Through the attack itself (real failures, early exit): the same sequence as the old rule."""
    model, x, y = make_problem(n=40, size=12)
    threat = ThreatModel(parse_shifts("grid:3"), mode="zero")
    seen = []

    class Recording(_Schedule):
        def next(self) -> int:
            k = super().next()
            seen.append(k)
            return k

    import shiftattack.attacks.grid as grid

    original = grid._Schedule
    grid._Schedule = Recording
    try:
        GridAttack(threat, batch_size=37, order=order)(model, x, y, device="cpu")
    finally:
        grid._Schedule = original
    members = GridAttack(threat, order=order).members
    ref = _ReferenceSchedule(members, order)
    assert seen == [ref.next() for _ in seen]
    assert seen == list(range(len(seen)))  # failures only ever raise the counts of scheduled members
