"""Units -> per-model figures with intervals and every pre-registered test's verdict (``summary.json``).

Reads only the committed unit files (``units/*/``), so the summary, and the document rendered
from it, is a pure function of what is committed. Metrics (percent unless noted):

per test image (paired across models): ``clean`` (top-1 correct), ``consistency_zero``,
``consistency_circular``, ``consistency_crop`` (agreeing pairs), ``flip`` (flipping pairs of the
flip-rate protocol); per attack image: ``worst_zero``, ``worst_crop`` (``worst_circular`` for
APS) (correct under every shift), ``survival_zero``, ``survival_crop`` (the same among the
initially correct images: a ratio), ``p_change_crop``, ``p_change_black``, ``mac_crop``,
``mac_black`` (one-pixel protocols; MAC in probability points x 100); per seed only:
``tv_stem``, ``tv_all`` (normalised total variation, dimensionless), ``c_error`` (CIFAR-10-C
mean error), ``p_flip`` (CIFAR-10-P mean flip probability), ``train_accuracy`` (last epoch,
augmented batches), ``train_minutes``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import design
import numpy as np

from shiftattack.metrics.stats import contrast, mean_sd, rule_text, seed_contrast, verdict

PAIRED = ("clean", "consistency_zero", "consistency_circular", "consistency_crop", "consistency_zero_correct",
          "consistency_crop_correct", "flip", "worst_zero",
          "worst_crop", "worst_circular", "survival_zero", "survival_crop", "survival_circular",
          "p_change_crop", "p_change_black", "mac_crop", "mac_black")
PER_SEED = ("tv_stem", "tv_all", "c_error", "p_flip", "train_accuracy", "train_minutes")

#: metric -> (label, unit) for tables
LABELS = {
    "clean": ("clean accuracy", "%"), "consistency_zero": ("consistency, zero shifts", "%"),
    "consistency_circular": ("consistency, circular shifts", "%"),
    "consistency_crop": ("consistency, crop shifts", "%"), "flip": ("mean flip rate", "%"),
    "consistency_zero_correct": ("consistency of correctly classified images, zero shifts", "%"),
    "consistency_crop_correct": ("consistency of correctly classified images, crop shifts", "%"),
    "worst_zero": ("worst-case accuracy, zero", "%"), "worst_crop": ("worst-case accuracy, crop", "%"),
    "worst_circular": ("worst-case accuracy, circular", "%"),
    "survival_zero": ("survival of correct images, zero", "%"),
    "survival_crop": ("survival of correct images, crop", "%"),
    "survival_circular": ("survival of correct images, circular", "%"),
    "p_change_crop": ("P(top-1 change), sliding crop", "%"),
    "p_change_black": ("P(top-1 change), black canvas", "%"), "mac_crop": ("MAC, sliding crop", " pt"),
    "mac_black": ("MAC, black canvas", " pt"), "tv_stem": ("first-layer normalised TV", ""),
    "tv_all": ("normalised TV, mean over conv layers", ""), "c_error": ("CIFAR-10-C mean error", "%"),
    "p_flip": ("CIFAR-10-P mean flip probability", "%"),
    "train_accuracy": ("training accuracy, last epoch", "%"), "train_minutes": ("training time", " min"),
}


@dataclass
class Unit:
    """One finished unit's metrics: paired (numerator, denominator or None) arrays and per-seed values."""

    meta: dict
    test_index: np.ndarray
    attack_index: np.ndarray | None
    paired: dict[str, tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict)
    per_seed: dict[str, float] = field(default_factory=dict)
    tv_layers: list[dict] = field(default_factory=list)


#: text columns of an attack's results.csv (where each image came from, class names): not numbers
TEXT_COLUMNS = ("source", "true_class", "pred_class")


def _csv(path: Path) -> dict[str, np.ndarray]:
    """The numeric columns of a CSV file as float64 arrays (the text columns are left out)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    keep = [j for j, name in enumerate(header) if name not in TEXT_COLUMNS]
    body = np.array([[r[j] for j in keep] for r in rows[1:]], dtype=np.float64) if len(rows) > 1 \
        else np.zeros((0, len(keep)))
    return {header[j]: body[:, k] for k, j in enumerate(keep)}


def load_unit(folder: Path) -> Unit:
    meta = json.loads((folder / "unit.json").read_text())
    sizes = meta["recipe"]
    per = _csv(folder / "per_image.csv")
    one = _csv(folder / "one_pixel.csv") if (folder / "one_pixel.csv").is_file() else None
    unit = Unit(meta, per["index"].astype(int), None if one is None else one["index"].astype(int))
    correct = (per["pred"] == per["label"]).astype(float)
    unit.paired["clean"] = (100 * correct, None)
    for mode in ("zero", "circular", "crop"):
        agree = 100 * per[f"agree_{mode}"] / sizes["repeats"]
        unit.paired[f"consistency_{mode}"] = (agree, None)
        unit.paired[f"consistency_{mode}_correct"] = (agree * correct, correct)
    unit.paired["flip"] = (100 * per["flips"] / (3 * sizes["radius"]), None)
    for mode in ("zero", "crop", "circular"):
        path = folder / f"attack_{mode}.csv"
        if not path.is_file():
            continue
        a = _csv(path)
        if unit.attack_index is not None and not np.array_equal(a["index"].astype(int), unit.attack_index):
            raise ValueError(f"{path} covers other images than one_pixel.csv")
        ok = (a["clean_pred"] == a["label"]).astype(float)
        robust = a["robust"].astype(float) * ok
        unit.paired[f"worst_{mode}"] = (100 * robust, None)
        unit.paired[f"survival_{mode}"] = (100 * robust, ok)
    steps = sizes["one_pixel_steps"]
    for proto in ("crop", "black") if one is not None else ():
        unit.paired[f"p_change_{proto}"] = (100 * one[f"changes_{proto}"] / steps, None)
        unit.paired[f"mac_{proto}"] = (100 * one[f"mac_{proto}"], None)
    unit.tv_layers = meta["conv_tv"]
    means = [float(np.mean(layer["per_filter"])) for layer in unit.tv_layers]
    unit.per_seed["tv_stem"] = means[0]
    unit.per_seed["tv_all"] = float(np.mean(means))
    if (folder / "cifar10_c.json").is_file():
        unit.per_seed["c_error"] = 100 * json.loads((folder / "cifar10_c.json").read_text())["mean_error"]
    if (folder / "cifar10_p.json").is_file():
        unit.per_seed["p_flip"] = 100 * json.loads((folder / "cifar10_p.json").read_text())["mean_fp"]
    train = meta["train"]
    unit.per_seed["train_accuracy"] = 100 * train["final_train_accuracy"]
    unit.per_seed["train_minutes"] = train["train_seconds"] / 60
    return unit


def load_units(out: Path) -> dict[str, Unit]:
    folders = sorted(p for p in (out / "units").glob("*") if p.is_dir() and not p.name.startswith("."))
    return {p.name: load_unit(p) for p in folders}


def _group(units: dict[str, Unit], arm: str, name: str) -> list[Unit]:
    """The units of model ``name`` in ``arm`` (controls' tests also read main's models; ``ARM/NAME``
    names another arm's model), by seed."""
    if "/" in name:
        arm, name = name.split("/", 1)
    found = [u for u in units.values() if u.meta["arm"] == arm and u.meta["name"] == name]
    if not found and arm == "controls":
        found = [u for u in units.values() if u.meta["arm"] == "main" and u.meta["name"] == name]
    return sorted(found, key=lambda u: u.meta["seed"])


def _stack(group: list[Unit], metric: str) -> tuple[np.ndarray, np.ndarray | None] | None:
    if not group or metric not in group[0].paired or any(metric not in u.paired for u in group):
        return None
    x = np.stack([u.paired[metric][0] for u in group])
    d = group[0].paired[metric][1]
    return x, (None if d is None else np.stack([u.paired[metric][1] for u in group]))


def _interval(groups: dict[str, list[Unit]], metric: str, weights: dict[str, float]):
    if metric in PER_SEED:
        if any(metric not in u.per_seed for g in groups.values() for u in g):
            return None
        return seed_contrast({k: [u.per_seed[metric] for u in g] for k, g in groups.items()}, weights)
    stacks = {k: _stack(g, metric) for k, g in groups.items()}
    if any(s is None for s in stacks.values()):
        return None
    idx = {k: (g[0].test_index if metric in ("clean", "flip") or metric.startswith("consistency")
               else g[0].attack_index if g[0].attack_index is not None else g[0].test_index)
           for k, g in groups.items()}
    first = next(iter(idx.values()))
    if any(not np.array_equal(v, first) for v in idx.values()):
        raise ValueError(f"{metric}: the models were measured on different images")
    dens = {k: s[1] for k, s in stacks.items() if s[1] is not None}
    if any((d.sum(1) <= 0).any() for d in dens.values()):
        return None  # a ratio over no images (e.g. survival of a model that gets none right): undefined
    return contrast({k: s[0] for k, s in stacks.items()}, weights, denominators=dens or None)


def _point(x: np.ndarray, d: np.ndarray | None) -> float:
    """One seed's metric: the mean, or the ratio of sums."""
    return float(x.mean()) if d is None else float(x.sum() / d.sum())


def _jsonable(iv) -> dict | None:
    if iv is None:
        return None
    d = iv.to_json()
    for k in ("low", "high", "df"):
        if d[k] is not None and not np.isfinite(d[k]):
            d[k] = None
    return d


def model_table(units: dict[str, Unit], arm: design.Arm) -> dict:
    """Per model of ``arm``: seeds and, per metric, the mean with its interval and the per-seed values."""
    rows = {}
    for name, spec in arm.models.items():
        group = [u for u in units.values() if u.meta["arm"] == arm.name and u.meta["name"] == name]
        group.sort(key=lambda u: u.meta["seed"])
        if not group:
            continue
        metrics = {}
        for m in (*PAIRED, *PER_SEED):
            iv = _interval({name: group}, m, {name: 1.0}) if (m in group[0].per_seed or m in group[0].paired) else None
            if iv is None:
                continue
            if m in PER_SEED:
                per_seed = [u.per_seed[m] for u in group]
            else:
                per_seed = [_point(*u.paired[m]) for u in group]
            mean, sd, n = mean_sd(per_seed)
            metrics[m] = {"mean": mean, "sd": sd, "per_seed": per_seed, "interval": _jsonable(iv)}
        tv = [{"module": layer["module"], "mean_per_seed": [float(np.mean(u.tv_layers[j]["per_filter"]))
                                                            for u in group]}
              for j, layer in enumerate(group[0].tv_layers)]
        rows[name] = {"display": design.DISPLAY[name], "model": spec, "seeds": [u.meta["seed"] for u in group],
                      "local_homogeneity": group[0].meta.get("local_homogeneity"),
                      "commits": sorted({u.meta["commit"] for u in group}), "metrics": metrics, "tv_layers": tv}
    return rows


def run_tests(units: dict[str, Unit]) -> list[dict]:
    out = []
    for t in design.TESTS:
        groups = {k: _group(units, t.arm, k) for k in t.contrast}
        entry = {"claim": t.claim, "name": t.name, "metric": t.metric, "arm": t.arm, "kind": t.kind,
                 "direction": t.direction, "contrast": t.contrast, "published": t.published,
                 "seeds": {k: [u.meta["seed"] for u in g] for k, g in groups.items()}}
        margin = t.margin
        unit = LABELS[t.metric][1]
        if unit == "%" and t.kind != "threshold":
            unit = " pt"  # differences of percentages are percentage points
        if t.relative_margin is not None:
            base = _group(units, "main", "baseline")
            base_iv = _interval({"baseline": base}, t.metric, {"baseline": 1.0}) if base else None
            margin = None if base_iv is None else t.relative_margin * base_iv.estimate
            entry["margin_rule"] = f"{t.relative_margin:.0%} of the baseline's {LABELS[t.metric][0]}"
        missing = [k for k, g in groups.items() if not g]
        iv = None if missing or margin is None else _interval(groups, t.metric, t.contrast)
        entry["margin"] = margin
        entry["rule"] = rule_text(t.kind, direction=t.direction, margin=margin or t.margin,
                                  threshold=t.threshold, unit=unit) if (margin or t.kind != "equivalence") else (
            f"reproduced if the whole interval lies within +-{t.relative_margin:.0%} of the baseline's "
            f"{LABELS[t.metric][0]}; contradicted if it lies entirely outside")
        if iv is None:
            entry.update(verdict="not run yet", missing=missing, interval=None)
        else:
            entry["interval"] = _jsonable(iv)
            entry["verdict"] = verdict(iv, t.kind, direction=t.direction, margin=margin or 0.0,
                                       threshold=t.threshold)
        out.append(entry)
    return out


def summarise(out: Path, tier: str) -> dict:
    units = load_units(out)
    arms = {arm.name: model_table(units, arm) for arm in design.ARMS[tier]}
    planned = design.units(tier)
    return {
        "tier": tier,
        "units_finished": sorted(units),
        "units_planned": len(planned),
        "arms": arms,
        "arm_recipes": {a.name: {"description": a.description, "augment_pad": a.augment_pad,
                                 "seeds_planned": list(a.seeds)} for a in design.ARMS[tier]},
        "sizes": design.SIZES[tier].__dict__,
        "tests": run_tests(units),
        "commits": sorted({u.meta["commit"] for u in units.values()}),
        "design_sha256": sorted({s["design_sha256"] for s in
                                 json.loads((out / "experiment.json").read_text()).get("starts", [])})
        if (out / "experiment.json").is_file() else [],
    }
