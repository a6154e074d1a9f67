"""Markdown for docs/certify.md, rendered from the files the runs wrote (nothing typed in).

    python benchmarks/certify_tables.py --bench benchmarks/results/certify_small_cnn.json \
        --cert runs/bound_box1/certificate.json

``--bench``: the figures table of ``benchmarks/certify_speed.py``. ``--cert``: a summary of one
certificate (any method): certified accuracy against the attack's, per-status counts and the
certified accuracy by radius. ``--tightness``: the table of ``benchmarks/bound_tightness.py``.
Each argument is optional and may be repeated.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def bench_table(doc: dict) -> str:
    rows = ["| figure | measured |", "|---|---|"]
    e = doc.get("exact")
    if e:
        rows.append(
            f"| exact `grid:3` zero: (image, shift) pairs/s over plain batched inference, batch "
            f"{e['batch_size']}, {e['n_images']} images | **{e['ratio']:.3f}** "
            f"({e['certify_pairs_per_s']:,.0f} pairs/s vs {e['plain_images_per_s']:,.0f} images/s); "
            f"target >= {e['target']} |"
        )
        rows.append(
            f"| exact certified accuracy = grid attack worst-case accuracy | "
            f"{_pct(e['certified_accuracy'])} = {_pct(e['attack_worst_case_accuracy'])} (asserted) |"
        )
    for b in doc.get("bound", []):
        rows.append(
            f"| bound `box:{b['radius']}` zero, {b['n_images']} images, at most {b['max_pieces']:,} pieces "
            f"per image | {b['seconds_per_image']:.1f} s/image; certified **{_pct(b['certified'])}**; "
            f"survives the dense ¼-px attack {_pct(b['survives_dense_attack'])}; "
            f"{b['counterexamples_bnb']} B&B counterexamples; {b['unknown']} unknown; "
            f"{b['mean_pieces_per_survivor']:,.0f} pieces per survivor |"
        )
    s = doc.get("smooth")
    if s:
        at = " / ".join(f"{100 * v:.0f}" for v in s["certified_at"].values())
        radii = " / ".join(s["certified_at"])
        rows.append(
            f"| smooth, σ = {s['sigma']:g} px, n0 = {s['n0']}, n = {s['n']}, α = {s['alpha']:g}, "
            f"{s['n_images']} images | {s['seconds_per_image']:.2f} s/image; {s['abstentions']} abstentions; "
            f"smoothed clean accuracy {_pct(s['smoothed_clean_accuracy'])}; certified at L2 {radii} px: "
            f"{at} % |"
        )
    env = doc.get("environment", {})
    head = f"`{doc.get('model')}`" + (f", {env['device']}" if "device" in env else "")
    return f"Model {head}.\n\n" + "\n".join(rows) + "\n"


def cert_summary(doc: dict) -> str:
    images = doc["images"]
    status = Counter(r.get("status", "certified" if r["certified"] else "not certified") for r in images)
    curve = doc.get("certified_accuracy_vs_radius") or []
    by_r = ", ".join(f"{_pct(p['certified_accuracy'])} at r = {p['radius']:g}" for p in curve)
    pieces = [r["n_pieces"] for r in images if r.get("certified") and "n_pieces" in r]
    lines = [
        f"- `{doc['method']['name']}` on `{doc['threat']['spec']}` ({doc['threat'].get('mode')} mode), "
        f"{len(images)} images of `{doc['data']['spec']}`, model `{doc['model']['spec']}`.",
        f"- Certified accuracy **{_pct(doc['certified_accuracy'])}**; clean accuracy "
        f"{_pct(doc['clean_accuracy'])}; the attack's worst-case accuracy on the same images "
        f"{_pct(doc.get('worst_case_accuracy'))}.",
        "- Images by status: " + ", ".join(f"{k} {v}" for k, v in sorted(status.items())) + ".",
    ]
    if by_r:
        lines.append(f"- Certified accuracy by radius: {by_r}.")
    if pieces:
        lines.append(
            f"- Pieces bounded per certified image: {min(pieces):,} to {max(pieces):,} "
            f"(median {sorted(pieces)[len(pieces) // 2]:,})."
        )
    return "\n".join(lines) + "\n"


def tightness_table(doc: dict) -> str:
    rows = [
        "| piece width (px) | median gap: sampled minimum − bound | bound > 0 where the minimum is > 0 "
        "| unstable ReLUs per layer |",
        "|---:|---:|---:|---|",
    ]
    for r in doc["rows"]:
        unstable = " / ".join(f"{100 * u:.1f} %" for u in r["unstable_relu_fraction"])
        rows.append(
            f"| {2 * r['half_width']:g} | {r['median_gap']:.3f} | "
            f"{r['positive_where_true_positive']} of {r['true_positive']} | {unstable} |"
        )
    return (
        f"Model `{doc['model']}`, {doc['n_images']} correctly classified test images.\n\n"
        + "\n".join(rows)
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", type=Path, action="append", default=[])
    p.add_argument("--cert", type=Path, action="append", default=[])
    p.add_argument("--tightness", type=Path, action="append", default=[])
    args = p.parse_args(argv)
    for path in args.bench:
        print(bench_table(json.loads(path.read_text())))
    for path in args.cert:
        print(cert_summary(json.loads(path.read_text())))
    for path in args.tightness:
        print(tightness_table(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
