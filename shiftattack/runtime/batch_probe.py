"""``--batch-size auto``: time a few batch sizes on the real model and inputs, keep the fastest.

The fastest batch is not the largest: on a 2-core CPU the activations of a large batch
fall out of the caches, and on a GPU a batch can be too large for its memory. The probe
runs each candidate (32, 64, ..., 1024 by default) as plain forward passes of model inputs
built from the run's own images (repeated to the batch size), for about
``seconds_per_size`` each after one warm-up pass, and stops early once two sizes in a row
run below 80 % of the best so far, once ``budget`` seconds have passed, or once the runner had
to split a batch for lack of memory (:class:`~shiftattack.runtime.engine.ModelRunner` halves
on out-of-memory). The default size (256) is kept unless another is more than 5 % faster.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

__all__ = ["CANDIDATES", "probe_batch_size"]

#: the batch sizes tried, in order
CANDIDATES = (32, 64, 128, 256, 512, 1024)


def probe_batch_size(
    runner,
    inputs: Tensor,
    *,
    candidates=CANDIDATES,
    seconds_per_size: float = 0.1,
    budget: float = 1.5,
    prefer: int = 256,
    margin: float = 0.05,
) -> dict:
    """The fastest of ``candidates`` for ``runner`` on batches made from ``inputs``.

    Args:
        runner: a :class:`~shiftattack.runtime.engine.ModelRunner`.
        inputs: model inputs ``(n, C, H, W)``, ``n >= 1``, repeated to each batch size.
        candidates: batch sizes to try, ascending.
        seconds_per_size: timed seconds per size (at least two passes each).
        budget: seconds after which no larger size is started.
        prefer, margin: keep ``prefer`` (the default batch size) unless another size is more than
            ``margin`` faster: differences within a few percent are timing noise on a busy machine.

    Returns:
        ``{"batch_size": best, "inputs_per_second": {size: rate}, "seconds": probe time}``
        (sizes as strings, for JSON).
    """
    start = time.perf_counter()
    rates: dict[int, float] = {}
    worse = 0
    for b in candidates:
        if runner.max_batch is not None and b > runner.max_batch:
            break  # it did not fit: larger ones will not either
        x = inputs[torch.arange(b) % inputs.shape[0]]
        runner(x)  # warm-up (and the first out-of-memory, if any)
        passes, t0 = 0, time.perf_counter()
        while passes < 2 or time.perf_counter() - t0 < seconds_per_size:
            runner(x)
            passes += 1
        if runner.device.type == "cuda":
            torch.cuda.synchronize(runner.device)
        rates[b] = b * passes / (time.perf_counter() - t0)
        worse = worse + 1 if rates[b] < 0.8 * max(rates.values()) else 0
        if worse == 2 or time.perf_counter() - start > budget:
            break
    best = max(rates, key=rates.get)
    if prefer in rates and rates[best] <= (1 + margin) * rates[prefer]:
        best = prefer
    return {
        "batch_size": best,
        "inputs_per_second": {str(b): r for b, r in rates.items()},
        "seconds": time.perf_counter() - start,
    }
