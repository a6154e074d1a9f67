"""The grid attack's schedule (issue 16, C): the heap gives exactly the order of the old linear scan.

The reference is the rule as it was implemented before (a scan of every member
for every member scheduled), ``OldSchedule`` in ``benchmarks/schedule_speed.py``
(which times the two), the obviously-correct reference. Both schedules see the
same fail-count updates, interleaved at random (on scheduled and remaining
members alike, repeats included), for all three orders and for member tables
that are, and are not, sorted by radius.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from _models import make_problem

from shiftattack.attacks import GridAttack
from shiftattack.attacks.grid import _Schedule
from shiftattack.shifts.threats import ThreatModel, parse_shifts

ORDERS = ("radius", "adaptive", "far_first")


def _load_reference():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "schedule_speed.py"
    spec = importlib.util.spec_from_file_location("schedule_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.OldSchedule


_ReferenceSchedule = _load_reference()


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
