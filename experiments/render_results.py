"""Write ``docs/results.md`` (and each tier's ``summary.json``) from the committed experiment units.

Every number comes from the unit files under ``experiments/results/cifar10_TIER/units/`` (ours,
through ``reproduce/summarise.py``) or from the pre-registered tests in ``reproduce/design.py``
(the rules and the papers' figures); every verdict is computed by :mod:`shiftattack.metrics.stats`
from an interval and a rule printed beside it. Nothing is typed by hand; a test fails when
``docs/results.md`` differs from what this script makes of the committed files.

    python experiments/render_results.py            # prints "wrote PATH" per file written
    python experiments/render_results.py --quick /tmp/q   # one smoke-test run, to /tmp/q/results.md

The page holds the committed tiers only (``cpu``, ``gpu``); a folder of any other tier (a
``--tier quick`` smoke test) under ``experiments/results`` is left out and named. ``--quick
DIR`` renders that one folder alone, never into ``docs/results.md``, so quick results and
committed ones are never on one page.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "reproduce"))
sys.path.insert(0, str(HERE.parent))

import design  # noqa: E402
from summarise import LABELS, summarise  # noqa: E402

from shiftattack.metrics.stats import mean_sd  # noqa: E402

VERDICT_MARK = {"reproduced": "**reproduced**", "contradicted": "**contradicted**",
                "inconclusive": "**inconclusive**", "not run yet": "not run yet"}
CLAIMS = {
    1: "BlurPool raises consistency without costing accuracy; stronger filters resist shifts better (Zhang 2019)",
    2: "Anti-aliased networks learn smoother filters (Zhang 2019)",
    3: "CMod beats BlurPool on accuracy at lower cost, with comparable stability (Leterme et al.)",
    4: "Stride helps invariance only with local homogeneity; larger pooling kernels trade "
       "generalisation for invariance (Mouton et al. 2021)",
    5: "Small shifts change many predictions; neither architecture nor augmentation alone fixes it "
       "(Azulay & Weiss 2019)",
}
CANNOT_SHOW = {
    1: "ImageNet-scale effects (Zhang's +1.6 to +2 pt top-1); 32-px images leave 4 px of feature map "
       "after three poolings, so filters above Tri-3 blur a large part of the signal.",
    2: "Zhang's evidence is filter plots of ImageNet AlexNet/VGG; our first layer is one 5x5 conv of a small net.",
    3: "The paper's ResNet-18 / AlexNet / ResNet-34 accuracies; CPU inference times of small nets are "
       "dominated by full-resolution layers, so the paper's first-layer cost is the primary measure.",
    4: "Mouton et al.'s datasets and architectures; ours is one CIFAR network family.",
    5: "ImageNet CNNs (VGG16, ResNet50, InceptionResNetV2) at 224 px; ours are 32-px CIFAR-10 models.",
}


def _n(v, d: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{d}f}"


def _ci(iv: dict | None, d: int = 2) -> str:
    if not iv:
        return "n/a"
    if iv["low"] is None or iv["high"] is None:
        return f"{_n(iv['estimate'], d)} [no interval]"
    return f"{_n(iv['estimate'], d)} [{_n(iv['low'], d)}, {_n(iv['high'], d)}]"


def _cell(m: dict | None, d: int = 2) -> str:
    """mean +- SD over seeds, and the 95 % interval of the mean (images and seeds)."""
    if not m:
        return "n/a"
    sd = "" if m["sd"] is None else f" ± {_n(m['sd'], d)}"
    iv = m["interval"]
    lo_hi = "" if not iv or iv["low"] is None else f" [{_n(iv['low'], d)}, {_n(iv['high'], d)}]"
    return f"{_n(m['mean'], d)}{sd}{lo_hi}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(r) + " |" for r in rows], ""]


def model_tables(arm: str, rows: dict, sizes: dict) -> list[str]:
    k = sizes["radius"]
    present = {m for r in rows.values() for m in r["metrics"]}
    groups = [
        ("Accuracy and training", ["clean", "train_accuracy", "train_minutes", "c_error", "p_flip"]),
        (f"Shift stability (consistency: {sizes['repeats']} pairs of random shifts in [-{k}, {k}]^2 per image)",
         ["consistency_zero", "consistency_circular", "consistency_crop", "consistency_zero_correct", "flip"]),
        (f"Shift adversary (exact grid:{k}) and one-pixel protocols",
         ["worst_zero", "worst_crop", "survival_crop", "p_change_crop", "p_change_black", "mac_crop"]),
        ("Filters", ["tv_stem", "tv_all"]),
    ]
    out = []
    for title, metrics in groups:
        metrics = [m for m in metrics if m in present]
        if not metrics:
            continue
        header = ["model", "seeds", *[f"{LABELS[m][0]} ({LABELS[m][1].strip() or 'TV'})" for m in metrics]]
        body = []
        for r in rows.values():
            d = {m: 3 if m.startswith("tv") else 2 for m in metrics}
            body.append([r["display"], ", ".join(map(str, r["seeds"])),
                         *[_cell(r["metrics"].get(m), d[m]) for m in metrics]])
        out += [f"**{title}** ({arm} arm; mean ± SD over seeds [95 % interval of the mean])", "", *_table(header, body)]
    return out


def claim_section(n: int, tests: list[dict], summary: dict) -> list[str]:
    out = [f"### {n}. {CLAIMS[n]}", ""]
    published = sorted({t["published"] for t in tests if t["published"]})
    if published:
        out += ["Published: " + "; ".join(published) + ".", ""]
    rows = []
    for t in tests:
        seeds = "; ".join(f"{design.DISPLAY.get(k, k)}: {len(v)}" for k, v in t["seeds"].items())
        unit = LABELS[t["metric"]][1]
        unit = " pt" if unit == "%" and t["kind"] != "threshold" else unit
        effect = _ci(t["interval"], 3 if t["metric"].startswith("tv") else 2)
        rule = t["rule"]
        if t.get("margin_rule"):
            rule += f" (margin = {t['margin_rule']}" + (f" = {_n(t['margin'], 3)}{unit})" if t["margin"] else ")")
        verdict = VERDICT_MARK[t["verdict"]]
        if t["interval"] and t["interval"]["method"] == "images":
            verdict += " (provisional: one seed, images only)"
        rows.append([t["name"], f"{t['kind']} ({t['arm']} arm)", effect + (unit if t["interval"] else ""),
                     rule, verdict, seeds])
    out += _table(["test", "kind", "effect [95 % interval]", "rule", "verdict", "seeds per model"], rows)
    out += [f"What the CPU scale cannot show: {CANNOT_SHOW[n]}", ""]
    return out


def homogeneity_lines(s: dict) -> list[str]:
    """Local homogeneity of the stride arms' test images (recorded by each unit)."""
    found = {arm: next((r["local_homogeneity"] for r in rows.values() if r.get("local_homogeneity") is not None),
                       None) for arm, rows in s["arms"].items() if arm.startswith("stride")}
    if not any(v is not None for v in found.values()):
        return []
    text = "; ".join(f"{arm} arm H = {v:.3f}" for arm, v in found.items() if v is not None)
    return ["Local homogeneity H = 1 - E|x(p) - x(p+e)| / E|x(p) - x(q)| of the test images (1 px steps e, "
            f"random pixels q of the same image): {text}.", ""]


def tv_layer_table(rows: dict) -> list[str]:
    names = [layer["module"] for layer in next(iter(rows.values()))["tv_layers"]]
    body = []
    for r in rows.values():
        cells = []
        for layer in r["tv_layers"]:
            mean, sd, _ = mean_sd(layer["mean_per_seed"])
            cells.append(f"{mean:.3f}" + ("" if sd is None else f" ± {sd:.3f}"))
        body.append([r["display"], *cells, *[""] * (len(names) - len(cells))])
    return ["Mean normalised TV per conv layer (mean over filters; ± SD over seeds). CMod's Gabor channels "
            "are not convolution modules and are left out of its stem figure.", "",
            *_table(["model", *names], body)]


def cost_lines(folder: Path | None = None) -> list[str]:
    from shiftattack.models import create_model
    from shiftattack.models.cmod_cost import first_layer_cost

    cost = first_layer_cost(create_model("cifar_convnet(width=32)", num_classes=10), input_size=32,
                            blur_filter_size=3)
    rows = [[kind, f"{getattr(cost, kind).macs:,}", f"{getattr(cost, kind).memory:,}",
             "1.00 / 1.00" if kind == "rmax" else " / ".join(f"{v:.2f}" for v in cost.ratios[kind])]
            for kind in ("rmax", "blurpool", "cmod")]
    verdict = "reproduced" if all(c < b for c, b in zip(cost.ratios["cmod"], cost.ratios["blurpool"],
                                                         strict=True)) else "contradicted"
    return ["First-layer cost per channel, `cifar_convnet(width=32)` stem at 32 px, Tri-3 "
            "(`shiftattack.models.cmod_cost.first_layer_cost`, exact counts: no sampling error). "
            "Paper (Table III, ResNet): BlurPool 1.0 / 1.9, CMod 0.5 / 0.4.", "",
            *_table(["first layer", "multiply-adds", "memory (float32 elements)", "compute / memory vs RMax"], rows),
            f"- CMod cheaper than BlurPool in both compute and memory (exact) → {VERDICT_MARK[verdict]}.", "",
            *network_time_lines(folder)]


def network_time_lines(folder: Path | None) -> list[str]:
    """The secondary cost column: whole-network inference time (``reproduce/cost.py``), if measured."""
    path = None if folder is None else folder / "cost.json"
    if path is None or not path.is_file():
        return ["Whole-network inference time: not measured yet (`python experiments/reproduce/cost.py`).", ""]
    doc = json.loads(path.read_text())
    rows = [[design.DISPLAY.get(n, n), f"{m['images_per_s']:.0f}",
             f"{m['time_vs_baseline']:.2f} [{m['time_vs_baseline_interval'][0]:.2f}, "
             f"{m['time_vs_baseline_interval'][1]:.2f}]"] for n, m in doc["models"].items()]
    note = f" {doc['note']}" if doc.get("note") else ""
    return [f"Whole-network inference time (secondary; {doc['protocol']}).{note}", "",
            *_table(["model", "images/s", "time vs baseline [95 % interval]"], rows)]


def _tier_order(folder: Path) -> tuple[int, str]:
    """cpu first, then gpu, then anything else (smoke tiers) by name."""
    return ({"cifar10_cpu": 0, "cifar10_gpu": 1}.get(folder.name, 2), folder.name)


#: the tiers whose results are committed and make docs/results.md
COMMITTED_TIERS = ("cpu", "gpu")


def _tier_folders(root: Path, quick: Path | None) -> list[tuple[Path, str]]:
    """(folder, tier) to render: the committed tiers under ROOT/experiments/results, or ``quick`` alone."""
    if quick is not None:
        if not (quick / "experiment.json").is_file():
            raise SystemExit(f"error: {quick} holds no experiment.json (not an experiment's output folder)")
        return [(quick, json.loads((quick / "experiment.json").read_text())["tier"])]
    found = []
    for out in sorted((root / "experiments" / "results").glob("cifar10_*"), key=_tier_order):
        if not (out / "units").is_dir() or not (out / "experiment.json").is_file():
            continue
        tier = json.loads((out / "experiment.json").read_text())["tier"]
        if tier not in COMMITTED_TIERS:
            print(f"left out {out} ({tier} tier: not committed results; render it alone with --quick {out})")
            continue
        found.append((out, tier))
    return found


def render(root: Path, page: Path, quick: Path | None = None) -> list[Path]:
    """Write ``page`` (and each tier's ``summary.json``); ``quick``: that one folder alone (see the
    module docstring). Returns the files written."""
    if quick is not None and page.resolve() == (root / "docs" / "results.md").resolve():
        raise SystemExit("error: --quick results never go into docs/results.md; give --out PAGE "
                         "(default: DIR/results.md)")
    written: list[Path] = []
    title = "# Results: reproducing the seed papers' claims" if quick is None else \
        f"# Quick results of {quick} (a smoke test, not the committed results)"
    lines = [title, "",
             "<!-- written by experiments/render_results.py from the committed experiment units; "
             "edit the scripts, not this file -->", ""]
    for out, tier in _tier_folders(root, quick):
        summary = summarise(out, tier)
        (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        written.append(out / "summary.json")
        folder = out.relative_to(root).as_posix() if out.resolve().is_relative_to(root.resolve()) else str(out)
        lines += tier_section(tier, summary, out, folder)
    if quick is not None:
        page.write_text("\n".join(lines).rstrip() + "\n")
        return [page, *written]
    if not any(p.name == "summary.json" for p in written):
        lines += ["No experiment units are committed yet.", ""]
    lines += ["## Not run here", "",
              "- `experiments/imagenet_eval.py` needs ImageNet and a GPU; no results of it are committed.", ""]
    tiers = {p.parent.name for p in written}
    if "cifar10_gpu" not in tiers:  # noqa: SIM102
        lines.insert(-1, "- The GPU tier (`--tier gpu`, the CMod paper's ResNet-18 table): no GPU was lent to "
                         "the sessions that ran this experiment, so none of it is committed.")
    page.write_text("\n".join(lines).rstrip() + "\n")
    return [page, *written]


def tier_section(tier: str, s: dict, out: Path, folder: str) -> list[str]:
    sizes = s["sizes"]
    done, planned = len(s["units_finished"]), s["units_planned"]
    lines = [f"## CIFAR-10, {tier} tier", "",
             f"Units finished: **{done} of {planned}** (`{folder}/units/`; each "
             f"records its code commit: {', '.join(c[:12] for c in s['commits'])}). Design and rules: "
             "[experiments/reproduce/design.py](../experiments/reproduce/design.py), sha256 "
             f"{', '.join(h[:12] for h in s['design_sha256'])}. Command: "
             f"`python experiments/cifar10_antialias.py --tier {tier} --commit`, from a frozen install "
             "(`experiments/freeze.sh`).", "",
             "How to read the verdicts: each test's effect is a contrast of models measured on the same test "
             "images (a difference, or a least-squares slope over the filter size with the baseline as size 1), "
             "its 95 % interval counts the images' sampling variance and the seeds' training variance "
             "(`shiftattack.metrics.stats.contrast`, Welch-Satterthwaite degrees of freedom; filter TV: Welch over "
             "seeds). *Reproduced*: the interval lies on the paper's side of the rule; *contradicted*: on the other "
             "side; *inconclusive*: it straddles. The rules were fixed in design.py before the units ran. A verdict "
             "marked provisional rests on one seed per model: its interval covers the test images only, not "
             "training randomness, and may change as the other seeds finish.", "",
             "Protocol:", "",
             "- Recipes: " + "; ".join(f"{a}: {r['description']} (seeds {', '.join(map(str, r['seeds_planned']))})"
                                        for a, r in s["arm_recipes"].items()) + ".",
             f"- Clean accuracy, consistency and flip rate: {'all 10,000' if not sizes['test_limit'] else sizes['test_limit']} "
             f"test images. Consistency: {sizes['repeats']} pairs of random integer shifts in [-{sizes['radius']}, "
             f"{sizes['radius']}]^2 per image and mode, the same draws for every model; crop mode moves the 32-px "
             f"window over the image reflect-padded by {sizes['radius']} px. Mean flip rate: the centred window "
             f"against windows 1..{sizes['radius']} px away horizontally, vertically and diagonally.",
             f"- Shift adversary: exact search of every integer shift with |dx|, |dy| <= {sizes['radius']} on "
             f"{sizes['attack_images']:,} class-balanced test images (zero and crop modes; circular for APS). "
             "Survival: the share of initially correct images that stay correct under every shift.",
             f"- One-pixel protocols (Azulay & Weiss), the same images: {sizes['one_pixel_steps']} consecutive 1-px "
             f"horizontal steps, sliding crop (reflect-padded canvas) and black canvas ({sizes['black_canvas_small']}-px "
             "image on a 32-px black canvas). MAC in probability points x 100.",
             f"- CIFAR-10-C: 19 corruptions x 5 severities on {sizes['c_images']} images; CIFAR-10-P on "
             f"{sizes['p_images']} images (unnormalised mean error and mean flip probability).", ""]
    for arm, rows in s["arms"].items():
        if rows:
            lines += [f"### Every model, {arm} arm", "", *model_tables(arm, rows, sizes)]
    lines += ["## Claims", ""]
    by_claim: dict[int, list[dict]] = {}
    for t in s["tests"]:
        by_claim.setdefault(t["claim"], []).append(t)
    for n in sorted(CLAIMS):
        lines += claim_section(n, by_claim.get(n, []), s)
        if n == 4:
            lines += homogeneity_lines(s)
        if n == 2 and s["arms"].get("main"):
            lines += tv_layer_table(s["arms"]["main"])
        if n == 3:
            lines += cost_lines(out)
    aps = s["arms"].get("main", {}).get("aps")
    if aps:
        lines += aps_lines(aps)
    return lines


def aps_lines(aps: dict) -> list[str]:
    m = aps["metrics"]
    circ = m.get("consistency_circular", {}).get("per_seed", [])
    worst = m.get("worst_circular", {}).get("per_seed", [])
    lines = ["### APS: exact invariance to circular shifts (Chaman & Dokmanic 2021)", ""]
    exact = bool(circ) and all(v == 100.0 for v in circ)
    lines.append(f"- Circular consistency per seed: {', '.join(f'{v:.2f} %' for v in circ)} (exact check, no interval: "
                 f"100 % on every image is the claim) → {VERDICT_MARK['reproduced' if exact else 'contradicted']}.")
    if worst:
        lines.append(f"- Worst-case circular accuracy per seed: {', '.join(f'{v:.2f} %' for v in worst)}; not exact "
                     f"for zero or crop shifts (consistency zero {_cell(m.get('consistency_zero'))} %, crop "
                     f"{_cell(m.get('consistency_crop'))} %).")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the repository (default: this one)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the page (default ROOT/docs/results.md; with --quick DIR: DIR/results.md)")
    parser.add_argument("--quick", type=Path, default=None, metavar="DIR",
                        help="render this one experiment folder alone (a --tier quick smoke test)")
    args = parser.parse_args(argv)
    default = args.root / "docs" / "results.md" if args.quick is None else args.quick / "results.md"
    for path in render(args.root, args.out or default, args.quick):
        print(f"wrote {path.resolve().relative_to(args.root.resolve()) if path.resolve().is_relative_to(args.root.resolve()) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
