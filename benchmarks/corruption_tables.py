"""Markdown tables for docs/corruptions.md, rendered from the JSON files the runs wrote (nothing typed in).

    python benchmarks/corruption_tables.py --speed benchmarks/results/corruption_speed.json \
        --parity benchmarks/results/corruption_parity_224.json \
        --c benchmarks/results/cifar10c_cifar_convnet.json --p benchmarks/results/cifar10p_cifar_convnet.json

Each argument is optional; the tables of the files given are printed in that order.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def speed_table(doc: dict) -> str:
    """Per corruption: ours batched and one image per call, imagecorruptions, and both ratios."""
    b = doc.get("batch_size", doc["n_images"])
    out = []
    for size, block in doc["sizes"].items():
        out.append(
            f"**{size}x{size} px**, {doc['n_images']} images, severities "
            f"{', '.join(map(str, doc['severities']))}, {doc['threads']} threads; ms per image, summed "
            "over the severities; ratio = imagecorruptions' time / ours\n"
        )
        out.append(
            f"| corruption | ours, {b} per call | ours, 1 per call | imagecorruptions | ratio ({b} per call) "
            "| ratio (1 per call) |\n|---|---:|---:|---:|---:|---:|"
        )
        per = 1000 / doc["n_images"]
        for name, row in block["corruptions"].items():
            theirs = "crashes" if row["theirs_s"] is None else f"{row['theirs_s'] * per:.2f}"
            single = row.get("ours_single_s")
            out.append(
                f"| {name} | {row['ours_s'] * per:.2f} | {'-' if single is None else f'{single * per:.2f}'} "
                f"| {theirs} | {_ratio(row['ratio'])} | {_ratio(row.get('ratio_single'))} |"
            )
        single_total = block.get("ours_single_total_s")
        out.append(
            f"| **total where both run** | {block['ours_total_s'] * per:.2f} | "
            f"{'-' if single_total is None else f'{single_total * per:.2f}'} | "
            f"{block['theirs_total_s'] * per:.2f} | **{_ratio(block['overall_ratio'])}** | "
            f"**{_ratio(block.get('overall_ratio_single'))}** |\n"
        )
        below = block.get("below_per_kind_target")
        if below is not None:
            out.append(f"Below 1x in either column: {', '.join(below) or 'none'}.\n")
    return "\n".join(out)


def parity_table(doc: dict) -> str:
    rows: dict[str, list[dict]] = {}
    for r in doc["rows"]:
        rows.setdefault(r["corruption"], []).append(r)
    out = [
        f"{doc['n_images']} CIFAR-10 test images upscaled to {doc['size']} px; mean PSNR to the clean "
        "image (dB), ours minus imagecorruptions'; for the deterministic corruptions also the largest "
        "8-bit difference between the two outputs (ours in float64)\n",
        "| corruption | PSNR diff s1 .. s5 (dB) | largest 8-bit diff | note |",
        "|---|---|---:|---|",
    ]
    for name, rs in rows.items():
        if "reference" in rs[0]:
            out.append(f"| {name} | - | - | imagecorruptions {rs[0]['reference']} |")
            continue
        diffs = " / ".join(f"{r['psnr_diff']:+.2f}" for r in rs)
        exact = max((r.get("max_abs_diff_float64", -1) for r in rs), default=-1)
        note = rs[0].get("note", "")
        out.append(f"| {name} | {diffs} | {exact if exact >= 0 else ''} | {note} |")
    return "\n".join(out) + "\n"


def c_table(doc: dict) -> str:
    out = [
        f"{doc['suite']}, {doc['n_images']} images, normaliser `{doc['normalizer']['name']}`; clean error "
        f"{_pct(doc['clean_error'])} %, **mCE {_pct(doc['mce'])} %**, relative mCE "
        f"{_pct(doc['relative_mce'])} % (errors in %)\n",
        "| corruption | s1 | s2 | s3 | s4 | s5 | CE | relative CE |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in doc["corruptions"].items():
        errs = " | ".join(_pct(e) for e in r["errors"])
        tag = " (held out)" if r.get("held_out") else ""
        out.append(f"| {name}{tag} | {errs} | {_pct(r['ce'])} | {_pct(r['relative_ce'])} |")
    return "\n".join(out) + "\n"


def p_table(doc: dict) -> str:
    plain = doc["normalizer"]["name"] == "none"  # then FR = FP and T5D = uT5D
    head = (
        f"**mFR (mean FP) {_pct(doc['mfr'])} %**, **mT5D (mean uT5D) {doc['mt5d']:.3f}**"
        if plain
        else f"**mFR {doc['mfr']:.4f}**, **mT5D {doc['mt5d']:.4f}**"
    )
    n, norm = doc["data"]["n_images"], doc["normalizer"]["name"]
    out = [f"{doc['suite']}, {n} images, normaliser `{norm}`; {head}\n"]
    if plain:
        out += ["| perturbation | FP (%) | uT5D | frames | sequences |", "|---|---:|---:|---:|---:|"]
    else:
        out += ["| perturbation | FP | uT5D | FR | T5D | sequences |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in doc["perturbations"].items():
        tag = " (held out)" if r.get("held_out") else ""
        if plain:
            out.append(
                f"| {name}{tag} | {_pct(r['fp'])} | {r['ut5d']:.3f} | {r['frames']} | {r['n_sequences']} |"
            )
        else:
            out.append(
                f"| {name}{tag} | {r['fp']:.4f} | {r['ut5d']:.4f} | {r['fr']:.4f} | {r['t5d']:.4f} | "
                f"{r['n_sequences']} |"
            )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speed", type=Path)
    p.add_argument("--parity", type=Path)
    p.add_argument("--c", type=Path, help="a benchmark results.json of a C suite")
    p.add_argument("--p", type=Path, help="a benchmark results.json of a P suite")
    args = p.parse_args(argv)
    for path, render in (
        (args.speed, speed_table),
        (args.parity, parity_table),
        (args.c, c_table),
        (args.p, p_table),
    ):
        if path is not None:
            print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
