"""run_units in one process: order, stored units skipped, the progress bar moving within units."""

from __future__ import annotations

from shiftattack.runtime.distributed import Context, run_units


class Bar:
    def __init__(self) -> None:
        self.n = 0
        self.seen: list[int] = []

    def update(self, k: int) -> None:
        self.n += k
        self.seen.append(self.n)


def test_run_units_skips_stored_units_and_ticks_within_units():
    kept = {"b": {"v": "stored"}}
    computed = []

    def compute(key, tick):
        computed.append(key)
        tick(2)
        tick(3)
        return {"v": key}

    ctx = Context()
    bar = Bar()
    out = run_units(["a", "b", "c"], compute, stored=kept.get, store=kept.__setitem__, ctx=ctx, bar=bar,
                    weight=lambda key: 5)
    assert list(out) == ["a", "b", "c"] and out["b"] == {"v": "stored"} and out["c"] == {"v": "c"}
    assert computed == ["a", "c"] and kept["a"] == {"v": "a"}
    assert ctx.units_computed == [2]
    assert bar.seen[:2] == [2, 5] and bar.n == 15  # 2 then 5 within unit a; b (stored) counts whole
