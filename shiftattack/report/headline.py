"""The headline of a set of results: one row per model, and the sentence a reader came for.

Read from the documents only (attack ``results.json``, ``stability.json``, ``certificate.json``),
grouped by model (:func:`~shiftattack.report.collect.model_name`; the baseline first, shift
modes in the order circular, zero, reflect, replicate, crop):

    model | clean | worst case (each attack mode) | consistency (each mode) | certified

The sentence answers "which fix helped most against shifts, and by how much": among the models
that are not the baseline, the one with the highest worst-case accuracy under the attack that
is compared (circular mode when it was run, else the first mode), against the baseline (the one
model whose spec names no anti-aliasing: no ``blur``, ``cmod``, ``aps`` and no ``antialias``
option), as a paired difference over the same images with its 95 % t interval
(:func:`~shiftattack.metrics.stats.difference`). When the interval covers zero the sentence says
*inconclusive*. The interval covers the sampling of test images only: each model is one
training run, and a second seed can move a difference by about as much again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shiftattack.metrics.stats import difference
from shiftattack.report.collect import Entry, model_name

__all__ = ["Headline", "headline", "headline_text"]

#: spec fragments that mark an anti-aliased (or otherwise shift-fixed) variant
_FIXES = ("blur", "cmod", "aps")
#: the order of shift modes in the table's columns
_MODE_ORDER = ("circular", "zero", "reflect", "replicate", "crop")


def _ordered(modes) -> list[str]:
    found = list(dict.fromkeys(modes))
    return sorted(found, key=lambda m: (_MODE_ORDER.index(m) if m in _MODE_ORDER else len(_MODE_ORDER), m))


@dataclass
class Headline:
    """``header`` and ``rows`` of the headline table (strings), the ``sentence``, and ``values``
    (the numbers behind the sentence, for tests and JSON)."""

    header: list[str]
    rows: list[list[str]]
    sentence: str
    values: dict = field(default_factory=dict)


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _is_fix(e: Entry) -> bool:
    model = e.doc.get("model") if isinstance(e.doc.get("model"), dict) else {}
    spec = str(model.get("spec", e.label)).lower()
    return model.get("antialias") is not None or any(k in spec for k in _FIXES)


def _robust(e: Entry) -> dict[int, float]:
    return {int(r["index"]): float(bool(r["robust"])) for r in e.doc.get("images", [])}


def _sentence(attacks: dict[str, Entry], mode: str) -> tuple[str, dict]:
    """The one sentence: the best fix against the baseline under ``mode``'s attack, with its interval."""
    base = [name for name, e in attacks.items() if not _is_fix(e)]
    fixes = [name for name, e in attacks.items() if _is_fix(e)]
    if len(base) != 1 or not fixes:
        return (
            f"No comparison with a baseline: the models ({', '.join(attacks)}) do not hold exactly one "
            "model without anti-aliasing and at least one with it.",
            {},
        )
    baseline = base[0]
    best = max(fixes, key=lambda n: attacks[n].doc["worst_case_accuracy"])
    a, b = _robust(attacks[best]), _robust(attacks[baseline])
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return f"{best} and {baseline} were not attacked on the same images; no paired comparison.", {}
    doc = attacks[best].doc
    threat = f"{doc['threat']['spec']}, {mode} mode, {len(shared)} images"
    acc, ref = 100 * doc["worst_case_accuracy"], 100 * attacks[baseline].doc["worst_case_accuracy"]
    if all(a[i] == b[i] for i in shared):  # no interval to speak of: say so plainly
        return (
            f"Against worst-case shifts ({threat}), no fix made a difference: {best} and {baseline} "
            f"survive on exactly the same images ({acc:.1f} % worst-case accuracy each).",
            {"best": best, "baseline": baseline, "mode": mode, "difference": None},
        )
    iv = difference([a[i] for i in shared], [b[i] for i in shared]).scaled(100.0)
    interval = f"[95 % paired interval {iv.low:+.1f}, {iv.high:+.1f}]"
    if iv.low > 0:
        verdict = (
            f"{best} helped most: worst-case accuracy {acc:.1f} % against {ref:.1f} % for {baseline}, "
            f"{iv.estimate:+.1f} points {interval}"
        )
    elif iv.high < 0:
        verdict = (
            f"no fix helped: the best, {best}, has worst-case accuracy {acc:.1f} % against {ref:.1f} % "
            f"for {baseline}, {iv.estimate:+.1f} points {interval}"
        )
    else:
        verdict = (
            f"{best} scored highest, {acc:.1f} % worst-case accuracy against {ref:.1f} % for {baseline} "
            f"({iv.estimate:+.1f} points {interval}), but the interval includes 0: inconclusive"
        )
    return (
        f"Against worst-case shifts ({threat}), {verdict}. One training run per model: the interval "
        "covers the test images only.",
        {"best": best, "baseline": baseline, "mode": mode, "difference": iv.to_json()},
    )


def headline(entries: list[Entry]) -> Headline | None:
    """The headline of ``entries``, or None when they hold no attack results."""
    attacks = [e for e in entries if e.kind == "attack"]
    if not attacks:
        return None
    fixed = {model_name(e): _is_fix(e) for e in attacks}
    models = sorted(dict.fromkeys(model_name(e) for e in attacks), key=lambda n: fixed[n])  # baseline first
    modes = _ordered(e.doc["threat"]["mode"] for e in attacks)
    by = {(model_name(e), e.doc["threat"]["mode"]): e for e in attacks}
    stab = {model_name(e): e for e in entries if e.kind == "stability"}
    cert = {model_name(e): e for e in entries if e.kind == "certificate"}
    cons_modes = _ordered(m for e in stab.values() for m in e.doc["consistency"])
    specs = {m: e.doc["threat"]["spec"] for (_, m), e in by.items()}
    cert_spec = next(
        (f"{e.doc['threat']['spec']}, {e.doc['threat'].get('mode', '')}".rstrip(", ") for e in cert.values()),
        None,
    )
    header = [
        "model",
        "clean",
        *[f"worst case ({specs[m]}, {m})" for m in modes],
        *[f"consistency ({m})" for m in cons_modes],
    ] + ([f"certified ({cert_spec})"] if cert else [])
    rows = []
    for name in models:
        first = next(by[(name, m)] for m in modes if (name, m) in by)
        row = [name, _pct(first.doc["clean_accuracy"])]
        row += [_pct(by[(name, m)].doc["worst_case_accuracy"]) if (name, m) in by else "n/a" for m in modes]
        for m in cons_modes:
            v = stab[name].doc["consistency"].get(m) if name in stab else None
            row.append("n/a" if v is None else f"{v:.1f} %")
        if cert:
            row.append(_pct(cert[name].doc["certified_accuracy"]) if name in cert else "n/a")
        rows.append(row)
    mode = "circular" if "circular" in modes else modes[0]
    sentence, values = _sentence({n: by[(n, mode)] for n in models if (n, mode) in by}, mode)
    return Headline(header, rows, sentence, values)


def headline_text(h: Headline) -> str:
    """The headline as fixed-width text: the table, then the sentence."""
    widths = [max(len(r[i]) for r in [h.header, *h.rows]) for i in range(len(h.header))]
    def line(row: list[str]) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells))

    lines = [line(row) for row in [h.header, *h.rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([*lines, "", h.sentence])
