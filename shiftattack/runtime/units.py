"""Work units of a long run, each stored atomically so that ``--resume`` skips what is done.

A unit is, for example, one (corruption, severity) of a benchmark suite or one chunk
of images of a certificate. Its results go to ``DIR/units/<key>.json`` the moment it finishes
(temporary file + rename, so a killed run leaves whole units or none). The run's
identity (model, weights and their sha256, data, source, seed, ...) goes to
``DIR/units/run.json``; resuming with a different identity is refused rather than mixing
two runs.

A run that fails before any unit finished leaves the output folder as it found it
(:meth:`UnitStore.undo_on_failure`): a folder it created is removed, and the units of an
earlier run that ``--overwrite`` was replacing (set aside in ``DIR/.units.replaced`` until
the new run's first unit is stored) are put back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shiftattack.errors import OutputError
from shiftattack.runtime.results import write_json

__all__ = ["UnitStore", "unit_seed", "open_run"]

#: where a new run keeps the units of the run it replaces until its own first unit is stored
REPLACED = ".units.replaced"


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
            without it, stored units are set aside (and dropped once this run stores one).
        created: the folder the caller created for this run (``out`` or an ancestor of it),
            removed again if the run fails before any unit finished; None if ``out`` existed.
    """

    def __init__(self, out: Path, identity: dict[str, Any], resume: bool,
                 created: Path | None = None) -> None:
        self.out, self.dir, self.created = Path(out), Path(out) / "units", created
        run_file = self.dir / "run.json"
        identity = json.loads(json.dumps(identity))
        #: this run started ``units/`` afresh (so a failure before its first unit can undo that)
        self.fresh = not (resume and run_file.exists())
        if not self.fresh:
            stored = json.loads(run_file.read_text())
            if stored != identity:
                diff = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
                raise OutputError(
                    f"cannot resume in {out}: its finished units come from a different run "
                    f"(differs in: {', '.join(diff)}); use a new --out or --overwrite"
                )
            for stale in self.dir.glob(".*.tmp"):  # a write cut short by a killed run
                stale.unlink(missing_ok=True)
        else:
            replaced = self.out / REPLACED
            if self.dir.exists():
                shutil.rmtree(replaced, ignore_errors=True)
                os.replace(self.dir, replaced)
            self.dir.mkdir(parents=True, exist_ok=True)
            write_json(run_file, identity)
        self.readable = True

    @classmethod
    def attach(cls, out: Path, identity: dict[str, Any], resume: bool) -> UnitStore:
        """The store of a run that rank 0 has set up, as another rank of a distributed run sees it.

        Stored units are read only when resuming and this rank's ``units/run.json`` names the
        same run (on a folder that is not shared between nodes, it may hold another run's units).
        """
        self = cls.__new__(cls)
        self.out, self.dir, self.created, self.fresh = Path(out), Path(out) / "units", None, False
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
        """Store unit ``key`` atomically (the replaced run's units are dropped at the first)."""
        self.dir.mkdir(parents=True, exist_ok=True)  # another node's rank writes its own copy
        write_json(self._path(key), value)
        shutil.rmtree(self.out / REPLACED, ignore_errors=True)

    def finished_any(self) -> bool:
        """Whether any unit (of this run, or of the run it resumes) is stored."""
        return any(p.name != "run.json" for p in self.dir.glob("*.json"))

    def abandon(self) -> None:
        """After a failure: if no unit finished, undo what starting this run did to the folder.

        Finished units (of any rank) stay for ``--resume``; a resumed run changed nothing.
        """
        if not self.fresh or self.finished_any():
            return
        shutil.rmtree(self.dir, ignore_errors=True)
        if (self.out / REPLACED).exists():
            os.replace(self.out / REPLACED, self.dir)
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)

    @contextmanager
    def undo_on_failure(self) -> Iterator[None]:
        """Run the units inside this block: any exception calls :meth:`abandon` and propagates."""
        try:
            yield
        except BaseException as exc:
            self.abandon()
            kept = sum(1 for p in self.dir.glob("*.json") if p.name != "run.json") if self.dir.is_dir() else 0
            if kept:  # the command line says that --resume continues from them
                exc.kept_units = (kept, self.out)
            raise


def open_run(out: str | Path, identity: dict[str, Any], *, overwrite: bool, resume: bool,
             ctx=None) -> tuple[Path, UnitStore]:
    """Check and create a run's output folder and its unit store, on every rank of the job.

    Every rank checks the folder before any rank creates it; rank 0 then creates it
    and sets up the store (setting old units aside unless ``resume``); the others attach.
    Run the units inside ``store.undo_on_failure()``. Returns ``(folder, store)``.
    """
    from shiftattack.runtime.distributed import current
    from shiftattack.runtime.results import check_output_dir, open_output_dir

    ctx = ctx or current()
    check_output_dir(out, overwrite or resume)
    ctx.barrier()

    def setup() -> UnitStore:
        created = None  # the outermost folder that does not exist yet
        for folder in (Path(out), *Path(out).parents):
            if folder.exists():
                break
            created = folder
        path = open_output_dir(out, overwrite or resume)
        try:
            return UnitStore(path, identity, resume, created)
        except BaseException:
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)
            raise

    store = ctx.on_main(setup)
    return Path(out), store if store is not None else UnitStore.attach(Path(out), identity, resume)
