"""Baseline vs BlurPool vs CMod vs APS on CIFAR-10: accuracy, shift stability, corruptions, certificates.

One command runs the whole comparison and writes, under ``--out``:

    models/NAME/            train_log.json (+ model.pt, not for committing)
    attack/NAME_MODE/       worst-case grid:R attack, modes zero, circular, crop (results.json; crop
                            windows of the image reflect-padded by R px)
    stability/NAME/         consistency, Zhang's diagonal curve, flip rate vs distance
    certify/NAME/           exact certificate on grid:C, zero mode
    corruptions/NAME/       CIFAR-10-C (every corruption, severities 1-5)
    perturbations/NAME/     CIFAR-10-P (every perturbation)
    generated/              the CIFAR-10-C/-P arrays, generated once and shared by every model
    cost.json               inference images/s of every model, timed interleaved in one process
    summary.json            one row of figures per model, read from the documents above
    report.html, report.md, figures/   ``shiftattack report`` over everything
    experiment.json         command, tier, sizes, seed, versions, seconds per step

Tiers:

- ``cpu``: ``cifar_convnet(width=16)`` and its variants (a 4-stage CNN whose down-sampling is
  max-pooling), 4 epochs on the 50k training images; sized to finish in about 90 minutes on
  2 CPU cores.
- ``gpu``: the ImageNet-style ResNet-18 of the CMod paper's CIFAR-10 table and its variants,
  30 epochs, full test set for the shift metrics.

Usage::

    python experiments/cifar10_antialias.py --tier cpu --data ../shared/data/cifar10-jpeg.zip \\
        --out experiments/results/cifar10_antialias_cpu

``--resume`` keeps every step whose output exists (a run can be stopped and restarted);
``--quick`` shrinks every size (a smoke test, used by the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: (folder name, model spec) per tier; the order is the order of the tables
MODELS = {
    "cpu": [
        ("baseline", "cifar_convnet(width=16)"),
        ("rect2", "cifar_convnet_blur2(width=16)"),
        ("tri3", "cifar_convnet_blur3(width=16)"),
        ("bin5", "cifar_convnet_blur5(width=16)"),
        ("bin7", "cifar_convnet_blur7(width=16)"),
        ("cmod", "cifar_convnet_cmod(width=16)"),
        ("tri3_cmod", "cifar_convnet_blur3_cmod(width=16)"),
        ("aps", "cifar_convnet_aps(width=16)"),
    ],
    "gpu": [
        ("baseline", "resnet18"),
        ("rect2", "resnet18_blur2"),
        ("tri3", "resnet18_blur3"),
        # reflect padding needs feature maps wider than the filter: 32-px inputs shrink to 1 px
        # in ResNet-18's last stage, so the larger filters pad with zeros
        ("bin5", "resnet18_blur5(pad_mode='zero')"),
        ("bin7", "resnet18_blur7(pad_mode='zero')"),
        ("cmod", "resnet18_cmod"),
        ("tri3_cmod", "resnet18_blur3_cmod"),
        ("aps", "resnet18_aps"),
    ],
}

#: human-readable names for tables and figures
DISPLAY = {
    "baseline": "Baseline",
    "rect2": "BlurPool Rect-2",
    "tri3": "BlurPool Tri-3",
    "bin5": "BlurPool Bin-5",
    "bin7": "BlurPool Bin-7",
    "cmod": "CMod",
    "tri3_cmod": "BlurPool Tri-3 + CMod",
    "aps": "APS",
}


@dataclass
class Sizes:
    """How much of everything one tier runs (images are class-balanced subsets of the test split)."""

    epochs: int
    train_limit: int | None
    attack_images: int
    radius: int
    stability_images: int
    certify_images: int
    certify_radius: int
    c_images: int
    p_images: int
    batch_size: int = 256


SIZES = {
    "cpu": Sizes(
        epochs=4,
        train_limit=None,
        attack_images=500,
        radius=4,
        stability_images=1000,
        certify_images=1000,
        certify_radius=2,
        c_images=500,
        p_images=200,
    ),
    "gpu": Sizes(
        epochs=30,
        train_limit=None,
        attack_images=10000,
        radius=4,
        stability_images=10000,
        certify_images=10000,
        certify_radius=4,
        c_images=10000,
        p_images=10000,
    ),
    "quick": Sizes(
        epochs=1,
        train_limit=512,
        attack_images=32,
        radius=2,
        stability_images=32,
        certify_images=32,
        certify_radius=1,
        c_images=16,
        p_images=8,
        batch_size=64,
    ),
}

ATTACK_MODES = ("zero", "circular", "crop")
QUICK_CORRUPTIONS = "gaussian_noise,contrast"
QUICK_PERTURBATIONS = "translate,brightness"


@dataclass
class Experiment:
    data: str
    out: Path
    tier: str = "cpu"
    quick: bool = False
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    only: list[str] | None = None
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def sizes(self) -> Sizes:
        return SIZES["quick" if self.quick else self.tier]

    @property
    def models(self) -> list[tuple[str, str]]:
        chosen = MODELS[self.tier][:2] if self.quick else MODELS[self.tier]
        return [m for m in chosen if self.only is None or m[0] in self.only]


def _cli(argv: list[str]) -> None:
    """Run one ``shiftattack`` command in this process; stop the experiment if it fails."""
    from shiftattack.cli import main

    if main(argv) != 0:
        sys.exit(f"step failed: shiftattack {shlex.join(argv)}")


def _step(exp: Experiment, name: str, output: Path, run) -> None:
    """Run ``run()`` unless ``output`` exists and ``--resume`` was given; time it."""
    if exp.resume and output.exists():
        print(f"[skip] {name}: {output} exists", flush=True)
        return
    print(f"[run ] {name}", flush=True)
    started = time.perf_counter()
    run()
    exp.steps[name] = round(time.perf_counter() - started, 1)
    print(f"[done] {name} in {exp.steps[name]:.0f} s", flush=True)


def _common(exp: Experiment) -> list[str]:
    return ["--device", exp.device, "--batch-size", str(exp.sizes.batch_size), "--overwrite"]


def generate_suites(exp: Experiment) -> None:
    """CIFAR-10-C and -P arrays for the test subset, generated once (``shiftattack corrupt``)."""
    s, test = exp.sizes, f"{exp.data}:test"
    for suite, n, names in (
        ("cifar10-c", s.c_images, QUICK_CORRUPTIONS),
        ("cifar10-p", s.p_images, QUICK_PERTURBATIONS),
    ):
        folder = exp.out / "generated" / suite
        argv = [
            "corrupt",
            "--suite",
            suite,
            "--data",
            test,
            "--limit",
            str(n),
            "--seed",
            str(exp.seed),
            "--device",
            exp.device,
            "--out",
            str(folder),
            "--overwrite",
            "--quiet",
        ]
        if exp.quick:
            argv += ["--corruptions", names]
        marker = exp.out / "generated" / f"{suite}.complete"  # the P layout has no labels file to test for

        def generate(a=argv, marker=marker):
            from shiftattack.runtime.results import write_text

            _cli(a)
            write_text(marker, shlex.join(a) + "\n")

        _step(exp, f"generate {suite} ({n} images)", marker, generate)


def evaluate_model(exp: Experiment, name: str, spec: str) -> None:
    """Train one model, then every measurement of it."""
    s, out = exp.sizes, exp.out
    train, test = f"{exp.data}:train", f"{exp.data}:test"
    folder = out / "models" / name
    weights = str(folder / "model.pt")
    argv = [
        "train",
        "--model",
        spec,
        "--data",
        train,
        "--test-data",
        test,
        "--epochs",
        str(s.epochs),
        "--seed",
        str(exp.seed),
        "--device",
        exp.device,
        "--out",
        str(folder),
        "--overwrite",
        "--quiet",
    ]
    if s.train_limit:
        argv += ["--limit", str(s.train_limit)]
    _step(exp, f"{name}: train {spec}", folder / "train_log.json", lambda: _cli(argv))

    model = ["--model", spec, "--weights", weights]
    for mode in ATTACK_MODES:
        dest = out / "attack" / f"{name}_{mode}"
        argv_a = [
            "attack",
            *model,
            "--data",
            test,
            "--limit",
            str(s.attack_images),
            "--shifts",
            f"grid:{s.radius}",
            "--mode",
            mode,
            "--order",
            "radius",
            *_common(exp),
            "--out",
            str(dest),
            "--quiet",
        ]
        if mode == "crop":  # CIFAR-10 has nothing outside its 32 px: a zero-padded canvas would make crop
            # exactly zero mode, so the canvas is reflect-padded (real-looking content enters)
            argv_a += ["--canvas-pad", str(s.radius), "--canvas-pad-mode", "reflect"]
        _step(exp, f"{name}: attack grid:{s.radius} {mode}", dest / "results.json", lambda a=argv_a: _cli(a))

    dest = out / "stability" / name
    argv_s = [
        "stability",
        *model,
        "--data",
        test,
        "--limit",
        str(s.stability_images),
        "--max-shift",
        str(s.radius),
        "--repeats",
        "5",
        "--pad",
        str(s.radius),
        "--flip-distance",
        str(s.radius),
        "--seed",
        str(exp.seed),
        *_common(exp),
        "--out",
        str(dest),
        "--quiet",
    ]
    _step(exp, f"{name}: stability", dest / "stability.json", lambda: _cli(argv_s))

    dest = out / "certify" / name
    argv_c = [
        "certify",
        "--method",
        "exact",
        *model,
        "--data",
        test,
        "--limit",
        str(s.certify_images),
        "--shifts",
        f"grid:{s.certify_radius}",
        "--mode",
        "zero",
        "--device",
        exp.device,
        "--out",
        str(dest),
        "--overwrite",
        "--quiet",
    ]
    _step(exp, f"{name}: certify grid:{s.certify_radius}", dest / "certificate.json", lambda: _cli(argv_c))

    for suite, sub, n, names in (
        ("cifar10-c", "corruptions", s.c_images, QUICK_CORRUPTIONS),
        ("cifar10-p", "perturbations", s.p_images, QUICK_PERTURBATIONS),
    ):
        dest = out / sub / name
        argv_b = [
            "benchmark",
            "--suite",
            suite,
            *model,
            "--data",
            test,
            "--limit",
            str(n),
            "--source",
            str(out / "generated" / suite),
            *_common(exp),
            "--out",
            str(dest),
            "--quiet",
        ]
        if exp.quick:
            argv_b += ["--corruptions", names]
        _step(exp, f"{name}: {suite}", dest / "results.json", lambda a=argv_b: _cli(a))


def measure_cost(exp: Experiment, rounds: int = 5) -> None:
    """Inference cost of every model, timed interleaved in one process: ``cost.json``.

    Per model: the median over ``rounds`` rounds of the wall time of one float32 forward pass
    of 256 random 32x32 images under ``torch.inference_mode`` (after a warm-up), as images/s
    and as a ratio to the baseline's time (cost does not depend on the weights, so the
    untrained models are timed). Interleaving the models round by round spreads any
    background load over all of them.
    """
    import statistics

    import torch

    from shiftattack.models import create_model
    from shiftattack.runtime.results import write_json

    def run():
        x = torch.rand(exp.sizes.batch_size, 3, 32, 32)
        models = {name: create_model(spec, num_classes=10).eval() for name, spec in exp.models}
        times: dict[str, list[float]] = {name: [] for name in models}
        with torch.inference_mode():
            for m in models.values():
                m(x)
            for _ in range(rounds):
                for name, m in models.items():
                    t = time.perf_counter()
                    m(x)
                    times[name].append(time.perf_counter() - t)
        med = {name: statistics.median(v) for name, v in times.items()}
        base = med.get("baseline")
        write_json(
            exp.out / "cost.json",
            {
                "protocol": f"median of {rounds} interleaved rounds, one forward of {x.shape[0]} 32x32 images, "
                f"float32, inference_mode, {torch.get_num_threads()} threads",
                "models": {
                    name: {
                        "images_per_s": x.shape[0] / t,
                        "seconds_per_batch": t,
                        "time_vs_baseline": None if base is None else t / base,
                    }
                    for name, t in med.items()
                },
                "versions": _versions(),
            },
        )

    _step(exp, "inference cost of every model", exp.out / "cost.json", run)


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def summarise(exp: Experiment) -> dict:
    """One row per model, every figure read from the documents the steps wrote (fractions as %)."""
    rows = []
    baseline_flip = None
    for name, spec in exp.models:
        train = _json(exp.out / "models" / name / "train_log.json") or {}
        row: dict = {
            "name": name,
            "display": DISPLAY[name],
            "model": spec,
            "clean_accuracy": _pct(train.get("test_accuracy")),
        }
        smooth = train.get("filter_smoothness") or {}
        row["first_layer_tv"] = smooth.get("mean")
        for mode in ATTACK_MODES:
            doc = _json(exp.out / "attack" / f"{name}_{mode}" / "results.json")
            if doc:
                row[f"attack_clean_{mode}"] = _pct(doc["clean_accuracy"])
                row[f"worst_case_{mode}"] = [
                    _pct(v["worst_case_accuracy"]) for v in doc["accuracy_vs_radius"]
                ]
        stab = _json(exp.out / "stability" / name / "stability.json")
        if stab:
            row["consistency"] = dict(stab["consistency"])
            row["mean_flip_rate"] = stab["flip_rate"]["mean_flip_rate"]
            row["flip_rate_by_distance"] = stab["flip_rate"]["per_distance"]
        cert = _json(exp.out / "certify" / name / "certificate.json")
        if cert:
            row["certified_accuracy"] = _pct(cert["certified_accuracy"])
            row["certified_set"] = cert["threat"]["spec"]
        c = _json(exp.out / "corruptions" / name / "results.json")
        if c:
            row["mce"] = _pct(c["mean_error"])  # CIFAR convention: unnormalised mean corrupted error
            row["c_clean_error"] = _pct(c["clean_error"])
            row["c_missing"] = c.get("mce_missing") or []
        p = _json(exp.out / "perturbations" / name / "results.json")
        if p:
            row["mfr"] = _pct(p["mean_fp"])  # CIFAR convention: unnormalised mean flip probability
            row["p_missing"] = p.get("mfr_missing") or []
            row["translate_fp"] = _pct(p["perturbations"].get("translate", {}).get("fp"))
        cost = (_json(exp.out / "cost.json") or {}).get("models", {}).get(name)
        if cost:
            row["images_per_s"] = cost["images_per_s"]
            row["time_vs_baseline"] = cost["time_vs_baseline"]
        if name == "baseline":
            baseline_flip = row.get("mean_flip_rate")
        rows.append(row)
    for row in rows:  # the CMod papers' normalisation: the baseline scores 100
        if baseline_flip and row.get("mean_flip_rate") is not None:
            row["mean_flip_rate_normalised"] = 100.0 * row["mean_flip_rate"] / baseline_flip
    return {
        "tier": exp.tier,
        "quick": exp.quick,
        "sizes": asdict(exp.sizes),
        "seed": exp.seed,
        "attack_modes": list(ATTACK_MODES),
        "models": rows,
    }


def _pct(v):
    return None if v is None else 100.0 * float(v)


def _versions() -> dict:
    import torch

    import shiftattack

    return {
        "shiftattack": shiftattack.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tier", choices=sorted(MODELS), default="cpu")
    parser.add_argument(
        "--data",
        default=None,
        help="CIFAR-10 JPEG zip or python-batches folder (default: "
        "$SHIFTATTACK_DATA_DIR/cifar10-jpeg.zip, else ../shared/data/cifar10-jpeg.zip)",
    )
    parser.add_argument(
        "--out", default=None, help="results folder (default experiments/results/cifar10_antialias_TIER)"
    )
    parser.add_argument(
        "--models", default=None, help="comma-separated subset of: " + ", ".join(n for n, _ in MODELS["cpu"])
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resume", action="store_true", help="keep every step whose output exists")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = parser.parse_args(argv)

    data = args.data or _default_data()
    if not Path(data).exists():
        parser.error(
            f"CIFAR-10 not found at {data}; pass --data PATH (cifar10-jpeg.zip or the batches folder)"
        )
    out = Path(
        args.out or f"experiments/results/cifar10_antialias_{args.tier}{'_quick' if args.quick else ''}"
    )
    only = None
    if args.models:
        only = [m.strip() for m in args.models.split(",")]
        unknown = sorted(set(only) - set(DISPLAY))
        if unknown:
            parser.error(f"unknown --models {', '.join(unknown)}; choose from {', '.join(DISPLAY)}")
    exp = Experiment(
        data=data,
        out=out,
        tier=args.tier,
        quick=args.quick,
        seed=args.seed,
        device=args.device,
        resume=args.resume,
        only=only,
    )
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generate_suites(exp)
    for name, spec in exp.models:
        evaluate_model(exp, name, spec)
    measure_cost(exp)
    write_outputs(exp, argv if argv is not None else sys.argv[1:], time.perf_counter() - started)
    print(f"finished in {time.perf_counter() - started:.0f} s; open {out / 'report.html'}")
    return 0


def write_outputs(exp: Experiment, argv: list[str], seconds: float) -> None:
    """summary.json, experiment.json and the report (figures, HTML, Markdown)."""
    from shiftattack.report import collect, write_report
    from shiftattack.runtime.results import write_json

    summary = summarise(exp)
    write_json(exp.out / "summary.json", summary)
    previous = _json(exp.out / "experiment.json") or {}
    steps = {**previous.get("steps_seconds", {}), **exp.steps}
    command = shlex.join(["python", "experiments/cifar10_antialias.py", *argv])
    resumed = previous.get("resumed_with", [])
    if previous.get("command") and previous["command"] != command:  # keep the first run's command
        resumed, command = list(dict.fromkeys(resumed + [command])), previous["command"]
    write_json(
        exp.out / "experiment.json",
        {
            "command": command,
            "resumed_with": resumed,
            "tier": exp.tier,
            "quick": exp.quick,
            "seed": exp.seed,
            "data": exp.data,
            "sizes": asdict(exp.sizes),
            "models": dict(exp.models),
            "versions": _versions(),
            "steps_seconds": steps,
            "this_run_seconds": round(seconds, 1),
            "total_step_seconds": round(sum(steps.values()), 1),
        },
    )
    folders = [
        exp.out / sub for sub in ("models", "attack", "stability", "certify", "corruptions", "perturbations")
    ]
    title = f"cifar10_antialias ({exp.tier} tier{', quick' if exp.quick else ''})"
    write_report(collect([f for f in folders if f.exists()]), exp.out, title)


def _default_data() -> str:
    folder = os.environ.get("SHIFTATTACK_DATA_DIR")
    if folder:
        return str(Path(folder) / "cifar10-jpeg.zip")
    return str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.zip")


if __name__ == "__main__":
    raise SystemExit(main())
