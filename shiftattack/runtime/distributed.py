"""Several processes on one job, through ``torch.distributed`` as launched by ``torchrun``.

``torchrun --nproc-per-node N -m shiftattack attack|certify|benchmark ...`` starts N
copies of the command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous
in the environment (several nodes: torchrun's usual ``--nnodes``/``--rdzv-*``
options). :func:`current` joins the process group (gloo on the CPU, NCCL on GPUs)
and gives each process a :class:`Context`; outside torchrun it is a one-process
context whose collectives do nothing, so the same code serves both.

Work is handed out by :func:`run_units`: units are claimed one at a time from an
atomic counter in the process group's own key-value store (the store torchrun's
rendezvous built), so a rank that drew quick units takes more of them (early exit
makes some units far cheaper than others). Results go to rank 0, which alone writes
the output; a unit's result does not depend on which rank computed it, so the file
equals the single-process one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from shiftattack.errors import PeerFailed, ShiftAttackError

__all__ = ["Context", "current", "run_units"]

#: How long a rank waits at a collective for the others (a rank that died is noticed by torchrun earlier).
TIMEOUT = timedelta(hours=2)


@dataclass
class Context:
    """This process's place in the job.

    Attributes:
        rank: 0 .. world_size - 1; rank 0 writes the output and prints.
        world_size: number of processes (1 without torchrun).
        local_rank: index on this node (picks ``cuda:local_rank``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: units each rank computed (not found stored) in the last :func:`run_units`, on rank 0
    units_computed: list[int] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable objects)."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj``, in rank order, on rank 0 (None elsewhere)."""
        if not self.active:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def sync_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Give every rank rank 0's parameters and buffers (as DDP does), then return ``model``.

        Ranks that load the same weights file are unchanged; a model built without
        weights (random initialisation) would otherwise differ from rank to rank.
        """
        if self.active:
            mine = {k: v.cpu() for k, v in model.state_dict().items()} if self.is_main else None
            state = self.broadcast(mine)
            model.load_state_dict(state)
        return model

    def all_ok(self, ok: bool) -> bool:
        """True on every rank when ``ok`` is True on every rank."""
        if not self.active:
            return ok
        flag = torch.tensor([0 if ok else 1], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.all_reduce(flag)
        return int(flag.item()) == 0

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on rank 0 only (creating the output folder, say); every rank learns if it failed.

        Returns ``fn()``'s value on rank 0 and None elsewhere. A :class:`ShiftAttackError`
        on rank 0 is raised there and turns into :class:`PeerFailed` on the other ranks,
        so no rank is left waiting.
        """
        if not self.active:
            return fn()
        error, value = None, None
        if self.is_main:
            try:
                value = fn()
            except ShiftAttackError as exc:
                error = exc
        ok = self.all_ok(error is None)
        if error is not None:
            raise error
        if not ok:
            raise PeerFailed("rank 0 stopped; its message says why")
        return value

    def device(self, requested: str) -> str:
        """The device this rank uses: ``cuda:LOCAL_RANK`` when several ranks share CUDA."""
        if self.active and requested in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return requested

    def claim(self) -> Callable[[], int]:
        """A function returning the next unclaimed unit number, shared by all ranks (0, 1, 2, ...)."""
        if not self.active:
            counter = iter(range(1 << 62))
            return lambda: next(counter)
        store = dist.distributed_c10d._get_default_store()
        key = f"shiftattack/claims/{_next_round()}"
        return lambda: int(store.add(key, 1)) - 1

    def counter(self) -> Callable[[int], int]:
        """A function adding to a total shared by all ranks and returning the new total."""
        if not self.active:
            total = [0]

            def add(n: int) -> int:
                total[0] += n
                return total[0]

            return add
        store = dist.distributed_c10d._get_default_store()
        key = f"shiftattack/done/{_next_round()}"
        return lambda n: int(store.add(key, n))


_round = 0


def _next_round() -> int:
    """A fresh counter name for each :func:`run_units` call (every rank calls it in the same order)."""
    global _round
    _round += 1
    return _round


_context: Context | None = None


def current() -> Context:
    """This process's context; joins the process group on the first call under torchrun."""
    global _context
    if _context is not None:
        return _context
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _context = Context()
        return _context
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, timeout=TIMEOUT)
    _context = Context(rank=rank, world_size=world, local_rank=local)
    return _context


def shutdown() -> None:
    """Leave the process group (at the end of a command)."""
    global _context
    if _context is not None and _context.active and dist.is_initialized():
        dist.destroy_process_group()
    _context = None


def run_units(
    keys: Sequence[str],
    compute: Callable[[str, Callable[[int], None]], dict[str, Any]],
    *,
    stored: Callable[[str], dict[str, Any] | None],
    store: Callable[[str, dict[str, Any]], None],
    ctx: Context | None = None,
    bar: Any = None,
    weight: Callable[[str], int] = lambda key: 1,
) -> dict[str, dict[str, Any]] | None:
    """Compute every unit not yet stored, spread over the ranks; return all results on rank 0.

    Args:
        keys: the units, in output order.
        compute: ``compute(key, tick)`` -> the unit's JSON-able result; must not depend on the
            rank. It may call ``tick(n)`` as parts of the unit finish (n in the bar's units) so
            that the bar moves within long units.
        stored: ``stored(key)`` -> the result kept by an earlier run (``--resume``), or None.
        store: ``store(key, result)`` keeps a finished unit at once (atomically).
        ctx: the job's context (default :func:`current`).
        bar: a tqdm bar (rank 0) that shows the work done on every rank: ``weight(key)`` per
            unit, in ``tick`` steps where ``compute`` gives them.
        weight: the size of a unit in the bar's units (images, sequences).

    Returns:
        ``{key: result}`` for every key, in ``keys`` order, on rank 0; None on other ranks.
    """
    ctx = ctx or current()
    claim, done = ctx.claim(), ctx.counter()
    ticked = [0]

    def show(total: int) -> None:
        if bar is not None:
            bar.update(total - bar.n)

    def tick(n: int) -> None:
        ticked[0] += n
        show(done(n))

    mine: dict[str, dict[str, Any]] = {}
    computed = 0
    while (i := claim()) < len(keys):
        key = keys[i]
        ticked[0] = 0
        value = stored(key)
        if value is None:
            value = compute(key, tick)
            store(key, value)
            computed += 1
        mine[key] = value
        show(done(max(0, weight(key) - ticked[0])))
    parts = ctx.gather((mine, computed))
    if parts is None:
        return None
    ctx.units_computed = [c for _, c in parts]
    merged: dict[str, dict[str, Any]] = {}
    for part, _ in parts:
        merged.update(part)
    if bar is not None:
        bar.update(sum(weight(k) for k in keys) - bar.n)
    missing = [k for k in keys if k not in merged]
    if missing:  # cannot happen: every index below len(keys) is claimed exactly once
        raise RuntimeError(f"internal error: units {missing[:3]} were claimed by no rank")
    return {k: merged[k] for k in keys}
