"""``shiftattack demo``: the three jobs end to end on built-in data, offline, in minutes on a CPU.

1. Train a baseline CNN and its BlurPool, CMod and APS variants (the registry's
   ``cifar_convnet`` family at width 16) on the synthetic aliasing set (:mod:`shiftattack.data.synthetic`)
   or, with ``--dataset cifar10 --data PATH``, on CIFAR-10.
2. Attack each with worst-case integer shifts (``grid:R`` in zero and circular modes), and
   measure its consistency and Zhang's diagonal curve (:mod:`shiftattack.jobs.stability`).
3. Certify each exactly on ``grid:1`` (zero mode).
4. Score each on four CIFAR-10-C style corruptions at severities 1, 3 and 5.
5. Write the report (``report.html``, ``report.md``, figures) over all of it, and print its
   headline (:mod:`shiftattack.report.headline`: clean, worst-case, consistency and certified
   accuracy per model, and which fix helped most against shifts, with its paired interval) and
   the time each stage took (also in ``timing.json``).

Every step writes the same documents as the corresponding command (``train``, ``attack``,
``certify``, ``benchmark``), so the report reads them like any other results.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shiftattack.errors import SpecError

__all__ = ["DemoConfig", "DEMO_MODELS", "run_demo"]

#: (folder name, registry model) for the four models the demo compares: the ``cifar_convnet``
#: family at width 16 (a quarter of the default's multiply-adds), so all four train in about a
#: minute on two CPU cores
DEMO_MODELS = [
    ("baseline", "cifar_convnet(width=16)"),
    ("blurpool", "cifar_convnet_blur3(width=16)"),
    ("cmod", "cifar_convnet_cmod(width=16)"),
    ("aps", "cifar_convnet_aps(width=16)"),
]

#: corruptions of the demo's subset (one per family)
DEMO_CORRUPTIONS = ["gaussian_noise", "defocus_blur", "contrast", "jpeg_compression"]


@dataclass
class DemoConfig:
    """What the demo runs. ``quick`` shrinks every step (CI's end-to-end check).

    Attributes:
        out: output folder.
        dataset: ``synthetic`` (built in) or ``cifar10`` (needs ``data``).
        data: CIFAR-10 source for ``cifar10``: the JPEG zip or a python-batches folder (its
            ``:train`` and ``:test`` splits are used).
        quick: tiny sizes, for tests.
        epochs, n_train, n_test, radius: the sizes (None: the dataset's defaults).
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: training seed.
        overwrite: replace an existing demo folder.
    """

    out: str = "shiftattack-demo"
    dataset: str = "synthetic"
    data: str | None = None
    quick: bool = False
    epochs: int | None = None
    n_train: int | None = None
    n_test: int | None = None
    radius: int = 2
    device: str = "auto"
    seed: int = 0
    overwrite: bool = False

    def sizes(self) -> tuple[int, int, int]:
        """(epochs, training images, test images)."""
        if self.quick:
            base = (1, 256, 32)
        elif self.dataset == "synthetic":
            base = (5, 3000, 300)
        else:
            base = (8, 10000, 500)
        return (self.epochs or base[0], self.n_train or base[1], self.n_test or base[2])

    def specs(self) -> tuple[str, str]:
        """The ``--data`` specs of the training and test splits."""
        if self.dataset == "synthetic":
            return "synthetic:train", "synthetic:test"
        if self.dataset != "cifar10":
            raise SpecError(f"--dataset must be synthetic or cifar10, got {self.dataset!r}")
        if not self.data:
            raise SpecError("--dataset cifar10 needs --data PATH (the CIFAR-10 JPEG zip or batches folder)")
        return f"{self.data}:train", f"{self.data}:test"


def run_demo(cfg: DemoConfig, progress: bool = True, log=print) -> Path:
    """Run every step; returns the path of ``report.html``."""
    from shiftattack.jobs.benchmark.run import BenchmarkConfig, run_benchmark
    from shiftattack.jobs.certify import CertifyConfig, run_certify
    from shiftattack.jobs.train import TrainConfig, run_training
    from shiftattack.report import collect, write_report
    from shiftattack.runtime.results import check_output_dir

    from shiftattack.report.headline import headline, headline_text
    from shiftattack.runtime.allocator import allocator_state
    from shiftattack.runtime.results import write_json

    out = check_output_dir(cfg.out, cfg.overwrite)
    train_spec, test_spec = cfg.specs()
    epochs, n_train, n_test = cfg.sizes()
    started = time.perf_counter()
    seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(name: str):
        t0 = time.perf_counter()
        yield
        seconds[name] += time.perf_counter() - t0

    modes = ["zero"] if cfg.quick else ["zero", "circular"]
    models = DEMO_MODELS[:2] if cfg.quick else DEMO_MODELS
    for name, spec in models:
        folder = out / "models" / name
        log(f"[{name}] training {spec} on {n_train} images of {train_spec}, {epochs} epochs")
        with stage("train"):
            run_training(
                TrainConfig(
                    model=spec,
                    data=train_spec,
                    out=str(folder),
                    epochs=epochs,
                    test_data=test_spec,
                    limit=n_train,
                    test_limit=n_test,
                    device=cfg.device,
                    seed=cfg.seed,
                    overwrite=True,
                ),
                progress=progress,
                log=lambda *_: None,
            )
        weights = str(folder / "model.pt")
        with stage("attack"):
            for mode in modes:
                _attack(spec, weights, test_spec, n_test, f"grid:{cfg.radius}", mode,
                        out / "attack" / f"{name}_{mode}", cfg)
        with stage("stability"):
            _stability(spec, weights, test_spec, n_test, out / "stability" / name, cfg)
        log(f"[{name}] certifying grid:1 exactly")
        with stage("certify"):
            run_certify(
                CertifyConfig(method="exact", model=spec, weights=weights, data=test_spec, limit=n_test,
                              shifts="grid:1", mode="zero", out=str(out / "certify" / name), device=cfg.device,
                              overwrite=True),
                progress=progress,
            )
        log(f"[{name}] corruptions {', '.join(DEMO_CORRUPTIONS)}")
        with stage("corruptions"):
            run_benchmark(
                BenchmarkConfig(
                    suite="cifar10-c", model=spec, weights=weights, data=test_spec,
                    out=str(out / "corruptions" / name),
                    names=DEMO_CORRUPTIONS[:1] if cfg.quick else DEMO_CORRUPTIONS,
                    severities=[3] if cfg.quick else [1, 3, 5], limit=n_test, device=cfg.device, overwrite=True,
                ),
                progress=progress,
            )
    title = f"shiftattack demo: {cfg.dataset}, {len(models)} models"
    folders = [out / sub for sub in ("models", "attack", "stability", "certify", "corruptions")]
    with stage("report"):
        entries = collect(folders)
        path = write_report(entries, out, title)
    total = time.perf_counter() - started
    write_json(out / "timing.json", {"stage_seconds": dict(seconds), "total_seconds": total,
                                     "allocator": allocator_state()})
    head = headline(entries)
    if head is not None:
        log("")
        log(headline_text(head))
    log("")
    log("time per stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + f"; total {total:.0f} s")
    log(f"open {path}")
    return path


def _stability(spec: str, weights: str, data: str, limit: int, folder: Path, cfg) -> None:
    """Consistency (zero and circular) and the diagonal curve, written to ``folder/stability.json``."""
    from shiftattack.data import load_dataset
    from shiftattack.jobs.stability import stability_document
    from shiftattack.models import load_model
    from shiftattack.runtime.results import open_output_dir, write_json

    test = load_dataset(data, limit=limit, progress=False)
    model = load_model(spec, weights)
    doc = stability_document(model, test.float_images(), test.labels, n_repeats=2, pad=6, seed=cfg.seed)
    doc["model"] = {"spec": spec, "weights": weights}
    doc["data"] = {"spec": data, "limit": limit}
    write_json(open_output_dir(folder, overwrite=True) / "stability.json", doc)


def _attack(
    spec: str, weights: str, data: str, limit: int, shifts: str, mode: str, folder: Path, cfg
) -> None:
    """The ``attack`` command's work and files (its job, called in-process)."""
    from shiftattack.jobs.attack import AttackConfig, run_attack

    run_attack(AttackConfig(model=spec, weights=weights, data=data, limit=limit, shifts=shifts, mode=mode,
                            order="radius", device=cfg.device, out=str(folder), overwrite=True),
               progress=False)
