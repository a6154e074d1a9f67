"""Timing of a resumable run: which figures cover this command and which the whole run.

A run resumed with ``--resume`` reads the units an earlier command finished and computes
the rest, so "the run's time" means two things. :class:`UnitClock` keeps them apart:
it stamps each unit it computes with its seconds, its forward passes and a token of
this command (``value["_timing"]``, stored with the unit), and :meth:`UnitClock.split`
takes the stamps off again before the units are assembled into results (which hold no
times, so the same inputs give the same bytes). :meth:`UnitClock.document` is
``timing.json``:

* ``this_command``: the units computed by this command (on every process), their
  forward passes, and its wall time from start to the results (loading included);
  ``forward_passes_per_second`` is their ratio.
* ``whole_run``: every unit of the run, however many commands computed them; its
  seconds are the *sum over units* of each unit's compute time (process-seconds:
  with several processes it exceeds the wall time; loading is not in it), and its
  ``forward_passes_per_second`` their ratio. Units stored before stamps existed
  carry none and are counted in ``units_without_timing``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from shiftattack.runtime.allocator import allocator_state

__all__ = ["TIMING_KEY", "UnitClock"]

#: the key of a stored unit that holds its timing stamp
TIMING_KEY = "_timing"


class UnitClock:
    """Stamps the units one command computes, and says what the command and the whole run took.

    Args:
        ctx: the process context (:func:`~shiftattack.runtime.distributed.current`); every
            process of a distributed run stamps with rank 0's token.
        passes: the forward passes in a computed unit's value (0 when a job does not count them).
        start: ``time.perf_counter()`` when the command started (default: now).
    """

    def __init__(
        self, ctx, passes: Callable[[dict[str, Any]], int] | None = None, start: float | None = None
    ) -> None:
        self.start = time.perf_counter() if start is None else start
        self.token = ctx.broadcast(uuid.uuid4().hex)
        self.passes = passes or (lambda value: 0)
        self.stamps: list[dict[str, Any] | None] = []

    def wrap(self, compute: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        """``compute(key, tick)`` whose value carries this command's stamp (seconds, passes, token)."""

        def timed(key: str, tick) -> dict[str, Any]:
            t0 = time.perf_counter()
            value = compute(key, tick)
            value[TIMING_KEY] = {
                "seconds": time.perf_counter() - t0,
                "n_evaluated": int(self.passes(value)),
                "command": self.token,
            }
            return value

        return timed

    def split(self, units: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The units without their stamps (kept here for :meth:`document`), in the same order."""
        clean = {}
        self.stamps = []
        for key, value in units.items():
            value = dict(value)
            self.stamps.append(value.pop(TIMING_KEY, None))
            clean[key] = value
        return clean

    def document(self, **extra: Any) -> dict[str, Any]:
        """``timing.json``: ``this_command`` and ``whole_run`` (see the module docstring), then ``extra``."""
        seconds = time.perf_counter() - self.start
        stamped = [s for s in self.stamps if s is not None]
        mine = [s for s in stamped if s["command"] == self.token]
        now = sum(s["n_evaluated"] for s in mine)
        unit_seconds = sum(s["seconds"] for s in stamped)
        total = sum(s["n_evaluated"] for s in stamped)
        return {
            "this_command": {
                "wall_seconds": seconds,
                "units_computed": len(mine),
                "units_read_back": len(self.stamps) - len(mine),
                "n_evaluated": now,
                "forward_passes_per_second": now / max(seconds, 1e-9),
            },
            "whole_run": {
                "units": len(self.stamps),
                "unit_seconds_summed": unit_seconds,
                "n_evaluated": total,
                "forward_passes_per_second": total / unit_seconds if unit_seconds > 0 else None,
                "units_without_timing": len(self.stamps) - len(stamped),
            },
            "allocator": allocator_state(),
            **extra,
        }
