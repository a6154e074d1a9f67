"""A leaderboard from the units of its models: every metric with its 95 % interval, the ranking,
each model's difference to the leader with its paired interval, and the three files.

Intervals (all in percent): accuracies (clean, worst-case, certified) are exact Clopper-Pearson
intervals of a proportion of images; consistency, flip rate and corruption error are means of
per-image values with a t interval over images (:func:`~shiftattack.metrics.stats.contrast`).
The difference to the leader is paired over the same images (:func:`~shiftattack.metrics.stats.difference`);
a model whose interval holds 0 is "indistinguishable from the leader", never ranked below it on
noise alone. Files hold no times, so a resumed run writes the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from shiftattack.errors import SpecError
from shiftattack.jobs.compare.protocol import METRICS, ModelEntry, Protocol
from shiftattack.jobs.compare.units import unbits
from shiftattack.metrics.stats import Interval, binomial_interval, contrast, difference
from shiftattack.runtime.results import write_csv, write_json, write_text

__all__ = ["FORMAT", "build_leaderboard", "per_image", "write_leaderboard"]

FORMAT = "shiftattack-leaderboard/1"
_BINARY = {"clean_accuracy", "worst_case_circular", "worst_case_crop", "certified_accuracy"}


def per_image(metric: str, units: dict[str, dict[str, Any]]) -> np.ndarray:
    """The per-image values behind ``metric``: 0/1 for accuracies, fractions (not percent) otherwise."""
    if metric == "clean_accuracy":
        return np.array(unbits(units["worst_case_circular"]["clean_correct"]), dtype=float)
    if metric in ("worst_case_circular", "worst_case_crop"):
        return np.array(unbits(units[metric]["robust"]), dtype=float)
    if metric == "certified_accuracy":
        return np.array(unbits(units[metric]["certified"]), dtype=float)
    return np.array(units[metric]["per_image"], dtype=float)


def _interval(metric: str, values: np.ndarray) -> Interval:
    if metric in _BINARY:
        return binomial_interval(int(values.sum()), values.size).scaled(100.0)
    if np.ptp(values) == 0:  # every image alike: no spread to estimate
        v = float(values[0]) * 100.0
        return Interval(v, v, v, 0.95, "images (no variation)", 0.0, None, values.size)
    iv = contrast({"m": values}, {"m": 1.0}).scaled(100.0)  # per-image fractions: bounded by 0 and 100 %
    return replace(
        iv, low=max(iv.low, 0.0), high=min(iv.high, 100.0), method="t over images, within [0, 100]"
    )


def _curve(unit: dict[str, Any], radius: int) -> list[dict[str, float]]:
    fooled = unit["fooled_radius"]
    n = len(fooled)
    points = []
    for k in range(radius + 1):
        robust = sum(1 for r in fooled if r is None or r > k)
        iv = binomial_interval(robust, n).scaled(100.0)
        points.append({"radius": k, "accuracy": iv.estimate, "low": iv.low, "high": iv.high})
    return points


def _versus(metric: str, leader: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    higher = METRICS[metric][0]
    if np.array_equal(leader, values):
        return {"difference": 0.0, "low": 0.0, "high": 0.0, "verdict": "same per-image values as the leader"}
    iv = difference(values, leader).scaled(100.0)
    worse = iv.high < 0 if higher else iv.low > 0
    better = iv.low > 0 if higher else iv.high < 0
    verdict = (
        "below the leader"
        if worse
        else "above the leader"
        if better
        else "indistinguishable from the leader (interval holds 0)"
    )
    return {"difference": iv.estimate, "low": iv.low, "high": iv.high, "verdict": verdict}


def build_leaderboard(
    entries: list[ModelEntry],
    results: dict[str, dict[str, dict[str, Any]]],
    fingerprints: dict[str, str | None],
    protocol: Protocol,
    header: dict[str, Any],
    sort_by: str,
) -> dict[str, Any]:
    """The leaderboard document.

    Args:
        entries: the models, in command-line order.
        results: model name -> unit name -> unit result.
        fingerprints: model name -> sha256 of its weights file (None: random weights).
        protocol: the protocol every unit was scored under.
        header: ``data``, ``threats`` and ``version`` entries of the document.
        sort_by: a metric of ``protocol.metrics()``.
    """
    metrics = protocol.metrics()
    if sort_by not in metrics:
        raise SpecError(f"--sort-by must be one of {', '.join(metrics)}, got {sort_by!r}")
    rows = []
    for e in entries:
        units = results[e.name]
        scores = {m: _interval(m, per_image(m, units)).to_json() for m in metrics}
        curves = {mode: _curve(units[f"worst_case_{mode}"], protocol.radius) for mode in ("circular", "crop")}
        rows.append(
            {
                "name": e.name,
                "spec": e.spec,
                **e.load_options(),
                "weights_sha256": fingerprints[e.name],
                "metrics": scores,
                "curves": curves,
            }
        )
    higher = METRICS[sort_by][0]
    rows.sort(
        key=lambda r: (
            -r["metrics"][sort_by]["estimate"] if higher else r["metrics"][sort_by]["estimate"],
            r["name"],
        )
    )
    leader = per_image(sort_by, results[rows[0]["name"]])
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        row["versus_leader"] = _versus(sort_by, leader, per_image(sort_by, results[row["name"]]))
    return {
        "format": FORMAT,
        "protocol": protocol.to_json(),
        "protocol_sha256": protocol.sha256(),
        **header,
        "sort_by": sort_by,
        "units": "percent",
        "level": 0.95,
        "models": rows,
    }


def _csv_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    metrics = list(doc["protocol"]["definitions"])
    header = ["rank", "name", "spec", "weights_sha256"]
    for m in metrics:
        header += [m, f"{m}_low", f"{m}_high"]
    header += ["versus_leader", "versus_leader_low", "versus_leader_high", "verdict"]
    rows = []
    for r in doc["models"]:
        row = [r["rank"], r["name"], r["spec"], r["weights_sha256"] or ""]
        for m in metrics:
            s = r["metrics"][m]
            row += [f"{s['estimate']:.4f}", f"{s['low']:.4f}", f"{s['high']:.4f}"]
        v = r["versus_leader"]
        row += [f"{v['difference']:.4f}", f"{v['low']:.4f}", f"{v['high']:.4f}", v["verdict"]]
        rows.append(row)
    return header, rows


def curves_png(doc: dict[str, Any]) -> bytes:
    """Worst-case accuracy against the shift radius, every model, circular and crop side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, mode in zip(axes, ("circular", "crop"), strict=True):
        for row in doc["models"]:
            pts = row["curves"][mode]
            k = [p["radius"] for p in pts]
            (line,) = ax.plot(
                k, [p["accuracy"] for p in pts], marker="o", label=f"{row['rank']}. {row['name']}"
            )
            ax.fill_between(
                k,
                [p["low"] for p in pts],
                [p["high"] for p in pts],
                color=line.get_color(),
                alpha=0.15,
                linewidth=0,
            )
        ax.set_title(f"{mode} shifts" if mode == "circular" else "crops from a padded canvas")
        ax.set_xlabel("shift radius K (px): every shift with max(|dx|, |dy|) <= K")
        ax.set_xticks(range(doc["protocol"]["radius"] + 1))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("worst-case accuracy (%), 95 % band")
    axes[1].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _html(doc: dict[str, Any], png: bytes) -> str:
    metrics = list(doc["protocol"]["definitions"])
    esc = html.escape
    head = "".join(
        f"<th title='{esc(doc['protocol']['definitions'][m])}'>{esc(m)}"
        f"{' ↓' if not METRICS[m][0] else ''}</th>"
        for m in metrics
    )
    body = []
    for r in doc["models"]:
        cells = "".join(
            f"<td>{r['metrics'][m]['estimate']:.2f}<br><small>[{r['metrics'][m]['low']:.2f}, "
            f"{r['metrics'][m]['high']:.2f}]</small></td>"
            for m in metrics
        )
        v = r["versus_leader"]
        body.append(
            f"<tr><td>{r['rank']}</td><td class='model'><b>{esc(r['name'])}</b><br>"
            f"<small>{esc(r['spec'])}</small></td>"
            f"{cells}<td>{v['difference']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}]<br>"
            f"<small>{esc(v['verdict'])}</small></td></tr>"
        )
    protocol = "".join(
        f"<li><b>{esc(k)}</b>: {esc(str(v))}</li>" for k, v in doc["protocol"].items() if k != "definitions"
    )
    defs = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in doc["protocol"]["definitions"].items())
    data = doc["data"]
    image = base64.b64encode(png).decode()
    prec = doc.get("precision") or {"name": "fp32"}
    at = ""
    if prec["name"] != "fp32":
        at = f" Every model ran at <b>{esc(prec['name'])}</b>: {esc(prec['claim'])}."

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>shiftattack leaderboard</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:90%}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}}td.model{{text-align:left}}
small{{color:#555}}img.figure{{max-width:100%}}</style></head>
<body data-figures-rendered="0">
<h1>Shift-robustness leaderboard</h1>
<p>{len(doc["models"])} models on {esc(str(data["spec"]))} ({data["n_images"]} images), ranked by
<b>{esc(doc["sort_by"])}</b>. Every number is a percentage with its 95 % interval; the last column is the
paired difference to the leader on the same images.{at}</p>
<table><thead><tr><th>rank</th><th>model</th>{head}<th>vs leader ({esc(doc["sort_by"])})</th></tr></thead>
<tbody>{"".join(body)}</tbody></table>
<h2>Worst-case accuracy against the shift radius</h2>
<figure><img class="figure" alt="worst-case accuracy against radius, all models"
 src="data:image/png;base64,{image}">
<figcaption>One exact pass per model and mode gives the curve for every radius up to K.</figcaption></figure>
<h2>Protocol</h2><p>sha256 <code>{doc["protocol_sha256"]}</code>; data fingerprint
<code>{esc(str(data["fingerprint"]))}</code>.</p><ul>{protocol}</ul><ul>{defs}</ul>
<script>
window.addEventListener('load', function () {{
  var ok = Array.prototype.filter.call(document.images,
    function (i) {{ return i.complete && i.naturalWidth > 0; }});
  document.body.setAttribute('data-figures-rendered', String(ok.length));
}});
</script>
</body></html>
"""


def write_leaderboard(out: Path, doc: dict[str, Any]) -> list[Path]:
    """Write ``leaderboard.json``, ``leaderboard.csv`` and ``leaderboard.html`` (each atomically)."""
    header, rows = _csv_rows(doc)
    paths = [write_json(out / "leaderboard.json", doc), write_csv(out / "leaderboard.csv", header, rows)]
    paths.append(write_text(out / "leaderboard.html", _html(doc, curves_png(doc))))
    return paths
