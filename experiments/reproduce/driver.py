"""Run a tier's units one after another, resuming from what is already there, committing each.

    python experiments/cifar10_antialias.py --tier cpu [--commit] [--max-units N]

* A unit whose folder ``OUT/units/ID`` exists is finished and skipped (a new machine with the
  committed results loses at most the unit that was running; training itself resumes from
  its last epoch's checkpoint when the ``weights/`` folder survived).
* ``--commit``: after each unit, ``git add`` + ``git commit --only`` of that unit's folder and
  ``experiment.json`` in the repository holding OUT (other staged work is left alone); a
  held index lock is waited for.
* With ``--commit`` the working tree's ``experiments/render_results.py`` re-renders the
  results document first and the files it reports (``wrote PATH`` lines) join the commit.
* A file ``OUT/STOP`` stops the driver after the running unit (to move it to a new commit
  without losing work); it is removed when honoured.
* ``experiment.json`` records, per start of the driver, the code's commit and the sha256 of
  ``design.py`` (the pre-registered rules), and for every unit the commit it ran at.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import design
from unit import run_unit, versions


def code_commit() -> str:
    """The commit of the code running (a frozen worktree's HEAD), '+dirty' when it has changes."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def design_sha256() -> str:
    return hashlib.sha256(Path(design.__file__).read_bytes()).hexdigest()


def git_commit(paths: list[Path], message: str, attempts: int = 60) -> None:
    """Commit exactly ``paths`` (``git commit --only``) in their repository; retry while it is locked."""
    repo = subprocess.run(["git", "-C", str(paths[0].parent), "rev-parse", "--show-toplevel"],
                          capture_output=True, text=True, check=True).stdout.strip()
    rel = [str(p.resolve().relative_to(repo)) for p in paths]
    for _ in range(attempts):
        add = subprocess.run(["git", "-C", repo, "add", "--", *rel], capture_output=True, text=True)
        if add.returncode == 0:
            done = subprocess.run(["git", "-C", repo, "commit", "-q", "-m", message, "--only", "--", *rel],
                                  capture_output=True, text=True)
            if done.returncode == 0 or "nothing to commit" in done.stdout + done.stderr:
                return
            err = done.stderr
        else:
            err = add.stderr
        if "index.lock" not in err:
            raise RuntimeError(f"git commit of {rel} failed: {err.strip()}")
        time.sleep(5)
    raise RuntimeError(f"git index stayed locked; {rel} not committed")


def generate_suites(tier: str, sizes: design.Sizes, data: str, out: Path, device: str = "auto") -> None:
    """CIFAR-10-C and -P arrays of the test subset, generated once and shared by every unit."""
    from unit import _cli

    for suite, n in (("cifar10-c", sizes.c_images), ("cifar10-p", sizes.p_images)):
        marker = out / "generated" / f"{suite}.complete"
        if marker.is_file():
            continue
        argv = ["corrupt", "--suite", suite, "--data", f"{data}:test", "--limit", str(n), "--seed", "0",
                "--device", device, "--out", str(out / "generated" / suite), "--overwrite", "--quiet"]
        if tier in ("quick", "gpu_smoke"):
            argv += ["--corruptions", "gaussian_noise,contrast" if suite == "cifar10-c" else "translate,brightness"]
        print(f"[gen ] {suite} ({n} images)", flush=True)
        _cli(argv)
        marker.write_text(" ".join(argv) + "\n")


def prepare_dataset(name: str, data: str, out: Path, sizes: design.Sizes) -> tuple[str, str]:
    """(train spec, test spec) of a design dataset; derived ones are written once under ``OUT/data/``.

    ``cifar10_up2``: every CIFAR-10 image upsampled to 64 px (PIL bilinear, as ``--resize 64``),
    stored as ``train.npz`` / ``test.npz`` in the source order (same indices as the source).
    """
    if name == "cifar10":
        return f"{data}:train", f"{data}:test"
    if name != "cifar10_up2":
        raise ValueError(f"unknown dataset {name!r} in design.py")
    import numpy as np

    from shiftattack.data import load_dataset

    folder = out / "data" / name
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        path = folder / f"{split}.npz"
        if path.is_file():
            continue
        print(f"[data] {name} {split}", flush=True)
        limit = sizes.train_limit if split == "train" else None
        d = load_dataset(f"{data}:{split}", limit=limit, resize=64, progress=False)
        tmp = folder / f"{split}.tmp.npz"
        np.savez(tmp, x=d.images.permute(0, 2, 3, 1).numpy(), y=d.labels.numpy())  # (N, H, W, 3) uint8
        os.replace(tmp, path)
    return str(folder / "train.npz"), str(folder / "test.npz")


def _record_start(out: Path, tier: str, data: str, commit: str) -> dict:
    path = out / "experiment.json"
    doc = json.loads(path.read_text()) if path.is_file() else {
        "tier": tier, "data": Path(data).name, "sizes": design.SIZES[tier].__dict__,
        "arms": {a.name: {"models": a.models, "seeds": list(a.seeds), "augment_pad": a.augment_pad,
                          "description": a.description} for a in design.ARMS[tier]},
        "starts": [], "units": {}}
    doc["starts"].append({"commit": commit, "design_sha256": design_sha256(), "versions": versions(),
                          "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def render(out: Path) -> list[Path]:
    """Re-render ``docs/results.md`` with the working tree's renderer; the files it wrote, [] on failure.

    The renderer reads only committed-to-be result files, so this keeps the document in step
    with the units (a test fails when it is stale); a failing renderer is logged, not fatal.
    """
    repo = Path(subprocess.run(["git", "-C", str(out), "rev-parse", "--show-toplevel"], capture_output=True,
                               text=True, check=True).stdout.strip())
    script = repo / "experiments" / "render_results.py"
    if not script.is_file():
        return []
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, str(script)], cwd=repo, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"render_results.py failed (units committed without it):\n{done.stderr[-2000:]}", flush=True)
        return []
    written = [repo / line[len("wrote "):].strip() for line in done.stdout.splitlines()
               if line.startswith("wrote ")]
    return [p for p in written if p.exists()]


def run(tier: str, data: str, out: Path, *, commit_results: bool, max_units: int | None = None,
        device: str = "auto") -> int:
    """Run every unfinished unit of ``tier``; returns how many ran."""
    from shiftattack.data import load_dataset

    sizes = design.SIZES[tier]
    out.mkdir(parents=True, exist_ok=True)
    commit = code_commit()
    doc = _record_start(out, tier, data, commit)
    todo = [u for u in design.units(tier) if not (out / "units" / design.unit_id(u[0].name, u[1], u[3])).is_dir()]
    print(f"{len(design.units(tier)) - len(todo)} units finished, {len(todo)} to run; code at {commit}",
          flush=True)
    if not todo:
        return 0
    if any(u[0].measure == "full" for u in todo):
        generate_suites(tier, sizes, data, out, device)
    datasets = {}
    for name in sorted({u[0].dataset for u in todo}):
        train_spec, test_spec = prepare_dataset(name, data, out, sizes)
        datasets[name] = {"train_spec": train_spec, "test_spec": test_spec,
                          "test": load_dataset(test_spec, limit=sizes.test_limit, progress=False),
                          "attack": load_dataset(test_spec, limit=sizes.attack_images, progress=False)}
    ran = 0
    for arm, name, spec, seed in todo:
        if (out / "STOP").exists():
            (out / "STOP").unlink()
            print("STOP file found: stopping between units", flush=True)
            break
        if max_units is not None and ran >= max_units:
            break
        uid = design.unit_id(arm.name, name, seed)
        print(f"[unit] {uid}: {spec}", flush=True)
        started = time.perf_counter()
        folder = run_unit(arm, name, spec, seed, tier=tier, sizes=sizes, out=out, commit=commit,
                          datasets=datasets, device=device)
        doc["units"][uid] = {"commit": commit, "seconds": round(time.perf_counter() - started, 1)}
        (out / "experiment.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(f"[done] {uid} in {time.perf_counter() - started:.0f} s", flush=True)
        if commit_results:
            git_commit([folder, out / "experiment.json", *render(out)],
                       f"experiment unit {uid} ({tier} tier, code {commit[:12]})")
        ran += 1
    return ran


if __name__ == "__main__":
    sys.exit("run experiments/cifar10_antialias.py")
