"""Work units of a long run, each stored atomically so that ``--resume`` skips what is done.

A unit is, for example, one (corruption, severity) of a benchmark suite or one chunk
of images of a certificate. Its results go to ``DIR/units/<key>.json`` the moment it finishes
(temporary file + rename, so a killed run leaves whole units or none). The run's
identity (model, weights, data, source, seed, ...) goes to ``DIR/units/run.json``;
resuming with a different identity is refused rather than mixing two runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import OutputError
from .results import write_json

__all__ = ["UnitStore", "unit_seed"]


def unit_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed for one work unit, a stable hash of the run seed and the unit's name parts."""
    text = "/".join([str(int(seed)), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


class UnitStore:
    """The finished units of one run under ``out/units``.

    Args:
        out: the run's output folder (created by the caller).
        identity: JSON-able description of everything that determines the units' results.
        resume: keep units already stored (they must come from the same identity);
            without it, stored units are discarded.
    """

    def __init__(self, out: Path, identity: dict[str, Any], resume: bool) -> None:
        self.dir = Path(out) / "units"
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(".*.tmp"):  # a write cut short by a killed run
            stale.unlink(missing_ok=True)
        run_file = self.dir / "run.json"
        identity = json.loads(json.dumps(identity))
        if resume and run_file.exists():
            stored = json.loads(run_file.read_text())
            if stored != identity:
                diff = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
                raise OutputError(
                    f"cannot resume in {out}: its finished units come from a different run "
                    f"(differs in: {', '.join(diff)}); use a new --out or --overwrite"
                )
        else:
            for f in self.dir.glob("*.json"):
                f.unlink()
            write_json(run_file, identity)
        self.readable = True

    @classmethod
    def attach(cls, out: Path, identity: dict[str, Any], resume: bool) -> UnitStore:
        """The store of a run that rank 0 has set up, as another rank of a distributed run sees it.

        Stored units are read only when resuming and this rank's ``units/run.json`` names the
        same run (on a folder that is not shared between nodes, it may hold another run's units).
        """
        self = cls.__new__(cls)
        self.dir = Path(out) / "units"
        self.dir.mkdir(parents=True, exist_ok=True)
        run_file = self.dir / "run.json"
        try:
            same = run_file.exists() and json.loads(run_file.read_text()) == json.loads(json.dumps(identity))
        except json.JSONDecodeError:
            same = False
        self.readable = resume and same
        return self

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored counts of unit ``key``, or None when it has not finished."""
        if not self.readable:
            return None
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None  # cannot happen with atomic writes; recompute rather than trust it

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store unit ``key`` atomically."""
        write_json(self._path(key), value)


def open_run(out: str | Path, identity: dict[str, Any], *, overwrite: bool, resume: bool,
             ctx=None) -> tuple[Path, UnitStore]:
    """Check and create a run's output folder and its unit store, on every rank of the job.

    Every rank checks the folder before any rank creates it; rank 0 then creates it
    and sets up the store (clearing old units unless ``resume``); the others attach.
    Returns ``(folder, store)``.
    """
    from .distributed import current
    from .results import check_output_dir, open_output_dir

    ctx = ctx or current()
    check_output_dir(out, overwrite or resume)
    ctx.barrier()
    store = ctx.on_main(lambda: UnitStore(open_output_dir(out, overwrite or resume), identity, resume))
    return Path(out), store if store is not None else UnitStore.attach(Path(out), identity, resume)
