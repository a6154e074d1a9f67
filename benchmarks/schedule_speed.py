"""Pure scheduling time of the grid attack's member order: the heap against the old linear scan.

    python benchmarks/schedule_speed.py [--sets grid:16:0.125,grid:32:0.125] [--old-calls 2000]
                                        [--full-old] [--json PATH]

No model: the members of each set are scheduled one by one, as
``GridAttack.search`` does, with simulated fail-count updates interleaved (every
8 members, 64 failures: half on members already scheduled, as the attack records
them, half on members still remaining, which the heap must re-key). The new
schedule (``shiftattack.attacks.grid._Schedule``, a heap with lazy invalidation)
runs the whole set. The old rule (a scan of all M members for every member
scheduled, kept below as ``OldSchedule``) costs O(M) per member (somewhat less
as fewer members remain), so it is timed on ``--old-calls`` members in four
blocks, at 0, 1/4, 1/2 and 3/4 of the set scheduled (the earlier members marked
scheduled directly), and its mean time per member is multiplied by M
(``--full-old`` runs it to the end instead: 20-40 s for grid:16:0.125, several
minutes for grid:32:0.125 on 2 CPU cores). Both see the same update stream and
must give the same sequence (checked on the first block). Prints per set and
order the seconds of each and the ratio; writes JSON (default
``benchmarks/results/schedule_speed.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from shiftattack.attacks import GridAttack  # noqa: E402
from shiftattack.attacks.grid import _Schedule  # noqa: E402
from shiftattack.shifts.threats import ThreatModel, parse_shifts  # noqa: E402

EVERY, FAILS = 8, 64


class OldSchedule:
    """The rule before the heap, verbatim (``_Schedule.next`` up to issue 16): O(M) per member.

    Also the reference that ``tests/test_attack_schedule.py`` compares the heap with.
    """

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


def updates(m: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per block of EVERY members: (positions among those scheduled so far in [0, 1), random members)."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(FAILS // 2, generator=gen, dtype=torch.float64),
             torch.randint(0, m, (FAILS // 2,), generator=gen)) for _ in range(m // EVERY + 1)]


def old_estimate(members: torch.Tensor, order: str, stream, calls: int, new_seq: list[int]) -> float:
    """Seconds of the old rule over all M members, from ``calls`` timed in four blocks at stages 0-3/4."""
    m, block = members.shape[0], max(1, calls // 4)
    seconds = 0.0
    for stage in range(4):
        old = OldSchedule(members, order)
        done = torch.tensor(new_seq[: stage * m // 4], dtype=torch.long)
        old.remaining[done] = False  # the state after stage * M / 4 members (counts aside)
        old.sequence[: done.numel()] = done
        old.scheduled = done.numel()
        t, seq = run(old, stream, block)
        if stage == 0:
            assert seq == new_seq[:block], f"{order}: sequences differ"
        seconds += t
    return seconds / (4 * block) * m


def run(schedule, stream, calls: int) -> tuple[float, list[int]]:
    """Schedule ``calls`` more members with the update stream; (seconds, their sequence)."""
    seq: list[int] = []
    first = schedule.scheduled
    start = time.perf_counter()
    for c in range(first, first + calls):
        seq.append(schedule.next())
        if (c + 1) % EVERY == 0:
            frac, rand = stream[c // EVERY]
            schedule.record_failures(torch.cat([schedule.sequence[(frac * (c + 1)).long()], rand]))
    return time.perf_counter() - start, seq


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="grid:16:0.125,grid:32:0.125")
    parser.add_argument("--orders", default="adaptive,radius")
    parser.add_argument("--old-calls", type=int, default=2000, help="members the old rule schedules")
    parser.add_argument("--full-old", action="store_true", help="run the old rule over the whole set")
    parser.add_argument("--json", type=Path, default=C.BENCH_DIR / "results" / "schedule_speed.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the scan is small-tensor work; threads only add overhead
    print(f"pure scheduling, updates of {FAILS} failures every {EVERY} members, torch {torch.__version__}")
    print(f"{'set':15s} {'order':9s} {'members':>8s} {'old s':>9s} {'old basis':>16s} {'new s':>7s} "
          f"{'old/new':>8s}")
    rows = []
    for spec in args.sets.split(","):
        for order in args.orders.split(","):
            threat = ThreatModel(parse_shifts(spec), mode="zero", interpolation="bilinear")
            members = GridAttack(threat, order=order).members
            m = members.shape[0]
            stream = updates(m)
            new_s, new_seq = run(_Schedule(members, order), stream, m)
            if args.full_old or args.old_calls >= m:
                calls, (old_s, old_seq) = m, run(OldSchedule(members, order), stream, m)
                assert old_seq == new_seq, f"{spec} {order}: sequences differ"
            else:
                calls, old_s = args.old_calls, old_estimate(members, order, stream, args.old_calls, new_seq)
            basis = "measured" if calls == m else f"{calls} calls, x M/n"
            rows.append({"shifts": spec, "order": order, "members": m, "old_seconds": old_s,
                         "old_calls_timed": calls, "old_extrapolated": calls < m, "new_seconds": new_s,
                         "ratio_old_over_new": old_s / new_s, "same_sequence_on_prefix": True})
            print(f"{spec:15s} {order:9s} {m:8d} {old_s:9.1f} {basis:>16s} {new_s:7.2f} "
                  f"{old_s / new_s:7.0f}x")
    doc = {"benchmark": "schedule_speed", "updates": {"every": EVERY, "failures": FAILS},
           "environment": C.environment(torch.device("cpu")), "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
