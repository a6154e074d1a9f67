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


def speed_table(doc: dict) -> str:
    out = []
    for size, block in doc["sizes"].items():
        out.append(
            f"**{size}x{size} px**, {doc['n_images']} images, severities "
            f"{', '.join(map(str, doc['severities']))}; ms per image, summed over the severities\n"
        )
        out.append("| corruption | ours | imagecorruptions | ratio |\n|---|---:|---:|---:|")
        per = 1000 / doc["n_images"]
        ours_sum = theirs_sum = 0.0
        for name, row in block["corruptions"].items():
            theirs = "crashes" if row["theirs_s"] is None else f"{row['theirs_s'] * per:.2f}"
            ratio = "-" if row["ratio"] is None else f"{row['ratio']:.1f}x"
            out.append(f"| {name} | {row['ours_s'] * per:.2f} | {theirs} | {ratio} |")
            if row["theirs_s"] is not None:
                ours_sum += row["ours_s"] * per
                theirs_sum += row["theirs_s"] * per
        out.append(
            f"| **total where both run** | {ours_sum:.2f} | {theirs_sum:.2f} | "
            f"**{theirs_sum / ours_sum:.1f}x** |\n"
        )
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
