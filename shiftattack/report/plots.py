"""Robustness figures (matplotlib, no display needed), each drawn only from results documents."""

from __future__ import annotations

import io
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from matplotlib.ticker import MaxNLocator  # noqa: E402

from shiftattack.report.collect import Entry, model_name  # noqa: E402

__all__ = ["FIGURES", "Figure", "draw_all"]


class Figure:
    """A rendered figure: file ``name`` (no extension), a caption and its PNG bytes."""

    def __init__(self, name: str, caption: str, png: bytes) -> None:
        self.name, self.caption, self.png = name, caption, png


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _integer_ticks(ax, values) -> None:
    """Whole-number ticks on the x axis when every plotted value is a whole number (radii in px)."""
    if values and all(float(v).is_integer() for v in values):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _axes(xlabel: str, ylabel: str, width: float = 6.0):
    fig, ax = plt.subplots(figsize=(width, 3.8))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def worst_case_vs_radius(entries: list[Entry]) -> Figure | None:
    """Worst-case accuracy against the shift radius K, one line per model, one panel per shift mode."""
    rows = [e for e in entries if e.kind == "attack"]
    if not rows:
        return None
    modes = list(dict.fromkeys(e.doc["threat"]["mode"] for e in rows))
    fig, axes = plt.subplots(1, len(modes), figsize=(max(6.0, 4.2 * len(modes)), 3.8), squeeze=False,
                             sharey=True)
    for ax, mode in zip(axes[0], modes):
        plotted: list[float] = []
        for e in (r for r in rows if r.doc["threat"]["mode"] == mode):
            d, t = e.doc, e.doc["threat"]
            curve = d.get("accuracy_vs_radius")
            if curve:
                xs = [p["radius"] for p in curve]
                ys = [100 * p["worst_case_accuracy"] for p in curve]
            else:  # no per-radius curve (random search or another order): clean and the set's radius
                xs, ys = [0, t.get("radius") or 0], [100 * d["clean_accuracy"], 100 * d["worst_case_accuracy"]]
            ax.plot(xs, ys, marker="o", label=model_name(e))
            plotted += xs
        _integer_ticks(ax, plotted)
        ax.set_title(f"{mode} mode", fontsize=10)
        ax.set_xlabel("shift radius K (px)")
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 100)
    axes[0][0].set_ylabel("worst-case accuracy (%)")
    axes[0][-1].legend(fontsize=7)
    return Figure(
        "worst_case_vs_radius",
        "Worst-case accuracy against the shift radius, one panel per shift mode: an image counts at K "
        "when no integer shift with max(|dx|, |dy|) <= K fools the model.",
        _png(fig),
    )


def flip_rate_vs_distance(entries: list[Entry]) -> Figure | None:
    """Flip rate against the distance between the two windows, per direction (stability documents)."""
    rows = [e for e in entries if e.kind == "stability" and e.doc.get("flip_rate")]
    if not rows:
        return None
    directions = list(rows[0].doc["flip_rate"]["rates"])
    fig, axes = plt.subplots(1, len(directions), figsize=(4.2 * len(directions), 3.8), squeeze=False,
                             sharey=True)
    for ax, u in zip(axes[0], directions):
        for e in rows:
            rates = e.doc["flip_rate"]["rates"].get(u)
            if rates:
                ax.plot(range(1, len(rates) + 1), rates, marker="o", label=e.label)
        ax.set_title(u, fontsize=10)
        ax.set_xlabel("shift distance d (px)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("flip rate (%)")
    axes[0][-1].legend(fontsize=7)
    return Figure(
        "flip_rate_vs_distance",
        "Flip rate against shift distance: percent of images whose top-1 differs between the centred "
        "window and the window moved d px horizontally, vertically or diagonally (on the canvas each "
        "stability.json records; Leterme et al.'s mean flip rate averages these cells).",
        _png(fig),
    )


def certified_vs_radius(entries: list[Entry]) -> Figure | None:
    """Certified accuracy against radius per certificate; the attack's worst case as a cross."""
    rows = [e for e in entries if e.kind == "certificate"]
    if not rows:
        return None
    fig, ax = _axes("radius (px; L2 for smooth)", "certified accuracy (%)")
    radii = [p["radius"] for e in rows for p in e.doc.get("certified_accuracy_vs_radius") or []]
    _integer_ticks(ax, radii)
    for e in rows:
        d = e.doc
        curve = d.get("certified_accuracy_vs_radius") or []
        line = ax.plot(
            [p["radius"] for p in curve],
            [100 * p["certified_accuracy"] for p in curve],
            marker="o",
            label=f"{e.label}, {d['method']['name']} {d['threat']['spec']}",
        )[0]
        if d.get("worst_case_accuracy") is not None and d["threat"].get("radius") is not None:
            ax.plot(
                [d["threat"]["radius"]],
                [100 * d["worst_case_accuracy"]],
                marker="x",
                markersize=10,
                color=line.get_color(),
                linestyle="none",
            )
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, title="x: attack's worst case", title_fontsize=8)
    return Figure(
        "certified_vs_radius",
        "Certified accuracy against radius for each certificate; the cross of the same colour is the "
        "attack's worst-case accuracy on the same set (certified accuracy can never exceed it).",
        _png(fig),
    )


def _bars(entries: list[Entry], kind: str, key: str, field: str, ylabel: str, name: str, caption: str):
    rows = [e for e in entries if e.kind == kind]
    if not rows:
        return None
    names = list(dict.fromkeys(n for e in rows for n in e.doc[key]))
    width = 0.8 / len(rows)
    fig, ax = _axes("", ylabel, width=max(6.0, 0.45 * len(names)))
    x = np.arange(len(names))
    for i, e in enumerate(rows):
        vals = [e.doc[key].get(n, {}).get(field) for n in names]
        vals = [np.nan if v is None else 100 * v for v in vals]
        ax.bar(x + i * width, vals, width, label=e.label)
    ax.set_xticks(x + width * (len(rows) - 1) / 2, names, rotation=60, ha="right", fontsize=8)
    ax.legend(fontsize=8)
    return Figure(name, caption, _png(fig))


def corruption_errors(entries: list[Entry]) -> Figure | None:
    return _bars(
        entries,
        "corruption",
        "corruptions",
        "mean_error",
        "error, mean over severities (%)",
        "corruption_errors",
        "Error per corruption, averaged over the severities that were run (CIFAR-10-C / ImageNet-C style).",
    )


def flip_probabilities(entries: list[Entry]) -> Figure | None:
    return _bars(
        entries,
        "perturbation",
        "perturbations",
        "fp",
        "flip probability (%)",
        "flip_probabilities",
        "Flip probability per perturbation sequence (CIFAR-10-P / ImageNet-P style).",
    )


def diagonal_curve(entries: list[Entry]) -> Figure | None:
    """Zhang's diagonal-shift figure: accuracy and true-class probability against the shift d."""
    rows = [e for e in entries if e.kind == "stability"]
    if not rows:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, name in (
        (left, "accuracy", "accuracy (%)"),
        (right, "correct_prob", "true-class probability (%)"),
    ):
        for e in rows:
            d = e.doc["diagonal"]
            ax.plot(d["offsets"], [100 * v for v in d[key]], marker=".", label=e.label)
        ax.set_xlabel("diagonal shift d (px), content moved by (d, d)")
        ax.set_ylabel(name)
        ax.set_ylim(0, 100)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    pad = rows[0].doc["diagonal"]
    canvas = ("its canvas (windows of the resized image)" if pad["pad_mode"] == "image"
              else f"a {pad['pad_mode']}-padded canvas")
    return Figure(
        "diagonal_curve",
        f"Accuracy and mean true-class probability as the image moves along the diagonal inside {canvas}, "
        f"up to {pad['pad']} px each way, as in Zhang (2019).",
        _png(fig),
    )


def consistency_bars(entries: list[Entry]) -> Figure | None:
    """Consistency per model and shift mode."""
    rows = [e for e in entries if e.kind == "stability"]
    if not rows:
        return None
    modes = list(dict.fromkeys(m for e in rows for m in e.doc["consistency"]))
    fig, ax = _axes("", "consistency (%)")
    width = 0.8 / len(modes)
    x = np.arange(len(rows))
    for i, mode in enumerate(modes):
        ax.bar(x + i * width, [e.doc["consistency"].get(mode, np.nan) for e in rows], width, label=mode)
    ax.set_xticks(
        x + width * (len(modes) - 1) / 2, [e.label for e in rows], rotation=20, ha="right", fontsize=8
    )
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    k = rows[0].doc["max_shift"]
    return Figure(
        "consistency",
        f"Consistency: percent of pairs of random shifts in [-{k}, {k}]^2 px of the same image whose top-1 "
        "predictions agree.",
        _png(fig),
    )


def filter_smoothness(entries: list[Entry]) -> Figure | None:
    """Normalised total variation of each first-layer kernel, one box per trained model."""
    rows = [
        e for e in entries if e.kind == "train" and (e.doc.get("filter_smoothness") or {}).get("per_filter")
    ]
    if not rows:
        return None
    fig, ax = _axes("", "normalised total variation (lower = smoother)")
    ax.boxplot([e.doc["filter_smoothness"]["per_filter"] for e in rows])
    ax.set_xticks(range(1, len(rows) + 1), [e.label for e in rows], rotation=20, ha="right", fontsize=8)
    return Figure(
        "filter_smoothness",
        "First-layer filter smoothness: the normalised total variation of each kernel of the first "
        "convolution, per trained model (Zhang 2019 reports anti-aliased networks learn smoother filters).",
        _png(fig),
    )


FIGURES: list[Callable[[list[Entry]], Figure | None]] = [
    worst_case_vs_radius,
    consistency_bars,
    diagonal_curve,
    flip_rate_vs_distance,
    certified_vs_radius,
    corruption_errors,
    flip_probabilities,
    filter_smoothness,
]


def draw_all(entries: list[Entry]) -> list[Figure]:
    """Every figure the entries have data for, in a fixed order."""
    return [f for f in (draw(entries) for draw in FIGURES) if f is not None]
